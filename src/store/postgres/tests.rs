//! The store contract suite against a real PostgreSQL server: a throwaway cluster
//! started for this test process, one schema per test.

use std::sync::Arc;

use crate::store::{CounterStore, SessionStore, Store};

fn fresh_store() -> Arc<dyn Store> {
    let store = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(super::cluster::fresh_store())
    });
    Arc::new(store.expect("the guard checked the cluster is there"))
}

crate::store_contract_tests!(fresh_store; when = super::cluster::shared().is_some());

/// Two nodes (two pools on one schema) migrating and sweeping at once: the migration is
/// applied once, every expired row goes exactly once between them, no live row goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_migrate_and_sweep_at_once_without_double_work_or_lost_rows() {
    let Some(settings) = super::cluster::fresh_settings() else {
        return;
    };
    let (a, b) = tokio::join!(
        super::PgStore::open(&settings),
        super::PgStore::open(&settings)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let applied = a
        .query("SELECT version FROM usher_migrations", &[])
        .await
        .unwrap();
    assert_eq!(
        applied.len(),
        super::MIGRATIONS.len(),
        "each migration is recorded once"
    );

    let now = 10_000;
    for i in 0..400u64 {
        let expires_at = if i % 2 == 0 { now - 1 } else { now + 600 };
        let session = crate::store::contract::session(Some("u1"), expires_at);
        a.put_session(&format!("s{i}"), &session).await.unwrap();
        a.hit(&format!("c{i}"), now - 700, expires_at)
            .await
            .unwrap();
    }
    let sweeps = |store: super::PgStore| async move {
        let mut removed = 0;
        for _ in 0..5 {
            removed += store.sweep_sessions(now).await.unwrap();
            removed += store.sweep_counters(now).await.unwrap();
        }
        removed
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(sweeps(a.clone())),
        tokio::spawn(sweeps(b.clone()))
    );
    assert_eq!(
        ra.unwrap() + rb.unwrap(),
        400,
        "each expired row counted once"
    );
    assert_eq!(a.sessions_of("u1").await.unwrap().len(), 200);
    for i in (1..400u64).step_by(2) {
        assert!(b.counter(&format!("c{i}"), now).await.unwrap().is_some());
    }
}

/// `/readyz` on PostgreSQL: a schema the migrations never ran in is "pending", not an
/// error of another kind, and a migrated one is ready.
#[tokio::test]
async fn an_unmigrated_schema_is_not_ready_and_a_migrated_one_is() {
    let Some(mut settings) = super::cluster::fresh_settings() else {
        return;
    };
    settings.max_connections = 2;
    let bare = super::PgStore::connect(&settings).unwrap();
    match bare.ready().await {
        Err(crate::store::StoreError::Unavailable(d)) => {
            assert!(d.starts_with(super::MIGRATIONS_PENDING), "{d}")
        }
        other => panic!("expected migrations pending, got {other:?}"),
    }
    let migrated = super::PgStore::open(&settings).await.unwrap();
    migrated.ready().await.unwrap();
    bare.ready().await.unwrap();
}

/// Every way the driver accepts a password is hidden by `redact`, which the config
/// check and the start-up error print: a password holding `/`, `?` or `@` (the driver
/// takes everything up to the first `@` as the user information), a `password=`
/// query parameter, and a key=value string's quoted or spaced value.
#[test]
fn redacted_urls_never_show_a_password_the_driver_would_use() {
    let cases = [
        "postgres://usher:s3cret@db.internal/usher",
        "postgres://usher:ab/s3cret@db.internal/usher",
        "postgresql://usher:ab?s3cret@db.internal:5432/usher",
        "postgres://usher:s3cret@x@db.internal/usher",
        "postgres://usher@db.internal/usher?password=s3cret",
        "postgres://db.internal/usher?sslmode=disable&password=s3cret&user=u",
        "postgres://db.internal/usher?pass%77ord=s3cret",
        "host=db user=usher password=s3cret dbname=usher",
        "host=db user=usher password='s3cret and more' dbname=usher",
        "host=db user=usher password = s3cret dbname=usher",
        "host=db user=usher password='it\\'s s3cret' dbname=usher",
    ];
    for url in cases {
        let config: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let password = String::from_utf8(config.get_password().unwrap().to_vec()).unwrap();
        assert!(password.contains("s3cret"), "{url} gives {password}");
        let shown = super::redact(url);
        for part in ["s3cret", "more", "and"] {
            assert!(!shown.contains(part), "{url} shows as {shown}");
        }
        assert!(shown.contains("***"), "{url} shows as {shown}");
    }
    // What holds no password is shown as it is.
    for url in [
        "postgres://usher@db.internal:5432/usher?sslmode=disable",
        "host=db user=usher dbname=usher",
    ] {
        assert_eq!(super::redact(url), url);
    }
}

/// Every distinct account filter is a distinct SQL text. Kept in each connection's
/// statement cache, they would pile up for as long as the connection lives, on the
/// node and on the server (a SCIM client sending ever new filters grows both without
/// bound); a query's statement must not outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_account_filters_do_not_pile_up_prepared_statements() {
    use crate::store::query::{Filter, Literal, Op, UserAttr};
    use crate::store::{UserQuery, UserQueryStore, UserStore};
    let Some(mut settings) = super::cluster::fresh_settings() else {
        return;
    };
    settings.max_connections = 1;
    let store = super::PgStore::open(&settings).await.unwrap();
    store
        .create_user(&crate::store::contract::user(
            "u1",
            "ann",
            "ann@example.com",
        ))
        .await
        .unwrap();
    let prepared = || async {
        let row = store
            .query_opt("SELECT count(*) AS n FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .unwrap();
        row.get::<_, i64>("n")
    };
    let before = prepared().await;
    for terms in 1..=200 {
        let mut filter = Filter::Compare(UserAttr::Username, Op::Eq, Literal::Str("ann".into()));
        for t in 1..terms {
            filter = Filter::Or(
                Box::new(filter),
                Box::new(Filter::Compare(
                    UserAttr::Id,
                    Op::Eq,
                    Literal::Str(format!("x{t}")),
                )),
            );
        }
        let page = store
            .query_users(&UserQuery {
                filter: Some(filter),
                start: 0,
                count: 10,
            })
            .await
            .unwrap();
        assert_eq!(page.total, 1);
    }
    let after = prepared().await;
    assert!(
        after - before < 10,
        "200 distinct filters left {} prepared statements behind",
        after - before
    );
}

/// The database restarts under a node: while it is down a call is "unavailable" (503,
/// not 500), and once it is back the pool's broken connections are replaced, so calls
/// succeed again without restarting the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_recovers_when_the_database_restarts() {
    use crate::store::{FlowStore, StoreError};
    if super::cluster::shared().is_none() {
        return;
    }
    // A cluster of its own: the shared one serves the other tests meanwhile.
    let cluster = tokio::task::spawn_blocking(super::cluster::TempCluster::start)
        .await
        .unwrap()
        .unwrap();
    let mut settings = super::PgSettings::new(cluster.url("postgres"));
    settings.max_connections = 4;
    settings.acquire_timeout = std::time::Duration::from_secs(2);
    let store = super::PgStore::open(&settings).await.unwrap();
    // Fill the pool with connections that have prepared statements.
    let warm: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put_flow(&format!("f{i}"), b"x").await })
        })
        .collect();
    let mut results = Vec::new();
    for w in warm {
        results.push(w.await.unwrap());
    }
    let warm = results;
    assert!(warm.iter().all(|r| r.is_ok()), "{warm:?}");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_now().unwrap();
        cluster
    })
    .await
    .unwrap();
    let down = store.flow("f1").await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    // Every pooled connection died with the server: at most one failed call each, then
    // every call succeeds.
    let mut failures = 0;
    for i in 0..20 {
        match store.flow(&format!("f{}", i % 8)).await {
            Ok(found) => assert_eq!(found.as_deref(), Some(&b"x"[..])),
            Err(StoreError::Unavailable(_)) if failures < 4 => failures += 1,
            Err(e) => panic!("call {i} after the restart failed: {e}"),
        }
    }
    for i in 0..8 {
        assert!(store.flow(&format!("f{i}")).await.unwrap().is_some());
    }
    drop(cluster);
}

/// Settings printed for debugging (a panic, a `{:?}` in a log line) hide the password.
#[test]
fn debugged_settings_hide_the_password() {
    let settings = super::PgSettings::new("postgres://usher:s3cret@db.internal/usher");
    let shown = format!("{settings:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("db.internal"), "{shown}");
}

/// Server options the operator gives in the URL (`?options=-c statement_timeout=…`, the
/// usual way to bound a query) still apply beside the schema's search path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_in_the_url_are_kept_beside_the_search_path() {
    let Some(mut settings) = super::cluster::fresh_settings() else {
        return;
    };
    settings.url = format!("{}?options=-c%20statement_timeout%3D4321", settings.url);
    let store = super::PgStore::open(&settings).await.unwrap();
    let row = store
        .query_opt(
            "SELECT current_setting('statement_timeout') AS t, current_schema() AS s",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<_, String>("t"), "4321ms");
    assert_eq!(row.get::<_, String>("s"), settings.schema);
}

/// A schema name that is an SQL keyword (`user`, `order`) passes the config check, so
/// it must work: quoted wherever it is written into SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_named_like_a_keyword_works() {
    use crate::store::FlowStore;
    let Some(base) = super::cluster::fresh_settings() else {
        return;
    };
    // One test owns these names in the shared cluster's database.
    for schema in ["user", "order"] {
        let mut settings = base.clone();
        settings.schema = schema.into();
        assert!(super::valid_schema_name(schema));
        let store = super::PgStore::open(&settings)
            .await
            .unwrap_or_else(|e| panic!("{schema}: {e}"));
        store.put_flow("f", b"x").await.unwrap();
        let row = store
            .query_opt("SELECT current_schema() AS s", &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.get::<_, String>("s"), schema);
    }
}

/// An audit event holding a NUL (an upstream's `error_description=%00`, a typed name)
/// is recorded all the same: PostgreSQL's JSON cannot hold a NUL, and a refused write
/// would drop the event (the core logs the failure and goes on), so whoever put the
/// NUL there would leave no trace. The NUL is kept as U+FFFD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_event_holding_a_nul_is_recorded() {
    use crate::store::AuditStore;
    let Some(store) = super::cluster::fresh_store().await else {
        return;
    };
    let event = crate::store::AuditEvent {
        id: "0000000000000001-x".into(),
        at: 1,
        kind: "sign_in".into(),
        app: Some("thrift\0".into()),
        sub: Some("github|\0".into()),
        outcome: "provider: bad\0news".into(),
        detail: vec!["login ann\0".into()],
    };
    store.append_event(&event).await.unwrap();
    let stored = store.events(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].outcome, "provider: bad\u{FFFD}news");
    assert_eq!(stored[0].app.as_deref(), Some("thrift\u{FFFD}"));
    assert_eq!(stored[0].sub.as_deref(), Some("github|\u{FFFD}"));
    assert_eq!(stored[0].detail, ["login ann\u{FFFD}"]);
}

/// Two nodes (two pools on one schema) spending one refresh token and one code at
/// once: exactly one rotation and one redemption win across both, and every loser
/// names the winner's family.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_spend_a_token_and_a_code_once_between_them() {
    use crate::store::{Redeem, RefreshRecord, Rotate, TokenStore};
    let Some(settings) = super::cluster::fresh_settings() else {
        return;
    };
    let a = super::PgStore::open(&settings).await.unwrap();
    let b = super::PgStore::open(&settings).await.unwrap();
    for round in 0..10 {
        let old = format!("r{round}");
        let record = RefreshRecord {
            grant_id: "g1".into(),
            expires_at: 100,
            used: false,
        };
        a.put_refresh(&old, &record).await.unwrap();
        a.put_code(&format!("c{round}"), &crate::store::contract::code())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let node = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (old, record) = (old.clone(), record.clone());
                tokio::spawn(async move {
                    let rotated = node
                        .rotate_refresh(&old, &format!("{old}-n{i}"), &record)
                        .await
                        .unwrap();
                    let redeemed = node
                        .redeem_code(&format!("c{round}"), &format!("grant-{i}"))
                        .await
                        .unwrap();
                    (rotated, redeemed)
                })
            })
            .collect();
        let mut rotations = Vec::new();
        let mut redemptions = Vec::new();
        for t in tasks {
            let (r, c) = t.await.unwrap();
            rotations.push(r);
            redemptions.push(c);
        }
        let won = rotations
            .iter()
            .filter(|r| matches!(r, Rotate::Rotated(_)))
            .count();
        assert_eq!(won, 1, "{rotations:?}");
        assert!(rotations
            .iter()
            .all(|r| matches!(r, Rotate::Rotated(o) | Rotate::Reused(o) if o.grant_id == "g1")));
        let fresh: Vec<_> = redemptions
            .iter()
            .filter_map(|r| match r {
                Redeem::Fresh(c) => c.redeemed_by.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(fresh.len(), 1, "{redemptions:?}");
        for r in &redemptions {
            if let Redeem::Reused(c) = r {
                assert_eq!(c.redeemed_by, Some(fresh[0].clone()));
            }
        }
        // Only the winner's new token was stored.
        let mut stored = 0;
        for i in 0..16 {
            if b.refresh_token(&format!("{old}-n{i}"))
                .await
                .unwrap()
                .is_some()
            {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);
    }
}

/// A NUL in any string of a record (an upstream's pass-through claim, a typed name) is
/// stored as U+FFFD: jsonb cannot hold one, and the sign-in that wrote it must not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_holding_a_nul_are_stored_with_a_replacement_character() {
    let Some(store) = super::cluster::fresh_store().await else {
        return;
    };
    use crate::store::{TokenStore, UserStore};
    let mut session = crate::store::contract::session(None, 100);
    session
        .claims
        .insert("name\0x".into(), serde_json::json!(["a\0b", { "k": "\0" }]));
    store.put_session("s1", &session).await.unwrap();
    let back = store.session("s1").await.unwrap().unwrap();
    assert_eq!(
        back.claims["name\u{FFFD}x"],
        serde_json::json!(["a\u{FFFD}b", { "k": "\u{FFFD}" }])
    );
    let mut grant = crate::store::contract::grant("g1");
    grant.data.claims = session.claims.clone();
    assert!(store.create_grant(&grant).await.unwrap());
    assert!(store
        .grant("g1")
        .await
        .unwrap()
        .unwrap()
        .data
        .claims
        .contains_key("name\u{FFFD}x"));
    let mut user = crate::store::contract::user("u1", "ann", "ann@example.com");
    user.name = Some("Ann\0".into());
    store.create_user(&user).await.unwrap();
    assert_eq!(
        store.user("u1").await.unwrap().unwrap().name.as_deref(),
        Some("Ann\u{FFFD}")
    );
}

/// A certificate authority and a certificate it signs for `127.0.0.1`, as PEM.
fn authority_and_server() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

/// Whether the store's own connection to the server is encrypted, as the server sees it.
async fn encrypted(store: &super::PgStore) -> bool {
    let rows = store
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    rows.first().is_some_and(|r| r.get::<_, bool>("ssl"))
}

/// `sslmode=require` connects over TLS, verifying the server's certificate against
/// `ca_file` (a certificate from another authority is refused, naming why); a URL that
/// does not ask for TLS stays unencrypted rather than trusting whatever it is offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_asking_for_tls_gets_a_verified_encrypted_connection() {
    let Some(cluster) = super::cluster::own() else {
        return;
    };
    let (ca, cert, key) = authority_and_server();
    cluster.serve_tls(&cert, &key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let mut settings =
        super::PgSettings::new(format!("{}?sslmode=require", cluster.url("postgres")));
    settings.ca_file = Some(ca_file.clone());
    // The server rereads its configuration on its own time: give it a few seconds.
    let mut opened = Err(crate::store::StoreError::NotFound);
    for _ in 0..50 {
        opened = super::PgStore::open(&settings).await;
        if opened.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let store = opened.unwrap_or_else(|e| panic!("TLS with the right authority failed: {e}"));
    assert!(
        encrypted(&store).await,
        "sslmode=require connected in the clear"
    );

    // A certificate this authority did not sign: no connection, and the error says so.
    let (other_ca, _, _) = authority_and_server();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, &other_ca).unwrap();
    settings.ca_file = Some(other);
    settings.acquire_timeout = std::time::Duration::from_secs(2);
    let refused = super::PgStore::open(&settings)
        .await
        .err()
        .expect("a server certificate from another authority was accepted");
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "the refusal does not say why: {refused}"
    );

    // Without sslmode the default is not upgraded: plain, as configured.
    let plain = super::PgStore::open(&super::PgSettings::new(cluster.url("postgres")))
        .await
        .unwrap();
    assert!(!encrypted(&plain).await);
}
