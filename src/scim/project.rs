//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9): the part of a
//! resource a client asked for. Names are case-insensitive and may be qualified with
//! their schema URN (`urn:…:User:name.givenName`), name a sub-attribute
//! (`emails.value`), or a whole extension by its URN. `id` and `schemas` are always
//! returned. Applied to every read: a single resource, each resource of a list, and
//! the resource a POST, PUT or PATCH answers with.

use serde_json::{Map, Value};

use super::ScimError;

/// The most attribute names one parameter may hold, and the longest name.
const NAMES_MAX: usize = 100;
const NAME_MAX: usize = 512;

/// One attribute a parameter names.
#[derive(Debug, Clone, PartialEq)]
struct Path {
    /// The extension URN (as the resource spells it) when the attribute is an
    /// extension's; `None` for the core schema.
    ext: Option<String>,
    /// `None`: the whole extension.
    attr: Option<String>,
    sub: Option<String>,
}

/// What to keep of each resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projection {
    include: Vec<Path>,
    exclude: Vec<Path>,
}

fn parse_list(
    text: Option<&str>,
    param: &str,
    core: &str,
    exts: &[&str],
) -> Result<Vec<Path>, ScimError> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() > NAMES_MAX || names.iter().any(|n| n.len() > NAME_MAX) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{param} holds at most {NAMES_MAX} names of at most {NAME_MAX} bytes"),
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let lower = name.to_lowercase();
        let core_prefix = format!("{}:", core.to_lowercase());
        let mut path = Path {
            ext: None,
            attr: None,
            sub: None,
        };
        let rest = if let Some(rest) = lower.strip_prefix(&core_prefix) {
            rest.to_string()
        } else if let Some(ext) = exts.iter().find(|e| {
            let e = e.to_lowercase();
            lower == e || lower.starts_with(&format!("{e}:"))
        }) {
            path.ext = Some(ext.to_string());
            match lower.get(ext.len() + 1..) {
                Some(rest) => rest.to_string(),
                None => {
                    out.push(path);
                    continue;
                }
            }
        } else if lower.starts_with("urn:") {
            // Another schema's attribute: this server shows none.
            continue;
        } else {
            lower
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a.to_string(), Some(s.to_string())),
            None => (rest, None),
        };
        path.attr = Some(attr);
        path.sub = sub;
        out.push(path);
    }
    Ok(out)
}

impl Projection {
    /// The parameters of a request, for resources of schema `core` with extensions
    /// `exts`; `None` when neither is given.
    pub fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
        core: &str,
        exts: &[&str],
    ) -> Result<Option<Projection>, ScimError> {
        let p = Projection {
            include: parse_list(attributes, "attributes", core, exts)?,
            exclude: parse_list(excluded, "excludedAttributes", core, exts)?,
        };
        let asked = attributes.is_some_and(|a| !a.trim().is_empty())
            || excluded.is_some_and(|e| !e.trim().is_empty());
        Ok(asked.then_some(p))
    }

    /// Reduce `resource` (an object) to what was asked for.
    pub fn apply(&self, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for always in ["schemas", "id"] {
                if let Some(v) = obj.get(always) {
                    kept.insert(always.to_string(), v.clone());
                }
            }
            for p in &self.include {
                copy(obj, &mut kept, p);
            }
            *obj = kept;
        }
        for p in &self.exclude {
            remove(obj, p);
        }
        // `schemas` names only the extensions still shown.
        let shown: Vec<String> = obj.keys().cloned().collect();
        if let Some(Value::Array(schemas)) = obj.get_mut("schemas") {
            schemas.retain(|s| {
                s.as_str()
                    .is_some_and(|s| !s.contains(":extension:") || shown.iter().any(|k| k == s))
            });
        }
    }
}

fn key_of(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Copy `p` from `from` into `to`.
fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, p: &Path) {
    let (src, dst) = match &p.ext {
        Some(ext) => {
            let Some(Value::Object(src)) = from.get(ext) else {
                return;
            };
            let Some(attr) = &p.attr else {
                to.insert(ext.clone(), Value::Object(src.clone()));
                return;
            };
            let dst = to
                .entry(ext.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(dst) = dst.as_object_mut() else {
                return;
            };
            copy_attr(src, dst, attr, p.sub.as_deref());
            return;
        }
        None => (from, to),
    };
    if let Some(attr) = &p.attr {
        copy_attr(src, dst, attr, p.sub.as_deref());
    }
}

fn copy_attr(
    src: &Map<String, Value>,
    dst: &mut Map<String, Value>,
    attr: &str,
    sub: Option<&str>,
) {
    let Some(key) = key_of(src, attr) else { return };
    let value = &src[&key];
    let Some(sub) = sub else {
        dst.insert(key, value.clone());
        return;
    };
    let pick = |o: &Map<String, Value>| -> Map<String, Value> {
        key_of(o, sub)
            .map(|k| {
                let mut m = Map::new();
                m.insert(k.clone(), o[&k].clone());
                m
            })
            .unwrap_or_default()
    };
    match value {
        Value::Object(o) => {
            let entry = dst.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(e) = entry {
                e.extend(pick(o));
            }
        }
        Value::Array(items) => {
            let existing = dst.remove(&key);
            let mut merged: Vec<Value> = items
                .iter()
                .map(|i| match i {
                    Value::Object(o) => Value::Object(pick(o)),
                    other => other.clone(),
                })
                .collect();
            // Two sub-attributes of one multi-valued attribute (`emails.value,
            // emails.primary`) merge entry by entry.
            if let Some(Value::Array(before)) = existing {
                for (m, b) in merged.iter_mut().zip(before) {
                    if let (Value::Object(m), Value::Object(b)) = (m, b) {
                        m.extend(b);
                    }
                }
            }
            merged.retain(|v| !matches!(v, Value::Object(o) if o.is_empty()));
            if !merged.is_empty() {
                dst.insert(key, Value::Array(merged));
            }
        }
        _ => {}
    }
}

/// Remove `p` from `obj`; `id` and `schemas` stay.
fn remove(obj: &mut Map<String, Value>, p: &Path) {
    let target = match &p.ext {
        Some(ext) => match &p.attr {
            None => {
                obj.remove(ext);
                return;
            }
            Some(_) => match obj.get_mut(ext) {
                Some(Value::Object(o)) => o,
                _ => return,
            },
        },
        None => obj,
    };
    let Some(attr) = &p.attr else { return };
    if p.ext.is_none() && (attr == "id" || attr == "schemas") {
        return;
    }
    let Some(key) = key_of(target, attr) else {
        return;
    };
    match &p.sub {
        None => {
            target.remove(&key);
        }
        Some(sub) => {
            match target.get_mut(&key) {
                Some(Value::Object(o)) => {
                    if let Some(k) = key_of(o, sub) {
                        o.remove(&k);
                    }
                }
                Some(Value::Array(items)) => {
                    for i in items.iter_mut() {
                        if let Value::Object(o) = i {
                            if let Some(k) = key_of(o, sub) {
                                o.remove(&k);
                            }
                        }
                    }
                    items.retain(|v| !matches!(v, Value::Object(o) if o.is_empty()));
                }
                _ => {}
            }
            if matches!(target.get(&key), Some(Value::Object(o)) if o.is_empty())
                || matches!(target.get(&key), Some(Value::Array(a)) if a.is_empty())
            {
                target.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::{USER_SCHEMA, USHER_USER_SCHEMA};
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, USHER_USER_SCHEMA],
            "id": "u_1",
            "userName": "ada",
            "name": { "givenName": "Ada", "familyName": "Lovelace" },
            "emails": [{ "value": "ada@example.com", "primary": true }],
            USHER_USER_SCHEMA: { "totp": true, "hasPassword": false },
            "meta": { "resourceType": "User" },
        })
    }

    fn project(attrs: Option<&str>, excluded: Option<&str>) -> Value {
        let p = Projection::parse(attrs, excluded, USER_SCHEMA, &[USHER_USER_SCHEMA])
            .unwrap()
            .unwrap();
        let mut u = user();
        p.apply(&mut u);
        u
    }

    #[test]
    fn attributes_keep_what_is_named_and_id_and_schemas() {
        let u = project(Some("USERNAME,name.givenName,emails.value"), None);
        assert_eq!(
            u,
            json!({
                "schemas": [USER_SCHEMA],
                "id": "u_1",
                "userName": "ada",
                "name": { "givenName": "Ada" },
                "emails": [{ "value": "ada@example.com" }],
            })
        );
        let u = project(
            Some(&format!("{USHER_USER_SCHEMA}:totp,{USER_SCHEMA}:userName")),
            None,
        );
        assert_eq!(u[USHER_USER_SCHEMA], json!({ "totp": true }));
        assert_eq!(u["schemas"], json!([USER_SCHEMA, USHER_USER_SCHEMA]));
        assert_eq!(u["userName"], "ada");
    }

    #[test]
    fn excluded_attributes_go_but_id_stays() {
        let u = project(
            None,
            Some(&format!("id,emails,name.familyName,{USHER_USER_SCHEMA}")),
        );
        assert_eq!(u["id"], "u_1");
        assert!(u.get("emails").is_none());
        assert_eq!(u["name"], json!({ "givenName": "Ada" }));
        assert!(u.get(USHER_USER_SCHEMA).is_none());
        assert_eq!(u["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn too_many_names_are_refused() {
        let many = vec!["a"; NAMES_MAX + 1].join(",");
        let e = Projection::parse(Some(&many), None, USER_SCHEMA, &[]).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidValue"));
    }
}
