//! Properties of the loader over generated text: whatever a configuration file holds —
//! half-written YAML, anchors and aliases, tabs, flow collections left open, nesting far
//! past any real schema, `${VAR}` references — loading it answers with a config or
//! with diagnostics that say something, and never panics.

use proptest::prelude::*;

use super::load_with_env;
use crate::limits::CONFIG_DEPTH_MAX;

/// Load `text` as `usher.yaml`; the diagnostics' text, or `None` when it loaded.
fn load_text(text: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.yaml");
    std::fs::write(&path, text).unwrap();
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    match load_with_env(&path, &env) {
        Ok(_) => None,
        Err(d) => {
            assert!(!d.0.is_empty(), "an error names at least one problem");
            Some(d.to_string())
        }
    }
}

/// Text built from YAML's own punctuation and Usher's own keys, so generated files get
/// past the first line often enough to reach the later stages.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "issuer: http://localhost:9000\n",
            "apps:\n",
            "  a:\n",
            "    name: A\n",
            "    client_id: a\n",
            "    redirect_uris: [http://localhost:1/cb]\n",
            "    sign_in:\n",
            "      steps:\n",
            "        - [password]\n",
            "connections:\n",
            "security:\n",
            "  flow_ttl: ",
            "my_account:\n",
            "  editable: [name]\n",
            ": ",
            "- ",
            "\n",
            "  ",
            "\t",
            "[",
            "]",
            "{",
            "}",
            ",",
            "\"",
            "'",
            "#",
            "&anchor ",
            "*anchor",
            "!!str ",
            "? ",
            "---\n",
            "${SET}",
            "${UNSET}",
            "${",
            "|\n",
            "<<: *anchor\n",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
        "[0-9]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_yamlish_text_loads_or_is_explained(text in yamlish()) {
        if let Some(diagnostics) = load_text(&text) {
            prop_assert!(!diagnostics.trim().is_empty());
        }
    }

    #[test]
    fn any_text_at_all_loads_or_is_explained(text in any::<String>()) {
        if let Some(diagnostics) = load_text(&text) {
            prop_assert!(!diagnostics.trim().is_empty());
        }
    }
}

#[test]
fn nesting_past_the_cap_is_a_diagnostic_not_a_crash() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let text = format!("issuer: {}x{}\n", open.repeat(10_000), close.repeat(10_000));
        // yaml-rust2 stops flow collections at its own recursion limit, before the
        // walk's cap; either way the answer is a located diagnostic.
        let d = load_text(&text).expect("refused");
        assert!(
            d.contains("recursion limit") || d.contains("deeper than"),
            "{d}"
        );
        assert!(d.contains("usher.yaml:1:"), "{d}");
    }
    // A block mapping nested deep, one level a line.
    let text: String = (0..200)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect();
    let d = load_text(&text).expect("refused");
    assert!(
        d.contains(&format!("deeper than {CONFIG_DEPTH_MAX} levels")),
        "{d}"
    );
}
