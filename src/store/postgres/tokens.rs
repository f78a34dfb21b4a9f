//! The PostgreSQL side of codes, grants and refresh tokens. A grant's JSON and its
//! columns (`revoked`, `session`) change in the same statement, so they never disagree.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{col, int, json_of, uint, Doc, PgStore};
use crate::store::*;

fn refresh_of(row: &Row) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        grant_id: col(row, "grant_id")?,
        expires_at: uint(col(row, "expires_at")?),
        used: col(row, "used")?,
    })
}

fn grants_of_rows(rows: &[Row]) -> StoreResult<Vec<Grant>> {
    rows.iter().map(|r| json_of(r, "value")).collect()
}

const REVOKE: &str = "revoked = true, value = jsonb_set(value, '{revoked}', 'true')";

#[async_trait]
impl TokenStore for PgStore {
    async fn put_code(&self, code_hash: &str, record: &CodeRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO codes (hash, redeemed_by, expires_at, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET redeemed_by = EXCLUDED.redeemed_by,
                 expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
            &[
                &code_hash,
                &record.redeemed_by,
                &int(record.expires_at),
                &Doc::of(record)?,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn sweep_tokens(&self, now: u64) -> StoreResult<usize> {
        // Idempotent deletes: nodes sweeping at once remove each row once between them.
        // Codes are kept an hour past expiry, so a late reuse is still recognised.
        let codes = self
            .execute(
                "DELETE FROM codes WHERE expires_at < $1",
                &[&int(now.saturating_sub(3600))],
            )
            .await?;
        let refresh = self
            .execute(
                "DELETE FROM refresh_tokens WHERE expires_at < $1",
                &[&int(now)],
            )
            .await?;
        let grants = self
            .execute("DELETE FROM grants WHERE expires_at < $1", &[&int(now)])
            .await?;
        Ok((codes + refresh + grants) as usize)
    }

    async fn redeem_code(&self, code_hash: &str, grant_id: &str) -> StoreResult<Redeem> {
        let won = self
            .query_opt(
                "UPDATE codes SET redeemed_by = $2,
                     value = jsonb_set(value, '{redeemed_by}', to_jsonb($2::text))
                 WHERE hash = $1 AND redeemed_by IS NULL RETURNING value",
                &[&code_hash, &grant_id],
            )
            .await?;
        if let Some(row) = won {
            return json_of(&row, "value").map(Redeem::Fresh);
        }
        let row = self
            .query_opt("SELECT value FROM codes WHERE hash = $1", &[&code_hash])
            .await?;
        match row {
            Some(r) => json_of(&r, "value").map(Redeem::Reused),
            None => Ok(Redeem::Unknown),
        }
    }

    async fn create_grant(&self, grant: &Grant) -> StoreResult<bool> {
        let n = self
            .execute(
                "INSERT INTO grants (id, user_id, session, revoked, offline, expires_at, value)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                &[
                    &grant.id,
                    &grant.data.user_id,
                    &grant.data.session,
                    &grant.revoked,
                    &grant.offline,
                    &int(grant.expires_at),
                    &Doc::of(grant)?,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let row = self
            .query_opt("SELECT value FROM grants WHERE id = $1", &[&id])
            .await?;
        row.map(|r| json_of(&r, "value")).transpose()
    }

    async fn revoke_grant(&self, id: &str) -> StoreResult<()> {
        self.execute(
            &format!("UPDATE grants SET {REVOKE} WHERE id = $1 AND NOT revoked"),
            &[&id],
        )
        .await
        .map(|_| ())
    }

    async fn grants_of(&self, user_id: &str) -> StoreResult<Vec<Grant>> {
        let rows = self
            .query(
                "SELECT value FROM grants WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .await?;
        grants_of_rows(&rows)
    }

    async fn session_grants(&self, session: &str) -> StoreResult<Vec<Grant>> {
        let rows = self
            .query(
                "SELECT value FROM grants WHERE session = $1 ORDER BY id",
                &[&session],
            )
            .await?;
        grants_of_rows(&rows)
    }

    async fn revoke_grants_of_except(
        &self,
        user_id: &str,
        client_id: &str,
        session: &str,
    ) -> StoreResult<usize> {
        let n = self
            .execute(
                &format!(
                    "UPDATE grants SET {REVOKE} WHERE user_id = $1 AND NOT revoked
                     AND NOT coalesce(value->>'client_id' = $2 AND session = $3, false)"
                ),
                &[&user_id, &client_id, &session],
            )
            .await?;
        Ok(n as usize)
    }

    async fn revoke_grants_of(&self, user_id: &str) -> StoreResult<usize> {
        let n = self
            .execute(
                &format!("UPDATE grants SET {REVOKE} WHERE user_id = $1 AND NOT revoked"),
                &[&user_id],
            )
            .await?;
        Ok(n as usize)
    }

    async fn revoke_session_grants(&self, session: &str, keep_offline: bool) -> StoreResult<usize> {
        let n = self
            .execute(
                &format!(
                    "UPDATE grants SET {REVOKE}
                     WHERE session = $1 AND NOT revoked AND NOT (offline AND $2)"
                ),
                &[&session, &keep_offline],
            )
            .await?;
        Ok(n as usize)
    }

    async fn move_session_grants(&self, from: &str, to: &str, sid: &str) -> StoreResult<usize> {
        let n = self
            .execute(
                "UPDATE grants SET session = $2,
                     value = jsonb_set(jsonb_set(value, '{data,session}', to_jsonb($2::text)),
                                       '{data,sid}', to_jsonb($3::text))
                 WHERE session = $1",
                &[&from, &to, &sid],
            )
            .await?;
        Ok(n as usize)
    }

    async fn bar_grant(&self, barred: &Grant) -> StoreResult<()> {
        let mut barred = barred.clone();
        barred.revoked = true;
        self.execute(
            "INSERT INTO grants AS g (id, user_id, session, revoked, offline, expires_at, value)
             VALUES ($1, $2, $3, true, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET revoked = true,
                 value = jsonb_set(g.value, '{revoked}', 'true')",
            &[
                &barred.id,
                &barred.data.user_id,
                &barred.data.session,
                &barred.offline,
                &int(barred.expires_at),
                &Doc::of(&barred)?,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO refresh_tokens (hash, grant_id, used, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET grant_id = EXCLUDED.grant_id, used = EXCLUDED.used,
                 expires_at = EXCLUDED.expires_at",
            &[
                &token_hash,
                &record.grant_id,
                &record.used,
                &int(record.expires_at),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let row = self
            .query_opt(
                "SELECT grant_id, used, expires_at FROM refresh_tokens WHERE hash = $1",
                &[&token_hash],
            )
            .await?;
        row.as_ref().map(refresh_of).transpose()
    }

    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshRecord,
    ) -> StoreResult<Rotate> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let spent = tx
            .query_opt(
                "UPDATE refresh_tokens SET used = true WHERE hash = $1 AND NOT used
                 RETURNING grant_id, used, expires_at",
                &[&old_hash],
            )
            .await?;
        let Some(spent) = spent else {
            // Dropping the transaction rolls it back; nothing was written.
            let row = tx
                .query_opt(
                    "SELECT grant_id, used, expires_at FROM refresh_tokens WHERE hash = $1",
                    &[&old_hash],
                )
                .await?;
            return match row {
                Some(r) => refresh_of(&r).map(Rotate::Reused),
                None => Ok(Rotate::Unknown),
            };
        };
        let old = refresh_of(&spent)?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, grant_id, used, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET grant_id = EXCLUDED.grant_id, used = EXCLUDED.used,
                 expires_at = EXCLUDED.expires_at",
            &[&new_hash, &new.grant_id, &new.used, &int(new.expires_at)],
        )
        .await?;
        tx.commit().await?;
        Ok(Rotate::Rotated(old))
    }
}
