//! PATCH (RFC 7644 §3.5.2): applying `add`, `replace` and `remove` operations to a
//! [`Draft`]. The operations apply in order to a copy; the caller writes the result
//! only when every one of them succeeded, so a failed PATCH changes nothing.
//!
//! A request holds at most [`SCIM_PATCH_OPS_MAX`] operations. Too many is answered
//! `invalidValue`: RFC 7644's `tooMany` is defined for filters whose results are too
//! many (GET and search only), while `invalidValue` applies to PATCH and says what is
//! wrong — the `Operations` value is not one the server accepts.

use serde_json::Value;

use super::resource::{get_ci, Draft, Unknown};
use super::{ScimError, PATCH_OP};
use crate::limits::SCIM_PATCH_OPS_MAX;

/// Apply a PatchOp request body to `draft`.
pub fn apply(draft: &mut Draft, body: &Value) -> Result<(), ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body must be a PatchOp object"))?;
    let schemas_ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_OP)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must contain {PATCH_OP}"),
        ));
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a non-empty list"))?;
    if ops.len() > SCIM_PATCH_OPS_MAX {
        return Err(ScimError::bad(
            "invalidValue",
            format!(
                "a PATCH request holds at most {SCIM_PATCH_OPS_MAX} operations; this one has {}",
                ops.len()
            ),
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        let op = op.as_object().ok_or_else(|| {
            ScimError::bad(
                "invalidSyntax",
                format!("Operations[{i}] must be an object"),
            )
        })?;
        let name = get_ci(op, "op")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .unwrap_or_default();
        let path = get_ci(op, "path")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty());
        let value = get_ci(op, "value");
        match (name.as_str(), path, value) {
            ("remove", Some(path), _) => draft.remove(path)?,
            ("remove", None, _) => {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("Operations[{i}]: remove needs a path"),
                ))
            }
            ("add" | "replace", _, None) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("Operations[{i}]: {name} needs a value"),
                ))
            }
            ("add", Some(path), Some(v)) => draft.add(path, v)?,
            ("replace", Some(path), Some(v)) => draft.set(path, v, Unknown::Refuse)?,
            ("add" | "replace", None, Some(Value::Object(attrs))) => {
                // No path: the value holds attributes to set, as in a resource.
                for (k, v) in attrs {
                    if name == "add"
                        && (k.eq_ignore_ascii_case("roles") || k.eq_ignore_ascii_case("emails"))
                    {
                        draft.add(k, v)?;
                    } else {
                        draft.set(k, v, Unknown::Ignore)?;
                    }
                }
            }
            ("add" | "replace", None, Some(_)) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "Operations[{i}]: without a path the value must be an object of attributes"
                    ),
                ))
            }
            (other, _, _) => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("Operations[{i}]: unknown op `{other}`; use add, replace or remove"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Draft {
        Draft {
            user_name: "ada".into(),
            email: Some("ada@example.com".into()),
            given_name: Some("Ada".into()),
            roles: vec!["staff".into()],
            active: true,
            ..Draft::default()
        }
    }

    fn patch(ops: Value) -> Result<Draft, ScimError> {
        let mut d = base();
        apply(&mut d, &json!({ "schemas": [PATCH_OP], "Operations": ops })).map(|_| d)
    }

    #[test]
    fn replace_add_and_remove_by_path() {
        let d = patch(json!([
            { "op": "replace", "path": "active", "value": false },
            { "op": "Replace", "path": "name.familyName", "value": "Lovelace" },
            { "op": "add", "path": "roles", "value": [{ "value": "admin" }] },
            { "op": "remove", "path": "name.givenName" },
            { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "ada@work.example" },
            { "op": "add", "path": "externalId", "value": "HR-1" },
        ]))
        .unwrap();
        assert!(!d.active);
        assert_eq!(d.family_name.as_deref(), Some("Lovelace"));
        assert_eq!(d.given_name, None);
        assert_eq!(d.roles, ["staff", "admin"]);
        assert_eq!(d.email.as_deref(), Some("ada@work.example"));
        assert_eq!(d.external_id.as_deref(), Some("HR-1"));
    }

    #[test]
    fn a_value_object_without_a_path_and_string_booleans() {
        let d = patch(json!([
            { "op": "replace", "value": { "active": "False", "displayName": "Ada L.",
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "R&D" } } },
            { "op": "remove", "path": "roles[value eq \"staff\"]" },
        ]))
        .unwrap();
        assert!(!d.active);
        assert_eq!(d.name.as_deref(), Some("Ada L."));
        assert!(d.roles.is_empty());
    }

    #[test]
    fn bad_operations_are_refused_with_their_scim_type() {
        for (ops, scim_type) in [
            (
                json!([{ "op": "remove", "path": "userName" }]),
                "mutability",
            ),
            (
                json!([{ "op": "replace", "path": "nickName", "value": "x" }]),
                "invalidPath",
            ),
            (
                json!([{ "op": "replace", "path": "id", "value": "x" }]),
                "mutability",
            ),
            (
                json!([{ "op": "replace", "path": "active", "value": 3 }]),
                "invalidValue",
            ),
            (json!([{ "op": "remove" }]), "noTarget"),
            (json!([{ "op": "move", "path": "active" }]), "invalidSyntax"),
            (json!([]), "invalidSyntax"),
            (
                json!(vec![
                    json!({ "op": "replace", "path": "active", "value": true });
                    101
                ]),
                "invalidValue",
            ),
        ] {
            let e = patch(ops.clone()).expect_err(&ops.to_string());
            assert_eq!(e.scim_type, Some(scim_type), "{ops}: {e}");
            assert_eq!(e.status, 400);
        }
        let mut d = base();
        let e = apply(&mut d, &json!({ "Operations": [] })).unwrap_err();
        assert!(e.detail.contains("schemas"), "{e}");
    }

    #[test]
    fn a_hundred_operations_are_still_one_request() {
        let ops = vec![json!({ "op": "replace", "path": "active", "value": false }); 100];
        assert!(!patch(json!(ops)).unwrap().active);
    }

    /// Properties: any op, path and value is applied or refused with a 400 and a
    /// `scimType`, never a panic.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn path_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("roles[".to_string()),
                Just("value eq ".to_string()),
                Just("\"".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just(".".to_string()),
                Just(":".to_string()),
                Just("emails".to_string()),
                Just("name".to_string()),
                Just("userName".to_string()),
                Just(crate::scim::USER_SCHEMA.to_string()),
                Just(crate::scim::USHER_USER_SCHEMA.to_string()),
                "[a-zA-Z]{1,8}",
                any::<char>().prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                ".{0,20}".prop_map(Value::String),
                Just(json!("False")),
            ];
            leaf.prop_recursive(4, 32, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("value".to_string()),
                            Just("primary".to_string()),
                            Just("givenName".to_string()),
                            "[a-zA-Z]{1,8}",
                        ],
                        inner,
                        0..4,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_operation_is_applied_or_refused_cleanly(
                op in prop_oneof![Just("add"), Just("replace"), Just("remove"), Just("Replace"), Just("x")],
                path in proptest::option::of(path_text()),
                value in proptest::option::of(value()),
            ) {
                let mut one = serde_json::Map::new();
                one.insert("op".into(), json!(op));
                if let Some(p) = path {
                    one.insert("path".into(), json!(p));
                }
                if let Some(v) = value {
                    one.insert("value".into(), v);
                }
                let mut d = base();
                let body = json!({ "schemas": [PATCH_OP], "Operations": [Value::Object(one)] });
                if let Err(e) = apply(&mut d, &body) {
                    prop_assert_eq!(e.status, 400);
                    prop_assert!(e.scim_type.is_some());
                }
            }
        }
    }
}
