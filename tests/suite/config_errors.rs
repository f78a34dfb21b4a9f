//! What an admin sees when a configuration is wrong: each test writes a malformed config
//! into a temporary folder and checks the diagnostic's message, line, column, key path
//! and suggestion — the things a person fixing the file relies on.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use usher::config::{
    load_with_env, summary, CredentialsKey, Diagnostic, Diagnostics, EmailConfig, Loaded,
    StepOption, StoreConfig,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&path, text).unwrap();
    path
}

/// Loads `text` as a single-file config.
fn load_text(text: &str) -> Result<Loaded, Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "usher.yaml", text);
    load_with_env(&path, &no_env)
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load_text(text) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(Diagnostics(d)) => d,
    }
}

/// The one diagnostic a config produces.
fn only_error(text: &str) -> Diagnostic {
    let mut d = errors(text);
    assert_eq!(d.len(), 1, "expected exactly one diagnostic, got {d:#?}");
    d.remove(0)
}

fn at(d: &Diagnostic) -> (usize, usize) {
    (d.line, d.column)
}

/// A small valid config; tests replace one line of it to break it.
const VALID: &str = "\
issuer: https://id.example.com
apps:
  shop:
    name: Shop
    client_id: shop
    redirect_uris: [https://shop.example.com/cb]
    sign_in:
      steps:
        - [password]
";

fn valid_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} not in VALID");
    VALID.replace(from, to)
}

#[test]
fn the_small_valid_config_loads() {
    let loaded = load_text(VALID).unwrap();
    assert!(loaded.warnings.is_empty());
    let app = &loaded.config.apps["shop"];
    assert!(app.is_public());
    assert_eq!(app.sign_in.steps[0].options, vec![StepOption::Password]);
    assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(loaded.config.security.code_ttl, 60);
    assert_eq!(loaded.config.security.password_policy.min_length, 10);
}

#[test]
fn unknown_top_level_key_suggests_the_nearest() {
    let d = only_error(&format!("{VALID}lisen: 127.0.0.1:9000\n"));
    assert_eq!(d.message, "unknown key `lisen` at the top level");
    assert_eq!(d.suggestion.as_deref(), Some("listen"));
    assert_eq!(d.path, "lisen");
    assert_eq!(at(&d), (10, 1));
}

#[test]
fn unknown_app_key_points_at_the_key_itself() {
    let d = only_error(&valid_with("    name: Shop", "    nmae: Shop"));
    assert_eq!(d.message, "unknown key `nmae` in apps.shop");
    assert_eq!(d.suggestion.as_deref(), Some("name"));
    assert_eq!(d.path, "apps.shop.nmae");
    assert_eq!(at(&d), (4, 5));
}

#[test]
fn unknown_key_without_a_near_match_lists_the_valid_ones() {
    let d = only_error(&valid_with(
        "    name: Shop",
        "    name: Shop\n    colour: red",
    ));
    assert!(
        d.message
            .starts_with("unknown key `colour` in apps.shop; valid keys are `name`, `logo`"),
        "{}",
        d.message
    );
    assert_eq!(d.suggestion, None);
    assert_eq!(at(&d), (5, 5));
}

#[test]
fn misspelt_step_option_suggests_a_connection() {
    let text = "\
issuer: https://id.example.com
connections:
  google:
    kind: google
    client_id: id
    client_secret: secret
apps:
  shop:
    name: Shop
    client_id: shop
    redirect_uris: [https://shop.example.com/cb]
    sign_in:
      steps:
        - [password, gooogle]
";
    let d = only_error(text);
    assert!(
        d.message
            .starts_with("unknown option `gooogle` in apps.shop.sign_in.steps[0]"),
        "{}",
        d.message
    );
    assert_eq!(d.suggestion.as_deref(), Some("google"));
    assert_eq!(d.path, "apps.shop.sign_in.steps[0][1]");
    assert_eq!(at(&d), (14, 22));
    assert!(d.to_string().ends_with("did you mean `google`?"), "{d}");
}

#[test]
fn missing_environment_variable_is_named_with_its_key() {
    let d = only_error(&valid_with(
        "    client_id: shop",
        "    client_id: shop\n    client_secret: ${SHOP_SECRET}",
    ));
    assert!(
        d.message.starts_with(
            "environment variable `SHOP_SECRET` is not set (used in apps.shop.client_secret)"
        ),
        "{}",
        d.message
    );
    assert_eq!(d.path, "apps.shop.client_secret");
    assert_eq!(at(&d), (6, 20));
}

#[test]
fn an_unset_variable_is_reported_once_not_again_as_a_bad_value() {
    let d = only_error(&valid_with(
        "issuer: https://id.example.com",
        "issuer: ${ISSUER}",
    ));
    assert!(
        d.message
            .starts_with("environment variable `ISSUER` is not set"),
        "{}",
        d.message
    );
    assert_eq!(at(&d), (1, 9));
}

#[test]
fn a_number_where_a_string_belongs_says_to_quote_it() {
    let d = only_error(&valid_with("    client_id: shop", "    client_id: 12345"));
    assert_eq!(
        d.message,
        "wrong type for apps.shop.client_id: expected a string, found integer `12345`; put it in quotes to make it a string"
    );
    assert_eq!(at(&d), (5, 16));
}

#[test]
fn misspelt_key_in_the_long_step_form() {
    let d = only_error(&valid_with(
        "        - [password]",
        "        - { options: [password], forse: true }",
    ));
    assert_eq!(
        d.message,
        "unknown key `forse` in apps.shop.sign_in.steps[0]"
    );
    assert_eq!(d.suggestion.as_deref(), Some("force"));
    assert_eq!(at(&d), (9, 34));
}

#[test]
fn interpolation_uses_the_environment_then_the_default() {
    let text = valid_with(
        "    client_id: shop",
        "    client_id: ${SHOP_ID:-shop-dev}\n    client_secret: \"${SHOP_SECRET:-dev: #not a comment}\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "usher.yaml", &text);

    let loaded = load_with_env(&path, &no_env).unwrap();
    let app = &loaded.config.apps["shop"];
    assert_eq!(app.client_id, "shop-dev");
    assert!(app
        .client_secret
        .as_ref()
        .unwrap()
        .matches("dev: #not a comment"));

    // A value full of YAML syntax stays one string: interpolation runs after parsing.
    let env: HashMap<&str, &str> =
        [("SHOP_ID", "from-env"), ("SHOP_SECRET", "a: [b] # c\nd")].into();
    let loaded = load_with_env(&path, &|k| env.get(k).map(|v| v.to_string())).unwrap();
    let app = &loaded.config.apps["shop"];
    assert_eq!(app.client_id, "from-env");
    assert!(app.client_secret.as_ref().unwrap().matches("a: [b] # c\nd"));
}

#[test]
fn double_dollar_escapes_interpolation() {
    let loaded = load_text(&valid_with("    name: Shop", "    name: Costs $${PRICE}")).unwrap();
    assert_eq!(loaded.config.apps["shop"].name, "Costs ${PRICE}");
}

#[test]
fn numbers_can_come_from_the_environment() {
    let text = format!(
        "{VALID}email:\n  smtp:\n    host: mail.example.com\n    port: ${{SMTP_PORT:-2525}}\n    from: id@example.com\n"
    );
    let loaded = load_text(&text).unwrap();
    match &loaded.config.email {
        EmailConfig::Smtp(smtp) => assert_eq!(smtp.port, 2525),
        other => panic!("expected smtp, got {other:?}"),
    }
}

#[test]
fn relative_redirect_uri_is_refused() {
    let d = only_error(&valid_with("[https://shop.example.com/cb]", "[/cb]"));
    assert!(
        d.message
            .starts_with("redirect URI `/cb` in apps.shop.redirect_uris[0] is not an absolute URL"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "apps.shop.redirect_uris[0]");
    assert_eq!(at(&d), (6, 21));
}

#[test]
fn redirect_uri_with_fragment_is_refused() {
    let d = only_error(&valid_with(
        "    redirect_uris: [https://shop.example.com/cb]",
        "    redirect_uris:\n      - https://shop.example.com/cb\n      - https://shop.example.com/cb#top",
    ));
    assert_eq!(
        d.message,
        "redirect URI `https://shop.example.com/cb#top` in apps.shop.redirect_uris[1] must not contain a fragment (`#...`)"
    );
    assert_eq!(d.path, "apps.shop.redirect_uris[1]");
    assert_eq!(at(&d), (8, 9));
}

#[test]
fn app_without_redirect_uris_points_at_the_app() {
    let d = only_error(&valid_with(
        "    redirect_uris: [https://shop.example.com/cb]\n",
        "",
    ));
    assert!(
        d.message.starts_with("app `shop` has no redirect_uris"),
        "{}",
        d.message
    );
    assert_eq!(at(&d), (3, 3));
}

#[test]
fn issuer_must_be_an_absolute_http_url() {
    let d = only_error(&valid_with(
        "issuer: https://id.example.com",
        "issuer: id.example.com",
    ));
    assert!(
        d.message
            .starts_with("issuer is not an absolute URL (`id.example.com`"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "issuer");
    assert_eq!(at(&d), (1, 9));

    let d = only_error(&valid_with(
        "issuer: https://id.example.com",
        "issuer: https://id.example.com/?tenant=1",
    ));
    assert!(
        d.message.contains("must not have a query or fragment"),
        "{}",
        d.message
    );
}

#[test]
fn plain_http_issuer_off_localhost_is_a_warning() {
    let loaded = load_text(&valid_with(
        "issuer: https://id.example.com",
        "issuer: http://id.example.com",
    ))
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].message.contains("plain http"),
        "{:?}",
        loaded.warnings
    );
    let local = load_text(&valid_with(
        "issuer: https://id.example.com",
        "issuer: http://localhost:9000",
    ))
    .unwrap();
    assert!(local.warnings.is_empty());
}

#[test]
fn listen_must_be_a_socket_address() {
    let d = only_error(&format!("{VALID}listen: localhost:9000\n"));
    assert!(
        d.message
            .starts_with("listen `localhost:9000` is not a socket address"),
        "{}",
        d.message
    );
    assert_eq!(d.suggestion.as_deref(), Some("127.0.0.1:9000"));
    assert_eq!(at(&d), (10, 9));
}

#[test]
fn empty_steps_are_refused() {
    let d = only_error(&valid_with(
        "      steps:\n        - [password]\n",
        "      steps: []\n",
    ));
    assert!(
        d.message.starts_with("apps.shop.sign_in.steps is empty"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "apps.shop.sign_in.steps");
    assert_eq!(at(&d), (8, 14));
}

#[test]
fn empty_step_is_refused() {
    let d = only_error(&valid_with(
        "        - [password]\n",
        "        - [password]\n        - []\n",
    ));
    assert_eq!(
        d.message,
        "apps.shop.sign_in.steps[1] has no options; a step needs at least one way to pass it"
    );
    assert_eq!(d.path, "apps.shop.sign_in.steps[1]");
    assert_eq!(at(&d), (10, 11));
}

#[test]
fn option_listed_twice_in_a_step() {
    let d = only_error(&valid_with(
        "        - [password]",
        "        - { options: [password, password], force: true }",
    ));
    assert_eq!(
        d.message,
        "option `password` is listed twice in apps.shop.sign_in.steps[0]"
    );
    assert_eq!(d.path, "apps.shop.sign_in.steps[0].options[1]");
    assert_eq!(at(&d), (9, 33));
}

#[test]
fn first_step_with_only_account_factors_is_refused() {
    let d = only_error(&valid_with(
        "        - [password]",
        "        - [totp]\n        - [password]",
    ));
    assert!(
        d.message
            .starts_with("step 1 (totp) only offers options that need a known account"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "apps.shop.sign_in.steps[0]");
    assert_eq!(at(&d), (9, 11));
}

#[test]
fn connection_id_may_not_shadow_a_built_in_option() {
    let text = format!(
        "{VALID}connections:\n  password:\n    kind: google\n    client_id: id\n    client_secret: s\n"
    );
    let d = only_error(&text);
    assert!(
        d.message
            .starts_with("connection id `password` clashes with the built-in option `password`"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "connections.password");
    assert_eq!(at(&d), (11, 3));
}

#[test]
fn ids_must_be_lower_case() {
    let d = only_error(&valid_with("  shop:", "  Shop:"));
    assert_eq!(
        d.message,
        "app id `Shop` may only use lower-case letters, digits, `_` and `-`"
    );
    assert_eq!(d.suggestion.as_deref(), Some("shop"));
    assert_eq!(at(&d), (3, 3));
}

#[test]
fn duplicate_app_id_across_files_names_both() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "usher.yaml", "issuer: https://id.example.com\n");
    let app = "shop:\n  name: Shop\n  client_id: shop\n  redirect_uris: [https://s.example.com/cb]\n  sign_in: { steps: [[password]] }\n";
    write(dir.path(), "apps/a.yaml", app);
    write(
        dir.path(),
        "apps/b.yaml",
        &format!("# the same app again\n{app}"),
    );
    let Err(Diagnostics(d)) = load_with_env(dir.path(), &no_env) else {
        panic!("expected an error")
    };
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        d[0].message,
        "app `shop` is defined twice: in apps/a.yaml:1 and in apps/b.yaml:2"
    );
    assert!(d[0].file.ends_with("apps/b.yaml"));
    assert_eq!(d[0].path, "apps.shop");
    assert_eq!(at(&d[0]), (2, 1));
}

#[test]
fn duplicate_client_id_across_apps() {
    let text = format!(
        "{VALID}  cart:\n    name: Cart\n    client_id: shop\n    redirect_uris: [https://cart.example.com/cb]\n    sign_in: {{ steps: [[password]] }}\n"
    );
    let d = only_error(&text);
    // The app written later is the one blamed, pointing back at the first.
    assert_eq!(
        d.message,
        "client_id `shop` of app `cart` is already used by app `shop` (usher.yaml:5); each app needs its own"
    );
    assert_eq!(d.path, "apps.cart.client_id");
    assert_eq!(at(&d), (12, 16));
}

#[test]
fn unknown_signing_alg_suggests_the_nearest() {
    let d = only_error(&valid_with(
        "    name: Shop",
        "    name: Shop\n    signing_alg: RS265",
    ));
    assert_eq!(
        d.message,
        "unknown value `RS265` for apps.shop.signing_alg; expected one of `RS256`, `ES256`, `EdDSA`"
    );
    assert_eq!(d.suggestion.as_deref(), Some("RS256"));
    assert_eq!(at(&d), (5, 18));
}

#[test]
fn unknown_connection_kind_suggests_the_nearest() {
    let text = format!(
        "{VALID}connections:\n  corp:\n    kind: odic\n    issuer: https://corp.example.com\n    client_id: id\n    client_secret: s\n"
    );
    let d = only_error(&text);
    assert!(
        d.message
            .starts_with("unknown value `odic` for connections.corp.kind"),
        "{}",
        d.message
    );
    assert_eq!(d.suggestion.as_deref(), Some("oidc"));
    assert_eq!(at(&d), (12, 11));
}

#[test]
fn string_where_a_list_is_expected() {
    let d = only_error(&valid_with(
        "    redirect_uris: [https://shop.example.com/cb]",
        "    redirect_uris: https://shop.example.com/cb",
    ));
    assert_eq!(
        d.message,
        "wrong type for apps.shop.redirect_uris: expected a list, found string \"https://shop.example.com/cb\""
    );
    assert_eq!(d.path, "apps.shop.redirect_uris");
    assert_eq!(at(&d), (6, 20));
}

#[test]
fn step_of_the_wrong_shape_explains_both_shapes() {
    let d = only_error(&valid_with("        - [password]", "        - password"));
    assert!(d.message.contains("expected a list of options like `[password, google]` or a map like `{ options: [totp], force: true }`"), "{}", d.message);
    assert_eq!(d.path, "apps.shop.sign_in.steps[0]");
    assert_eq!(at(&d), (9, 11));
}

#[test]
fn missing_required_key_points_at_its_owner() {
    let d = only_error(&valid_with("    client_id: shop\n", ""));
    assert_eq!(d.message, "missing required key `client_id` in apps.shop");
    assert_eq!(d.path, "apps.shop.client_id");
    assert_eq!(at(&d), (3, 3));
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let d = only_error("issuer: https://id.example.com\napps:\n  shop:\n    name: [Shop\n");
    assert!(
        d.message.starts_with("YAML syntax error: "),
        "{}",
        d.message
    );
    assert_eq!(d.line, 5);
}

#[test]
fn duplicate_yaml_key_names_both_lines() {
    let d = only_error(&valid_with(
        "    name: Shop",
        "    name: Shop\n    name: Boutique",
    ));
    assert_eq!(
        d.message,
        "duplicate key `name` in apps.shop (first at line 4)"
    );
    assert_eq!(at(&d), (5, 5));
}

#[test]
fn missing_script_file_points_at_the_script_key() {
    let d = only_error(&format!("{VALID}      script: policies/nope.rhai\n"));
    assert!(
        d.message
            .starts_with("cannot read script `policies/nope.rhai`"),
        "{}",
        d.message
    );
    assert_eq!(d.path, "apps.shop.sign_in.script");
    assert_eq!(at(&d), (10, 15));
}

#[test]
fn oauth2_connection_needs_its_urls() {
    let text = format!(
        "{VALID}connections:\n  corp:\n    kind: oauth2\n    client_id: id\n    client_secret: s\n    authorize_url: https://corp.example.com/authorize\n    userinfo_url: https://corp.example.com/me\n"
    );
    let d = only_error(&text);
    assert_eq!(
        d.message,
        "connection `corp` of kind `oauth2` needs `token_url`"
    );
    assert_eq!(d.path, "connections.corp.token_url");
    assert_eq!(at(&d), (11, 3));
}

#[test]
fn oidc_connection_needs_an_issuer() {
    let text = format!(
        "{VALID}connections:\n  corp:\n    kind: oidc\n    client_id: id\n    client_secret: s\n"
    );
    let d = only_error(&text);
    assert_eq!(d.message, "connection `corp` of kind `oidc` needs `issuer`");
}

#[test]
fn security_limits_are_checked() {
    let text = format!(
        "{VALID}security:\n  flow_ttl_seconds: 0\n  password_policy:\n    min_length: 6\n    max_length: 5\n"
    );
    let d = errors(&text);
    let messages: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "security.flow_ttl_seconds must be greater than 0",
            "security.password_policy.min_length is 6; it must be at least 8",
            "security.password_policy.max_length (5) is smaller than min_length (6)",
        ]
    );
    assert_eq!(at(&d[0]), (11, 21));
}

#[test]
fn inline_credentials_key_must_be_32_bytes_of_base64() {
    // "c2hvcnQ=" is base64 of "short": valid base64, wrong length.
    let d = only_error(&format!("{VALID}security:\n  credentials_key: c2hvcnQ=\n"));
    assert_eq!(d.path, "security.credentials_key");
    assert!(
        d.message
            .starts_with("security.credentials_key decodes to 5 bytes; it must be 32;"),
        "{}",
        d.message
    );
    assert_eq!(at(&d), (11, 20));
    // The value is a secret: the message describes it but never repeats it.
    assert!(!d.to_string().contains("c2hvcnQ"), "{d}");

    let d = only_error(&format!(
        "{VALID}security:\n  credentials_key: not*base64\n"
    ));
    assert!(
        d.message
            .starts_with("security.credentials_key is not base64"),
        "{}",
        d.message
    );

    // A good key, from the environment as the docs recommend, in either alphabet.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "usher.yaml",
        &format!("{VALID}security:\n  credentials_key: ${{USHER_CREDENTIALS_KEY}}\n"),
    );
    for key in [
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "_-8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0",
    ] {
        let env = |name: &str| (name == "USHER_CREDENTIALS_KEY").then(|| key.to_string());
        let loaded = load_with_env(&path, &env).unwrap_or_else(|d| panic!("{d}"));
        match &loaded.config.security.credentials_key {
            CredentialsKey::Inline(secret) => assert!(secret.matches(key)),
            other => panic!("expected an inline key, got {other:?}"),
        }
    }
}

#[test]
fn credentials_key_defaults_to_a_file_beside_the_store_and_is_given_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "usher.yaml",
        &format!("{VALID}store: {{ sled: {{ path: ./db }} }}\n"),
    );
    let loaded = load_with_env(&path, &no_env).unwrap();
    let StoreConfig::Sled {
        path: sled_path, ..
    } = &loaded.config.store
    else {
        panic!("expected sled, got {:?}", loaded.config.store);
    };
    match &loaded.config.security.credentials_key {
        CredentialsKey::File(file) => assert_eq!(file, &sled_path.join("credentials.key")),
        other => panic!("expected the default key file, got {other:?}"),
    }
    // Loading a configuration never creates the key; the server does when it starts.
    assert!(!sled_path.join("credentials.key").exists());

    let d = only_error(&format!(
        "{VALID}security:\n  credentials_key_file: /etc/usher/key\n  credentials_key: c2hvcnQ=\n"
    ));
    assert_eq!(
        d.message,
        "security has both `credentials_key` and `credentials_key_file`; keep one"
    );
    assert_eq!(at(&d), (12, 3));
}

#[test]
fn every_problem_is_reported_in_one_load() {
    let text = "\
issuer: nope
apps:
  one:
    nmae: One
  two:
    name: Two
    client_id: two
    redirect_uris: [/relative]
    sign_in:
      steps:
        - [pasword]
";
    let d = errors(text);
    let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "issuer",
            "apps.one.nmae",
            "apps.two.redirect_uris[0]",
            "apps.two.sign_in.steps[0][0]"
        ]
    );
    assert_eq!(d[3].suggestion.as_deref(), Some("password"));
}

#[test]
fn pass_through_connection_before_mfa_warns_unless_a_script_guards_it() {
    let base = "\
issuer: http://localhost:9000
connections:
  github:
    kind: github
    client_id: id
    client_secret: s
    jit: { provision: false }
apps:
  shop:
    name: Shop
    client_id: shop
    redirect_uris: [http://localhost:3000/cb]
    sign_in:
      steps:
        - [password, github]
        - [totp, email_otp]
";
    let loaded = load_text(base).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0].message;
    assert!(
        w.starts_with("app `shop`: users who sign in with `github`"),
        "{w}"
    );
    assert!(w.contains("step 2 (totp | email_otp)"), "{w}");
    assert!(
        w.contains("enable `jit.provision` on connection `github`"),
        "{w}"
    );
    assert!(w.contains("sign_in.script"), "{w}");

    let provisioned = load_text(&base.replace("provision: false", "provision: true")).unwrap();
    assert!(provisioned.warnings.is_empty());

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "skip.rhai", "let first = execute_step(1);\n");
    let path = write(
        dir.path(),
        "usher.yaml",
        &format!("{base}      script: skip.rhai\n"),
    );
    let scripted = load_with_env(&path, &no_env).unwrap();
    assert!(scripted.warnings.is_empty());
    let script = scripted.config.apps["shop"]
        .sign_in
        .script
        .as_ref()
        .unwrap();
    assert_eq!(script.source, "let first = execute_step(1);\n");
}

#[test]
fn folder_config_merges_apps_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "usher.yaml",
        "issuer: https://id.example.com\nstore: { sled: { path: ./db } }\n",
    );
    write(
        dir.path(),
        "connections/google.yaml",
        "google:\n  kind: google\n  client_id: id\n  client_secret: s\n",
    );
    write(dir.path(), "connections/corp.yml", "corp:\n  kind: oidc\n  issuer: https://corp.example.com\n  client_id: id\n  client_secret: s\n");
    write(dir.path(), "apps/shop.yaml", "shop:\n  name: Shop\n  client_id: shop\n  redirect_uris: [https://s.example.com/cb]\n  sign_in:\n    steps: [[password, google, corp]]\n    script: ../policy.rhai\n");
    write(dir.path(), "policy.rhai", "execute_step(1);\n");
    let loaded = load_with_env(dir.path(), &no_env).unwrap();
    let config = &loaded.config;
    // The app in the files, and the built-in My Account app.
    assert_eq!(config.apps.len(), 2);
    assert_eq!(config.connections.len(), 2);
    assert_eq!(
        config.apps["shop"].sign_in.script.as_ref().unwrap().source,
        "execute_step(1);\n"
    );
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(
        config.store,
        StoreConfig::Sled {
            path: root.join("db"),
            allow_open_permissions: false,
        }
    );
    match &config.email {
        EmailConfig::Outbox(p) => assert_eq!(p, &root.join("db").join("outbox")),
        other => panic!("expected the default outbox, got {other:?}"),
    }
    assert_eq!(config.files.len(), 5);
    let google = &config.connections["google"];
    assert_eq!(
        google.issuer.as_ref().unwrap().as_str(),
        "https://accounts.google.com/"
    );
    assert_eq!(google.display_name, "Google");
}

#[test]
fn the_thrift_example_loads_without_environment() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/thrift");
    let loaded = load_with_env(&dir, &no_env).unwrap_or_else(|d| panic!("{d}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let config = &loaded.config;
    // The app in the files, and the built-in My Account app.
    assert_eq!(config.apps.len(), 2);
    assert_eq!(config.connections.len(), 2);
    let thrift = &config.apps["thrift"];
    assert!(!thrift.is_public());
    assert!(thrift
        .client_secret
        .as_ref()
        .unwrap()
        .matches("thrift-dev-secret"));
    assert!(thrift.sign_up);
    let script = thrift.sign_in.script.as_ref().unwrap();
    assert!(script.path.ends_with("policies/mfa-only-with-account.rhai"));
    assert!(script.source.contains("first.user.has_account"));
    assert!(config.connections["google"].jit.provision);
    assert!(!config.connections["github"].jit.provision);

    let text = summary(config);
    assert!(
        text.contains("thrift (Thrift) — confidential client, 1 redirect URI"),
        "{text}"
    );
    assert!(
        text.contains("1: password | google | github  2: totp | email_otp"),
        "{text}"
    );
    assert!(
        text.contains("github (github) — JIT provision off"),
        "{text}"
    );
    assert!(
        text.contains("google (google) — JIT provision on"),
        "{text}"
    );
}

#[test]
fn diagnostics_display_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "usher.yaml",
        &valid_with("    name: Shop", "    nmae: Shop"),
    );
    let err = load_with_env(&path, &no_env).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("error: "), "{shown}");
    assert!(
        shown.contains("usher.yaml:4:5: unknown key `nmae` in apps.shop"),
        "{shown}"
    );
    assert!(shown.ends_with("did you mean `name`?"), "{shown}");
}

#[test]
fn missing_path_and_folder_without_usher_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let Err(Diagnostics(d)) = load_with_env(&dir.path().join("nope.yaml"), &no_env) else {
        panic!("expected an error")
    };
    assert!(
        d[0].message.starts_with("cannot open configuration"),
        "{}",
        d[0].message
    );
    let Err(Diagnostics(d)) = load_with_env(dir.path(), &no_env) else {
        panic!("expected an error")
    };
    assert!(
        d[0].message.contains("has no usher.yaml"),
        "{}",
        d[0].message
    );
}

#[test]
fn docs_name_every_key_and_value() {
    let docs =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md")).unwrap();
    let vocabulary = usher::config::vocabulary();
    // Guard against the list itself going empty, which would make this test pass vacuously.
    for word in [
        "issuer",
        "password_policy",
        "trust_upstream_mfa",
        "force",
        "prompt_username",
        "EdDSA",
    ] {
        assert!(
            vocabulary.iter().any(|w| w == word),
            "vocabulary lacks {word}"
        );
    }
    let missing: Vec<String> = vocabulary
        .into_iter()
        // Nested keys may be documented in dotted form (`smtp.host`).
        .filter(|word| !docs.contains(&format!("`{word}`")) && !docs.contains(&format!(".{word}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md does not mention: {missing:?}"
    );
}

#[test]
fn usher_check_on_a_broken_config_exits_non_zero_with_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("usher.yaml");
    fs::write(
        &file,
        "\
issuer: https://id.example.com
apps:
  shop:
    name: Shop
    client_id: shop
    redirect_uris: [https://shop.example.com/cb]
    sign_in:
      steps:
        - [pasword]
",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:9:12:", file.display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(stderr.contains("did you mean `password`?"), "{stderr}");
    // The server refuses it the same way, each diagnostic saying `error:` once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {at}")), "{stderr}");
    assert!(!stderr.contains("error: error:"), "{stderr}");
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["serve", "check", "test", "demo", "users", "events", "bench"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_usher"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "usher {sub} --help: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: usher"), "usher {sub} --help: {text}");
    }
}

#[test]
fn a_postgres_store_is_checked_and_never_echoes_its_password() {
    let key = "security:\n  credentials_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    // A good block resolves to its settings, defaults filled in.
    let loaded = load_text(&format!(
        "{VALID}{key}store:\n  postgres:\n    url: postgres://usher:s3cret@db.internal:5432/usher\n    pool: {{ max_connections: 32 }}\n"
    ))
    .unwrap_or_else(|d| panic!("{d}"));
    let StoreConfig::Postgres(pg) = &loaded.config.store else {
        panic!("expected postgres, got {:?}", loaded.config.store);
    };
    assert_eq!(pg.max_connections, 32);
    assert_eq!(pg.schema, "public");
    assert_eq!(pg.acquire_timeout, std::time::Duration::from_secs(5));
    assert!(
        !pg.redacted_url().contains("s3cret"),
        "{}",
        pg.redacted_url()
    );

    // A malformed URL names its key and position, with the password hidden.
    let d = only_error(&format!(
        "{VALID}{key}store:\n  postgres:\n    url: postgres://usher:s3cret@db.internal:notaport/usher\n"
    ));
    assert_eq!(d.path, "store.postgres.url");
    assert!(
        d.message.contains("is not a PostgreSQL connection URL"),
        "{}",
        d.message
    );
    assert!(!d.to_string().contains("s3cret"), "{d}");
    assert_eq!(at(&d).0, 14);

    // Both backends at once, a bad schema, a pool out of range: each named.
    let d = errors(&format!(
        "{VALID}{key}store:\n  sled: {{ path: ./db }}\n  postgres:\n    url: postgres://db/usher\n    schema: Bad-Name\n    pool: {{ max_connections: 0 }}\n"
    ));
    let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "store.postgres",
            "store.postgres.schema",
            "store.postgres.pool.max_connections"
        ]
    );

    // Nodes sharing a database must share the key that seals TOTP secrets.
    let d = only_error(&format!(
        "{VALID}store:\n  postgres:\n    url: postgres://db/usher\n"
    ));
    assert_eq!(d.path, "security.credentials_key");
    assert!(
        d.message
            .contains("every node needs the same credentials key"),
        "{}",
        d.message
    );
}

#[test]
fn the_several_nodes_example_needs_its_database_and_key_from_the_environment() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nodes");
    // Without them it is refused, naming both variables' keys.
    let d = match load_with_env(&dir, &no_env) {
        Ok(_) => panic!("expected the example to need DATABASE_URL and USHER_CREDENTIALS_KEY"),
        Err(d) => d,
    };
    let text = d.to_string();
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(text.contains("USHER_CREDENTIALS_KEY"), "{text}");
    // With them it loads as a PostgreSQL store.
    let env = |name: &str| match name {
        "DATABASE_URL" => Some("postgres://usher:pw@db.internal/usher?sslmode=require".to_string()),
        "USHER_CREDENTIALS_KEY" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string()),
        _ => None,
    };
    let loaded = load_with_env(&dir, &env).unwrap_or_else(|d| panic!("{d}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let StoreConfig::Postgres(pg) = &loaded.config.store else {
        panic!("expected postgres, got {:?}", loaded.config.store);
    };
    assert_eq!(
        pg.url,
        "postgres://usher:pw@db.internal/usher?sslmode=require"
    );
    assert_eq!(pg.max_connections, 16);
    // A database across the network without TLS loads, with a warning naming it.
    let plain = |name: &str| match name {
        "DATABASE_URL" => Some("postgres://usher:pw@db.internal/usher".to_string()),
        other => env(other),
    };
    let loaded = load_with_env(&dir, &plain).unwrap_or_else(|d| panic!("{d}"));
    let said: Vec<String> = loaded.warnings.iter().map(|w| w.message.clone()).collect();
    assert!(
        said.iter()
            .any(|w| w.contains("db.internal without TLS") && w.contains("sslmode=require")),
        "{said:?}"
    );
    assert!(!said.iter().any(|w| w.contains("pw@")), "{said:?}");
}

#[test]
fn a_database_certificate_authority_needs_tls_and_a_pem_file() {
    let key = "security:\n  credentials_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
    // Given without TLS in the URL: refused, saying what to add.
    let d = only_error(&format!(
        "{VALID}{key}store:\n  postgres:\n    url: postgres://db.internal/usher\n    ca_file: ./ca.pem\n"
    ));
    assert_eq!(d.path, "store.postgres.ca_file");
    assert!(d.message.contains("sslmode=require"), "{}", d.message);
    // With TLS, a file that is missing or holds no certificate is named.
    let d = only_error(&format!(
        "{VALID}{key}store:\n  postgres:\n    url: postgres://db.internal/usher?sslmode=require\n    ca_file: ./no-such-ca.pem\n"
    ));
    assert_eq!(d.path, "store.postgres.ca_file");
    assert!(d.message.contains("no-such-ca.pem"), "{}", d.message);
    // A local database without TLS is no warning.
    let loaded = load_text(&format!(
        "{VALID}{key}store:\n  postgres:\n    url: postgres://usher@127.0.0.1:5432/usher\n"
    ))
    .unwrap_or_else(|d| panic!("{d}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_groups_claim_pattern_with_a_star_inside_is_refused_where_it_is_written() {
    let d = only_error(&valid_with(
        "    client_id: shop\n",
        "    client_id: shop\n    groups_claim: [admins, \"eng-*-leads\"]\n",
    ));
    assert_eq!(d.path, "apps.shop.groups_claim[1]");
    assert!(d.message.contains("only a trailing `*`"), "{}", d.message);
    assert_eq!(at(&d), (6, 28), "the quoted pattern itself");
    let loaded = load_text(&valid_with(
        "    client_id: shop\n",
        "    client_id: shop\n    groups_claim: [Admins, \"eng-*\"]\n    roles_claim: true\n",
    ))
    .unwrap();
    let app = &loaded.config.apps["shop"];
    assert!(app.sees_group("admins") && app.sees_group("ENG-web"));
    assert!(!app.sees_group("staff") && app.roles_claim);
}
