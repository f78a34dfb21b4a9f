//! The PostgreSQL side of accounts, federated identities and SSO sessions.

use async_trait::async_trait;

use super::{col, int, json_of, storable, uint, Doc, PgStore, Tx};
use crate::store::*;

fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// The account's sign-in names (its username, and its email when that differs), folded,
/// each with the conflict it reports, in name order.
fn names_of(user: &User) -> Vec<(String, &'static str)> {
    let username = fold(&user.username);
    let mut names = vec![(username.clone(), "username")];
    if let Some(email) = user.email.as_deref().map(fold) {
        if email != username {
            names.push((email, "email"));
        }
    }
    names.sort();
    names
}

/// Claim the account's sign-in names in the transaction, except those it holds already
/// (`owned`); `Conflict` when another account holds either, the username's reported
/// first. One primary key over both kinds makes them one namespace.
///
/// The names are claimed in name order, whichever field holds them: a claim waits for
/// a transaction that claimed or released the same name, and if two transactions
/// claimed each other's next name in different orders they would wait on each other
/// until the database aborted one (two sign-ups, one's username the other's email).
async fn claim_names(tx: &Tx<'_>, user: &User, owned: &[String]) -> StoreResult<()> {
    let claim =
        "INSERT INTO login_names (name, user_id) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    let mut taken = Vec::new();
    for (name, kind) in names_of(user) {
        if owned.contains(&name) {
            continue;
        }
        if tx.execute(claim, &[&name, &user.id]).await? == 0 {
            taken.push(kind);
        }
    }
    match taken.iter().find(|k| **k == "username").or(taken.first()) {
        Some(kind) => Err(StoreError::Conflict(kind)),
        None => Ok(()),
    }
}

async fn insert_user(tx: &Tx<'_>, user: &User) -> StoreResult<()> {
    claim_names(tx, user, &[]).await?;
    let inserted = tx
        .execute(
            "INSERT INTO users (id, created_at, value) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            &[&user.id, &int(user.created_at), &Doc::of(user)?],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict("id"));
    }
    Ok(())
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        insert_user(&tx, user).await?;
        tx.commit().await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        if !storable(id) {
            return Ok(None);
        }
        let row = self
            .query_opt("SELECT value FROM users WHERE id = $1", &[&id])
            .await?;
        row.map(|r| json_of(&r, "value")).transpose()
    }

    async fn find_user(&self, login: &str) -> StoreResult<Option<User>> {
        if !storable(login) {
            return Ok(None);
        }
        let row = self
            .query_opt(
                "SELECT u.value FROM login_names n JOIN users u ON u.id = n.user_id WHERE n.name = $1",
                &[&fold(login)],
            )
            .await?;
        row.map(|r| json_of(&r, "value")).transpose()
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let old = tx
            .query_opt("SELECT id FROM users WHERE id = $1 FOR UPDATE", &[&user.id])
            .await?;
        if old.is_none() {
            return Err(StoreError::NotFound);
        }
        // The names follow the record: the new ones claimed first, then the old ones
        // released, so this transaction never waits for a name once it holds a
        // released one (see `claim_names`).
        let owned: Vec<String> = tx
            .query(
                "SELECT name FROM login_names WHERE user_id = $1",
                &[&user.id],
            )
            .await?
            .iter()
            .map(|r| col(r, "name"))
            .collect::<StoreResult<_>>()?;
        claim_names(&tx, user, &owned).await?;
        let kept: Vec<String> = names_of(user).into_iter().map(|(n, _)| n).collect();
        tx.execute(
            "DELETE FROM login_names WHERE user_id = $1 AND NOT (name = ANY($2))",
            &[&user.id, &kept],
        )
        .await?;
        tx.execute(
            "UPDATE users SET value = $2, created_at = $3 WHERE id = $1",
            &[&user.id, &Doc::of(user)?, &int(user.created_at)],
        )
        .await?;
        tx.commit().await
    }

    async fn user_count(&self) -> StoreResult<usize> {
        let row = self
            .query_opt("SELECT count(*) AS n FROM users", &[])
            .await?;
        let n: i64 = match &row {
            Some(r) => col(r, "n")?,
            None => 0,
        };
        Ok(uint(n) as usize)
    }

    async fn users_after(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<User>> {
        // Every id is longer than the empty string, so "" starts at the first.
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "SELECT value FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await?;
        rows.iter().map(|r| json_of(r, "value")).collect()
    }

    async fn delete_user(&self, id: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let gone = tx
            .execute("DELETE FROM users WHERE id = $1", &[&id])
            .await?;
        if gone == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "DELETE FROM login_names WHERE user_id = $1",
            "DELETE FROM identities WHERE user_id = $1",
            "DELETE FROM external_ids WHERE user_id = $1",
            // Out of every group: a group write adding the account holds a key-share
            // lock on its row, so the DELETE above waited for it to commit.
            "UPDATE groups SET value = jsonb_set(value, '{members}', (value->'members') - $1::text),
                 version = version + 1
             WHERE id IN (SELECT group_id FROM group_members WHERE user_id = $1)",
            "DELETE FROM group_members WHERE user_id = $1",
        ] {
            tx.execute(sql, &[&id]).await?;
        }
        tx.commit().await
    }

    async fn external_id(&self, user_id: &str) -> StoreResult<Option<String>> {
        let row = self
            .query_opt(
                "SELECT external_id FROM external_ids WHERE user_id = $1",
                &[&user_id],
            )
            .await?;
        row.map(|r| col(&r, "external_id")).transpose()
    }

    async fn set_external_id(&self, user_id: &str, external_id: Option<&str>) -> StoreResult<()> {
        match external_id {
            Some(v) => {
                self.execute(
                    "INSERT INTO external_ids (user_id, external_id) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET external_id = EXCLUDED.external_id",
                    &[&user_id, &v],
                )
                .await?
            }
            None => {
                self.execute("DELETE FROM external_ids WHERE user_id = $1", &[&user_id])
                    .await?
            }
        };
        Ok(())
    }
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn identity(&self, connection: &str, subject: &str) -> StoreResult<Option<String>> {
        if !storable(connection) || !storable(subject) {
            return Ok(None);
        }
        let row = self
            .query_opt(
                "SELECT user_id FROM identities WHERE connection = $1 AND subject = $2",
                &[&connection, &subject],
            )
            .await?;
        row.map(|r| col(&r, "user_id")).transpose()
    }

    async fn create_federated_user(
        &self,
        user: &User,
        connection: &str,
        subject: &str,
    ) -> StoreResult<User> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        // A concurrent first login holding the identity makes this wait for its
        // outcome: its account if it committed, the identity is ours if it rolled back.
        let claimed = tx
            .execute(
                "INSERT INTO identities (connection, subject, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT (connection, subject) DO NOTHING",
                &[&connection, &subject, &user.id],
            )
            .await?;
        if claimed == 0 {
            let row = tx
                .query_opt(
                    "SELECT u.value FROM identities i JOIN users u ON u.id = i.user_id
                     WHERE i.connection = $1 AND i.subject = $2",
                    &[&connection, &subject],
                )
                .await?;
            return match row {
                Some(r) => json_of(&r, "value"),
                None => Err(StoreError::NotFound),
            };
        }
        insert_user(&tx, user).await?;
        tx.commit().await?;
        Ok(user.clone())
    }

    async fn link_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let n = self
            .execute(
                "INSERT INTO identities (connection, subject, user_id) VALUES ($1, $2, $3)
                 ON CONFLICT (connection, subject) DO NOTHING",
                &[&connection, &subject, &user_id],
            )
            .await?;
        Ok(n == 1)
    }

    async fn identities_of(&self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = self
            .query(
                "SELECT connection, subject FROM identities WHERE user_id = $1 ORDER BY connection, subject",
                &[&user_id],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((col(r, "connection")?, col(r, "subject")?)))
            .collect()
    }

    async fn unlink_identity(
        &self,
        connection: &str,
        subject: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let n = self
            .execute(
                "DELETE FROM identities WHERE connection = $1 AND subject = $2 AND user_id = $3",
                &[&connection, &subject, &user_id],
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn put_session(&self, id_hash: &str, session: &Session) -> StoreResult<()> {
        self.execute(
            "INSERT INTO sessions (hash, user_id, expires_at, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (hash) DO UPDATE SET user_id = EXCLUDED.user_id,
                 expires_at = EXCLUDED.expires_at, value = EXCLUDED.value",
            &[
                &id_hash,
                &session.user_id,
                &int(session.expires_at),
                &Doc::of(session)?,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn session(&self, id_hash: &str) -> StoreResult<Option<Session>> {
        if !storable(id_hash) {
            return Ok(None);
        }
        let row = self
            .query_opt("SELECT value FROM sessions WHERE hash = $1", &[&id_hash])
            .await?;
        row.map(|r| json_of(&r, "value")).transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        if !storable(id_hash) {
            return Ok(());
        }
        self.execute("DELETE FROM sessions WHERE hash = $1", &[&id_hash])
            .await
            .map(|_| ())
    }

    async fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<(String, Session)>> {
        let rows = self
            .query(
                "SELECT hash, value FROM sessions WHERE user_id = $1 ORDER BY hash",
                &[&user_id],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((col(r, "hash")?, json_of(r, "value")?)))
            .collect()
    }

    async fn update_session(&self, id_hash: &str, session: &Session) -> StoreResult<bool> {
        if !storable(id_hash) {
            return Ok(false);
        }
        let n = self
            .execute(
                "UPDATE sessions SET user_id = $2, expires_at = $3, value = $4 WHERE hash = $1",
                &[
                    &id_hash,
                    &session.user_id,
                    &int(session.expires_at),
                    &Doc::of(session)?,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn end_sessions_of(&self, user_id: &str, keep: Option<&str>) -> StoreResult<usize> {
        let n = self
            .execute(
                "DELETE FROM sessions WHERE user_id = $1 AND hash IS DISTINCT FROM $2",
                &[&user_id, &keep],
            )
            .await?;
        Ok(n as usize)
    }

    async fn sweep_sessions(&self, now: u64) -> StoreResult<usize> {
        let n = self
            .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&int(now)])
            .await?;
        Ok(n as usize)
    }
}
