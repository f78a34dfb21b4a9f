//! Attempt limits: how many wrong passwords or codes an account takes before it is
//! locked, and for how long — the rules, built on the store's counters with an expiry.
//!
//! **The account's count.** Every account has one count of consecutive failures, shared
//! by all its factors (password at sign-in, linking proof and password change, TOTP,
//! email and recovery codes) and by every browser and node: `password:<user id>` (named
//! for its first use; older versions counted passwords alone under it, so their locks
//! survive an upgrade). An attempt is reserved with one atomic hit *before* its secret
//! is checked ([`reserve`]); a right secret gives the reservation back ([`give_back`]),
//! a wrong one leaves it counted. Only a finished sign-in ([`forgive`]) or an
//! administrator's unlock resets the count, so passing the password again does not buy
//! new guesses at the second factor. Every [`Rules::block`]-th failure locks the account:
//! for [`Rules::first_lock`] seconds, doubling with each further block up to
//! [`Rules::longest_lock`]; the [`Rules::cap`]-th consecutive failure locks it until an
//! administrator unlocks it. The lock is set by the reservation that reaches the
//! boundary, so the parallel attempts behind it find the account locked before any of
//! them is checked.
//!
//! Names without an account count the same way (the lock reveals nothing), under a
//! hashed key, `unknown:<hash>`, whose counters expire: an attacker typing random names
//! cannot grow the store without bound, and the sweep removes them.
//!
//! A lock is a record of its own (`lock:<key>`, living until the lock ends), not
//! "count ≥ max", so a limit changed by a config reload neither lifts nor imposes a lock
//! already decided. `locks:<key>` counts the locks set, which tells a reservation past a
//! boundary whether the boundary's lock was set already (and has ended) or is still
//! being set by the attempt that reached it.
//!
//! The second factor also keeps its own, shorter throttle (`totp:<user id>`, a [`Limit`]
//! over a window, with [`fail`]), reserved the same way.

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::crypto::b64url;
use crate::store::{CounterStore, StoreResult, User};

/// One limit: `max` failures within `seconds` lock for `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub seconds: u64,
}

impl Limit {
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
pub async fn state<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    now: u64,
) -> StoreResult<Attempts> {
    Ok(Attempts {
        failures: store.counter(key, now).await?.map_or(0, |c| c.count),
        locked_until: store
            .counter(&lock_key(key), now)
            .await?
            .map_or(0, |c| c.expires_at),
    })
}

/// Whether the key is locked at `now`.
pub async fn locked<S: CounterStore + ?Sized>(store: &S, key: &str, now: u64) -> StoreResult<bool> {
    Ok(store.counter(&lock_key(key), now).await?.is_some())
}

/// Count one failure, atomically, and lock the key once it reaches the limit. Called
/// before a secret is checked, it reserves an attempt: parallel callers get distinct
/// counts, so no more than `limit.max` of them ever see a count within the limit, and
/// [`forgive`] takes it back on success.
pub async fn fail<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    limit: Limit,
    now: u64,
) -> StoreResult<Attempts> {
    let counter = store
        .hit(key, now, now.saturating_add(limit.seconds))
        .await?;
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
    store.hit(&lock, now, until).await?;
    store.extend_counter(&lock, now, until).await?;
    store.extend_counter(key, now, until).await?;
    Ok(Attempts {
        failures: counter.count,
        locked_until: until,
    })
}

/// A success: the failures before it are forgiven (and any lock lifted).
pub async fn forgive<S: CounterStore + ?Sized>(store: &S, key: &str) -> StoreResult<()> {
    store.reset_counters(&counter_keys(key)).await
}

/// Every counter kept under a failure count's key.
fn counter_keys(key: &str) -> [String; 3] {
    [key.to_string(), lock_key(key), locks_key(key)]
}

/// The account-wide rules (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures per block: every `block`-th consecutive failure locks
    /// (`security.max_password_attempts`).
    pub block: u32,
    /// The first lock, in seconds; each further block doubles it
    /// (`security.lockout_seconds`).
    pub first_lock: u64,
    /// The longest timed lock, in seconds; also how long the count of a name without
    /// an account is kept (`security.max_lockout_seconds`).
    pub longest_lock: u64,
    /// Consecutive failures after which the account stays locked until an
    /// administrator unlocks it (`security.max_consecutive_failures`).
    pub cap: u32,
}

impl Rules {
    pub fn of(config: &Config) -> Rules {
        let s = &config.security;
        Rules {
            block: s.max_password_attempts.max(1),
            first_lock: s.lockout_seconds,
            longest_lock: s.max_lockout_seconds.max(s.lockout_seconds),
            cap: s.max_consecutive_failures.max(1),
        }
    }

    /// The lock that the `failures`-th consecutive failure sets, if it sets one:
    /// `Some(u64::MAX)` at the cap, `Some(seconds)` at the end of a block.
    pub fn lock_after(&self, failures: u32) -> Option<u64> {
        if failures >= self.cap {
            return Some(u64::MAX);
        }
        // A zero block (a `Rules` built by hand) counts as one: never a division by 0.
        let block = self.block.max(1);
        if failures == 0 || !failures.is_multiple_of(block) {
            return None;
        }
        let doublings = failures / block - 1;
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        Some(
            self.first_lock
                .saturating_mul(factor)
                .min(self.longest_lock),
        )
    }
}

/// Whose failures a count holds: an account, or a name nobody has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    key: String,
    /// An account's count lives until forgiven; an unknown name's expires.
    account: bool,
}

impl Holder {
    /// The account's count (every factor, every browser).
    pub fn account(user_id: &str) -> Holder {
        Holder {
            key: format!("password:{user_id}"),
            account: true,
        }
    }

    /// The count of a login name: its account's when it has one, else the name's,
    /// folded and hashed (16 bytes of SHA-256), so unknown names lock exactly like real
    /// ones, reveal nothing, and are stored under keys of one short length.
    pub fn of(user: Option<&User>, login: &str) -> Holder {
        match user {
            Some(u) => Holder::account(&u.id),
            None => {
                let folded = login.trim().to_lowercase();
                let digest = Sha256::digest(folded.as_bytes());
                Holder {
                    key: format!("unknown:{}", b64url(&digest[..16])),
                    account: false,
                }
            }
        }
    }

    /// The counter key its count is stored under.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn keep_until(&self, rules: Rules, now: u64) -> u64 {
        if self.account {
            u64::MAX
        } else {
            now.saturating_add(rules.longest_lock)
        }
    }
}

/// The counter of the locks set on a key.
fn locks_key(key: &str) -> String {
    format!("locks:{key}")
}

/// The lock set by the `boundary`-th block's last failure, beside the key's general lock:
/// an attempt asks whether the lock of the boundary below it lives, which a lock its own
/// block is just setting can never answer for it.
fn boundary_lock_key(key: &str, boundary: u32) -> String {
    format!("lock:{key}#{boundary}")
}

/// A reserved attempt: check the secret, then [`give_back`] it if it was right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    holder: Holder,
    /// The consecutive failures, this attempt counted as one.
    pub failures: u32,
    /// The lock this attempt set by reaching a boundary (0: none; `u64::MAX`: until an
    /// administrator unlocks). It stands if the secret is wrong.
    pub locks_until: u64,
    /// This attempt is the last before the cap: if it fails, only an administrator
    /// lifts the lock (and the page says so, for names without an account too).
    pub capped: bool,
    /// The boundary whose lock this attempt set (meaningful when `locks_until` is set).
    boundary: u32,
}

/// What a reservation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Check the secret.
    Granted(Ticket),
    /// Locked: nothing may be checked. `for_good` when only an administrator can lift
    /// the lock (the cap was reached).
    Locked { for_good: bool },
}

/// Reserve one attempt of `holder` before its secret is checked: one atomic hit on its
/// count. The attempt is refused — given back, and nothing may be checked — while the
/// account is locked, past the cap, or past a block whose lock the attempt that reached
/// it is still setting; so of any number of parallel attempts at most the rest of the
/// block is checked. The attempt that reaches a boundary sets the lock at once.
pub async fn reserve<S: CounterStore + ?Sized>(
    store: &S,
    holder: &Holder,
    rules: Rules,
    now: u64,
) -> StoreResult<Reserved> {
    let key = holder.key.as_str();
    let lock = lock_key(key);
    if let Some(l) = store.counter(&lock, now).await? {
        let failures = store.counter(key, now).await?.map_or(0, |c| c.count);
        return Ok(Reserved::Locked {
            for_good: l.expires_at == u64::MAX || failures >= rules.cap,
        });
    }
    let keep = holder.keep_until(rules, now);
    let counted = store.hit(key, now, keep).await?;
    if holder.account && counted.expires_at < keep {
        // A count an older version kept for a window only: keep it until forgiven.
        store.extend_counter(key, now, keep).await?;
    }
    let failures = counted.count;
    let block = rules.block.max(1);
    let boundaries_below = failures.saturating_sub(1) / block;
    let locks_set = store
        .counter(&locks_key(key), now)
        .await?
        .map_or(0, |c| c.count);
    // Only the lock of the boundary below this attempt holds it back. An attempt of the
    // block whose last slot another attempt just filled (and locked) was counted before
    // that lock and is checked: the block is checked whole. A boundary's lock is written
    // before its tally, so with the tally at the boundaries below, their last lock is
    // there to be read; a tally short of them means one is still being set.
    let lower_lock = if boundaries_below > 0 && locks_set >= boundaries_below {
        store
            .counter(&boundary_lock_key(key, boundaries_below), now)
            .await?
    } else {
        None
    };
    if failures > rules.cap || locks_set < boundaries_below || lower_lock.is_some() {
        store.take_back(key, now).await?;
        let for_good = failures > rules.cap || lower_lock.is_some_and(|l| l.expires_at == u64::MAX);
        return Ok(Reserved::Locked { for_good });
    }
    let mut locks_until = 0;
    if let Some(seconds) = rules.lock_after(failures) {
        locks_until = match (seconds, holder.account) {
            (u64::MAX, true) => u64::MAX,
            // A name nobody has is never locked for good: its counters must expire.
            // The page says the same as for an account at the cap.
            (u64::MAX, false) => counted.expires_at.max(now.saturating_add(1)),
            _ => now.saturating_add(seconds),
        };
        // The locks first, then their tally: an attempt that sees the tally sees the
        // boundary's lock.
        let boundary = boundary_lock_key(key, failures / block);
        for lock in [&boundary, &lock] {
            store.hit(lock, now, locks_until).await?;
            store.extend_counter(lock, now, locks_until).await?;
        }
        store.hit(&locks_key(key), now, keep).await?;
        if !holder.account {
            // A name's count outlives its lock, or the next block would start over.
            store.extend_counter(key, now, locks_until).await?;
            store
                .extend_counter(&locks_key(key), now, locks_until)
                .await?;
        }
    }
    Ok(Reserved::Granted(Ticket {
        holder: holder.clone(),
        failures,
        locks_until,
        capped: failures >= rules.cap,
        boundary: failures / block,
    }))
}

/// The secret was right, or the attempt was refused by another rule before anything was
/// checked: the reservation is taken back, with the lock it set. The failures before it
/// stay counted until the sign-in finishes ([`forgive`]).
pub async fn give_back<S: CounterStore + ?Sized>(
    store: &S,
    ticket: Ticket,
    now: u64,
) -> StoreResult<()> {
    let key = ticket.holder.key.as_str();
    store.take_back(key, now).await?;
    if ticket.locks_until != 0 {
        store.reset_counter(&lock_key(key)).await?;
        store
            .reset_counter(&boundary_lock_key(key, ticket.boundary))
            .await?;
        store.take_back(&locks_key(key), now).await?;
    }
    Ok(())
}

/// Where an account's count stands, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub failures: u32,
    /// Locked until then (0: not locked; `u64::MAX`: until an administrator unlocks).
    pub locked_until: u64,
}

/// The account's count and lock as of `now`.
pub async fn standing<S: CounterStore + ?Sized>(
    store: &S,
    user_id: &str,
    now: u64,
) -> StoreResult<Standing> {
    let a = state(store, Holder::account(user_id).key(), now).await?;
    Ok(Standing {
        failures: a.failures,
        locked_until: a.locked_until,
    })
}

/// A finished sign-in, or an administrator's unlock: the account's consecutive failures
/// are forgiven and any lock lifted, the second factor's throttle with them.
pub async fn forgive_account<S: CounterStore + ?Sized>(
    store: &S,
    user_id: &str,
) -> StoreResult<()> {
    // One call: a sign-in pays one round trip for it, not six.
    let keys: Vec<String> = counter_keys(Holder::account(user_id).key())
        .into_iter()
        .chain(counter_keys(&super::steps::otp_key(user_id)))
        .collect();
    store.reset_counters(&keys).await
}

#[cfg(test)]
mod tests;
