//! Fixture cases per second: the example's two-step cases, run by the same runner as
//! `usher test` (one temporary sled store, cleared between cases).
//!
//! `cargo bench --bench fixtures`

use std::path::Path;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use usher::fixtures::{self, Runner};

fn benches(c: &mut Criterion) {
    // The runner is async (the store contract is); one thread's runtime drives it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = usher::config::load(&root.join("examples/thrift")).expect("example config");
    let config = Arc::new(loaded.config);
    let file = fixtures::load(&root.join("examples/thrift/tests/jit.test.yaml"), &config)
        .expect("fixture");
    let runner = Runner::new(config).expect("temporary store");
    for name in [
        "a local user must pass TOTP",
        "Google with JIT creates an account",
        "GitHub without JIT creates no account and skips MFA",
    ] {
        let case = file.cases.iter().find(|c| c.name == name).expect("case");
        assert!(
            rt.block_on(runner.run_case(&file, case)).passed(),
            "{name} passes before it is measured"
        );
        let mut group = c.benchmark_group("fixture case");
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(runner.run_case(&file, case))))
        });
        group.finish();
    }
}

criterion_group!(fixture_cases, benches);
criterion_main!(fixture_cases);
