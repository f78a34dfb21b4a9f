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
        "sso",
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

/// `--store postgres`: the same scenarios on sled and on PostgreSQL in one run, the
/// PostgreSQL side with its statements and round trips; here on a schema of its own in
/// the tests' shared cluster (`--store-url`), dropped when the run ends.
#[test]
fn postgres_is_measured_next_to_sled_in_one_run() {
    let Some(cluster) = usher::store::postgres::cluster::shared() else {
        return;
    };
    let url = cluster.url("postgres");
    let cli = Cli::parse_from([
        "usher-bench",
        "--store",
        "postgres",
        "--store-url",
        &url,
        "--scenario",
        "password,sso,federated,refresh,script",
        "--duration",
        "1",
        "--max-ops",
        "6",
        "--concurrency",
        "2",
        "--users",
        "4",
        "--alg",
        "ES256",
        "--no-limits",
    ]);
    let report = usher::tools::bench::run(&cli.bench).expect("the bench runs");
    for store in ["sled", "postgres"] {
        for name in ["password", "sso", "federated", "refresh", "script"] {
            let s = report
                .find(store, name)
                .unwrap_or_else(|| panic!("{name} did not run on {store}"));
            assert!(s.outcome.ops > 0, "{store} {name}: no operation succeeded");
            assert_eq!(
                s.outcome.errors, 0,
                "{store} {name}: {:?}",
                s.outcome.first_error
            );
            match store {
                "sled" => assert!(s.db.is_none(), "sled has no SQL to count"),
                _ => {
                    let db = s.db.expect("PostgreSQL figures");
                    assert!(db.statements > 0, "{name}: no statement counted");
                    assert!(db.round_trips >= db.statements, "{name}: {db:?}");
                    assert!(db.cpu.is_some(), "{name}: no database CPU time");
                    if name == "sso" {
                        // The target: a silent re-authorization (authorize and code
                        // exchange) in at most six statements, so six round trips
                        // once a connection has prepared them (four today).
                        assert!(
                            db.statements <= 6 * s.outcome.ops,
                            "a silent SSO sign-in took more than six statements: {db:?} for {} ops",
                            s.outcome.ops
                        );
                    }
                }
            }
        }
    }
    // The run's schema is gone.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let left: i64 = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'usher_bench_%'",
                &[],
            )
            .await
            .expect("query")
            .get(0)
    });
    assert_eq!(left, 0, "the bench left its schema behind");
}
