//! ID-token signatures through `Keys::sign`, one per algorithm, over claims shaped like
//! a real ID token: the ceiling of token issuance on one core.
//!
//! `cargo bench --bench signing`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use usher::config::SigningAlg;
use usher::oidc::keys::Keys;
use usher::store::SledStore;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = SledStore::temporary().expect("temporary store");
    let keys = rt
        .block_on(Keys::load_or_generate(&store, 1_700_000_000))
        .expect("keys");
    let claims = serde_json::json!({
        "iss": "https://id.example.com", "sub": "u_7QmZ3uS1n0xYbq9L2kV8rA",
        "aud": "thrift", "azp": "thrift", "iat": 1_700_000_000u64, "exp": 1_700_003_600u64,
        "auth_time": 1_700_000_000u64, "amr": ["pwd"], "nonce": "n-0S6_WzA2Mj",
        "email": "alice@example.com", "email_verified": true, "name": "Alice Example",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "sid": "0KAQ5Q3wTgg1aVbXBoT4Jw",
    });
    let mut group = c.benchmark_group("sign ID token");
    group.throughput(Throughput::Elements(1));
    for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| black_box(keys.sign(alg, "JWT", &claims).expect("signs")))
        });
    }
    group.finish();
}

criterion_group! {
    name = signing;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(signing);
