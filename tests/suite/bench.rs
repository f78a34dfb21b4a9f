//! `usher bench` on a tiny bounded run: every in-process scenario completes real
//! sign-ins and reports them. No timing is asserted; these are not benchmarks.

use clap::Parser;
use usher::tools::bench::BenchArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

#[test]
fn a_short_run_signs_people_in_in_every_scenario() {
    let cli = Cli::parse_from([
        "usher-bench",
        "--scenario",
        "all",
        "--duration",
        "1",
        "--max-ops",
        "6",
        "--concurrency",
        "2",
        "--users",
        "4",
        "--pending",
        "20",
        "--alg",
        "ES256",
        "--limit-seconds",
        "0.2",
    ]);
    let report = usher::tools::bench::run(&cli.bench).expect("the bench runs");
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "password",
        "jit",
        "federated",
        "refresh",
        "client-credentials",
        "script",
        "pending",
    ] {
        let s = report
            .scenarios
            .iter()
            .find(|s| s.name == expected)
            .unwrap_or_else(|| panic!("{expected} did not run; ran {names:?}"));
        assert!(s.outcome.ops > 0, "{expected}: no operation succeeded");
        assert_eq!(
            s.outcome.errors, 0,
            "{expected}: {:?}",
            s.outcome.first_error
        );
        assert!(s.usher_cpu_per_op().is_some(), "{expected}: no CPU figure");
    }
    assert!(
        names.iter().any(|n| n.starts_with("federated @")),
        "the half-load run: {names:?}"
    );
    let limits = report.limits.expect("limits measured");
    assert!(limits.argon2_per_second > 0.0);
    assert_eq!(limits.signatures_per_second.len(), 3);
    assert!(report.idle_rss.is_some_and(|r| r > 0));
}
