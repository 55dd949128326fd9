//! Group commit: one task turns many concurrent write requests into few transactions.
//!
//! Callers enqueue into a bounded queue and wait for their reply, so an acknowledgement still
//! means "committed", but a burst of N requests costs a handful of fsyncs instead of N. When
//! the queue is full the caller is told to retry (503 + `Retry-After`) instead of piling up
//! memory. The bound counts rows, not requests, so that one large batch and many single events
//! are held to the same memory budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flywheel_core::interaction::StoredInteraction;
use flywheel_store::{InteractionStore, StoreError};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::ServiceError;

struct WriteJob {
    items: Vec<StoredInteraction>,
    reply: Option<oneshot::Sender<Result<Vec<bool>, Arc<StoreError>>>>,
    /// One permit per row, returned when the job is committed (or fails).
    _permits: OwnedSemaphorePermit,
}

/// Counters for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub rows: AtomicU64,
    pub rejected_full: AtomicU64,
    pub detached_dropped: AtomicU64,
}

/// The enqueueing side, cloned into every service that writes interactions.
#[derive(Clone)]
pub struct GroupCommitWriter {
    sender: mpsc::UnboundedSender<WriteJob>,
    /// Bounds the rows waiting for the database; the channel itself is unbounded.
    queued_rows: Arc<Semaphore>,
    max_queued_rows: usize,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for GroupCommitWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitWriter")
            .field("max_queued_rows", &self.max_queued_rows)
            .finish()
    }
}

/// The running writer task; `shutdown` drains what was accepted and stops.
#[derive(Debug)]
pub struct WriterTask {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl WriterTask {
    /// Stops accepting, commits everything already queued, and waits for the task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.join.await {
            tracing::error!(error = %err, "interaction writer task failed");
        }
    }
}

impl GroupCommitWriter {
    pub fn spawn(
        store: Arc<dyn InteractionStore>,
        max_queued_rows: usize,
        max_commit_rows: usize,
    ) -> (GroupCommitWriter, WriterTask) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let max_queued_rows = max_queued_rows.clamp(1, Semaphore::MAX_PERMITS);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(WriterStats::default());
        let join = tokio::spawn(run_writer(
            store,
            receiver,
            stop_rx,
            max_commit_rows.max(1),
            stats.clone(),
        ));
        (
            GroupCommitWriter {
                sender,
                queued_rows: Arc::new(Semaphore::new(max_queued_rows)),
                max_queued_rows,
                stats,
            },
            WriterTask { stop, join },
        )
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes and waits until committed. Per item: `true` new, `false` already stored.
    pub async fn write(&self, items: Vec<StoredInteraction>) -> Result<Vec<bool>, ServiceError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let permits = self.reserve(items.len()).inspect_err(|_| {
            self.stats.rejected_full.fetch_add(1, Ordering::Relaxed);
        })?;
        let (reply, receiver) = oneshot::channel();
        self.sender
            .send(WriteJob {
                items,
                reply: Some(reply),
                _permits: permits,
            })
            .map_err(|_| ServiceError::Unavailable("the server is shutting down".to_owned()))?;
        match receiver.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(err)) => Err(match err.as_ref() {
                StoreError::Unavailable(_) | StoreError::NotReady => {
                    ServiceError::Unavailable(format!("database: {err}"))
                }
                other => ServiceError::Internal(anyhow::anyhow!("writing interactions: {other}")),
            }),
            Err(_) => Err(ServiceError::Unavailable(
                "the interaction writer stopped".to_owned(),
            )),
        }
    }

    fn reserve(&self, rows: usize) -> Result<OwnedSemaphorePermit, ServiceError> {
        let wanted = u32::try_from(rows).unwrap_or(u32::MAX);
        self.queued_rows
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|err| match err {
                TryAcquireError::NoPermits => ServiceError::Overloaded(format!(
                    "{} interactions are already waiting for the database (ingest.max_queued_rows)",
                    self.max_queued_rows
                )),
                TryAcquireError::Closed => {
                    ServiceError::Unavailable("the server is shutting down".to_owned())
                }
            })
    }

    /// Enqueues without waiting (API-call tracking): never blocks the caller. Returns false
    /// (and counts a drop) when the queue is full.
    pub fn write_detached(&self, items: Vec<StoredInteraction>) -> bool {
        let accepted = match self.reserve(items.len()) {
            Ok(permits) => self
                .sender
                .send(WriteJob {
                    items,
                    reply: None,
                    _permits: permits,
                })
                .is_ok(),
            Err(_) => false,
        };
        if !accepted {
            self.stats.detached_dropped.fetch_add(1, Ordering::Relaxed);
        }
        accepted
    }
}

async fn run_writer(
    store: Arc<dyn InteractionStore>,
    mut receiver: mpsc::UnboundedReceiver<WriteJob>,
    mut stop: watch::Receiver<bool>,
    max_commit_rows: usize,
    stats: Arc<WriterStats>,
) {
    loop {
        let received = tokio::select! {
            job = receiver.recv() => Some(job),
            () = stop_requested(&mut stop) => None,
        };
        let first = match received {
            Some(job) => job,
            None => {
                // Refuse new work, then drain what was accepted.
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        let mut rows = jobs[0].items.len();
        if jobs[0].reply.is_none() {
            // Nobody waits for a detached record (gateway call logs, API-call tracking), so
            // gather more for a moment: fewer, larger commits cost far fewer fsyncs. A job
            // somebody waits for ends the wait at once.
            let deadline = tokio::time::Instant::now() + DETACHED_LINGER;
            while rows < max_commit_rows {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(job)) => {
                        let awaited = job.reply.is_some();
                        rows += job.items.len();
                        jobs.push(job);
                        if awaited {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while rows < max_commit_rows {
            match receiver.try_recv() {
                Ok(job) => {
                    rows += job.items.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit(store.as_ref(), jobs, &stats).await;
    }
}

/// How long the writer waits to batch records nobody waits for.
const DETACHED_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

async fn commit(store: &dyn InteractionStore, jobs: Vec<WriteJob>, stats: &WriterStats) {
    let mut lengths = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    let mut all = Vec::new();
    let mut permits = Vec::with_capacity(jobs.len());
    for job in jobs {
        lengths.push(job.items.len());
        replies.push(job.reply);
        all.extend(job.items);
        permits.push(job._permits);
    }
    let result = store.insert_interactions(&all).await;
    // The rows are no longer waiting: let new writers in before answering these.
    drop(permits);
    match result {
        Ok(inserted) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.rows.fetch_add(all.len() as u64, Ordering::Relaxed);
            let mut offset = 0;
            for (len, reply) in lengths.into_iter().zip(replies) {
                let slice = inserted[offset..offset + len].to_vec();
                offset += len;
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(slice));
                }
            }
        }
        Err(err) => {
            tracing::error!(error = %err, rows = all.len(), "committing interactions failed");
            let err = Arc::new(err);
            let mut lost_detached = 0usize;
            for (len, reply) in lengths.into_iter().zip(replies) {
                match reply {
                    Some(reply) => {
                        let _ = reply.send(Err(err.clone()));
                    }
                    None => lost_detached += len,
                }
            }
            if lost_detached > 0 {
                stats
                    .detached_dropped
                    .fetch_add(lost_detached as u64, Ordering::Relaxed);
            }
        }
    }
}

async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        // The stop sender is gone: nobody can ask us to stop, so keep serving.
        std::future::pending::<()>().await;
    }
}
