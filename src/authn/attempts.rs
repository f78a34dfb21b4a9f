//! Attempt limits: how many wrong passwords or codes an account takes before it is
//! locked, and for how long — the rules, built on the store's counters with an expiry.
//!
//! A failure counter lives for one window from its first failure. The failure that
//! reaches the limit locks the key: a second counter, `lock:<key>`, lives until `now +
//! seconds`, and the failure count is kept as long, so when the lock ends counting
//! starts over. A lock is a record of its own, not "count ≥ max", so a limit changed by
//! a config reload neither lifts nor imposes a lock already decided. Counters are per
//! account (`password:<user id>`, `totp:<user id>`), shared by every browser and node.

use crate::config::Config;
use crate::store::{CounterStore, StoreResult};

/// One limit: `max` failures within `seconds` lock for `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub seconds: u64,
}

impl Limit {
    /// Passwords (`security.max_password_attempts`, `security.lockout_seconds`).
    pub fn password(config: &Config) -> Limit {
        Limit {
            max: config.security.max_password_attempts,
            seconds: config.security.lockout_seconds,
        }
    }

    /// One-time codes of the second factor (`security.max_otp_attempts`,
    /// `security.otp_lockout_seconds`).
    pub fn otp(config: &Config) -> Limit {
        Limit {
            max: config.security.max_otp_attempts,
            seconds: config.security.otp_lockout_seconds,
        }
    }
}

/// Where a key's failures stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Failures counted in the current window (or lock), reserved attempts included.
    pub failures: u32,
    /// Locked until this time (0 = not locked).
    pub locked_until: u64,
}

impl Attempts {
    pub fn locked_at(&self, now: u64) -> bool {
        self.locked_until > now
    }
}

/// The counter that records a key's lock (public for the sled store's one-time move
/// of locks kept by older versions).
pub fn lock_key(key: &str) -> String {
    format!("lock:{key}")
}

/// The key's failures as of `now`.
pub fn state<S: CounterStore + ?Sized>(store: &S, key: &str, now: u64) -> StoreResult<Attempts> {
    Ok(Attempts {
        failures: store.counter(key, now)?.map_or(0, |c| c.count),
        locked_until: store
            .counter(&lock_key(key), now)?
            .map_or(0, |c| c.expires_at),
    })
}

/// Whether the key is locked at `now`.
pub fn locked<S: CounterStore + ?Sized>(store: &S, key: &str, now: u64) -> StoreResult<bool> {
    Ok(store.counter(&lock_key(key), now)?.is_some())
}

/// Count one failure, atomically, and lock the key once it reaches the limit. Called
/// before a secret is checked, it reserves an attempt: parallel callers get distinct
/// counts, so no more than `limit.max` of them ever see a count within the limit, and
/// [`forgive`] takes it back on success.
pub fn fail<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    limit: Limit,
    now: u64,
) -> StoreResult<Attempts> {
    let counter = store.hit(key, now, now.saturating_add(limit.seconds))?;
    if counter.count < limit.max {
        return Ok(Attempts {
            failures: counter.count,
            locked_until: 0,
        });
    }
    // The lock runs from the latest failure that reached (or passed) the limit; the
    // count lives as long, so it starts over when the lock ends.
    let until = now.saturating_add(limit.seconds);
    let lock = lock_key(key);
    store.hit(&lock, now, until)?;
    store.extend_counter(&lock, now, until)?;
    store.extend_counter(key, now, until)?;
    Ok(Attempts {
        failures: counter.count,
        locked_until: until,
    })
}

/// A success: the failures before it are forgiven (and any lock lifted).
pub fn forgive<S: CounterStore + ?Sized>(store: &S, key: &str) -> StoreResult<()> {
    store.reset_counter(key)?;
    store.reset_counter(&lock_key(key))
}
