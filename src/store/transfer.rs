//! Moving a deployment's data from one store to another (`usher store copy`): every
//! record as it is stored, read from one backend a batch at a time and written to the
//! other, with counts per kind compared at the end.
//!
//! The capability traits cannot do this: they are shaped for requests (recovery codes
//! can only be counted and consumed, counters have no plain write, codes can only be
//! redeemed), so each backend implements [`Transfer`] as well: a walk over every record
//! it holds, in bounded batches, and a batch write that takes records as they are —
//! upserts by key, with whatever indexes the backend keeps written beside them. The
//! copy itself ([`copy`]) is the same code whatever the two backends are.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;

/// Records read, and written, at a time: a copy never holds more than one batch.
pub const BATCH: usize = 1000;

/// A kind of record, in the order a copy walks them (accounts first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Users,
    ExternalIds,
    Identities,
    /// Groups with their members; their indexes are rebuilt on import.
    Groups,
    Totp,
    /// Counted code by code, not account by account.
    RecoveryCodes,
    EmailCodes,
    Counters,
    Sessions,
    Flows,
    UpstreamStates,
    Flashes,
    Codes,
    Grants,
    RefreshTokens,
    SigningKeys,
    Secrets,
    AuditEvents,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::Users,
        Kind::ExternalIds,
        Kind::Identities,
        Kind::Groups,
        Kind::Totp,
        Kind::RecoveryCodes,
        Kind::EmailCodes,
        Kind::Counters,
        Kind::Sessions,
        Kind::Flows,
        Kind::UpstreamStates,
        Kind::Flashes,
        Kind::Codes,
        Kind::Grants,
        Kind::RefreshTokens,
        Kind::SigningKeys,
        Kind::Secrets,
        Kind::AuditEvents,
    ];

    /// What the copy's table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Users => "accounts",
            Kind::ExternalIds => "external ids",
            Kind::Identities => "linked identities",
            Kind::Groups => "groups",
            Kind::Totp => "TOTP authenticators",
            Kind::RecoveryCodes => "recovery codes",
            Kind::EmailCodes => "email codes",
            Kind::Counters => "attempt counters",
            Kind::Sessions => "sessions",
            Kind::Flows => "sign-ins in progress",
            Kind::UpstreamStates => "upstream round trips",
            Kind::Flashes => "flash messages",
            Kind::Codes => "authorization codes",
            Kind::Grants => "grants",
            Kind::RefreshTokens => "refresh tokens",
            Kind::SigningKeys => "signing keys",
            Kind::Secrets => "server secrets",
            Kind::AuditEvents => "audit events",
        }
    }
}

/// One stored record, raw: what a backend holds, without its indexes (a backend
/// rebuilds those from the records when it imports them).
#[derive(Clone, PartialEq)]
pub enum Record {
    User(User),
    ExternalId {
        user_id: String,
        external_id: String,
    },
    Identity {
        connection: String,
        subject: String,
        user_id: String,
    },
    /// `version` is the source's, kept so an ETag a client holds stays valid.
    Group {
        group: Group,
        version: u64,
    },
    Totp {
        user_id: String,
        credential: TotpCredential,
    },
    /// The hashes of an account's unused codes (an account with none has no record).
    RecoveryCodes {
        user_id: String,
        hashes: Vec<String>,
    },
    /// `version` is the source's; a backend whose versions come from one sequence
    /// (PostgreSQL) gives the record a fresh one instead, which only a swap prepared
    /// before the copy could notice.
    EmailCode {
        key: String,
        code: EmailCode,
        version: u64,
    },
    Counter {
        key: String,
        counter: Counter,
    },
    Session {
        hash: String,
        session: Session,
    },
    Flow {
        id: String,
        bytes: Vec<u8>,
    },
    UpstreamState {
        state_hash: String,
        flow_id: String,
    },
    Flash {
        id: String,
        bytes: Vec<u8>,
        expires_at: u64,
    },
    Code {
        hash: String,
        record: CodeRecord,
    },
    Grant(Grant),
    Refresh {
        hash: String,
        record: RefreshRecord,
    },
    SigningKey(StoredKey),
    Secret {
        name: String,
        value: Vec<u8>,
    },
    AuditEvent(AuditEvent),
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::User(_) => Kind::Users,
            Record::ExternalId { .. } => Kind::ExternalIds,
            Record::Identity { .. } => Kind::Identities,
            Record::Group { .. } => Kind::Groups,
            Record::Totp { .. } => Kind::Totp,
            Record::RecoveryCodes { .. } => Kind::RecoveryCodes,
            Record::EmailCode { .. } => Kind::EmailCodes,
            Record::Counter { .. } => Kind::Counters,
            Record::Session { .. } => Kind::Sessions,
            Record::Flow { .. } => Kind::Flows,
            Record::UpstreamState { .. } => Kind::UpstreamStates,
            Record::Flash { .. } => Kind::Flashes,
            Record::Code { .. } => Kind::Codes,
            Record::Grant(_) => Kind::Grants,
            Record::Refresh { .. } => Kind::RefreshTokens,
            Record::SigningKey(_) => Kind::SigningKeys,
            Record::Secret { .. } => Kind::Secrets,
            Record::AuditEvent(_) => Kind::AuditEvents,
        }
    }

    /// How many it counts for in its kind: one, or a recovery-code list's codes.
    pub fn weight(&self) -> u64 {
        match self {
            Record::RecoveryCodes { hashes, .. } => hashes.len() as u64,
            _ => 1,
        }
    }

    /// Its key within its kind (an identity's is `connection` NUL `subject`).
    pub fn key(&self) -> String {
        match self {
            Record::User(u) => u.id.clone(),
            Record::ExternalId { user_id, .. }
            | Record::Totp { user_id, .. }
            | Record::RecoveryCodes { user_id, .. } => user_id.clone(),
            Record::Identity {
                connection,
                subject,
                ..
            } => format!("{connection}\0{subject}"),
            Record::EmailCode { key, .. } | Record::Counter { key, .. } => key.clone(),
            Record::Session { hash, .. }
            | Record::Code { hash, .. }
            | Record::Refresh { hash, .. } => hash.clone(),
            Record::Flow { id, .. } | Record::Flash { id, .. } => id.clone(),
            Record::UpstreamState { state_hash, .. } => state_hash.clone(),
            Record::Grant(g) => g.id.clone(),
            Record::Group { group, .. } => group.id.clone(),
            Record::SigningKey(k) => k.kid.clone(),
            Record::Secret { name, .. } => name.clone(),
            Record::AuditEvent(e) => e.id.clone(),
        }
    }
}

/// Kind and key only: records hold secrets (server secrets, sign-ins in progress).
impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({:?})", self.kind(), self.key())
    }
}

/// How many records of each kind (recovery codes counted code by code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally(BTreeMap<Kind, u64>);

impl Tally {
    pub fn get(&self, kind: Kind) -> u64 {
        self.0.get(&kind).copied().unwrap_or(0)
    }

    pub fn add(&mut self, kind: Kind, n: u64) {
        *self.0.entry(kind).or_insert(0) += n;
    }

    pub fn set(&mut self, kind: Kind, n: u64) {
        self.0.insert(kind, n);
    }

    /// Counted from records.
    pub fn of(records: &[Record]) -> Tally {
        let mut tally = Tally::default();
        for r in records {
            tally.add(r.kind(), r.weight());
        }
        tally
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `accounts: 3, signing keys: 6`: the kinds with any, in walk order.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{}: {}", k.label(), self.get(*k)))
            .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Where an export's batches go.
#[async_trait]
pub trait Sink: Send {
    /// Take one batch (of one kind, at most [`BATCH`] records); `false` ends the walk.
    async fn take(&mut self, batch: Vec<Record>) -> StoreResult<bool>;
}

/// Collects everything: for tests and small stores only.
#[async_trait]
impl Sink for Vec<Record> {
    async fn take(&mut self, batch: Vec<Record>) -> StoreResult<bool> {
        self.extend(batch);
        Ok(true)
    }
}

/// Every record of a backend, out and in. Implemented by each backend beside the
/// capability traits and reached through [`Store::transfer`].
#[async_trait]
pub trait Transfer: Send + Sync {
    /// Show `sink` every record of `kinds`, kind by kind in the order given, in key
    /// order within a kind, in batches of at most [`BATCH`] records of one kind: never
    /// more than a batch in memory. A database reads one snapshot throughout.
    async fn export_kinds(&self, kinds: &[Kind], sink: &mut dyn Sink) -> StoreResult<()>;

    /// Every record of every kind ([`Kind::ALL`]).
    async fn export(&self, sink: &mut dyn Sink) -> StoreResult<()> {
        self.export_kinds(&Kind::ALL, sink).await
    }

    /// Write `records` as they are, each replacing any record with its key, and the
    /// indexes that point at them; returns how many were written, by kind. A database
    /// writes the batch in one transaction, a statement per kind. An account whose
    /// username or email another account holds here is refused (`Conflict`).
    async fn import(&self, records: &[Record]) -> StoreResult<Tally>;

    /// How many records of each kind the store holds.
    async fn census(&self) -> StoreResult<Tally>;
}

/// What [`copy`] may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Copy even when the target holds accounts or signing keys already: records with
    /// the same key are replaced by the source's, the others are kept.
    pub into_nonempty: bool,
}

/// The counts of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRow {
    pub kind: Kind,
    /// In the source before the walk.
    pub source: u64,
    /// Read by the walk.
    pub read: u64,
    /// Written to the target.
    pub written: u64,
    /// In the target before the copy.
    pub target_before: u64,
    /// In the target after it.
    pub target: u64,
}

impl CopyRow {
    /// Whether the counts say nothing was lost: everything in the source was read and
    /// written, and the target holds it (and no more than it held before, plus that).
    pub fn adds_up(&self) -> bool {
        self.read == self.source
            && self.written == self.read
            && self.target >= self.read
            && self.target <= self.target_before + self.read
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub rows: Vec<CopyRow>,
    pub elapsed: Duration,
}

impl CopyReport {
    /// The kinds whose counts do not add up.
    pub fn mismatches(&self) -> Vec<CopyRow> {
        self.rows.iter().filter(|r| !r.adds_up()).copied().collect()
    }

    pub fn written(&self) -> u64 {
        self.rows.iter().map(|r| r.written).sum()
    }

    /// A table: one row per kind, a total, and a mark on rows that do not add up.
    pub fn table(&self) -> String {
        let into_nonempty = self.rows.iter().any(|r| r.target_before > 0);
        let mut out = format!(
            "{:<22}{:>10}{:>10}{:>10}{:>10}",
            "kind", "source", "read", "written", "target"
        );
        if into_nonempty {
            out.push_str(&format!("{:>10}", "before"));
        }
        out.push('\n');
        let mut total = CopyRow {
            kind: Kind::Users,
            source: 0,
            read: 0,
            written: 0,
            target_before: 0,
            target: 0,
        };
        for r in &self.rows {
            let line = format!(
                "{:<22}{:>10}{:>10}{:>10}{:>10}",
                r.kind.label(),
                r.source,
                r.read,
                r.written,
                r.target
            );
            out.push_str(&line);
            if into_nonempty {
                out.push_str(&format!("{:>10}", r.target_before));
            }
            if !r.adds_up() {
                out.push_str("  <- differs");
            }
            out.push('\n');
            total.source += r.source;
            total.read += r.read;
            total.written += r.written;
            total.target += r.target;
            total.target_before += r.target_before;
        }
        out.push_str(&format!(
            "{:<22}{:>10}{:>10}{:>10}{:>10}",
            "total", total.source, total.read, total.written, total.target
        ));
        if into_nonempty {
            out.push_str(&format!("{:>10}", total.target_before));
        }
        out.push('\n');
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the {0} store's backend cannot export or import its records")]
    Unsupported(&'static str),
    /// The target holds accounts or signing keys; nothing was written.
    #[error("the target store is not empty: it holds {0}. Copying into it would mix two deployments' accounts and keys; copy into an empty database (or schema, or folder), or give --into-nonempty to copy anyway (records with the same key are replaced by the source's, the rest kept)")]
    NotEmpty(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The copy ran, but some kind's counts do not add up (the report says which).
    #[error("the counts differ for {}: something was not copied", names(.0))]
    Mismatch(CopyReport),
}

fn names(report: &CopyReport) -> String {
    report
        .mismatches()
        .iter()
        .map(|r| {
            format!(
                "{} (source {}, read {}, written {}, target {})",
                r.kind.label(),
                r.source,
                r.read,
                r.written,
                r.target
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes each batch it is shown into the target, counting both sides.
struct CopySink<'a> {
    to: &'a dyn Transfer,
    read: Tally,
    written: Tally,
    progress: &'a (dyn Fn(u64) + Send + Sync),
}

#[async_trait]
impl Sink for CopySink<'_> {
    async fn take(&mut self, batch: Vec<Record>) -> StoreResult<bool> {
        for r in &batch {
            self.read.add(r.kind(), r.weight());
        }
        let written = self.to.import(&batch).await?;
        for kind in Kind::ALL {
            self.written.add(kind, written.get(kind));
        }
        (self.progress)(self.read.total());
        Ok(true)
    }
}

/// Copy every record of `from` into `to` (the writer's indexes rebuilt as it goes),
/// make the target durable, and compare the counts: what the source held, what was
/// read, what was written, what the target holds afterwards. Refuses, before writing
/// anything, a target that holds accounts or signing keys unless
/// [`CopyOptions::into_nonempty`]. `progress` is told the records read so far after
/// each batch. The source must not change meanwhile (stop the servers using it).
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    options: CopyOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let source = from.transfer().ok_or(CopyError::Unsupported("source"))?;
    let target = to.transfer().ok_or(CopyError::Unsupported("target"))?;
    let before = target.census().await?;
    if !options.into_nonempty && (before.get(Kind::Users) > 0 || before.get(Kind::SigningKeys) > 0)
    {
        return Err(CopyError::NotEmpty(before.describe()));
    }
    let in_source = source.census().await?;
    let mut sink = CopySink {
        to: target,
        read: Tally::default(),
        written: Tally::default(),
        progress,
    };
    source.export(&mut sink).await?;
    to.flush().await?;
    let after = target.census().await?;
    let rows = Kind::ALL
        .iter()
        .map(|&kind| CopyRow {
            kind,
            source: in_source.get(kind),
            read: sink.read.get(kind),
            written: sink.written.get(kind),
            target_before: before.get(kind),
            target: after.get(kind),
        })
        .collect();
    let report = CopyReport {
        rows,
        elapsed: started.elapsed(),
    };
    if report.mismatches().is_empty() {
        Ok(report)
    } else {
        Err(CopyError::Mismatch(report))
    }
}

#[cfg(test)]
mod tests;
