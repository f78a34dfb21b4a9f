//! The configuration of My Account, service clients and the audit trail: what loads,
//! what it becomes, and what an admin sees when it is wrong (file, line, column, key
//! path, suggestion), in the style of `config_errors.rs`.

use std::path::Path;

use usher::config::{
    load_with_env, summary, ApiScope, Diagnostic, Diagnostics, GrantType, Loaded, ProfileField,
    StepOption, MY_ACCOUNT_APP,
};

fn load_text(text: &str) -> Result<Loaded, Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(&path, text).unwrap();
    load_with_env(&path, &|_| None)
}

fn only_error(text: &str) -> Diagnostic {
    match load_text(text) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(Diagnostics(mut d)) => {
            assert_eq!(d.len(), 1, "expected exactly one diagnostic, got {d:#?}");
            d.remove(0)
        }
    }
}

const BASE: &str = "\
issuer: https://id.example.com
connections:
  google: { kind: google, client_id: g, client_secret: s }
apps:
  shop:
    name: Shop
    client_id: shop
    redirect_uris: [https://shop.example.com/cb]
    sign_in:
      steps:
        - [password]
";

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

const OPS: &str = "  ops:
    name: Operations
    client_id: ops
    client_secret: ops-secret
    grants: [client_credentials]
    scopes: [scim, audit]
";

#[test]
fn a_service_client_needs_neither_redirects_nor_steps() {
    let loaded = load_text(&with(OPS)).unwrap_or_else(|d| panic!("{d}"));
    let ops = &loaded.config.apps["ops"];
    assert_eq!(ops.grants, [GrantType::ClientCredentials]);
    assert_eq!(ops.scopes, [ApiScope::Scim, ApiScope::Audit]);
    assert!(ops.sign_in.steps.is_empty());
    let shop = &loaded.config.apps["shop"];
    assert_eq!(shop.grants, [GrantType::AuthorizationCode], "the default");
    assert!(shop.scopes.is_empty());
    let text = summary(&loaded.config);
    assert!(
        text.contains("grants: client_credentials  scopes: scim audit"),
        "{text}"
    );
    assert_eq!(loaded.config.security.client_credentials_ttl, 600);
}

#[test]
fn client_credentials_needs_a_secret() {
    let d = only_error(&with(&OPS.replace("    client_secret: ops-secret\n", "")));
    assert_eq!(d.path, "apps.ops.grants");
    assert!(
        d.message.contains("needs a `client_secret`"),
        "{}",
        d.message
    );
    assert_eq!((d.line, d.column), (15, 13));
}

#[test]
fn scopes_come_only_with_client_credentials() {
    let d = only_error(&with(&OPS.replace("[client_credentials]", "[authorization_code]").replace(
        "    scopes:",
        "    redirect_uris: [https://ops.example.com/cb]\n    sign_in: { steps: [[password]] }\n    scopes:",
    )));
    assert_eq!(d.path, "apps.ops.scopes");
    assert!(d.message.contains("add it to `grants`"), "{}", d.message);
}

#[test]
fn misspelt_grants_and_scopes_suggest_the_nearest() {
    let d = only_error(&with(
        &OPS.replace("[client_credentials]", "[client_credential]"),
    ));
    assert_eq!(d.path, "apps.ops.grants[0]");
    assert_eq!(d.suggestion.as_deref(), Some("client_credentials"));
    let d = only_error(&with(&OPS.replace("[scim, audit]", "[scin, audit]")));
    assert_eq!(d.path, "apps.ops.scopes[0]");
    assert_eq!(d.suggestion.as_deref(), Some("scim"));
    assert_eq!((d.line, d.column), (17, 14));
}

#[test]
fn an_app_that_signs_users_in_needs_its_steps() {
    let text = BASE.replace("    sign_in:\n      steps:\n        - [password]\n", "");
    let d = only_error(&text);
    assert_eq!(d.path, "apps.shop.sign_in");
    assert!(
        d.message
            .starts_with("missing required key `sign_in` in apps.shop"),
        "{}",
        d.message
    );
    let d = only_error(&with(&OPS.replace("[client_credentials]", "[]")));
    assert!(d.message.contains("grants is empty"), "{}", d.message);
}

#[test]
fn the_built_in_app_id_is_reserved() {
    let d = only_error(&with(&OPS.replace("  ops:", "  usher-myaccount:")));
    assert_eq!(d.path, "apps.usher-myaccount");
    assert!(d.message.contains("reserved"), "{}", d.message);
    let d = only_error(&with(
        &OPS.replace("client_id: ops", "client_id: usher-myaccount"),
    ));
    assert_eq!(d.path, "apps.ops.client_id");
}

#[test]
fn my_account_defaults_to_password_and_every_connection() {
    let loaded = load_text(BASE).unwrap();
    let config = &loaded.config;
    assert!(config.my_account.enabled);
    assert_eq!(config.my_account.editable, ProfileField::ALL);
    assert_eq!(config.audit.retention_days, 90);
    let app = &config.apps[MY_ACCOUNT_APP];
    assert_eq!(app.client_id, MY_ACCOUNT_APP);
    assert!(!app.is_public(), "a confidential client");
    assert_eq!(
        app.redirect_uris[0].as_str(),
        "https://id.example.com/myaccount/callback"
    );
    assert_eq!(
        app.sign_in.steps[0].options,
        [
            StepOption::Password,
            StepOption::Connection("google".into())
        ]
    );
    assert_eq!(app.sign_in.steps.len(), 1);
}

#[test]
fn my_account_steps_script_and_editable_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.rhai"), "execute_step(1);\n").unwrap();
    let text = with(
        "my_account:\n  steps:\n    - [google]\n    - [totp]\n  script: mine.rhai\n  editable: [name, picture]\n",
    );
    std::fs::write(dir.path().join("usher.yaml"), text).unwrap();
    let loaded = load_with_env(&dir.path().join("usher.yaml"), &|_| None).unwrap();
    let app = &loaded.config.apps[MY_ACCOUNT_APP];
    assert_eq!(app.sign_in.steps[1].options, [StepOption::Totp]);
    assert!(app
        .sign_in
        .script
        .as_ref()
        .unwrap()
        .source
        .contains("execute_step"));
    assert_eq!(
        loaded.config.my_account.editable,
        [ProfileField::Name, ProfileField::Picture]
    );
    assert!(
        loaded.config.files.iter().any(|f| f.ends_with("mine.rhai")),
        "the script is watched"
    );
}

#[test]
fn my_account_mistakes_point_into_my_account() {
    let d = only_error(&with("my_account:\n  steps:\n    - [password, gogle]\n"));
    assert_eq!(d.path, "my_account.steps[0][1]");
    assert_eq!(d.suggestion.as_deref(), Some("google"));
    assert_eq!((d.line, d.column), (14, 18));
    let d = only_error(&with("my_account:\n  editable: [name, email]\n"));
    assert_eq!(d.path, "my_account.editable[1]");
    assert!(d.message.contains("expected one of"), "{}", d.message);
    let d = only_error(&with("my_account:\n  stepz: []\n"));
    assert_eq!(d.suggestion.as_deref(), Some("steps"));
}

#[test]
fn my_account_can_be_switched_off() {
    let loaded = load_text(&with("my_account: { enabled: false }\n")).unwrap();
    assert!(!loaded.config.my_account.enabled);
    assert!(!loaded.config.apps.contains_key(MY_ACCOUNT_APP));
}

#[test]
fn a_my_account_second_step_after_a_pass_through_login_warns() {
    let text = BASE.replace(
        "client_secret: s }",
        "client_secret: s, jit: { provision: false } }",
    ) + "my_account:\n  steps:\n    - [google]\n    - [totp]\n";
    let loaded = load_text(&text).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.message.contains(MY_ACCOUNT_APP) && w.message.contains("google")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn retention_and_token_lifetime_must_be_positive() {
    let d = only_error(&with("audit:\n  retention_days: 0\n"));
    assert_eq!(d.path, "audit.retention_days");
    assert_eq!((d.line, d.column), (13, 19));
    let loaded = load_text(&with("audit: { retention_days: 7 }\n")).unwrap();
    assert_eq!(loaded.config.audit.retention_days, 7);
    let d = only_error(&BASE.replace(
        "connections:",
        "security:\n  client_credentials_ttl_seconds: 0\nconnections:",
    ));
    assert_eq!(d.path, "security.client_credentials_ttl_seconds");
}

#[test]
fn the_docs_describe_my_account_and_service_clients() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
            .unwrap();
    for needle in [
        "## `my_account`",
        "## `audit`",
        "`grants`",
        "`client_credentials_ttl_seconds`",
    ] {
        assert!(docs.contains(needle), "docs/config.md lacks {needle}");
    }
}
