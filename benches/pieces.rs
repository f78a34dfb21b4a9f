//! The other pieces of a sign-in, one at a time: a JIT provisioning write (an account
//! created in a sled store), a TOTP check, and one Argon2id hash with Usher's
//! parameters (the floor under every password sign-in).
//!
//! `cargo bench --bench pieces`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use usher::config::{Connection, ConnectionKind, Jit, JitAttributes, JitLink, JitScheme};
use usher::provision::{self, Provisioned};
use usher::secret::Secret;
use usher::store::SledStore;
use usher::upstream::UpstreamIdentity;

fn google() -> Connection {
    Connection {
        id: "google".into(),
        kind: ConnectionKind::Google,
        display_name: "Google".into(),
        client_id: "usher".into(),
        client_secret: Secret::new("secret"),
        issuer: None,
        issuer_text: None,
        authorize_url: None,
        token_url: None,
        userinfo_url: None,
        userinfo: usher::config::UserinfoMode::Auto,
        emails_url: None,
        scopes: vec![],
        claims: BTreeMap::new(),
        jit: Jit {
            provision: true,
            scheme: JitScheme::Silent,
            attributes: JitAttributes::Override,
            link: JitLink::Never,
        },
        trust_upstream_mfa: false,
    }
}

fn identity(n: u64) -> UpstreamIdentity {
    let mut claims = BTreeMap::new();
    claims.insert(
        "email".into(),
        serde_json::json!(format!("user{n}@example.com")),
    );
    claims.insert("email_verified".into(), serde_json::json!(true));
    claims.insert("name".into(), serde_json::json!(format!("User {n}")));
    claims.insert(
        "preferred_username".into(),
        serde_json::json!(format!("user{n}")),
    );
    UpstreamIdentity {
        connection: "google".into(),
        subject: format!("1098765432{n}"),
        claims,
        amr: vec![],
        raw: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    // The store contract is async; one thread's runtime drives it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = SledStore::temporary().expect("temporary store");
    let conn = google();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("pieces");
    group.throughput(Throughput::Elements(1));
    group.bench_function("provision: create an account (JIT, silent)", |b| {
        b.iter(|| {
            let id = identity(next.fetch_add(1, Ordering::Relaxed));
            let done = rt
                .block_on(provision::provision(&store, &conn, &id, 1_700_000_000))
                .expect("stored");
            assert!(matches!(done, Provisioned::Subject(_)));
        })
    });

    let secret = usher::authn::totp::generate_secret();
    let now = 1_700_000_000;
    let code = usher::authn::totp::code_at(&secret, now);
    group.bench_function("TOTP: check a code (current step ± 1)", |b| {
        b.iter(|| black_box(usher::authn::totp::verify(&secret, &code, now).expect("valid")))
    });
    group.finish();

    let mut slow = c.benchmark_group("pieces (slow)");
    slow.sample_size(10).throughput(Throughput::Elements(1));
    slow.bench_function("Argon2id: hash a password (m=19456 KiB, t=2, p=1)", |b| {
        b.iter(|| black_box(usher::authn::password::hash("correct horse battery").expect("hash")))
    });
    slow.finish();
}

criterion_group! {
    name = pieces;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(pieces);
