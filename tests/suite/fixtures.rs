//! `usher test` as a tester uses it: the example's fixtures pass; a script broken on
//! purpose makes the right cases fail with a readable diff and trace; bad fixtures get
//! config-style diagnostics; JUnit output and `--filter` work.

use std::path::{Path, PathBuf};
use std::process::Command;

fn usher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_usher"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            if entry.file_name() != "data" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of examples/thrift (and the policy it uses) in a temporary folder.
fn thrift_copy() -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("examples/thrift");
    copy_dir(&root.join("examples/thrift"), &config);
    copy_dir(&root.join("policies"), &dir.path().join("policies"));
    (dir, config)
}

#[test]
fn the_example_fixtures_pass() {
    let out = usher()
        .args(["test", "--config", "examples/thrift"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "{stdout}"
    );
    assert!(stdout.contains("ok    ") && stdout.contains("Google with JIT creates an account"));
    // The article's sample policy decides, not only compiles.
    assert!(
        stdout.contains(
            "ok    examples/thrift/tests/asgardeo-style.test.yaml › a Google user skips step 2"
        ),
        "{stdout}"
    );
}

#[test]
fn a_flipped_condition_fails_the_right_cases_with_diff_and_trace() {
    let (dir, config) = thrift_copy();
    let script = dir.path().join("policies/mfa-only-with-account.rhai");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("if first.user.has_account {"));
    std::fs::write(
        &script,
        text.replace(
            "if first.user.has_account {",
            "if !first.user.has_account {",
        ),
    )
    .unwrap();
    let out = usher()
        .arg("test")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "failures exit non-zero: {stdout}");
    // The local user no longer gets step 2: the case shows what differs…
    assert!(
        stdout.contains("FAIL  ") && stdout.contains("a local user must pass TOTP"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the case does not fit the sign-in: the sign-in ended before every input was used"
        ) || stdout.contains("steps: expected [1, 2], got [1]"),
        "{stdout}"
    );
    // …the GitHub user is now sent to MFA and hits the conflict…
    assert!(stdout.contains("GitHub without JIT creates no account and skips MFA"));
    assert!(
        stdout.contains(
            "outcome: expected success, got access_denied (step 2 requires a local account"
        ),
        "{stdout}"
    );
    // …and each failure prints the sign-in's trace.
    assert!(
        stdout.contains(
            "      trace:\n        step 1 offered: password, google, github\n        step 1: sent to github"
        ),
        "{stdout}"
    );
    // Cases the flip does not touch still pass.
    assert!(stdout.contains("ok    ") && stdout.contains("Deny at GitHub returns access_denied"));
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.ends_with(" failed") && !summary.ends_with(" 0 failed"),
        "{summary}"
    );
}

/// Write `text` as a fixture file of the config at `config` and run `usher test` on
/// it: its exit code and what it printed on stderr.
fn test_fixture(config: &Path, text: &str) -> (Option<i32>, String) {
    let bad = config.join("tests/bad.test.yaml");
    std::fs::write(&bad, text).unwrap();
    let out = usher()
        .arg("test")
        .arg("--config")
        .arg(config)
        .arg(&bad)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_fixture_gets_file_line_key_and_suggestion() {
    let (_dir, config) = thrift_copy();
    let (code, stderr) = test_fixture(
        &config,
        "app: thrift\ncases:\n  - name: typo\n    login:\n      - { pick: password, usrname: alice, password: valid }\n    expect: { outcome: success }\n",
    );
    assert_eq!(code, Some(2), "an unusable fixture is not a failed test");
    assert!(stderr.contains("bad.test.yaml:5:"), "{stderr}");
    assert!(stderr.contains("usrname"), "{stderr}");
    assert!(stderr.contains("did you mean `username`?"), "{stderr}");

    // A misspelt code marker is a mistake in the file, not a wrong code.
    let (code, stderr) = test_fixture(
        &config,
        "app: thrift\ncases:\n  - name: typo\n    login:\n      - { pick: password, username: alice, password: valid }\n      - { pick: totp, code: vaild }\n    expect: { outcome: success }\n",
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("bad.test.yaml:6:"), "{stderr}");
    assert!(
        stderr.contains("unknown value `vaild`") && stderr.contains("did you mean `valid`?"),
        "{stderr}"
    );

    let (_, stderr) = test_fixture(&config, "app: thirft\ncases: []\n");
    assert!(
        stderr.contains("unknown app `thirft`") && stderr.contains("did you mean `thrift`?"),
        "{stderr}"
    );
}

#[test]
fn junit_output_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.xml");
    let out = usher()
        .args([
            "test",
            "--config",
            "examples/thrift",
            "--format",
            "junit",
            "--filter",
            "GitHub",
            "--output",
        ])
        .arg(&report)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.starts_with("<?xml"));
    assert!(
        xml.contains("<testcase classname=")
            && xml.contains("GitHub without JIT creates no account and skips MFA")
    );
    assert!(!xml.contains("a local user must pass TOTP"), "filtered out");
    assert_eq!(xml.matches("<testcase").count(), 2, "{xml}");
    assert!(!xml.contains("time=\"-"), "{xml}");
}

#[test]
fn a_case_runs_at_its_own_clock() {
    let (dir, config) = thrift_copy();
    std::fs::write(
        dir.path().join("policies/new-year.rhai"),
        "if ctx.now >= 1767225600 {\n    fail(\"closed for the new year\");\n}\nexecute_step(1);\n",
    )
    .unwrap();
    let (code, _) = test_fixture(
        &config,
        "app: thrift\n\
         script: ../../../policies/new-year.rhai\n\
         users:\n  - { username: alice, email: alice@example.com, password: wonderland }\n\
         cases:\n\
         \x20 - name: on the last day of the year\n\
         \x20   request: { now: 1767225599 }\n\
         \x20   login: [{ pick: password, username: alice, password: wonderland }]\n\
         \x20   expect: { outcome: success }\n\
         \x20 - name: on new year's day\n\
         \x20   request: { now: 1767225600 }\n\
         \x20   login: []\n\
         \x20   expect: { outcome: { error: access_denied, description: closed for the new year } }\n",
    );
    assert_eq!(code, Some(0), "both cases pass at their own clocks");
}
