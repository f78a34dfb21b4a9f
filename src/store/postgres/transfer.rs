//! The PostgreSQL side of `usher store copy`: every table walked a page at a time in
//! key order (keyset pages, inside one read-only repeatable-read transaction, so the
//! walk sees one snapshot), and a batch of records written in one transaction with one
//! statement per kind: `INSERT … SELECT FROM unnest($1, $2, …) ON CONFLICT … DO UPDATE`,
//! each column an array parameter.

use async_trait::async_trait;
use std::borrow::Cow;

use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::{col, int, json_of, pg, uint, Doc, PgStore, Tx};
use crate::store::transfer::{Kind, Record, Sink, Tally, Transfer, BATCH};
use crate::store::*;

/// How a kind's table is walked.
struct Walk {
    table: &'static str,
    columns: &'static str,
    /// The primary key, in order: pages continue after the last row's key.
    keys: &'static [&'static str],
    /// `GROUP BY` the key (recovery codes: one record per account).
    grouped: bool,
}

fn walk_of(kind: Kind) -> Walk {
    let w = |table, columns, keys| Walk {
        table,
        columns,
        keys,
        grouped: false,
    };
    match kind {
        Kind::Users => w("users", "id, value", &["id"]),
        Kind::ExternalIds => w("external_ids", "user_id, external_id", &["user_id"]),
        Kind::Identities => w(
            "identities",
            "connection, subject, user_id",
            &["connection", "subject"],
        ),
        Kind::Groups => w("groups", "id, version, value", &["id"]),
        Kind::Totp => w(
            "totp",
            "user_id, sealed_secret, created_at, last_step, confirmed",
            &["user_id"],
        ),
        Kind::RecoveryCodes => Walk {
            table: "recovery_codes",
            columns: "user_id, array_agg(hash ORDER BY hash) AS hashes",
            keys: &["user_id"],
            grouped: true,
        },
        Kind::EmailCodes => w("email_codes", "key, version, value", &["key"]),
        Kind::Counters => w("counters", "key, count, expires_at", &["key"]),
        Kind::Sessions => w("sessions", "hash, value", &["hash"]),
        Kind::Flows => w("flows", "id, value", &["id"]),
        Kind::UpstreamStates => w("upstream_states", "state_hash, flow_id", &["state_hash"]),
        Kind::Flashes => w("flashes", "id, value, expires_at", &["id"]),
        Kind::Codes => w("codes", "hash, value", &["hash"]),
        Kind::Grants => w("grants", "id, value", &["id"]),
        Kind::RefreshTokens => w(
            "refresh_tokens",
            "hash, grant_id, used, expires_at",
            &["hash"],
        ),
        Kind::SigningKeys => w("signing_keys", "kid, alg, pkcs8_der, created_at", &["kid"]),
        Kind::Secrets => w("secrets", "name, value", &["name"]),
        Kind::AuditEvents => w("audit_events", "id, value", &["id"]),
    }
}

impl Walk {
    /// The first page (`after` false) or a page after a key.
    fn sql(&self, after: bool) -> String {
        let keys = self.keys.join(", ");
        let group = if self.grouped {
            format!(" GROUP BY {keys}")
        } else {
            String::new()
        };
        if !after {
            return format!(
                "SELECT {} FROM {}{group} ORDER BY {keys} LIMIT $1",
                self.columns, self.table
            );
        }
        let n = self.keys.len();
        let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        format!(
            "SELECT {} FROM {} WHERE ({keys}) > ({}){group} ORDER BY {keys} LIMIT ${}",
            self.columns,
            self.table,
            params.join(", "),
            n + 1
        )
    }
}

fn record_of(kind: Kind, r: &Row) -> StoreResult<Record> {
    Ok(match kind {
        Kind::Users => Record::User(json_of(r, "value")?),
        Kind::ExternalIds => Record::ExternalId {
            user_id: col(r, "user_id")?,
            external_id: col(r, "external_id")?,
        },
        Kind::Identities => Record::Identity {
            connection: col(r, "connection")?,
            subject: col(r, "subject")?,
            user_id: col(r, "user_id")?,
        },
        Kind::Groups => Record::Group {
            group: json_of(r, "value")?,
            version: uint(col(r, "version")?),
        },
        Kind::Totp => Record::Totp {
            user_id: col(r, "user_id")?,
            credential: TotpCredential {
                sealed_secret: col(r, "sealed_secret")?,
                created_at: uint(col(r, "created_at")?),
                last_step: uint(col(r, "last_step")?),
                confirmed: col(r, "confirmed")?,
            },
        },
        Kind::RecoveryCodes => Record::RecoveryCodes {
            user_id: col(r, "user_id")?,
            hashes: col(r, "hashes")?,
        },
        Kind::EmailCodes => Record::EmailCode {
            key: col(r, "key")?,
            code: json_of(r, "value")?,
            version: uint(col(r, "version")?),
        },
        Kind::Counters => Record::Counter {
            key: col(r, "key")?,
            counter: Counter {
                count: u32::try_from(col::<i32>(r, "count")?).unwrap_or(0),
                expires_at: uint(col(r, "expires_at")?),
            },
        },
        Kind::Sessions => Record::Session {
            hash: col(r, "hash")?,
            session: json_of(r, "value")?,
        },
        Kind::Flows => Record::Flow {
            id: col(r, "id")?,
            bytes: col(r, "value")?,
        },
        Kind::UpstreamStates => Record::UpstreamState {
            state_hash: col(r, "state_hash")?,
            flow_id: col(r, "flow_id")?,
        },
        Kind::Flashes => Record::Flash {
            id: col(r, "id")?,
            bytes: col(r, "value")?,
            expires_at: uint(col(r, "expires_at")?),
        },
        Kind::Codes => Record::Code {
            hash: col(r, "hash")?,
            record: json_of(r, "value")?,
        },
        Kind::Grants => Record::Grant(json_of(r, "value")?),
        Kind::RefreshTokens => Record::Refresh {
            hash: col(r, "hash")?,
            record: RefreshRecord {
                grant_id: col(r, "grant_id")?,
                expires_at: uint(col(r, "expires_at")?),
                used: col(r, "used")?,
            },
        },
        Kind::SigningKeys => Record::SigningKey(StoredKey {
            kid: col(r, "kid")?,
            alg: col(r, "alg")?,
            pkcs8_der: col(r, "pkcs8_der")?,
            created_at: uint(col(r, "created_at")?),
        }),
        Kind::Secrets => Record::Secret {
            name: col(r, "name")?,
            value: col(r, "value")?,
        },
        Kind::AuditEvents => Record::AuditEvent(json_of(r, "value")?),
    })
}

/// Walk one kind's table inside `tx`, page by page; `false` when the sink stopped.
async fn walk(tx: &Tx<'_>, kind: Kind, sink: &mut dyn Sink) -> StoreResult<bool> {
    let walk = walk_of(kind);
    let (first, next) = (walk.sql(false), walk.sql(true));
    let limit = BATCH as i64;
    let mut after: Option<Vec<String>> = None;
    loop {
        let rows = match &after {
            None => tx.query(&first, &[&limit]).await?,
            Some(key) => {
                let mut params: Vec<&(dyn ToSql + Sync)> =
                    key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
                params.push(&limit);
                tx.query(&next, &params).await?
            }
        };
        let full = rows.len() == BATCH;
        if let Some(last) = rows.last() {
            after = Some(
                walk.keys
                    .iter()
                    .map(|k| col::<String>(last, k))
                    .collect::<StoreResult<_>>()?,
            );
        }
        let records = rows
            .iter()
            .map(|r| record_of(kind, r))
            .collect::<StoreResult<Vec<_>>>()?;
        if !records.is_empty() && !sink.take(records).await? {
            return Ok(false);
        }
        if !full {
            return Ok(true);
        }
    }
}

/// One column of a batch, an array parameter of its statement.
type Texts<'a> = Vec<Cow<'a, str>>;
type MaybeTexts<'a> = Vec<Option<Cow<'a, str>>>;
type Bytes<'a> = Vec<&'a [u8]>;
type Times = Vec<i64>;
type Flags = Vec<bool>;
type Docs = Vec<Doc>;

/// The columns of one batch, kind by kind: each becomes one array parameter.
#[derive(Default)]
struct Columns<'a> {
    users: (Texts<'a>, Times, Docs),
    names: (Texts<'a>, Texts<'a>),
    external_ids: (Texts<'a>, Texts<'a>),
    identities: (Texts<'a>, Texts<'a>, Texts<'a>),
    /// id, creation time, version, record; then (name, group) and (account, group).
    groups: (Texts<'a>, Times, Times, Docs),
    group_names: (Vec<String>, Texts<'a>),
    group_members: (Texts<'a>, Texts<'a>),
    totp: (Texts<'a>, Bytes<'a>, Times, Times, Flags),
    recovery_users: Texts<'a>,
    recovery: (Texts<'a>, Texts<'a>),
    email_codes: (Texts<'a>, Docs),
    counters: (Texts<'a>, Vec<i32>, Times),
    sessions: (Texts<'a>, MaybeTexts<'a>, Times, Docs),
    flows: (Texts<'a>, Bytes<'a>),
    upstream_states: (Texts<'a>, Texts<'a>),
    flashes: (Texts<'a>, Bytes<'a>, Times),
    codes: (Texts<'a>, MaybeTexts<'a>, Times, Docs),
    grants: Grants<'a>,
    refresh: (Texts<'a>, Texts<'a>, Flags, Times),
    keys: (Texts<'a>, Texts<'a>, Bytes<'a>, Times),
    secrets: (Texts<'a>, Bytes<'a>),
    audit: (Texts<'a>, Docs),
}

/// A grant's columns: id, user id, session, revoked, offline, expiry, the record.
type Grants<'a> = (
    Texts<'a>,
    MaybeTexts<'a>,
    MaybeTexts<'a>,
    Flags,
    Flags,
    Times,
    Docs,
);

fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Text as PostgreSQL can hold it: a NUL (which `text` cannot) written as U+FFFD, as
/// [`Doc`] writes one inside a record, so a record an embedded store accepted can
/// always be copied.
fn t(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn maybe(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(t)
}

impl<'a> Columns<'a> {
    fn of(records: &'a [Record]) -> StoreResult<Columns<'a>> {
        let mut c = Columns::default();
        for record in records {
            match record {
                Record::User(u) => {
                    c.users.0.push(t(&u.id));
                    c.users.1.push(int(u.created_at));
                    c.users.2.push(Doc::of(u)?);
                    // Sign-in names as the account's own writes claim them: the
                    // username, and the email when it differs.
                    let username = fold(&u.username);
                    if let Some(email) = u.email.as_deref().map(fold) {
                        if email != username {
                            c.names.0.push(Cow::Owned(t(&email).into_owned()));
                            c.names.1.push(t(&u.id));
                        }
                    }
                    c.names.0.push(Cow::Owned(t(&username).into_owned()));
                    c.names.1.push(t(&u.id));
                }
                Record::ExternalId {
                    user_id,
                    external_id,
                } => {
                    c.external_ids.0.push(t(user_id));
                    c.external_ids.1.push(t(external_id));
                }
                Record::Identity {
                    connection,
                    subject,
                    user_id,
                } => {
                    c.identities.0.push(t(connection));
                    c.identities.1.push(t(subject));
                    c.identities.2.push(t(user_id));
                }
                Record::Group { group, version } => {
                    c.groups.0.push(t(&group.id));
                    c.groups.1.push(int(group.created_at));
                    c.groups.2.push(int(*version));
                    c.groups.3.push(Doc::of(group)?);
                    c.group_names
                        .0
                        .push(t(&crate::store::groups::name_key(&group.display_name)).into_owned());
                    c.group_names.1.push(t(&group.id));
                    for m in &group.members {
                        c.group_members.0.push(t(m));
                        c.group_members.1.push(t(&group.id));
                    }
                }
                Record::Totp {
                    user_id,
                    credential,
                } => {
                    c.totp.0.push(t(user_id));
                    c.totp.1.push(&credential.sealed_secret);
                    c.totp.2.push(int(credential.created_at));
                    c.totp.3.push(int(credential.last_step));
                    c.totp.4.push(credential.confirmed);
                }
                Record::RecoveryCodes { user_id, hashes } => {
                    c.recovery_users.push(t(user_id));
                    for h in hashes {
                        c.recovery.0.push(t(user_id));
                        c.recovery.1.push(t(h));
                    }
                }
                Record::EmailCode { key, code, .. } => {
                    c.email_codes.0.push(t(key));
                    c.email_codes.1.push(Doc::of(code)?);
                }
                Record::Counter { key, counter } => {
                    c.counters.0.push(t(key));
                    c.counters
                        .1
                        .push(i32::try_from(counter.count).unwrap_or(i32::MAX));
                    c.counters.2.push(int(counter.expires_at));
                }
                Record::Session { hash, session } => {
                    c.sessions.0.push(t(hash));
                    c.sessions.1.push(maybe(&session.user_id));
                    c.sessions.2.push(int(session.expires_at));
                    c.sessions.3.push(Doc::of(session)?);
                }
                Record::Flow { id, bytes } => {
                    c.flows.0.push(t(id));
                    c.flows.1.push(bytes);
                }
                Record::UpstreamState {
                    state_hash,
                    flow_id,
                } => {
                    c.upstream_states.0.push(t(state_hash));
                    c.upstream_states.1.push(t(flow_id));
                }
                Record::Flash {
                    id,
                    bytes,
                    expires_at,
                } => {
                    c.flashes.0.push(t(id));
                    c.flashes.1.push(bytes);
                    c.flashes.2.push(int(*expires_at));
                }
                Record::Code { hash, record } => {
                    c.codes.0.push(t(hash));
                    c.codes.1.push(maybe(&record.redeemed_by));
                    c.codes.2.push(int(record.expires_at));
                    c.codes.3.push(Doc::of(record)?);
                }
                Record::Grant(g) => {
                    c.grants.0.push(t(&g.id));
                    c.grants.1.push(maybe(&g.data.user_id));
                    c.grants.2.push(maybe(&g.data.session));
                    c.grants.3.push(g.revoked);
                    c.grants.4.push(g.offline);
                    c.grants.5.push(int(g.expires_at));
                    c.grants.6.push(Doc::of(g)?);
                }
                Record::Refresh { hash, record } => {
                    c.refresh.0.push(t(hash));
                    c.refresh.1.push(t(&record.grant_id));
                    c.refresh.2.push(record.used);
                    c.refresh.3.push(int(record.expires_at));
                }
                Record::SigningKey(k) => {
                    c.keys.0.push(t(&k.kid));
                    c.keys.1.push(t(&k.alg));
                    c.keys.2.push(&k.pkcs8_der);
                    c.keys.3.push(int(k.created_at));
                }
                Record::Secret { name, value } => {
                    c.secrets.0.push(t(name));
                    c.secrets.1.push(value);
                }
                Record::AuditEvent(e) => {
                    c.audit.0.push(t(&e.id));
                    c.audit.1.push(Doc::of(e)?);
                }
            }
        }
        Ok(c)
    }
}

/// `INSERT INTO {table} ({columns}) SELECT * FROM unnest(…) ON CONFLICT ({key}) DO
/// UPDATE` every other column: an upsert of a whole batch in one statement.
fn upsert(table: &str, columns: &[(&str, &str)], key: &[&str]) -> String {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|n| !key.contains(n))
        .map(|n| format!("{n} = EXCLUDED.{n}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) DO UPDATE SET {}",
        names.join(", "),
        arrays.join(", "),
        key.join(", "),
        updates.join(", ")
    )
}

impl PgStore {
    /// Write one batch's columns inside `tx`; how many rows of each kind.
    async fn import_columns(&self, tx: &Tx<'_>, c: &Columns<'_>) -> StoreResult<Tally> {
        let mut written = Tally::default();
        let mut put = |kind: Kind, n: u64| written.add(kind, n);
        if !c.users.0.is_empty() {
            let (ids, created, values) = &c.users;
            let sql = upsert(
                "users",
                &[("id", "text"), ("created_at", "bigint"), ("value", "jsonb")],
                &["id"],
            );
            put(
                Kind::Users,
                tx.execute(&sql, &[ids, created, values]).await?,
            );
            // The accounts' sign-in names follow their records: released, then claimed
            // again; a name another account holds here is a conflict.
            tx.execute("DELETE FROM login_names WHERE user_id = ANY($1)", &[ids])
                .await?;
            let (names, owners) = &c.names;
            let claimed = tx
                .query(
                    "INSERT INTO login_names (name, user_id)
                     SELECT * FROM unnest($1::text[], $2::text[])
                     ON CONFLICT (name) DO NOTHING RETURNING name",
                    &[names, owners],
                )
                .await?;
            if claimed.len() < names.len() {
                let claimed: Vec<String> = claimed
                    .iter()
                    .map(|r| col(r, "name"))
                    .collect::<StoreResult<_>>()?;
                let taken: Vec<String> = names
                    .iter()
                    .zip(owners)
                    .filter(|(n, _)| !claimed.iter().any(|c| c == n.as_ref()))
                    .take(5)
                    .map(|(n, o)| format!("`{n}` of account {o}"))
                    .collect();
                return Err(StoreError::Backend(format!(
                    "sign-in names another account holds in the target: {}",
                    taken.join(", ")
                )));
            }
        }
        if !c.external_ids.0.is_empty() {
            let (users, ids) = &c.external_ids;
            let sql = upsert(
                "external_ids",
                &[("user_id", "text"), ("external_id", "text")],
                &["user_id"],
            );
            put(Kind::ExternalIds, tx.execute(&sql, &[users, ids]).await?);
        }
        if !c.identities.0.is_empty() {
            let (connections, subjects, users) = &c.identities;
            let sql = upsert(
                "identities",
                &[
                    ("connection", "text"),
                    ("subject", "text"),
                    ("user_id", "text"),
                ],
                &["connection", "subject"],
            );
            put(
                Kind::Identities,
                tx.execute(&sql, &[connections, subjects, users]).await?,
            );
        }
        if !c.groups.0.is_empty() {
            let (ids, created, versions, values) = &c.groups;
            let sql = upsert(
                "groups",
                &[
                    ("id", "text"),
                    ("created_at", "bigint"),
                    ("version", "bigint"),
                    ("value", "jsonb"),
                ],
                &["id"],
            );
            put(
                Kind::Groups,
                tx.execute(&sql, &[ids, created, versions, values]).await?,
            );
            // Names and memberships follow the records, as the accounts' names do.
            tx.execute("DELETE FROM group_names WHERE group_id = ANY($1)", &[ids])
                .await?;
            tx.execute("DELETE FROM group_members WHERE group_id = ANY($1)", &[ids])
                .await?;
            let (names, owners) = &c.group_names;
            let claimed = tx
                .query(
                    "INSERT INTO group_names (name, group_id)
                     SELECT * FROM unnest($1::text[], $2::text[])
                     ON CONFLICT (name) DO NOTHING RETURNING name",
                    &[names, owners],
                )
                .await?;
            if claimed.len() < names.len() {
                return Err(StoreError::Backend(
                    "a group's display name is another group's in the target".into(),
                ));
            }
            let (users, groups) = &c.group_members;
            tx.execute(
                "INSERT INTO group_members (user_id, group_id)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                &[users, groups],
            )
            .await?;
        }
        if !c.totp.0.is_empty() {
            let (users, sealed, created, step, confirmed) = &c.totp;
            let sql = upsert(
                "totp",
                &[
                    ("user_id", "text"),
                    ("sealed_secret", "bytea"),
                    ("created_at", "bigint"),
                    ("last_step", "bigint"),
                    ("confirmed", "boolean"),
                ],
                &["user_id"],
            );
            put(
                Kind::Totp,
                tx.execute(&sql, &[users, sealed, created, step, confirmed])
                    .await?,
            );
        }
        if !c.recovery_users.is_empty() {
            // An account's list is replaced as a whole.
            tx.execute(
                "DELETE FROM recovery_codes WHERE user_id = ANY($1)",
                &[&c.recovery_users],
            )
            .await?;
            let (users, hashes) = &c.recovery;
            let n = tx
                .execute(
                    "INSERT INTO recovery_codes (user_id, hash)
                     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                    &[users, hashes],
                )
                .await?;
            put(Kind::RecoveryCodes, n);
        }
        if !c.email_codes.0.is_empty() {
            // Versions come from the database's sequence, as every write's do.
            let (keys, values) = &c.email_codes;
            let n = tx
                .execute(
                    "INSERT INTO email_codes (key, version, value)
                     SELECT k, nextval('email_code_versions'), v
                     FROM unnest($1::text[], $2::jsonb[]) AS t (k, v)
                     ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version,
                         value = EXCLUDED.value",
                    &[keys, values],
                )
                .await?;
            put(Kind::EmailCodes, n);
        }
        if !c.counters.0.is_empty() {
            let (keys, counts, expiry) = &c.counters;
            let sql = upsert(
                "counters",
                &[
                    ("key", "text"),
                    ("count", "integer"),
                    ("expires_at", "bigint"),
                ],
                &["key"],
            );
            put(
                Kind::Counters,
                tx.execute(&sql, &[keys, counts, expiry]).await?,
            );
        }
        if !c.sessions.0.is_empty() {
            let (hashes, users, expiry, values) = &c.sessions;
            let sql = upsert(
                "sessions",
                &[
                    ("hash", "text"),
                    ("user_id", "text"),
                    ("expires_at", "bigint"),
                    ("value", "jsonb"),
                ],
                &["hash"],
            );
            put(
                Kind::Sessions,
                tx.execute(&sql, &[hashes, users, expiry, values]).await?,
            );
        }
        if !c.flows.0.is_empty() {
            let (ids, values) = &c.flows;
            let sql = upsert("flows", &[("id", "text"), ("value", "bytea")], &["id"]);
            put(Kind::Flows, tx.execute(&sql, &[ids, values]).await?);
        }
        if !c.upstream_states.0.is_empty() {
            let (states, flows) = &c.upstream_states;
            let sql = upsert(
                "upstream_states",
                &[("state_hash", "text"), ("flow_id", "text")],
                &["state_hash"],
            );
            put(
                Kind::UpstreamStates,
                tx.execute(&sql, &[states, flows]).await?,
            );
        }
        if !c.flashes.0.is_empty() {
            let (ids, values, expiry) = &c.flashes;
            let sql = upsert(
                "flashes",
                &[("id", "text"), ("value", "bytea"), ("expires_at", "bigint")],
                &["id"],
            );
            put(
                Kind::Flashes,
                tx.execute(&sql, &[ids, values, expiry]).await?,
            );
        }
        if !c.codes.0.is_empty() {
            let (hashes, redeemed, expiry, values) = &c.codes;
            let sql = upsert(
                "codes",
                &[
                    ("hash", "text"),
                    ("redeemed_by", "text"),
                    ("expires_at", "bigint"),
                    ("value", "jsonb"),
                ],
                &["hash"],
            );
            put(
                Kind::Codes,
                tx.execute(&sql, &[hashes, redeemed, expiry, values])
                    .await?,
            );
        }
        if !c.grants.0.is_empty() {
            let (ids, users, sessions, revoked, offline, expiry, values) = &c.grants;
            let sql = upsert(
                "grants",
                &[
                    ("id", "text"),
                    ("user_id", "text"),
                    ("session", "text"),
                    ("revoked", "boolean"),
                    ("offline", "boolean"),
                    ("expires_at", "bigint"),
                    ("value", "jsonb"),
                ],
                &["id"],
            );
            put(
                Kind::Grants,
                tx.execute(
                    &sql,
                    &[ids, users, sessions, revoked, offline, expiry, values],
                )
                .await?,
            );
        }
        if !c.refresh.0.is_empty() {
            let (hashes, grants, used, expiry) = &c.refresh;
            let sql = upsert(
                "refresh_tokens",
                &[
                    ("hash", "text"),
                    ("grant_id", "text"),
                    ("used", "boolean"),
                    ("expires_at", "bigint"),
                ],
                &["hash"],
            );
            put(
                Kind::RefreshTokens,
                tx.execute(&sql, &[hashes, grants, used, expiry]).await?,
            );
        }
        if !c.keys.0.is_empty() {
            let (kids, algs, ders, created) = &c.keys;
            let sql = upsert(
                "signing_keys",
                &[
                    ("kid", "text"),
                    ("alg", "text"),
                    ("pkcs8_der", "bytea"),
                    ("created_at", "bigint"),
                ],
                &["kid"],
            );
            put(
                Kind::SigningKeys,
                tx.execute(&sql, &[kids, algs, ders, created]).await?,
            );
        }
        if !c.secrets.0.is_empty() {
            let (names, values) = &c.secrets;
            let sql = upsert(
                "secrets",
                &[("name", "text"), ("value", "bytea")],
                &["name"],
            );
            put(Kind::Secrets, tx.execute(&sql, &[names, values]).await?);
        }
        if !c.audit.0.is_empty() {
            let (ids, values) = &c.audit;
            let sql = upsert(
                "audit_events",
                &[("id", "text"), ("value", "jsonb")],
                &["id"],
            );
            put(Kind::AuditEvents, tx.execute(&sql, &[ids, values]).await?);
        }
        Ok(written)
    }
}

/// Each kind's table, for the census.
fn table_of(kind: Kind) -> &'static str {
    walk_of(kind).table
}

#[async_trait]
impl Transfer for PgStore {
    async fn export_kinds(&self, kinds: &[Kind], sink: &mut dyn Sink) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(pg)?;
        self.counted(0, 1);
        let tx = Tx { tx, store: self };
        for &kind in kinds {
            if !walk(&tx, kind, sink).await? {
                break;
            }
        }
        tx.commit().await
    }

    async fn import(&self, records: &[Record]) -> StoreResult<Tally> {
        if records.is_empty() {
            return Ok(Tally::default());
        }
        let columns = Columns::of(records)?;
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let written = self.import_columns(&tx, &columns).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn census(&self) -> StoreResult<Tally> {
        let counts: Vec<String> = Kind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| format!("(SELECT count(*) FROM {}) AS n{i}", table_of(*k)))
            .collect();
        let row = self
            .query_opt(&format!("SELECT {}", counts.join(", ")), &[])
            .await?
            .ok_or_else(|| StoreError::Backend("the census returned no row".into()))?;
        let mut tally = Tally::default();
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let n: i64 = col(&row, &format!("n{i}"))?;
            tally.set(*kind, uint(n));
        }
        Ok(tally)
    }
}
