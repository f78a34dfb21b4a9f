//! Group commit: concurrent callers of `flush` share one fsync instead of queueing for
//! one each.
//!
//! A caller needs a flush that *starts after* its call, because only such a flush is
//! sure to cover the writes the caller made before calling. If none is running, the
//! caller runs one. If one is running, it may have started before the caller's writes,
//! so the caller waits for it to end and then for the next one, which whoever arrives
//! first after the end runs on behalf of everyone waiting. No caller returns before a
//! flush covering its writes has finished, so durability is exactly as before; under
//! load, one fsync serves every sign-in that asked for it meanwhile.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
struct State {
    /// Flushes started so far; the running one, if any, is number `started`.
    started: u64,
    /// The highest flush number that has ended.
    ended: u64,
    running: bool,
    /// The error of flush number `ended`, if it failed.
    failed: Option<String>,
}

#[derive(Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    ended: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Return once a run of `flush` that started after this call has ended, running
    /// it here if no one else is about to.
    pub(super) fn flush(&self, flush: impl Fn() -> Result<(), String>) -> Result<(), String> {
        let mut state = self.lock();
        // The first flush to start from now on covers this caller.
        let needed = state.started + 1;
        loop {
            if state.ended >= needed {
                return match &state.failed {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                };
            }
            if state.running {
                state = self.ended.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.running = true;
            state.started += 1;
            let number = state.started;
            drop(state);
            let result = flush();
            state = self.lock();
            state.running = false;
            state.ended = number;
            state.failed = result.err();
            self.ended.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn every_caller_waits_for_a_flush_that_started_after_it() {
        let gc = Arc::new(GroupCommit::default());
        // Each "write" bumps `written`; a flush makes everything written so far durable.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let flushes = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gc, written, durable, flushes) = (
                    gc.clone(),
                    written.clone(),
                    durable.clone(),
                    flushes.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        gc.flush(|| {
                            let upto = written.load(Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            durable.fetch_max(upto, Ordering::SeqCst);
                            flushes.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= mine,
                            "returned before its write was flushed"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(flushes.load(Ordering::SeqCst) <= 1600);
    }

    #[test]
    fn a_failed_flush_fails_its_callers() {
        let gc = GroupCommit::default();
        assert_eq!(
            gc.flush(|| Err("disk full".into())),
            Err("disk full".into())
        );
        assert_eq!(gc.flush(|| Ok(())), Ok(()));
    }
}
