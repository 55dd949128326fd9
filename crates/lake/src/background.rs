//! CPU-heavy lake work (Parquet encoding, zstd, compaction, derivation) on one dedicated,
//! lower-priority thread, so that archiving never competes on equal terms with request
//! handling: on a small machine a burst of encoding used to show up as latency spikes in
//! every request served meanwhile.

use std::sync::mpsc;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Niceness of the lake thread (0 is normal, 19 the lowest priority).
const NICENESS: i32 = 10;

static WORKER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

/// The job was lost because the lake thread could not be started or has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the lake background thread is not running")]
pub struct WorkerGone;

/// Runs `work` on the lake thread and waits for its result without blocking the runtime.
pub async fn run<T, F>(work: F) -> Result<T, WorkerGone>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let sender = WORKER.get_or_init(start).as_ref().ok_or(WorkerGone)?;
    let (reply, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(work());
    });
    sender.send(job).map_err(|_| WorkerGone)?;
    result.await.map_err(|_| WorkerGone)
}

fn start() -> Option<mpsc::Sender<Job>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("lake-background".to_owned())
        .spawn(move || {
            // Linux applies a niceness set with PRIO_PROCESS and a thread id to that thread
            // only. Failing to lower the priority is harmless: the work still runs.
            let tid = rustix::thread::gettid();
            if let Err(err) = rustix::process::setpriority_process(Some(tid), NICENESS) {
                tracing::debug!(error = %err, "could not lower the lake thread's priority");
            }
            for job in receiver {
                job();
            }
        });
    match spawned {
        Ok(_) => Some(sender),
        Err(err) => {
            tracing::error!(error = %err, "could not start the lake background thread");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_work_and_returns_its_result() {
        let answer = super::run(|| 6 * 7).await.unwrap();
        assert_eq!(answer, 42);
        let name = super::run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("lake-background"));
    }
}
