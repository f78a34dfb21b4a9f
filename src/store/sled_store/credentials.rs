//! The sled side of second factors and counters: TOTP authenticators, recovery codes,
//! e-mail code records with their versions, and counters with an expiry — plus the
//! one-time move of the attempt records older versions kept.

use serde::{Deserialize, Serialize};

use super::{backend, cas_update, decode, encode, Change, SledStore};
use crate::secret::ct_eq;
use crate::store::*;
use async_trait::async_trait;

/// An e-mail code record as sled keeps it. Records written before versions existed
/// read as version 0.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredEmailCode {
    #[serde(flatten)]
    pub(super) code: EmailCode,
    #[serde(default)]
    pub(super) version: u64,
}

#[async_trait]
impl CredentialStore for SledStore {
    async fn put_totp(&self, user_id: &str, credential: &TotpCredential) -> StoreResult<()> {
        SledStore::put(&self.totp, user_id, credential)
    }

    async fn create_totp(
        &self,
        user_id: &str,
        credential: &TotpCredential,
    ) -> StoreResult<TotpCredential> {
        let created = self
            .totp
            .compare_and_swap(user_id, None as Option<&[u8]>, Some(encode(credential)?))
            .map_err(backend)?;
        match created {
            Ok(()) => Ok(credential.clone()),
            // Expecting nothing, a failed swap always reports what is there.
            Err(e) => e
                .current
                .map_or_else(|| Ok(credential.clone()), |bytes| decode(&bytes)),
        }
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpCredential>> {
        SledStore::get(&self.totp, user_id)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        self.totp.remove(user_id).map_err(backend)?;
        Ok(())
    }

    async fn accept_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool> {
        cas_update(
            &self.totp,
            user_id,
            |current: Option<TotpCredential>| match current {
                Some(mut c) if step > c.last_step => {
                    c.last_step = step;
                    (Change::Put(c), true)
                }
                _ => (Change::Keep, false),
            },
        )
    }

    async fn put_recovery_codes(&self, user_id: &str, hashes: &[String]) -> StoreResult<()> {
        SledStore::put(&self.recovery, user_id, &hashes)
    }

    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        cas_update(&self.recovery, user_id, |current: Option<Vec<String>>| {
            let Some(mut hashes) = current else {
                return (Change::Keep, false);
            };
            // Look at every entry, so the time taken does not say which one matched.
            let mut found = None;
            for (i, h) in hashes.iter().enumerate() {
                if ct_eq(h.as_bytes(), hash.as_bytes()) {
                    found = Some(i);
                }
            }
            match found {
                Some(i) => {
                    hashes.remove(i);
                    (Change::Put(hashes), true)
                }
                None => (Change::Keep, false),
            }
        })
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<usize> {
        let hashes: Option<Vec<String>> = SledStore::get(&self.recovery, user_id)?;
        Ok(hashes.map_or(0, |h| h.len()))
    }

    async fn put_email_code(&self, key: &str, code: &EmailCode) -> StoreResult<()> {
        cas_update(
            &self.email_codes,
            key,
            |current: Option<StoredEmailCode>| {
                let version = current.map_or(0, |c| c.version).wrapping_add(1);
                let stored = StoredEmailCode {
                    code: code.clone(),
                    version,
                };
                (Change::Put(stored), ())
            },
        )
    }

    async fn email_code(&self, key: &str) -> StoreResult<Option<Versioned<EmailCode>>> {
        let stored: Option<StoredEmailCode> = SledStore::get(&self.email_codes, key)?;
        Ok(stored.map(|s| Versioned {
            value: s.code,
            version: s.version,
        }))
    }

    async fn swap_email_code(
        &self,
        key: &str,
        expected: Option<u64>,
        code: &EmailCode,
    ) -> StoreResult<bool> {
        let current = self.email_codes.get(key).map_err(backend)?;
        let version = match &current {
            Some(bytes) => Some(decode::<StoredEmailCode>(bytes)?.version),
            None => None,
        };
        if version != expected {
            return Ok(false);
        }
        let stored = StoredEmailCode {
            code: code.clone(),
            version: version.map_or(1, |v| v.wrapping_add(1)),
        };
        // Every write changes the bytes (the version moves), so a swap against the bytes
        // that were read fails exactly when someone wrote in between.
        let swapped = self
            .email_codes
            .compare_and_swap(key, current, Some(encode(&stored)?))
            .map_err(backend)?;
        Ok(swapped.is_ok())
    }
}

#[async_trait]
impl CounterStore for SledStore {
    async fn hit(&self, key: &str, now: u64, expires_at: u64) -> StoreResult<Counter> {
        // Retried on contention, so N parallel hits answer N different counts.
        cas_update(&self.counters, key, |current: Option<Counter>| {
            let next = match current.filter(|c| c.expires_at > now) {
                Some(c) => Counter {
                    count: c.count.saturating_add(1),
                    expires_at: c.expires_at,
                },
                None => Counter {
                    count: 1,
                    expires_at,
                },
            };
            (Change::Put(next), next)
        })
    }

    async fn counter(&self, key: &str, now: u64) -> StoreResult<Option<Counter>> {
        let c: Option<Counter> = SledStore::get(&self.counters, key)?;
        Ok(c.filter(|c| c.expires_at > now))
    }

    async fn extend_counter(&self, key: &str, now: u64, until: u64) -> StoreResult<()> {
        cas_update(
            &self.counters,
            key,
            |current: Option<Counter>| match current
                .filter(|c| c.expires_at > now && c.expires_at < until)
            {
                Some(c) => (
                    Change::Put(Counter {
                        count: c.count,
                        expires_at: until,
                    }),
                    (),
                ),
                None => (Change::Keep, ()),
            },
        )
    }

    async fn take_back(&self, key: &str, now: u64) -> StoreResult<Option<Counter>> {
        cas_update(
            &self.counters,
            key,
            |current: Option<Counter>| match current.filter(|c| c.expires_at > now) {
                Some(c) if c.count > 1 => {
                    let next = Counter {
                        count: c.count - 1,
                        expires_at: c.expires_at,
                    };
                    (Change::Put(next), Some(next))
                }
                Some(_) => (Change::Remove, None),
                None => (Change::Keep, None),
            },
        )
    }

    async fn reset_counter(&self, key: &str) -> StoreResult<()> {
        self.counters.remove(key).map_err(backend)?;
        Ok(())
    }

    async fn sweep_counters(&self, now: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_counters_now(now)).await
    }
}

/// How older versions kept a failure count: the window and lock inside the record.
#[derive(Deserialize)]
struct OldAttempts {
    failures: u32,
    locked_until: u64,
}

impl SledStore {
    /// Older versions kept failure counts in an `attempts` tree with the lockout rule
    /// inside the record. A lock becomes the two counters `authn::attempts` reads (the
    /// count and its `lock:` counter), expiring when the lock would have, so an upgrade
    /// does not lift a lock; counts below the limit, whose window the record did not
    /// keep, start over. Runs once: the old tree is dropped after.
    pub(super) fn migrate_attempts(&self) -> StoreResult<()> {
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"attempts")
        {
            return Ok(());
        }
        let old = self.db.open_tree("attempts").map_err(backend)?;
        for entry in old.iter() {
            let (key, value) = entry.map_err(backend)?;
            let Ok(a) = serde_json::from_slice::<OldAttempts>(&value) else {
                continue;
            };
            if a.locked_until == 0 {
                continue;
            }
            let key = String::from_utf8_lossy(&key).into_owned();
            let lock = crate::authn::attempts::lock_key(&key);
            for (k, count) in [(key, a.failures), (lock, 1)] {
                let counter = Counter {
                    count,
                    expires_at: a.locked_until,
                };
                // Never over a counter the new version already wrote.
                let _ = self
                    .counters
                    .compare_and_swap(k, None as Option<&[u8]>, Some(encode(&counter)?))
                    .map_err(backend)?;
            }
        }
        self.db.drop_tree("attempts").map_err(backend)?;
        Ok(())
    }
}

/// The sweeps: each walks a whole tree, so the trait methods run them on the
/// blocking pool.
impl SledStore {
    fn sweep_counters_now(&self, now: u64) -> StoreResult<usize> {
        let mut removed = 0;
        for entry in self.counters.iter() {
            let (key, value) = entry.map_err(backend)?;
            let expired = decode::<Counter>(&value).map_or(true, |c| c.expires_at <= now);
            // Removed only if unchanged: a hit that restarted it meanwhile stays.
            if expired
                && self
                    .counters
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)
                    .map_err(backend)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
