//! The SCIM `User` resource: an account as SCIM shows it, the writable part of it
//! ([`Draft`]) that POST, PUT and PATCH edit, the attribute paths they may name, and
//! the values a filter compares.
//!
//! Mapping: `userName` ↔ username; `displayName` and `name.formatted` ↔ the account's
//! name; `name.givenName`/`familyName`; the primary of `emails` ↔ the email address;
//! the primary of `photos` ↔ the picture; `roles[].value` ↔ roles; `active` ↔ not
//! disabled; `password` is write-only. The Usher extension adds the linked federated
//! `identities` (read-only), `emailVerified` and `totp` (read-only).

use serde_json::{json, Map, Value};

use super::{ScimError, USER_SCHEMA, USHER_USER_SCHEMA};
use crate::store::query::UserAttr;
use crate::store::{Membership, Store, StoreResult, User};
use crate::timefmt::rfc3339;

/// An account with everything its SCIM representation shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub user: User,
    pub external_id: Option<String>,
    /// Linked (connection, upstream subject) pairs.
    pub identities: Vec<(String, String)>,
    /// An authenticator app is enrolled.
    pub totp: bool,
    /// The groups the account is in (read-only here; `/Groups` changes them).
    pub groups: Vec<Membership>,
}

impl Record {
    pub async fn load(store: &dyn Store, id: &str) -> StoreResult<Option<Record>> {
        match store.user(id).await? {
            Some(user) => Ok(Self::page(store, vec![user]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The records of a page of accounts, their extras read in one store call
    /// (`UserQueryStore::user_extras`) whatever the page's size.
    pub async fn page(store: &dyn Store, users: Vec<User>) -> StoreResult<Vec<Record>> {
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let mut extras = store.user_extras(&ids).await?;
        Ok(users
            .into_iter()
            .map(|user| {
                let x = extras.remove(&user.id).unwrap_or_default();
                Record {
                    external_id: x.external_id,
                    identities: x.identities,
                    totp: x.totp,
                    groups: x.groups,
                    user,
                }
            })
            .collect())
    }

    /// The resource without `meta`: what the version is computed from.
    fn core(&self, base: &str) -> Value {
        let u = &self.user;
        let mut out = json!({
            "schemas": [USER_SCHEMA, USHER_USER_SCHEMA],
            "id": u.id,
            "userName": u.username,
            "active": !u.disabled,
        });
        let o = out.as_object_mut();
        let Some(o) = o else { return out };
        if let Some(x) = &self.external_id {
            o.insert("externalId".into(), json!(x));
        }
        let mut name = Map::new();
        if let Some(n) = &u.name {
            o.insert("displayName".into(), json!(n));
            name.insert("formatted".into(), json!(n));
        }
        if let Some(g) = &u.given_name {
            name.insert("givenName".into(), json!(g));
        }
        if let Some(f) = &u.family_name {
            name.insert("familyName".into(), json!(f));
        }
        if !name.is_empty() {
            o.insert("name".into(), Value::Object(name));
        }
        if let Some(e) = &u.email {
            o.insert("emails".into(), json!([{ "value": e, "primary": true }]));
        }
        if let Some(p) = &u.picture {
            o.insert(
                "photos".into(),
                json!([{ "value": p, "type": "photo", "primary": true }]),
            );
        }
        if !u.roles.is_empty() {
            let roles: Vec<Value> = u.roles.iter().map(|r| json!({ "value": r })).collect();
            o.insert("roles".into(), Value::Array(roles));
        }
        if !self.groups.is_empty() {
            let groups: Vec<Value> = self
                .groups
                .iter()
                .map(|g| {
                    json!({
                        "value": g.group_id,
                        "$ref": format!("{base}/Groups/{}", g.group_id),
                        "display": g.display_name,
                        "type": "direct",
                    })
                })
                .collect();
            o.insert("groups".into(), Value::Array(groups));
        }
        let identities: Vec<Value> = self
            .identities
            .iter()
            .map(|(c, s)| json!({ "connection": c, "subject": s }))
            .collect();
        o.insert(
            USHER_USER_SCHEMA.into(),
            json!({
                "identities": identities,
                "emailVerified": u.email_verified,
                "hasPassword": u.password_hash.is_some(),
                "totp": self.totp,
            }),
        );
        out
    }

    /// `meta.version`: a weak ETag over everything the resource shows.
    pub fn version(&self) -> String {
        // The base URL is the same for every request, so it can be left out.
        let bytes = serde_json::to_vec(&self.core("")).unwrap_or_default();
        format!("W/\"{}\"", hex::encode(&crate::crypto::sha256(&bytes)[..8]))
    }

    /// The full resource; `base` is the `/scim/v2` URL, for `meta.location`.
    pub fn to_json(&self, base: &str) -> Value {
        let mut out = self.core(base);
        out["meta"] = json!({
            "resourceType": "User",
            "created": rfc3339(self.user.created_at),
            "lastModified": rfc3339(self.user.updated_at),
            "location": format!("{base}/Users/{}", self.user.id),
            "version": self.version(),
        });
        out
    }
}

/// What a filter's attribute `path` (lower-cased) names in the store; `None` for an
/// attribute filters cannot name. Whether it compares case-exactly is the store's
/// `UserAttr::case_exact`.
pub fn filter_attr(path: &str) -> Option<UserAttr> {
    Some(match strip_schema(path)?.as_str() {
        "id" => UserAttr::Id,
        "externalid" => UserAttr::ExternalId,
        "username" => UserAttr::Username,
        "displayname" | "name.formatted" => UserAttr::Name,
        "name.givenname" => UserAttr::GivenName,
        "name.familyname" => UserAttr::FamilyName,
        "emails" | "emails.value" => UserAttr::Email,
        "photos" | "photos.value" => UserAttr::Picture,
        "roles" | "roles.value" => UserAttr::Role,
        "active" => UserAttr::Active,
        "meta.created" => UserAttr::Created,
        "meta.lastmodified" => UserAttr::Updated,
        "ext:identities.connection" => UserAttr::IdentityConnection,
        "ext:identities.subject" => UserAttr::IdentitySubject,
        "ext:emailverified" => UserAttr::EmailVerified,
        "ext:totp" => UserAttr::Totp,
        _ => return None,
    })
}

/// A lower-cased attribute path with its schema URN reduced: the core User schema is
/// dropped, Usher's extension becomes `ext:`, and `None` means another extension's
/// attribute (which Usher does not keep).
pub fn strip_schema(path: &str) -> Option<String> {
    let p = path.to_lowercase();
    let core = format!("{}:", USER_SCHEMA.to_lowercase());
    let ext = USHER_USER_SCHEMA.to_lowercase();
    if let Some(rest) = p.strip_prefix(&core) {
        return Some(rest.to_string());
    }
    if let Some(rest) = p.strip_prefix(&ext) {
        return Some(match rest.strip_prefix(':') {
            Some(attr) => format!("ext:{attr}"),
            None => "ext".to_string(),
        });
    }
    if p.starts_with("urn:") {
        return None;
    }
    Some(p)
}

/// The writable part of a user, as POST, PUT and PATCH edit it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    pub user_name: String,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub picture: Option<String>,
    pub roles: Vec<String>,
    pub active: bool,
    /// A new password to set (write-only; never read back).
    pub password: Option<String>,
}

fn string(value: &Value, what: &str) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_string())),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{what} must be a string"),
        )),
    }
}

fn boolean(value: &Value, what: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(b) => Ok(*b),
        // Some provisioning clients send booleans as strings ("False").
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{what} must be true or false"),
        )),
    }
}

/// The value of a multi-valued attribute (`emails`, `photos`) to keep: the primary
/// entry, else the first. Accepts a list of `{value, primary}`, one such object, or a
/// bare string.
fn primary_value(value: &Value, what: &str) -> Result<Option<String>, ScimError> {
    let entries: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => return Ok(None),
        other => vec![other],
    };
    let pick = entries
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| entries.first());
    match pick {
        None => Ok(None),
        Some(Value::String(s)) => string(&Value::String(s.clone()), what),
        Some(entry) => string(entry.get("value").unwrap_or(&Value::Null), what),
    }
}

fn roles_of(value: &Value) -> Result<Vec<String>, ScimError> {
    let entries: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => return Ok(Vec::new()),
        other => vec![other],
    };
    let mut out = Vec::new();
    for e in entries {
        let v = match e {
            Value::String(s) => Some(s.clone()),
            other => string(other.get("value").unwrap_or(&Value::Null), "roles.value")?,
        };
        if let Some(v) = v.filter(|v| !out.contains(v)) {
            out.push(v);
        }
    }
    Ok(out)
}

/// Look a key up case-insensitively (SCIM attribute names are).
pub fn get_ci<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// How [`Draft::set`] treats a path it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// A whole resource or a PATCH value object: extra attributes are ignored.
    Ignore,
    /// A PATCH path: naming an attribute Usher does not have is an error.
    Refuse,
}

impl Draft {
    pub fn from_record(r: &Record) -> Draft {
        let u = &r.user;
        Draft {
            user_name: u.username.clone(),
            external_id: r.external_id.clone(),
            name: u.name.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            picture: u.picture.clone(),
            roles: u.roles.clone(),
            active: !u.disabled,
            password: None,
        }
    }

    /// A whole resource (POST, PUT): attributes it leaves out are cleared.
    pub fn from_json(body: &Value) -> Result<Draft, ScimError> {
        let obj = body.as_object().ok_or_else(|| {
            ScimError::bad(
                "invalidSyntax",
                "the body must be a JSON object (a User resource)",
            )
        })?;
        let mut d = Draft {
            active: true,
            ..Draft::default()
        };
        // `displayName` wins over `name.formatted`, so it is applied last.
        for (key, value) in obj
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("displayName"))
        {
            d.set(key, value, Unknown::Ignore)?;
        }
        if let Some(v) = get_ci(obj, "displayName") {
            d.set("displayName", v, Unknown::Ignore)?;
        }
        Ok(d)
    }

    /// Set the attribute at `path` (add or replace).
    pub fn set(&mut self, path: &str, value: &Value, unknown: Unknown) -> Result<(), ScimError> {
        let Some(p) = strip_schema(path) else {
            return Ok(()); // another extension's attribute: not kept
        };
        // `emails[type eq "work"].value` and the like name the primary value.
        let p = match (p.find('['), p.find(']')) {
            (Some(open), Some(close)) if close > open => {
                format!("{}{}", &p[..open], &p[close + 1..])
            }
            _ => p,
        };
        match p.as_str() {
            "username" => {
                self.user_name = string(value, "userName")?.ok_or_else(|| {
                    ScimError::bad("invalidValue", "userName is required and cannot be empty")
                })?
            }
            "externalid" => self.external_id = string(value, "externalId")?,
            "displayname" | "name.formatted" => self.name = string(value, "displayName")?,
            "name.givenname" => self.given_name = string(value, "name.givenName")?,
            "name.familyname" => self.family_name = string(value, "name.familyName")?,
            "name" => match value {
                Value::Object(o) => {
                    for (k, v) in o {
                        self.set(&format!("name.{k}"), v, unknown)?;
                    }
                }
                Value::Null => {
                    self.given_name = None;
                    self.family_name = None;
                }
                _ => return Err(ScimError::bad("invalidValue", "name must be an object")),
            },
            "emails" => self.email = primary_value(value, "emails.value")?,
            "emails.value" => self.email = string(value, "emails.value")?,
            "photos" => self.picture = primary_value(value, "photos.value")?,
            "photos.value" => self.picture = string(value, "photos.value")?,
            "roles" => self.roles = roles_of(value)?,
            "active" => self.active = boolean(value, "active")?,
            "password" => {
                self.password = match value {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    _ => {
                        return Err(ScimError::bad(
                            "invalidValue",
                            "password must be a non-empty string",
                        ))
                    }
                }
            }
            "ext" => {
                if let Value::Object(o) = value {
                    for (k, v) in o {
                        self.set(&format!("{USHER_USER_SCHEMA}:{k}"), v, Unknown::Ignore)?;
                    }
                }
            }
            "ext:emailverified" => self.email_verified = boolean(value, "emailVerified")?,
            "schemas" | "id" | "meta" | "groups" | "ext:identities" | "ext:haspassword"
            | "ext:totp" => {
                if unknown == Unknown::Refuse {
                    return Err(ScimError::bad("mutability", format!("{path} is read-only")));
                }
            }
            _ => {
                if unknown == Unknown::Refuse {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("`{path}` is not an attribute Usher keeps"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Add values to a multi-valued attribute (PATCH `add` on `roles`); other attributes
    /// are simply set.
    pub fn add(&mut self, path: &str, value: &Value) -> Result<(), ScimError> {
        if strip_schema(path).as_deref() == Some("emails") && self.email.is_some() {
            // Usher keeps one address, the one the account signs in and is mailed
            // with. An added address that does not say it is primary would have to
            // become primary to be kept: refused rather than silently promoted.
            let entries: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let primary = entries.iter().any(|e| {
                e.get("primary")
                    .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
            });
            if !primary {
                return Err(ScimError::bad(
                    "invalidValue",
                    "Usher keeps one email address per account, its primary one: replace `emails`, or add the new address with \"primary\": true",
                ));
            }
        }
        if strip_schema(path).as_deref() == Some("roles") {
            for r in roles_of(value)? {
                if !self.roles.contains(&r) {
                    self.roles.push(r);
                }
            }
            return Ok(());
        }
        self.set(path, value, Unknown::Refuse)
    }

    /// Remove the attribute at `path` (PATCH `remove`). `roles[value eq "x"]` removes
    /// one role.
    pub fn remove(&mut self, path: &str) -> Result<(), ScimError> {
        let Some(p) = strip_schema(path) else {
            return Ok(());
        };
        if let Some(rest) = p.strip_prefix("roles[") {
            let role = rest
                .split('"')
                .nth(1)
                .filter(|_| rest.starts_with("value eq"))
                .ok_or_else(|| {
                    ScimError::bad(
                        "invalidFilter",
                        "remove one role with roles[value eq \"name\"]",
                    )
                })?;
            // The path was lower-cased; roles compare case-insensitively here.
            self.roles.retain(|r| !r.eq_ignore_ascii_case(role));
            return Ok(());
        }
        let base = p.split('[').next().unwrap_or(&p).to_string();
        match base.as_str() {
            "username" | "active" | "password" => Err(ScimError::bad(
                "mutability",
                format!("{path} cannot be removed; replace it instead"),
            )),
            _ => self.set(path, &Value::Null, Unknown::Refuse),
        }
    }
}
