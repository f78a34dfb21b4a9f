//! Copies between backends: every kind arrives, pages longer than a batch included;
//! a target holding accounts or keys is refused unless asked; a sign-in name held by
//! another account in the target stops the copy.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::store::contract::{code, grant, session, totp_credential, user};

/// Records of every kind, through the capability traits: `accounts` accounts with
/// everything an account can have, and more audit events and counters than one batch.
async fn fill(store: &dyn Store, accounts: usize) {
    for i in 0..accounts {
        let id = format!("u{i:03}");
        let mut u = user(&id, &format!("user{i}"), &format!("user{i}@example.com"));
        u.password_hash = Some(PasswordHash(format!("$argon2id$v=19$hash{i}")));
        u.roles = vec!["admin".into()];
        store.create_user(&u).await.unwrap();
        store
            .set_external_id(&id, Some(&format!("ext-{i}")))
            .await
            .unwrap();
        assert!(store
            .link_identity("google", &format!("sub-{i}"), &id)
            .await
            .unwrap());
        let mut totp = totp_credential();
        totp.last_step = 1000 + i as u64;
        store.put_totp(&id, &totp).await.unwrap();
        let hashes: Vec<String> = (0..10).map(|n| format!("rc-{i}-{n}")).collect();
        store.put_recovery_codes(&id, &hashes).await.unwrap();
        store
            .put_email_code(
                &id,
                &EmailCode {
                    code_hash: format!("eh{i}"),
                    expires_at: 500,
                    sent_at: vec![1, 2],
                    wrong: 1,
                },
            )
            .await
            .unwrap();
        let hash = format!("s{i}");
        store
            .put_session(&hash, &session(Some(&id), 9_999))
            .await
            .unwrap();
        let mut g = grant(&format!("g{i}"));
        g.data.user_id = Some(id.clone());
        g.data.session = Some(hash.clone());
        g.offline = i % 2 == 0;
        store.create_grant(&g).await.unwrap();
        store
            .put_refresh(
                &format!("r{i}"),
                &RefreshRecord {
                    grant_id: g.id.clone(),
                    expires_at: 300,
                    used: i % 2 == 1,
                },
            )
            .await
            .unwrap();
        let mut c = code();
        c.redeemed_by = (i % 2 == 0).then(|| g.id.clone());
        store.put_code(&format!("c{i}"), &c).await.unwrap();
        let flow = crate::crypto::time_prefixed_id(1_000 + i as u64);
        store.put_flow(&flow, &[i as u8, 0, 255]).await.unwrap();
        store
            .put_upstream_state(&format!("st{i}"), &flow)
            .await
            .unwrap();
        store
            .put_flash(&format!("f{i}"), b"password changed", 77)
            .await
            .unwrap();
    }
    // A federated account, and one whose recovery codes are all used.
    let fed = user("fed", "fed@example.com", "fed@example.com");
    store
        .create_federated_user(&fed, "github", "583231")
        .await
        .unwrap();
    store.put_recovery_codes("fed", &[]).await.unwrap();
    // Groups: one with every account and a role, one with none, one renamed.
    let members: Vec<String> = (0..accounts).map(|i| format!("u{i:03}")).collect();
    let everyone = Group {
        connection: Default::default(),
        synced: Default::default(),
        id: "g_all".into(),
        display_name: "Everyone".into(),
        external_id: Some("ext-all".into()),
        members,
        roles: vec!["staff".into()],
        created_at: 3,
        updated_at: 4,
    };
    store.create_group(&everyone).await.unwrap();
    let mut empty = everyone.clone();
    empty.id = "g_none".into();
    empty.display_name = "Nobody".into();
    empty.members.clear();
    store.create_group(&empty).await.unwrap();
    let v = store.group("g_none").await.unwrap().unwrap();
    empty.display_name = "No one".into();
    store.swap_group(&empty, v.version).await.unwrap();
    // An account's failure count lasts until forgiven: it never expires.
    store.hit("password:u000", 10, u64::MAX).await.unwrap();
    for n in 0..(BATCH + 100) {
        store
            .hit(&format!("password:k{n:04}"), 10, 5_000)
            .await
            .unwrap();
    }
    for n in 0..(2 * BATCH + 3) {
        let at = 1_700_000_000 + n as u64;
        store
            .append_event(&AuditEvent {
                id: format!("{at:016x}-{n:05}"),
                at,
                kind: "sign_in".into(),
                app: Some("thrift".into()),
                sub: Some(format!("u{:03}", n % accounts.max(1))),
                outcome: "success".into(),
                detail: vec![format!("line {n}")],
            })
            .await
            .unwrap();
    }
    for alg in ["RS256", "ES256", "EdDSA"] {
        store
            .put_signing_key(&StoredKey {
                kid: format!("kid-{alg}"),
                alg: alg.into(),
                pkcs8_der: alg.as_bytes().repeat(10),
                created_at: 5,
            })
            .await
            .unwrap();
    }
    store.secret("csrf", &|| vec![7; 32]).await.unwrap();
    store.secret("throttle", &|| vec![9; 32]).await.unwrap();
}

/// Every record, by kind and key, email code versions left out (a database gives
/// fresh ones).
async fn everything(store: &dyn Store) -> BTreeMap<(Kind, String), Record> {
    let mut all: Vec<Record> = Vec::new();
    store.transfer().unwrap().export(&mut all).await.unwrap();
    all.into_iter()
        .map(|mut r| {
            if let Record::EmailCode { version, .. } = &mut r {
                *version = 0;
            }
            ((r.kind(), r.key()), r)
        })
        .collect()
}

fn no_progress(_: u64) {}

async fn copies_everything(from: &dyn Store, to: &dyn Store) {
    let report = copy(from, to, CopyOptions::default(), &no_progress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for row in &report.rows {
        assert!(row.source > 0, "the sample has no {}", row.kind.label());
        assert!(row.adds_up(), "{row:?}");
        assert_eq!(row.target, row.source, "{row:?}");
    }
    assert_eq!(report.rows[Kind::RecoveryCodes as usize].read, 30);
    let (a, b) = (everything(from).await, everything(to).await);
    assert_eq!(a.len(), b.len());
    for (key, record) in &a {
        assert!(b.get(key) == Some(record), "{key:?} differs");
    }
    // The indexes the importer wrote answer as the originals do.
    assert_eq!(
        to.find_user("USER1@example.com").await.unwrap().unwrap().id,
        "u001"
    );
    assert_eq!(
        to.identity("github", "583231").await.unwrap().as_deref(),
        Some("fed")
    );
    assert_eq!(to.identities_of("u002").await.unwrap().len(), 1);
    assert_eq!(to.sessions_of("u000").await.unwrap().len(), 1);
    assert_eq!(to.grants_of("u001").await.unwrap()[0].id, "g1");
    assert_eq!(to.session_grants("s2").await.unwrap()[0].id, "g2");
    assert_eq!(to.flow_count().await.unwrap(), 3);
    // Groups keep their members, names and versions, and their indexes answer.
    let everyone = to.find_group("everyone").await.unwrap().unwrap();
    assert_eq!(everyone, from.group("g_all").await.unwrap().unwrap());
    assert_eq!(everyone.value.members.len(), 3);
    assert!(to.find_group("Nobody").await.unwrap().is_none());
    assert_eq!(to.group("g_none").await.unwrap().unwrap().version, 2);
    let of = to.memberships(&["u001".to_string()]).await.unwrap();
    assert_eq!(of["u001"][0].roles, ["staff"]);
    assert_eq!(to.recovery_codes_left("u000").await.unwrap(), 10);
    assert_eq!(to.secret("csrf", &|| vec![0]).await.unwrap(), vec![7; 32]);
}

/// A copied recovery code is used once.
async fn a_recovery_code_is_consumed_once(store: &dyn Store) {
    assert!(store.consume_recovery_code("u000", "rc-0-3").await.unwrap());
    assert!(!store.consume_recovery_code("u000", "rc-0-3").await.unwrap());
    assert_eq!(store.recovery_codes_left("u000").await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_store_copies_whole_into_another() {
    let (from, to) = (
        SledStore::temporary().unwrap(),
        SledStore::temporary().unwrap(),
    );
    fill(&from, 3).await;
    copies_everything(&from, &to).await;
    a_recovery_code_is_consumed_once(&to).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_to_postgres_and_back_loses_nothing() {
    let Some(pg) = crate::store::postgres::cluster::fresh_store().await else {
        return;
    };
    let from = SledStore::temporary().unwrap();
    fill(&from, 3).await;
    copies_everything(&from, &pg).await;
    let back = SledStore::temporary().unwrap();
    copies_everything(&pg, &back).await;
    assert_eq!(everything(&from).await, everything(&back).await);
    a_recovery_code_is_consumed_once(&pg).await;
    a_recovery_code_is_consumed_once(&back).await;
    // A copied email code is still swapped once per version.
    let v = pg.email_code("u000").await.unwrap().unwrap();
    let next = EmailCode::default();
    assert!(pg
        .swap_email_code("u000", Some(v.version), &next)
        .await
        .unwrap());
    assert!(!pg
        .swap_email_code("u000", Some(v.version), &next)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_target_with_accounts_or_signing_keys_is_refused_unless_asked() {
    let from = SledStore::temporary().unwrap();
    fill(&from, 1).await;

    let to = SledStore::temporary().unwrap();
    to.create_user(&user("other", "bob", "bob@example.com"))
        .await
        .unwrap();
    let err = copy(&from, &to, CopyOptions::default(), &no_progress)
        .await
        .unwrap_err();
    let CopyError::NotEmpty(what) = &err else {
        panic!("{err}");
    };
    assert_eq!(what, "accounts: 1");
    assert!(err.to_string().contains("--into-nonempty"), "{err}");
    // Nothing was written.
    assert_eq!(to.transfer().unwrap().census().await.unwrap().total(), 1);

    // Keys alone (a node started against it) are refused too, and named.
    let keyed = SledStore::temporary().unwrap();
    keyed
        .put_signing_key(&StoredKey {
            kid: "fresh".into(),
            alg: "ES256".into(),
            pkcs8_der: vec![1],
            created_at: 1,
        })
        .await
        .unwrap();
    keyed.secret("csrf", &|| vec![1]).await.unwrap();
    let err = copy(&from, &keyed, CopyOptions::default(), &no_progress)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("it holds signing keys: 1, server secrets: 1"),
        "{err}"
    );

    // Asked, it copies beside what is there; the source's secrets win.
    let report = copy(
        &from,
        &to,
        CopyOptions {
            into_nonempty: true,
        },
        &no_progress,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let users = &report.rows[Kind::Users as usize];
    assert_eq!((users.target_before, users.read, users.target), (1, 2, 3));
    assert!(report.table().contains("before"));
    assert!(to.find_user("bob").await.unwrap().is_some());
    let report = copy(
        &from,
        &keyed,
        CopyOptions {
            into_nonempty: true,
        },
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(report.rows[Kind::SigningKeys as usize].target, 4);
    assert_eq!(
        keyed.secret("csrf", &|| vec![0]).await.unwrap(),
        vec![7; 32]
    );
}

/// Into a non-empty target, an account whose name another account holds there stops
/// the copy; nothing of that batch is half-written on PostgreSQL.
async fn a_taken_name_stops_the_copy(to: Arc<dyn Store>) {
    let from = SledStore::temporary().unwrap();
    fill(&from, 1).await;
    to.create_user(&user("someone-else", "user0", "x@example.com"))
        .await
        .unwrap();
    let err = copy(
        &from,
        to.as_ref(),
        CopyOptions {
            into_nonempty: true,
        },
        &no_progress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CopyError::Store(_)), "{err}");
    assert_eq!(
        to.find_user("user0").await.unwrap().unwrap().id,
        "someone-else"
    );
    assert!(to.user("u000").await.unwrap().is_none());
}

#[tokio::test]
async fn a_name_taken_in_a_sled_target_stops_the_copy() {
    a_taken_name_stops_the_copy(Arc::new(SledStore::temporary().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_in_a_postgres_target_stops_the_copy() {
    let Some(pg) = crate::store::postgres::cluster::fresh_store().await else {
        return;
    };
    a_taken_name_stops_the_copy(Arc::new(pg)).await;
}

#[test]
fn a_count_that_does_not_add_up_is_marked_and_named() {
    let row = |kind, source, read, written, target_before, target| CopyRow {
        kind,
        source,
        read,
        written,
        target_before,
        target,
    };
    let report = CopyReport {
        rows: vec![
            row(Kind::Users, 3, 3, 3, 0, 3),
            // One grant read but not written.
            row(Kind::Grants, 2, 2, 1, 0, 1),
            // The source changed during the walk.
            row(Kind::Sessions, 5, 6, 6, 0, 6),
            // Into a non-empty target: what was there stays, what came is added.
            row(Kind::SigningKeys, 3, 3, 3, 3, 6),
            // More than before plus what came: someone else wrote to it.
            row(Kind::AuditEvents, 1, 1, 1, 0, 2),
        ],
        elapsed: Duration::from_millis(5),
    };
    let bad: Vec<Kind> = report.mismatches().iter().map(|r| r.kind).collect();
    assert_eq!(bad, vec![Kind::Grants, Kind::Sessions, Kind::AuditEvents]);
    let table = report.table();
    assert!(table.contains("before"), "{table}");
    let marked: Vec<&str> = table
        .lines()
        .filter(|l| l.ends_with("<- differs"))
        .collect();
    assert_eq!(marked.len(), 3, "{table}");
    assert!(marked[0].starts_with("grants "), "{table}");
    let message = CopyError::Mismatch(report).to_string();
    assert!(
        message.starts_with(
            "the counts differ for grants (source 2, read 2, written 1, target 1); sessions"
        ),
        "{message}"
    );
}

/// PostgreSQL's text and jsonb hold no NUL; sled does. A NUL a sled deployment kept (a
/// pass-through claim, an upstream subject) is copied as PostgreSQL's own writes store
/// one, as U+FFFD, rather than failing the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_kept_by_sled_reaches_postgres_as_a_replacement_character() {
    let Some(pg) = crate::store::postgres::cluster::fresh_store().await else {
        return;
    };
    let from = SledStore::temporary().unwrap();
    let mut s = session(None, 9_999);
    s.claims
        .insert("name".into(), serde_json::json!("Ada\0Lovelace"));
    from.put_session("s\0x", &s).await.unwrap();
    from.create_user(&user("u1", "ada", "ada@example.com"))
        .await
        .unwrap();
    assert!(from.link_identity("github", "5\08", "u1").await.unwrap());
    let report = copy(&from, &pg, CopyOptions::default(), &no_progress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.mismatches().is_empty());
    let copied = pg.session("s\u{FFFD}x").await.unwrap().unwrap();
    assert_eq!(copied.claims["name"], "Ada\u{FFFD}Lovelace");
    assert_eq!(
        pg.identity("github", "5\u{FFFD}8")
            .await
            .unwrap()
            .as_deref(),
        Some("u1")
    );
}
