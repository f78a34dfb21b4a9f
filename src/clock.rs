//! Time as an input. The core never reads the wall clock itself: the shell that drives
//! it (the server, `usher test`, a test) hands it a [`Clock`], and asks it for `now`
//! once per request. Tests move a [`ManualClock`] forward instead of sleeping, so a
//! TOTP window or a lock's expiry is one call away rather than thirty seconds.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds since the Unix epoch, as the core sees them.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The machine's clock: what a running server uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::crypto::unix_now()
    }
}

/// A clock that stands still until told to move: tests, fixtures and benchmarks.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn at(now: u64) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(now),
        }
    }

    /// A clock that starts at the machine's time (tokens it stamps still validate in a
    /// relying party that reads the real clock) and then moves only when told.
    pub fn starting_now() -> ManualClock {
        Self::at(crate::crypto::unix_now())
    }

    pub fn set(&self, now: u64) {
        self.now.store(now, Ordering::SeqCst);
    }

    /// Move forward by `seconds`; returns the new time.
    pub fn advance(&self, seconds: u64) -> u64 {
        self.now.fetch_add(seconds, Ordering::SeqCst) + seconds
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(1_000);
        assert_eq!(clock.now(), 1_000);
        assert_eq!(clock.advance(30), 1_030);
        assert_eq!(clock.now(), 1_030);
        clock.set(5);
        assert_eq!(clock.now(), 5);
    }

    #[test]
    fn the_system_clock_reads_the_machine_time() {
        let before = crate::crypto::unix_now();
        let read = SystemClock.now();
        assert!(read >= before && read <= crate::crypto::unix_now());
    }
}
