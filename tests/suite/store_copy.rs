//! Moving a deployment: `usher store copy` from a sled deployment's config to a
//! PostgreSQL one, and back to a fresh sled folder, with the real binary. Nothing is
//! lost (every kind compared record by record, through the store traits and the
//! export), and what a browser and an app held before the move still works after it:
//! the SSO session, the refresh token, the access token, a recovery code (once), the
//! authenticator app. A target that holds accounts or keys, or whose credentials key
//! cannot open the TOTP secrets, is refused before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use reqwest::StatusCode;
use tokio::net::TcpListener;
use usher::authn::sealing::SealingKey;
use usher::config::CredentialsKey;
use usher::store::transfer::{Kind, Record, Tally};
use usher::store::*;

use crate::common::*;
use crate::revocation::{online_and_offline, refresh, userinfo_status};

fn usher_bin(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(args)
        .env("USHER_LOG", "warn")
        .output()
        .unwrap()
}

fn copy(from: &Path, to: &Path, extra: &[&str]) -> Output {
    let (from, to) = (from.to_str().unwrap(), to.to_str().unwrap());
    let mut args = vec!["store", "copy", "--from", from, "--to", to];
    args.extend(extra);
    usher_bin(&args)
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The numbers of each kind's row of the copy's table: source, read, written, target.
fn table(stdout: &str) -> BTreeMap<Kind, Vec<u64>> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let line = stdout
                .lines()
                .find(|l| {
                    l.strip_prefix(kind.label())
                        .is_some_and(|rest| rest.starts_with(' '))
                })
                .unwrap_or_else(|| panic!("no row for {} in\n{stdout}", kind.label()));
            let numbers = line[kind.label().len()..]
                .split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect();
            (kind, numbers)
        })
        .collect()
}

/// Runs the copy and checks it succeeded with every count equal to what the source
/// holds.
fn copy_and_check_counts(from: &Path, to: &Path, expected: &Tally) {
    let out = copy(from, to, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("every count adds up"), "{stdout}");
    for (kind, numbers) in table(&stdout) {
        let n = expected.get(kind);
        assert!(n > 0, "the deployment has no {}", kind.label());
        assert_eq!(numbers, vec![n; 4], "{}:\n{stdout}", kind.label());
    }
}

/// Every record of a store, in key order per kind.
async fn export(store: &dyn Store) -> Vec<Record> {
    let mut all: Vec<Record> = Vec::new();
    store.transfer().unwrap().export(&mut all).await.unwrap();
    all
}

/// By kind and key, email code versions left out: a database numbers them afresh.
fn keyed(records: &[Record]) -> BTreeMap<(Kind, String), Record> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            if let Record::EmailCode { version, .. } = &mut r {
                *version = 0;
            }
            ((r.kind(), r.key()), r)
        })
        .collect()
}

/// `store` holds exactly `records`: its export is the same, and each record reads
/// back through the store traits field by field, its indexes included.
async fn holds_exactly(store: &dyn Store, records: &[Record]) {
    let (want, got) = (keyed(records), keyed(&export(store).await));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (key, record) in &want {
        assert!(got[key] == *record, "{key:?} differs after the copy");
    }

    let keys = store.signing_keys().await.unwrap();
    let events = store.events(0, usize::MAX).await.unwrap();
    let tally = Tally::of(records);
    assert_eq!(
        store.user_count().await.unwrap() as u64,
        tally.get(Kind::Users)
    );
    assert_eq!(
        store.flow_count().await.unwrap() as u64,
        tally.get(Kind::Flows)
    );
    assert_eq!(keys.len() as u64, tally.get(Kind::SigningKeys));
    assert_eq!(events.len() as u64, tally.get(Kind::AuditEvents));
    for record in records {
        match record {
            Record::User(u) => {
                assert_eq!(store.user(&u.id).await.unwrap().as_ref(), Some(u));
                for login in [Some(&u.username), u.email.as_ref()].into_iter().flatten() {
                    let found = store.find_user(login).await.unwrap();
                    assert_eq!(found.map(|f| f.id), Some(u.id.clone()), "{login}");
                }
            }
            Record::ExternalId {
                user_id,
                external_id,
            } => assert_eq!(
                store.external_id(user_id).await.unwrap().as_ref(),
                Some(external_id)
            ),
            Record::Identity {
                connection,
                subject,
                user_id,
            } => {
                assert_eq!(
                    store.identity(connection, subject).await.unwrap().as_ref(),
                    Some(user_id)
                );
                assert!(store
                    .identities_of(user_id)
                    .await
                    .unwrap()
                    .contains(&(connection.clone(), subject.clone())));
            }
            Record::Totp {
                user_id,
                credential,
            } => assert_eq!(
                store.totp(user_id).await.unwrap().as_ref(),
                Some(credential)
            ),
            Record::RecoveryCodes { user_id, hashes } => assert_eq!(
                store.recovery_codes_left(user_id).await.unwrap(),
                hashes.len()
            ),
            Record::EmailCode { key, code, .. } => assert_eq!(
                store
                    .email_code(key)
                    .await
                    .unwrap()
                    .map(|v| v.value)
                    .as_ref(),
                Some(code)
            ),
            Record::Counter { key, counter } => {
                assert_eq!(store.counter(key, 0).await.unwrap().as_ref(), Some(counter))
            }
            Record::Session { hash, session } => {
                assert_eq!(store.session(hash).await.unwrap().as_ref(), Some(session));
                if let Some(uid) = &session.user_id {
                    assert!(store
                        .sessions_of(uid)
                        .await
                        .unwrap()
                        .contains(&(hash.clone(), session.clone())));
                }
            }
            Record::Flow { id, bytes } => {
                assert_eq!(store.flow(id).await.unwrap().as_ref(), Some(bytes))
            }
            Record::Grant(g) => {
                assert_eq!(store.grant(&g.id).await.unwrap().as_ref(), Some(g));
                if let Some(uid) = &g.data.user_id {
                    assert!(store.grants_of(uid).await.unwrap().contains(g));
                }
                if let Some(s) = &g.data.session {
                    assert!(store.session_grants(s).await.unwrap().contains(g));
                }
            }
            Record::Refresh { hash, record } => assert_eq!(
                store.refresh_token(hash).await.unwrap().as_ref(),
                Some(record)
            ),
            Record::SigningKey(k) => assert!(keys.contains(k), "{k:?}"),
            Record::Secret { name, value } => assert_eq!(
                &store
                    .secret(name, &|| panic!("secret {name} was not copied"))
                    .await
                    .unwrap(),
                value
            ),
            Record::AuditEvent(e) => assert!(events.contains(e), "{e:?}"),
            Record::Group { group, version } => {
                let found = store.find_group(&group.display_name).await.unwrap();
                assert_eq!(
                    found.map(|f| (f.value, f.version)),
                    Some((group.clone(), *version))
                );
                let of = store.memberships(&group.members).await.unwrap();
                for m in &group.members {
                    assert!(of[m].iter().any(|g| g.group_id == group.id), "{m}");
                }
            }
            // Only readable by using them up: see `single_use_records_work_once`.
            Record::UpstreamState { .. } | Record::Flash { .. } | Record::Code { .. } => {}
        }
    }
}

/// The records only a consuming call reads: each works once, with what the source held.
async fn single_use_records_work_once(store: &dyn Store, records: &[Record]) {
    for record in records {
        match record {
            Record::UpstreamState {
                state_hash,
                flow_id,
            } => {
                assert_eq!(
                    store
                        .take_upstream_state(state_hash)
                        .await
                        .unwrap()
                        .as_ref(),
                    Some(flow_id)
                );
                assert_eq!(store.take_upstream_state(state_hash).await.unwrap(), None);
            }
            Record::Flash {
                id,
                bytes,
                expires_at,
            } => {
                let now = expires_at - 1;
                assert_eq!(
                    store.take_flash(id, now).await.unwrap().as_ref(),
                    Some(bytes)
                );
                assert_eq!(store.take_flash(id, now).await.unwrap(), None);
            }
            Record::Code { hash, record } => {
                let redeemed = store.redeem_code(hash, "g-after-the-move").await.unwrap();
                match &record.redeemed_by {
                    Some(_) => assert_eq!(redeemed, Redeem::Reused(record.clone())),
                    None => {
                        let mut fresh = record.clone();
                        fresh.redeemed_by = Some("g-after-the-move".into());
                        assert_eq!(redeemed, Redeem::Fresh(fresh));
                    }
                }
            }
            _ => {}
        }
    }
}

/// A config file in `dir`: the suite's usual one, issued at `issuer`, with the
/// credentials key in `key_file` and `store` (YAML) as its store.
fn write_config(dir: &Path, issuer: &str, key_file: &Path, store: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = BASE_CONFIG.replace("{issuer}", issuer).replace(
        "security:\n",
        &format!(
            "security:\n  credentials_key_file: {}\n",
            key_file.display()
        ),
    );
    let path = dir.join("usher.yaml");
    std::fs::write(&path, format!("{config}{store}")).unwrap();
    path
}

fn private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sled_deployment_moves_to_postgres_and_back_with_nothing_lost() {
    let Some(cluster) = usher::store::postgres::cluster::shared() else {
        return;
    };

    // A deployment that has been used: alice signed in to Thrift (an SSO session, a
    // plain and an offline grant with refresh tokens, redeemed codes), bob failed a
    // password (attempt counters) and left a sign-in open (a flow), and has an
    // authenticator app, recovery codes and an email code; carol came from Google with
    // a provisioning id. Keys, the CSRF and throttle secrets and the audit trail are
    // the server's own.
    let usher = Usher::default().await;
    let now = usher.clock.now();
    usher
        .add_user("alice", "alice@example.com", "wonderland-rabbit")
        .await;
    usher
        .add_user("bob", "bob@example.com", "builder-of-things")
        .await;
    let browser = Browser::new();
    let (online, offline) = online_and_offline(&usher, &browser).await;

    let rp = Rp::discover(&usher, "thrift", Some(SECRET)).await;
    let bobs_browser = Browser::new();
    let start = rp.start(&[]);
    let page = bobs_browser
        .follow(&usher, bobs_browser.get(start.url.as_str()).await)
        .await
        .unwrap();
    let again = bobs_browser
        .submit_password(&usher, &page, "bob", "not-bobs-password")
        .await
        .expect("the password form again");
    assert!(again.body.contains("name=\"password\""), "{again:?}");

    let store: Arc<SledStore> = usher.store.clone();
    let key_file = usher.dir.path().join("data").join("credentials.key");
    let sealing = SealingKey::load(&CredentialsKey::File(key_file.clone())).unwrap();
    let secret = usher::authn::totp::generate_secret();
    let totp = TotpCredential {
        sealed_secret: sealing.seal(&secret, b"u_bob").unwrap(),
        created_at: now,
        last_step: usher::authn::totp::step_at(now) - 3,
        confirmed: true,
    };
    store.put_totp("u_bob", &totp).await.unwrap();
    let (codes, hashes) = usher::authn::recovery::generate("u_bob");
    store.put_recovery_codes("u_bob", &hashes).await.unwrap();
    usher::authn::email_otp::issue(store.as_ref(), "u_bob", now)
        .await
        .unwrap();
    let carol = User {
        role_sources: Default::default(),
        id: "u_carol".into(),
        username: "carol@example.com".into(),
        email: Some("carol@example.com".into()),
        email_verified: true,
        name: Some("Carol".into()),
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec!["staff".into()],
        password_hash: None,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    store
        .create_federated_user(&carol, "google", "1093847561")
        .await
        .unwrap();
    store
        .set_external_id("u_carol", Some("hr-4711"))
        .await
        .unwrap();
    // Groups: carol and bob in one that gives a role, and an empty one.
    let admins = Group {
        connection: Default::default(),
        synced: Default::default(),
        id: "g_admins".into(),
        display_name: "admins".into(),
        external_id: Some("hr-group-1".into()),
        members: vec!["u_carol".into(), "u_bob".into()],
        roles: vec!["admin".into()],
        created_at: now,
        updated_at: now,
    };
    assert_eq!(
        store.create_group(&admins).await.unwrap(),
        GroupWrite::Written
    );
    let mut empty = admins.clone();
    empty.id = "g_empty".into();
    empty.display_name = "Nobody yet".into();
    empty.members.clear();
    store.create_group(&empty).await.unwrap();
    let flow_id = usher::crypto::time_prefixed_id(now);
    store
        .put_upstream_state(&usher::crypto::random_token(16), &flow_id)
        .await
        .unwrap();
    store
        .put_flash(
            &usher::crypto::random_token(16),
            b"{\"notice\":\"saved\"}",
            now + 60,
        )
        .await
        .unwrap();
    usher::audit::record(
        store.as_ref(),
        now,
        "admin.user_created",
        Some("scim"),
        Some("u_carol"),
        vec!["from the HR system".into()],
    )
    .await;

    // The server stops; its folder is what the move starts from.
    let Usher {
        running,
        issuer,
        store: server_store,
        dir,
        clock,
    } = usher;
    let addr = running.addr;
    running.stop().await;
    drop((store, server_store));
    let data = dir.path().join("data");
    private(&data);
    let records = {
        let sled = SledStore::open(&data).unwrap();
        export(&sled).await
    };
    let tally = Tally::of(&records);
    assert_eq!(tally.get(Kind::RecoveryCodes), 10);

    // To PostgreSQL: the target config shares the credentials key file.
    let db = format!("copy_{}", std::process::id());
    let url = cluster.create_database(&db).unwrap();
    let to_pg = write_config(
        &dir.path().join("pg"),
        &issuer,
        &key_file,
        &format!("store:\n  postgres:\n    url: {url}\n"),
    );
    let started = std::time::Instant::now();
    copy_and_check_counts(&dir.path().join("usher.yaml"), &to_pg, &tally);
    eprintln!(
        "copied {} records sled → PostgreSQL in {:?}",
        tally.total(),
        started.elapsed()
    );
    let pg = PgStore::open(&postgres::PgSettings::new(&url))
        .await
        .unwrap();
    holds_exactly(&pg, &records).await;
    let copied = pg.totp("u_bob").await.unwrap().unwrap();
    assert_eq!(copied, totp);
    let opened = sealing.open(&copied.sealed_secret, b"u_bob").unwrap();
    assert_eq!(opened, secret);

    // A second copy into it is refused: it holds accounts and keys now.
    let out = copy(&dir.path().join("usher.yaml"), &to_pg, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("accounts: 3"),
        "{}",
        text(&out)
    );

    // And back, to a fresh sled folder.
    let back_dir = dir.path().join("back");
    let to_sled = write_config(&back_dir, &issuer, &key_file, "");
    copy_and_check_counts(&to_pg, &to_sled, &tally);
    {
        let back = SledStore::open(&back_dir.join("data")).unwrap();
        holds_exactly(&back, &records).await;
        single_use_records_work_once(&back, &records).await;
        let code = usher::authn::recovery::hash("u_bob", &codes[4]);
        assert!(back.consume_recovery_code("u_bob", &code).await.unwrap());
        assert!(!back.consume_recovery_code("u_bob", &code).await.unwrap());
    }

    // A node on the database, at the same address: the browser's session signs it in
    // without a password, the offline refresh token refreshes, the access token issued
    // before the move is accepted.
    let loaded = usher::config::load_with_env(&to_pg, &|_| None).unwrap();
    let pg_store: Arc<dyn Store> = Arc::new(pg.clone());
    let state = usher::server::state_with(loaded.config, pg_store, clock.clone())
        .await
        .unwrap();
    let listener = TcpListener::bind(addr).await.unwrap();
    let node = Usher {
        running: usher::server::spawn(state, listener).unwrap(),
        issuer,
        // Unused by the helpers below, which speak HTTP only.
        store: Arc::new(SledStore::temporary().unwrap()),
        dir,
        clock,
    };
    assert_eq!(userinfo_status(&node, &online.access).await, StatusCode::OK);
    refresh(&node, "thrift", Some(SECRET), &offline.refresh)
        .await
        .expect("the offline refresh token still refreshes");
    let start = rp.start(&[]);
    let back = follow_all(&browser, browser.get(start.url.as_str()).await)
        .await
        .expect_err("signed in by the SSO session, no password asked");
    assert!(query(&back).contains_key("code"), "{back}");

    // The authenticator and the recovery codes work on it, each code once.
    let step = usher::authn::totp::verify(&secret, &usher::authn::totp::code_at(&secret, now), now)
        .unwrap();
    assert!(pg.accept_totp_step("u_bob", step).await.unwrap());
    assert!(!pg.accept_totp_step("u_bob", step).await.unwrap());
    let code = usher::authn::recovery::hash("u_bob", &codes[0]);
    assert!(pg.consume_recovery_code("u_bob", &code).await.unwrap());
    assert!(!pg.consume_recovery_code("u_bob", &code).await.unwrap());
    assert_eq!(pg.recovery_codes_left("u_bob").await.unwrap(), 9);
    single_use_records_work_once(&pg, &records).await;
    node.running.stop().await;
}

/// A sled store in `dir/data` with bob, his authenticator sealed under `key`, and the
/// server's keys; returns its config.
async fn small_deployment(dir: &Path, key: &str) -> PathBuf {
    let config = dir.join("usher.yaml");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    private(&dir.join("data"));
    std::fs::write(
        &config,
        BASE_CONFIG
            .replace("{issuer}", "http://127.0.0.1:9")
            .replace(
                "security:\n",
                &format!("security:\n  credentials_key: {key}\n"),
            ),
    )
    .unwrap();
    let store = SledStore::open(&dir.join("data")).unwrap();
    let bob = User {
        role_sources: Default::default(),
        id: "u_bob".into(),
        username: "bob".into(),
        email: Some("bob@example.com".into()),
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(PasswordHash(
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
        )),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    store.create_user(&bob).await.unwrap();
    let raw: [u8; 32] = usher::config::decode_key_text(key).unwrap();
    let sealed = SealingKey::from_bytes(&raw).seal(b"12345678901234567890", b"u_bob");
    store
        .put_totp(
            "u_bob",
            &TotpCredential {
                sealed_secret: sealed.unwrap(),
                created_at: 1,
                last_step: 0,
                confirmed: true,
            },
        )
        .await
        .unwrap();
    usher::oidc::keys::Keys::load_or_generate(&store, 1)
        .await
        .unwrap();
    store.flush().await.unwrap();
    config
}

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdGhsYGRYXFBUSExAREA8ODQwLCgkIBwYFBAMCAQA=";

#[tokio::test]
async fn a_copy_is_refused_into_a_store_with_accounts_or_with_another_credentials_key() {
    let dir = tempfile::tempdir().unwrap();
    let from = small_deployment(&dir.path().join("a"), KEY_A).await;
    // The target already has an account of its own.
    let to = small_deployment(&dir.path().join("b"), KEY_A).await;

    let out = copy(&from, &to, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the target store is not empty: it holds accounts: 1")
            && stderr.contains("signing keys: 3")
            && stderr.contains("--into-nonempty"),
        "{stderr}"
    );

    // Into an empty store whose config has another credentials key: every
    // authenticator would stop working, so nothing is copied.
    let other = dir.path().join("c");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("usher.yaml"),
        BASE_CONFIG
            .replace("{issuer}", "http://127.0.0.1:9")
            .replace(
                "security:\n",
                &format!("security:\n  credentials_key: {KEY_B}\n"),
            ),
    )
    .unwrap();
    let out = copy(&from, &other.join("usher.yaml"), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("credentials key opens none of the 1 TOTP secrets"),
        "{stderr}"
    );
    let census = SledStore::open(&other.join("data"))
        .unwrap()
        .transfer()
        .unwrap()
        .census()
        .await
        .unwrap();
    assert_eq!(census.total(), 0);

    // Asked to, it copies into the non-empty one: the same account id is replaced,
    // the target's keys stay beside the source's.
    let out = copy(&from, &to, &["--into-nonempty"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = table(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows[&Kind::Users], vec![1, 1, 1, 1, 1]);
    assert_eq!(rows[&Kind::SigningKeys], vec![3, 3, 3, 6, 3]);

    // A source folder that is not there is named, not created; a store is not
    // copied onto itself.
    let out = copy(
        &other.join("usher.yaml").with_file_name("none.yaml"),
        &to,
        &[],
    );
    assert!(!out.status.success());
    std::fs::remove_dir_all(other.join("data")).unwrap();
    let out = copy(&other.join("usher.yaml"), &to, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("there is no sled store in"),
        "{}",
        text(&out)
    );
    assert!(!other.join("data").exists());
    let out = copy(&from, &from, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("name the same store"), "{}", text(&out));
    let help = usher_bin(&["store", "copy", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--into-nonempty"));
}
