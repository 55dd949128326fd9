//! The process-wide turn-taking between model threads: one piece of a forward pass at a time
//! (a chat token or prompt chunk, one layer of an embedding batch), in arrival order.
//!
//! Every model already spreads a forward pass over all cores (candle's thread pools, the BERT
//! kernels' scoped threads), so two models computing at once gain nothing and lose a lot:
//! candle's pool waits for its workers by spinning, and with more runnable threads than cores
//! a spinning thread holds a core its worker needs. Measured on 2 cores with a chat and an
//! embedding model both busy: 27 tokens/s and 210 sentences/s together, against 76 and 455
//! alone. Taking turns shares the cores without that loss (47 tokens/s and 206 sentences/s
//! together), and FIFO order keeps a stream of chat tokens from starving an embedding batch or
//! the reverse; turns are about as long on both sides (a token, about 13 ms; a layer of a
//! 32-sentence batch, about 10 ms), so neither model waits long for the other.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// A fair (first come, first served) lock.
#[derive(Debug, Default)]
pub(crate) struct TurnLock {
    /// (next ticket to hand out, ticket being served).
    tickets: Mutex<(u64, u64)>,
    turn: Condvar,
}

/// Held while a forward pass runs; the next waiter's turn comes when it is dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    lock: &'a TurnLock,
}

impl TurnLock {
    pub(crate) fn take(&self) -> Turn<'_> {
        let mut tickets = self.tickets();
        let ticket = tickets.0;
        tickets.0 += 1;
        while tickets.1 != ticket {
            tickets = self
                .turn
                .wait(tickets)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        Turn { lock: self }
    }

    fn tickets(&self) -> MutexGuard<'_, (u64, u64)> {
        // The counters are only ever incremented whole, so a poisoned lock is still valid.
        self.tickets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.lock.tickets().1 += 1;
        self.lock.turn.notify_all();
    }
}

/// The lock every local model's forward passes take.
pub(crate) fn forward_turn() -> Turn<'static> {
    static LOCK: OnceLock<TurnLock> = OnceLock::new();
    LOCK.get_or_init(TurnLock::default).take()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn turns_are_served_in_arrival_order() {
        let lock = Arc::new(TurnLock::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.take();
        let mut threads = Vec::new();
        for id in 0..4 {
            let (thread_lock, thread_order) = (Arc::clone(&lock), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _turn = thread_lock.take();
                thread_order.lock().unwrap().push(id);
            }));
            // Let each thread take its ticket before the next one starts.
            while lock.tickets().0 != id + 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(first);
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }
}
