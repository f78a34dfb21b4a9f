//! The PostgreSQL side of second factors and counters. Each single-use or counting
//! promise is one statement whose `WHERE` only one caller can match.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{col, int, json_of, uint, Doc, PgStore};
use crate::store::*;

/// A transaction-scoped advisory lock key for `name` of one account.
fn lock_key(name: &str, user_id: &str) -> i64 {
    let digest = crate::crypto::sha256(format!("usher-{name}:{user_id}").as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(head)
}

fn totp_of(row: &Row) -> StoreResult<TotpCredential> {
    Ok(TotpCredential {
        sealed_secret: col(row, "sealed_secret")?,
        created_at: uint(col(row, "created_at")?),
        last_step: uint(col(row, "last_step")?),
        confirmed: col(row, "confirmed")?,
    })
}

fn counter_of(row: &Row) -> StoreResult<Counter> {
    let count: i32 = col(row, "count")?;
    Ok(Counter {
        count: u32::try_from(count).unwrap_or(0),
        expires_at: uint(col(row, "expires_at")?),
    })
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn put_totp(&self, user_id: &str, c: &TotpCredential) -> StoreResult<()> {
        self.execute(
            "INSERT INTO totp (user_id, sealed_secret, created_at, last_step, confirmed)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET sealed_secret = EXCLUDED.sealed_secret,
                 created_at = EXCLUDED.created_at, last_step = EXCLUDED.last_step,
                 confirmed = EXCLUDED.confirmed",
            &[
                &user_id,
                &c.sealed_secret,
                &int(c.created_at),
                &int(c.last_step),
                &c.confirmed,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn create_totp(&self, user_id: &str, c: &TotpCredential) -> StoreResult<TotpCredential> {
        self.execute(
            "INSERT INTO totp (user_id, sealed_secret, created_at, last_step, confirmed)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
            &[
                &user_id,
                &c.sealed_secret,
                &int(c.created_at),
                &int(c.last_step),
                &c.confirmed,
            ],
        )
        .await?;
        Ok(self.totp(user_id).await?.unwrap_or_else(|| c.clone()))
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpCredential>> {
        let row = self
            .query_opt(
                "SELECT sealed_secret, created_at, last_step, confirmed FROM totp WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        row.as_ref().map(totp_of).transpose()
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM totp WHERE user_id = $1", &[&user_id])
            .await
            .map(|_| ())
    }

    async fn accept_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool> {
        let n = self
            .execute(
                "UPDATE totp SET last_step = $2 WHERE user_id = $1 AND last_step < $2",
                &[&user_id, &int(step)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn put_recovery_codes(&self, user_id: &str, hashes: &[String]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        // One replacement of an account's codes at a time. Without the lock, a delete
        // that waited for a parallel replacement goes on with its older snapshot, which
        // does not see the rows that replacement inserted: both sets would stay valid.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key("recovery_codes", user_id)],
        )
        .await?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id])
            .await?;
        tx.execute(
            "INSERT INTO recovery_codes (user_id, hash) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING",
            &[&user_id, &hashes],
        )
        .await?;
        tx.commit().await
    }

    async fn consume_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool> {
        let n = self
            .execute(
                "DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2",
                &[&user_id, &hash],
            )
            .await?;
        Ok(n == 1)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> StoreResult<usize> {
        let row = self
            .query_opt(
                "SELECT count(*) AS n FROM recovery_codes WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        let n: i64 = match &row {
            Some(r) => col(r, "n")?,
            None => 0,
        };
        Ok(uint(n) as usize)
    }

    async fn put_email_code(&self, key: &str, code: &EmailCode) -> StoreResult<()> {
        self.execute(
            "INSERT INTO email_codes (key, version, value) VALUES ($1, nextval('email_code_versions'), $2)
             ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, value = EXCLUDED.value",
            &[&key, &Doc::of(code)?],
        )
        .await
        .map(|_| ())
    }

    async fn email_code(&self, key: &str) -> StoreResult<Option<Versioned<EmailCode>>> {
        let row = self
            .query_opt(
                "SELECT version, value FROM email_codes WHERE key = $1",
                &[&key],
            )
            .await?;
        row.map(|r| {
            Ok(Versioned {
                value: json_of(&r, "value")?,
                version: uint(col(&r, "version")?),
            })
        })
        .transpose()
    }

    async fn swap_email_code(
        &self,
        key: &str,
        expected: Option<u64>,
        code: &EmailCode,
    ) -> StoreResult<bool> {
        let n = match expected {
            None => {
                self.execute(
                    "INSERT INTO email_codes (key, version, value)
                     VALUES ($1, nextval('email_code_versions'), $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &Doc::of(code)?],
                )
                .await?
            }
            Some(version) => {
                self.execute(
                    "UPDATE email_codes SET value = $3, version = nextval('email_code_versions')
                     WHERE key = $1 AND version = $2",
                    &[&key, &int(version), &Doc::of(code)?],
                )
                .await?
            }
        };
        Ok(n == 1)
    }
}

#[async_trait]
impl CounterStore for PgStore {
    async fn hit(&self, key: &str, now: u64, expires_at: u64) -> StoreResult<Counter> {
        let row = self
            .query_opt(
                "INSERT INTO counters AS c (key, count, expires_at) VALUES ($1, 1, $3)
                 ON CONFLICT (key) DO UPDATE SET
                     count = CASE WHEN c.expires_at <= $2 THEN 1 ELSE c.count + 1 END,
                     expires_at = CASE WHEN c.expires_at <= $2 THEN EXCLUDED.expires_at ELSE c.expires_at END
                 RETURNING count, expires_at",
                &[&key, &int(now), &int(expires_at)],
            )
            .await?;
        match row {
            Some(r) => counter_of(&r),
            None => Err(StoreError::Backend(
                "a counter upsert returned no row".into(),
            )),
        }
    }

    async fn counter(&self, key: &str, now: u64) -> StoreResult<Option<Counter>> {
        let row = self
            .query_opt(
                "SELECT count, expires_at FROM counters WHERE key = $1 AND expires_at > $2",
                &[&key, &int(now)],
            )
            .await?;
        row.as_ref().map(counter_of).transpose()
    }

    async fn extend_counter(&self, key: &str, now: u64, until: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE counters SET expires_at = GREATEST(expires_at, $3)
             WHERE key = $1 AND expires_at > $2",
            &[&key, &int(now), &int(until)],
        )
        .await
        .map(|_| ())
    }

    async fn take_back(&self, key: &str, now: u64) -> StoreResult<Option<Counter>> {
        let row = self
            .query_opt(
                "UPDATE counters SET count = count - 1 WHERE key = $1 AND expires_at > $2
                 RETURNING count, expires_at",
                &[&key, &int(now)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let counter = counter_of(&row)?;
        if counter.count == 0 {
            // Only while still at zero: a hit in between keeps its count.
            self.execute(
                "DELETE FROM counters WHERE key = $1 AND count <= 0",
                &[&key],
            )
            .await?;
            return Ok(None);
        }
        Ok(Some(counter))
    }

    async fn reset_counter(&self, key: &str) -> StoreResult<()> {
        self.execute("DELETE FROM counters WHERE key = $1", &[&key])
            .await
            .map(|_| ())
    }

    async fn reset_counters(&self, keys: &[String]) -> StoreResult<()> {
        self.execute("DELETE FROM counters WHERE key = ANY($1)", &[&keys])
            .await
            .map(|_| ())
    }

    async fn sweep_counters(&self, now: u64) -> StoreResult<usize> {
        let n = self
            .execute("DELETE FROM counters WHERE expires_at <= $1", &[&int(now)])
            .await?;
        Ok(n as usize)
    }
}
