//! `usher users`, `usher groups` and `usher events`: the built binary against a running server's SCIM
//! and admin APIs, with credentials from flags and from the environment.

use std::process::Output;

use crate::accounts_world::*;
use usher::store::{IdentityStore, UserStore};

/// Run the CLI off the async runtime (the server under test runs on it).
async fn cli(w: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_usher"));
    cmd.args(args)
        .env_remove("USHER_SERVER")
        .env_remove("USHER_CLIENT_ID")
        .env_remove("USHER_CLIENT_SECRET")
        .env("USHER_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let _ = w;
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn the_cli_lists_manages_and_audits_users() {
    let w = world().await;
    // Ada arrives through Google and is provisioned.
    my_account_via(&w, &crate::common::Browser::new(), "google", "g-1001").await;
    let uid = w
        .usher
        .store
        .identity("google", "g-1001")
        .await
        .unwrap()
        .unwrap();
    let server = w.usher.issuer.clone();
    let env = [
        ("USHER_SERVER", server.as_str()),
        ("USHER_CLIENT_ID", "ops"),
        ("USHER_CLIENT_SECRET", OPS_SECRET),
    ];

    let out = cli(&w, &["users", "list"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("USERNAME") && header.contains("IDENTITIES"),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains(&uid)).expect("Ada's row");
    assert!(
        row.contains("ada@example.com") && row.contains("google:g-1001") && row.contains("yes"),
        "{row}"
    );
    assert!(table.ends_with("1 user(s)\n"), "{table}");

    // Flags work as well as the environment.
    let out = cli(
        &w,
        &[
            "users",
            "--server",
            &server,
            "--client-id",
            "ops",
            "--client-secret",
            OPS_SECRET,
            "show",
            "ada@example.com",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&uid));

    let out = cli(
        &w,
        &[
            "users",
            "add",
            "bob",
            "--email",
            "bob@example.com",
            "--name",
            "Bob Builder",
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = w
        .usher
        .store
        .find_user("bob")
        .await
        .unwrap()
        .expect("created");
    assert_eq!(bob.name.as_deref(), Some("Bob Builder"));

    let out = cli(&w, &["users", "disable", "bob"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "disabled bob\n");
    assert!(w.usher.store.user(&bob.id).await.unwrap().unwrap().disabled);
    let out = cli(&w, &["users", "enable", &bob.id], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!w.usher.store.user(&bob.id).await.unwrap().unwrap().disabled);

    let out = cli(
        &w,
        &["users", "list", "--filter", "userName eq \"bob\""],
        &env,
    )
    .await;
    let listed = stdout(&out);
    assert!(
        listed.contains("bob@example.com") && !listed.contains("ada@example.com"),
        "{listed}"
    );

    let out = cli(&w, &["users", "reset-totp", "ada@example.com"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("enrols again"));
    let out = cli(&w, &["users", "unlock", "ada@example.com"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("unlocked"), "{}", stdout(&out));
    let out = cli(&w, &["users", "sign-out", "ada@example.com"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("signed ada@example.com out everywhere"),
        "{}",
        stdout(&out)
    );

    let out = cli(&w, &["users", "delete", "bob"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(w.usher.store.find_user("bob").await.unwrap().is_none());
    let out = cli(&w, &["users", "show", "bob"], &env).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no account matches `bob`"),
        "{}",
        stderr(&out)
    );

    // The trail: by user (a username is resolved to the account), by kind prefix.
    let out = cli(&w, &["events", "--user", "ada@example.com"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let events = stdout(&out);
    for kind in [
        "user.provisioned",
        "sign_in",
        "admin.totp_reset",
        "admin.user_unlocked",
        "admin.user_signed_out",
    ] {
        assert!(events.contains(kind), "{kind} in {events}");
    }
    let out = cli(
        &w,
        &["events", "--kind", "admin", "--since", "1h", "--detail"],
        &env,
    )
    .await;
    let admin = stdout(&out);
    for kind in [
        "admin.user_created",
        "admin.user_disabled",
        "admin.user_enabled",
        "admin.user_deleted",
    ] {
        assert!(admin.contains(kind), "{kind} in {admin}");
    }
    assert!(!admin.contains("sign_in"), "{admin}");
    assert!(admin.contains("    userName bob"), "detail lines: {admin}");
    // Everything happened in the last minutes: nothing is older than a day.
    let out = cli(&w, &["events", "--kind", "admin", "--until", "1d"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("admin.user_created"),
        "{}",
        stdout(&out)
    );
    let out = cli(
        &w,
        &["events", "--kind", "admin", "--until", "2999-01-01"],
        &env,
    )
    .await;
    assert!(
        stdout(&out).contains("admin.user_created"),
        "{}",
        stdout(&out)
    );
    // An auditor may read events but not manage users.
    let auditor = [
        ("USHER_SERVER", server.as_str()),
        ("USHER_CLIENT_ID", "auditor"),
        ("USHER_CLIENT_SECRET", AUDITOR_SECRET),
    ];
    let out = cli(
        &w,
        &["events", "--kind", "user.provisioned", "--json"],
        &auditor,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["sub"], uid.as_str());
    let out = cli(&w, &["users", "list"], &auditor).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("scim"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn bad_credentials_and_a_missing_server_are_explained() {
    let w = world().await;
    let server = w.usher.issuer.clone();
    let out = cli(
        &w,
        &["users", "list"],
        &[
            ("USHER_SERVER", &server),
            ("USHER_CLIENT_ID", "ops"),
            ("USHER_CLIENT_SECRET", "wrong"),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    let out = cli(
        &w,
        &["users", "list"],
        &[
            ("USHER_SERVER", "http://127.0.0.1:1"),
            ("USHER_CLIENT_ID", "ops"),
            ("USHER_CLIENT_SECRET", "x"),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the server"),
        "{}",
        stderr(&out)
    );
    let out = cli(&w, &["users", "list"], &[("USHER_SERVER", &server)]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--client-id"), "{}", stderr(&out));
}

/// Accounts imported from a system that verified their addresses are marked so at
/// creation, and an administrator can mark (or unmark) any account later.
#[tokio::test]
async fn the_cli_sets_whether_an_email_address_is_verified() {
    let w = world().await;
    let server = w.usher.issuer.clone();
    let env = [
        ("USHER_SERVER", server.as_str()),
        ("USHER_CLIENT_ID", "ops"),
        ("USHER_CLIENT_SECRET", OPS_SECRET),
    ];
    let out = cli(
        &w,
        &[
            "users",
            "add",
            "carol",
            "--email",
            "carol@example.com",
            "--email-verified",
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let carol = w.usher.store.find_user("carol").await.unwrap().unwrap();
    assert!(carol.email_verified);

    let out = cli(
        &w,
        &["users", "add", "dan", "--email", "dan@example.com"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let dan = w.usher.store.find_user("dan").await.unwrap().unwrap();
    assert!(!dan.email_verified, "unverified unless said");
    let out = cli(&w, &["users", "verify-email", "dan"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "the email address of dan is now verified\n");
    assert!(
        w.usher
            .store
            .user(&dan.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let out = cli(&w, &["users", "verify-email", "dan", "--unverified"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !w.usher
            .store
            .user(&dan.id)
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
}

#[tokio::test]
async fn the_cli_manages_groups_and_their_members() {
    let w = world().await;
    let server = w.usher.issuer.clone();
    let env = [
        ("USHER_SERVER", server.as_str()),
        ("USHER_CLIENT_ID", "ops"),
        ("USHER_CLIENT_SECRET", OPS_SECRET),
    ];
    for name in ["bob", "carol"] {
        let email = format!("{name}@example.com");
        let out = cli(&w, &["users", "add", name, "--email", &email], &env).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = cli(&w, &["groups", "add", "admins", "--role", "admin"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("created group admins (g_"),
        "{}",
        stdout(&out)
    );
    // A second group of the same name, in another case, is refused with the reason.
    let out = cli(&w, &["groups", "add", "ADMINS"], &env).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("displayName"), "{}", stderr(&out));

    let out = cli(
        &w,
        &["groups", "add-member", "admins", "bob", "carol"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "admins now has 2 member(s)\n");
    let out = cli(&w, &["groups", "remove-member", "Admins", "carol"], &env).await;
    assert_eq!(
        stdout(&out),
        "admins now has 1 member(s)\n",
        "{}",
        stderr(&out)
    );

    let out = cli(&w, &["groups", "list"], &env).await;
    let table = stdout(&out);
    let row = table.lines().find(|l| l.contains("admins")).expect("a row");
    assert!(row.contains(" 1 ") && row.ends_with("admin"), "{table}");
    assert!(table.ends_with("1 group(s)\n"), "{table}");
    let out = cli(&w, &["groups", "show", "admins"], &env).await;
    assert!(stdout(&out).contains("  bob (u_"), "{}", stdout(&out));
    // Bob's own record names the group.
    let out = cli(&w, &["users", "show", "bob", "--json"], &env).await;
    let bob: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bob["groups"][0]["display"], "admins");

    let out = cli(&w, &["groups", "delete", "admins"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&w, &["groups", "show", "admins"], &env).await;
    assert!(!out.status.success());
}
