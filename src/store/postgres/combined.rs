//! The store's combined calls ([`Store::account`], [`Store::session_with_account`],
//! [`Store::redeem_code_at`], [`Store::create_grant_with_refresh`],
//! [`Store::put_code_with_events`]) as one statement each: the joins and writable
//! common table expressions that let a silent SSO sign-in cost four round trips (two
//! per request) instead of one per record it touches.

use tokio_postgres::Row;

use super::{clean_event, col, int, json_of, storable, uint, Doc, PgStore};
use crate::store::*;

/// The columns an [`Account`] is read from, `u` being the account's row; `totp` and
/// `codes` come from the account's second factors, `groups` from its memberships (in
/// group id order, as `GroupStore::memberships` answers).
const ACCOUNT_COLUMNS: &str = "u.value AS account,
    coalesce((SELECT t.confirmed FROM totp t WHERE t.user_id = u.id), false) AS totp,
    (SELECT count(*) FROM recovery_codes r WHERE r.user_id = u.id) AS codes,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'group_id', g.id,
            'display_name', g.value->>'display_name',
            'roles', coalesce(g.value->'roles', '[]'::jsonb)) ORDER BY g.id), '[]'::jsonb)
     FROM group_members m JOIN groups g ON g.id = m.group_id
     WHERE m.user_id = u.id) AS groups";

/// The account of a row read with [`ACCOUNT_COLUMNS`]; `None` when the join found none.
fn account_of(row: &Row) -> StoreResult<Option<Account>> {
    let Some(user) = col::<Option<tokio_postgres::types::Json<User>>>(row, "account")? else {
        return Ok(None);
    };
    let codes: i64 = col(row, "codes")?;
    Ok(Some(Account {
        user: user.0,
        totp: col(row, "totp")?,
        recovery_codes: uint(codes) as usize,
        groups: json_of(row, "groups")?,
    }))
}

impl PgStore {
    pub(super) async fn account_joined(&self, user_id: &str) -> StoreResult<Option<Account>> {
        if !storable(user_id) {
            return Ok(None);
        }
        let row = self
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM users u WHERE u.id = $1"),
                &[&user_id],
            )
            .await?;
        match row {
            Some(row) => account_of(&row),
            None => Ok(None),
        }
    }

    pub(super) async fn session_with_account_joined(
        &self,
        id_hash: &str,
    ) -> StoreResult<Option<(Session, Option<Account>)>> {
        if !storable(id_hash) {
            return Ok(None);
        }
        // `sessions.user_id` has the database's collation and `users.id` compares
        // bytewise: the join says which one it means.
        let row = self
            .query_opt(
                &format!(
                    "SELECT s.value AS session, {ACCOUNT_COLUMNS}
                     FROM sessions s LEFT JOIN users u ON u.id = s.user_id COLLATE \"C\"
                     WHERE s.hash = $1"
                ),
                &[&id_hash],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let session: Session = json_of(&row, "session")?;
        Ok(Some((session, account_of(&row)?)))
    }

    pub(super) async fn redeem_code_joined(
        &self,
        code_hash: &str,
        grant_id: &str,
        now: u64,
    ) -> StoreResult<Redemption> {
        // The redeeming UPDATE returns the code, and the same statement reads the
        // grant's account and session as they are when it wins.
        let won = self
            .query_opt(
                "WITH won AS (
                     UPDATE codes SET redeemed_by = $2,
                         value = jsonb_set(value, '{redeemed_by}', to_jsonb($2::text))
                     WHERE hash = $1 AND redeemed_by IS NULL RETURNING value
                 )
                 SELECT won.value AS code, u.value AS account, s.expires_at AS session_expires
                 FROM won
                 LEFT JOIN users u ON u.id = (won.value->'grant'->>'user_id') COLLATE \"C\"
                 LEFT JOIN sessions s ON s.hash = (won.value->'grant'->>'session') COLLATE \"C\"",
                &[&code_hash, &grant_id],
            )
            .await?;
        let Some(row) = won else {
            // Lost, or no such code: which one is a second, rarer read.
            return Ok(Redemption {
                redeem: self.redeem_code(code_hash, grant_id).await?,
                user: None,
                session_live: false,
            });
        };
        let record: CodeRecord = json_of(&row, "code")?;
        let user = col::<Option<tokio_postgres::types::Json<User>>>(&row, "account")?
            .map(|j| j.0)
            // The join found an account: it must be the one the code names.
            .filter(|u| record.grant.user_id.as_deref() == Some(u.id.as_str()));
        let expires: Option<i64> = col(&row, "session_expires")?;
        let session_live = match &record.grant.session {
            Some(_) => expires.is_some_and(|e| uint(e) > now),
            None => true,
        };
        Ok(Redemption {
            redeem: Redeem::Fresh(record),
            user,
            session_live,
        })
    }

    pub(super) async fn rotate_refresh_joined(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: u64,
    ) -> StoreResult<Rotation> {
        // One statement, so one transaction: the token is spent only if this call
        // matched it unspent, the new one takes its grant and expiry, and the grant,
        // its session and its account are read as they are when it wins.
        let won = self
            .query_opt(
                "WITH spent AS (
                     UPDATE refresh_tokens SET used = true WHERE hash = $1 AND NOT used
                     RETURNING grant_id, used, expires_at
                 ), fresh AS (
                     INSERT INTO refresh_tokens (hash, grant_id, used, expires_at)
                     SELECT $2, grant_id, false, expires_at FROM spent
                     ON CONFLICT (hash) DO UPDATE SET grant_id = EXCLUDED.grant_id,
                         used = EXCLUDED.used, expires_at = EXCLUDED.expires_at
                 )
                 SELECT spent.grant_id, spent.used, spent.expires_at, g.value AS grant,
                     s.expires_at AS session_expires, u.value AS account
                 FROM spent
                 LEFT JOIN grants g ON g.id = spent.grant_id COLLATE \"C\"
                 LEFT JOIN sessions s ON s.hash = g.session COLLATE \"C\"
                 LEFT JOIN users u ON u.id = g.user_id COLLATE \"C\"",
                &[&old_hash, &new_hash],
            )
            .await?;
        let Some(row) = won else {
            // Spent before, or unknown: which one is a second, rarer read.
            let rotate = match self.refresh_token(old_hash).await? {
                Some(old) => Rotate::Reused(old),
                None => Rotate::Unknown,
            };
            return Ok(Rotation {
                rotate,
                grant: None,
                session_live: false,
                user: None,
            });
        };
        // As `rotate_refresh` answers it: the record as spent.
        let old = RefreshRecord {
            grant_id: col(&row, "grant_id")?,
            used: col(&row, "used")?,
            expires_at: uint(col(&row, "expires_at")?),
        };
        let grant = col::<Option<tokio_postgres::types::Json<Grant>>>(&row, "grant")?
            .map(|j| j.0)
            .filter(|g| g.id == old.grant_id);
        let session_live = match grant.as_ref().and_then(|g| g.data.session.as_ref()) {
            Some(_) => col::<Option<i64>>(&row, "session_expires")?.is_some_and(|e| uint(e) > now),
            None => true,
        };
        let user = col::<Option<tokio_postgres::types::Json<User>>>(&row, "account")?
            .map(|j| j.0)
            .filter(|u| {
                grant.as_ref().and_then(|g| g.data.user_id.as_deref()) == Some(u.id.as_str())
            });
        Ok(Rotation {
            rotate: Rotate::Rotated(old),
            grant,
            session_live,
            user,
        })
    }

    pub(super) async fn create_grant_with_refresh_joined(
        &self,
        grant: &Grant,
        refresh_hash: &str,
        refresh: &RefreshRecord,
    ) -> StoreResult<bool> {
        // The token is inserted from the grant's RETURNING: no grant, no token.
        let n = self
            .execute(
                "WITH g AS (
                     INSERT INTO grants (id, user_id, session, revoked, offline, expires_at, value)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING
                     RETURNING id
                 )
                 INSERT INTO refresh_tokens (hash, grant_id, used, expires_at)
                 SELECT $8, g.id, $9, $10 FROM g",
                &[
                    &grant.id,
                    &grant.data.user_id,
                    &grant.data.session,
                    &grant.revoked,
                    &grant.offline,
                    &int(grant.expires_at),
                    &Doc::of(grant)?,
                    &refresh_hash,
                    &refresh.used,
                    &int(refresh.expires_at),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub(super) async fn put_code_with_events_joined(
        &self,
        code_hash: &str,
        record: &CodeRecord,
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        let ids: Vec<String> = events.iter().map(|e| clean_event(e).id).collect();
        let docs = events
            .iter()
            .map(|e| Doc::of(&clean_event(e)))
            .collect::<StoreResult<Vec<Doc>>>()?;
        self.execute(
            "WITH code AS (
                 INSERT INTO codes (hash, redeemed_by, expires_at, value) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (hash) DO UPDATE SET redeemed_by = EXCLUDED.redeemed_by,
                     expires_at = EXCLUDED.expires_at, value = EXCLUDED.value
             )
             INSERT INTO audit_events (id, value)
             SELECT * FROM unnest($5::text[], $6::jsonb[])
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value",
            &[
                &code_hash,
                &record.redeemed_by,
                &int(record.expires_at),
                &Doc::of(record)?,
                &ids,
                &docs,
            ],
        )
        .await
        .map(|_| ())
    }
}
