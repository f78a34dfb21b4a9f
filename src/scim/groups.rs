//! The SCIM `Group` resource and its operations: list (filter, paging), get, create,
//! replace, PATCH (members added, removed by value filter or by value list, replaced),
//! delete, with ETags.
//!
//! Members are accounts only: groups do not nest, so what a token or a script asks
//! ("is this account in `admins`") is one index lookup. A member of `type` `Group` is
//! refused with `invalidValue`. Usher's group extension adds `roles`, which every
//! member holds through the group.
//!
//! Every write is a compare-and-swap on the group's version (`GroupStore::swap_group`):
//! a PATCH reads the group, applies its operations, checks the caps on the result and
//! swaps; when another write came first it starts again from what that write left.
//! So fifty parallel PATCHes adding members each land, and the member cap holds
//! whatever arrives at once. An `If-Match` names one version: a PATCH that carries one
//! is not retried but answered 412 when the group moved on.

use serde_json::{json, Value};

use super::filter::{self, Filter, Val};
use super::resource::get_ci;
use super::users::{number, page_size};
use super::{Admin, Answer, ScimError, GROUP_SCHEMA, LIST_RESPONSE, PATCH_OP, USHER_GROUP_SCHEMA};
use crate::audit::{self, kind};
use crate::limits::{self, GROUP_MEMBERS_MAX, SCIM_MEMBERS_PER_REQUEST_MAX, SCIM_PATCH_OPS_MAX};
use crate::store::groups::GroupAttr;
use crate::store::{Group, GroupQuery, GroupWrite, StoreError, Versioned};
use crate::timefmt::rfc3339;

/// How often a PATCH without `If-Match` starts again after losing a race, before it
/// gives up with 409: far more than fifty parallel writers of one group need.
const SWAP_ATTEMPTS: usize = 200;

/// The ETag of a group at a version.
fn etag(g: &Versioned<Group>) -> String {
    let tag = crate::crypto::sha256(format!("{}:{}", g.value.id, g.version).as_bytes());
    format!("W/\"{}\"", hex::encode(&tag[..8]))
}

/// The group as SCIM shows it.
pub fn to_json(g: &Versioned<Group>, base: &str) -> Value {
    let group = &g.value;
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| json!({ "value": m, "$ref": format!("{base}/Users/{m}"), "type": "User" }))
        .collect();
    let roles: Vec<Value> = group.roles.iter().map(|r| json!({ "value": r })).collect();
    let mut out = json!({
        "schemas": [GROUP_SCHEMA, USHER_GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "members": members,
        USHER_GROUP_SCHEMA: { "roles": roles },
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(group.created_at),
            "lastModified": rfc3339(group.updated_at),
            "location": format!("{base}/Groups/{}", group.id),
            "version": etag(g),
        },
    });
    if let Some(x) = &group.external_id {
        out["externalId"] = json!(x);
    }
    out
}

/// A group attribute path with its attribute part lower-cased (a value filter after
/// `[` keeps its case: member ids are case-exact), the core Group schema dropped and
/// Usher's group extension written `ext:`; `None` for another extension's attribute.
fn strip(path: &str) -> Option<String> {
    let path = path.trim();
    let cut = path.find('[').unwrap_or(path.len());
    let p = format!("{}{}", path[..cut].to_lowercase(), &path[cut..]);
    let core = format!("{}:", GROUP_SCHEMA.to_lowercase());
    let ext = USHER_GROUP_SCHEMA.to_lowercase();
    if let Some(rest) = p.strip_prefix(&core) {
        return Some(rest.to_string());
    }
    if let Some(rest) = p.strip_prefix(&ext) {
        return Some(match rest.strip_prefix(':') {
            Some(a) => format!("ext:{a}"),
            None => "ext".into(),
        });
    }
    if p.starts_with("urn:") {
        return None;
    }
    Some(p)
}

/// What a group filter's attribute names.
fn filter_attr(path: &str) -> Option<GroupAttr> {
    Some(match strip(path)?.as_str() {
        "id" => GroupAttr::Id,
        "displayname" => GroupAttr::DisplayName,
        "externalid" => GroupAttr::ExternalId,
        "members" | "members.value" => GroupAttr::Member,
        "ext:roles" | "ext:roles.value" => GroupAttr::Role,
        "meta.created" => GroupAttr::Created,
        "meta.lastmodified" => GroupAttr::Updated,
        _ => return None,
    })
}

fn text(value: &Value, what: &str) -> Result<Option<String>, ScimError> {
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

/// The entries of a multi-valued attribute: a list, or one value on its own.
fn entries(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Member ids from a `members` value. A member of type `Group` is refused: groups do
/// not nest in Usher.
fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let list = entries(value);
    if list.len() > SCIM_MEMBERS_PER_REQUEST_MAX {
        return Err(too_many_values(list.len()));
    }
    let mut out = Vec::new();
    for e in list {
        let id = match e {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Object(o) => {
                if let Some(t) = get_ci(o, "type").and_then(Value::as_str) {
                    if !t.eq_ignore_ascii_case("User") {
                        return Err(ScimError::bad(
                            "invalidValue",
                            format!(
                                "members must be Users: groups do not nest in Usher (type `{t}`)"
                            ),
                        ));
                    }
                }
                text(get_ci(o, "value").unwrap_or(&Value::Null), "members.value")?
            }
            _ => None,
        };
        let id = id.filter(|i| !i.is_empty()).ok_or_else(|| {
            ScimError::bad("invalidValue", "each member needs a `value`: a User id")
        })?;
        limits::check_len("members.value", &id, limits::EXTERNAL_ID_MAX)
            .map_err(|e| ScimError::bad("invalidValue", e.to_string()))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn too_many_values(n: usize) -> ScimError {
    ScimError::bad(
        "invalidValue",
        format!("one request may name at most {SCIM_MEMBERS_PER_REQUEST_MAX} members; this one names {n}"),
    )
}

fn role_values(value: &Value) -> Result<Vec<String>, ScimError> {
    let mut out = Vec::new();
    for e in entries(value) {
        let v = match e {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Object(o) => text(get_ci(o, "value").unwrap_or(&Value::Null), "roles.value")?,
            _ => None,
        };
        if let Some(v) = v.filter(|v| !v.is_empty() && !out.contains(v)) {
            out.push(v);
        }
    }
    Ok(out)
}

/// A value filter's inside (`value eq "u_1"`), tested against one multi-valued entry.
fn value_filter(inside: &str) -> Result<Filter, ScimError> {
    filter::parse(inside).map_err(|e| ScimError::bad("invalidFilter", e))
}

fn entry_matches(f: &Filter, value: &str, kind: &str) -> bool {
    f.matches(&|p: &String| match p.as_str() {
        "value" => (vec![Val::Str(value.to_string())], true),
        "type" => (vec![Val::Str(kind.to_string())], false),
        _ => (vec![], false),
    })
}

/// `members[value eq "x"]` → (`members`, the filter); a path without `[` → (path, None).
fn split_path(p: &str) -> Result<(String, Option<Filter>), ScimError> {
    match (p.find('['), p.rfind(']')) {
        (Some(open), Some(close)) if close > open => {
            if !p[close + 1..].is_empty() {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("`{p}`: a group's multi-valued attributes have no sub-attribute to name after the filter"),
                ));
            }
            Ok((
                p[..open].to_string(),
                Some(value_filter(&p[open + 1..close])?),
            ))
        }
        (None, None) => Ok((p.to_string(), None)),
        _ => Err(ScimError::bad(
            "invalidPath",
            format!("`{p}` is not a valid path"),
        )),
    }
}

/// The writable part of a group.
#[derive(Debug, Clone, PartialEq, Default)]
struct Draft {
    display_name: String,
    external_id: Option<String>,
    members: Vec<String>,
    roles: Vec<String>,
}

impl Draft {
    fn of(g: &Group) -> Draft {
        Draft {
            display_name: g.display_name.clone(),
            external_id: g.external_id.clone(),
            members: g.members.clone(),
            roles: g.roles.clone(),
        }
    }

    /// A whole resource (POST, PUT); attributes left out are cleared.
    fn from_json(body: &Value) -> Result<Draft, ScimError> {
        let obj = body.as_object().ok_or_else(|| {
            ScimError::bad(
                "invalidSyntax",
                "the body must be a JSON object (a Group resource)",
            )
        })?;
        let mut d = Draft::default();
        for (k, v) in obj {
            d.set(k, v, false)?;
        }
        Ok(d)
    }

    /// Set (replace) an attribute; `strict` refuses paths Usher does not keep (a PATCH
    /// path), otherwise they are ignored (a resource from elsewhere carries many).
    fn set(&mut self, path: &str, value: &Value, strict: bool) -> Result<(), ScimError> {
        let Some(p) = strip(path) else { return Ok(()) };
        match p.as_str() {
            "displayname" => {
                self.display_name = text(value, "displayName")?.unwrap_or_default();
            }
            "externalid" => self.external_id = text(value, "externalId")?,
            "members" => self.members = member_ids(value)?,
            "ext:roles" => self.roles = role_values(value)?,
            "ext" => {
                if let Value::Object(o) = value {
                    for (k, v) in o {
                        self.set(&format!("{USHER_GROUP_SCHEMA}:{k}"), v, strict)?;
                    }
                }
            }
            "schemas" | "id" | "meta" => {
                if strict {
                    return Err(ScimError::bad("mutability", format!("{path} is read-only")));
                }
            }
            _ => {
                if strict {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("`{path}` is not an attribute of a Usher group"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// PATCH `add`: members and roles are appended; anything else is set.
    fn add(&mut self, path: &str, value: &Value) -> Result<(), ScimError> {
        match strip(path).as_deref() {
            Some("members") => {
                for m in member_ids(value)? {
                    if !self.members.contains(&m) {
                        self.members.push(m);
                    }
                }
                Ok(())
            }
            Some("ext:roles") => {
                for r in role_values(value)? {
                    if !self.roles.contains(&r) {
                        self.roles.push(r);
                    }
                }
                Ok(())
            }
            _ => self.set(path, value, true),
        }
    }

    /// PATCH `remove`: `members[value eq "x"]` removes what the filter matches;
    /// `members` with a value removes the members listed (as some provisioning
    /// clients send it), without one every member.
    fn remove(&mut self, path: &str, value: Option<&Value>) -> Result<(), ScimError> {
        let Some(p) = strip(path) else { return Ok(()) };
        let (attr, filter) = split_path(&p)?;
        match (attr.as_str(), filter) {
            ("members", Some(f)) => self.members.retain(|m| !entry_matches(&f, m, "User")),
            ("ext:roles", Some(f)) => self.roles.retain(|r| !entry_matches(&f, r, "")),
            ("members", None) => match value {
                Some(v) if !v.is_null() => {
                    let gone = member_ids(v)?;
                    self.members.retain(|m| !gone.contains(m));
                }
                _ => self.members.clear(),
            },
            ("ext:roles", None) => self.roles.clear(),
            ("externalid", None) => self.external_id = None,
            ("displayname", None) => {
                return Err(ScimError::bad(
                    "mutability",
                    "displayName cannot be removed; replace it instead",
                ))
            }
            (_, Some(_)) => {
                return Err(ScimError::bad(
                    "invalidFilter",
                    format!("`{path}`: only members and roles take a value filter"),
                ))
            }
            _ => self.set(path, &Value::Null, true)?,
        }
        Ok(())
    }

    /// PATCH `replace` with a path; a value filter replaces the matching members.
    fn replace(&mut self, path: &str, value: &Value) -> Result<(), ScimError> {
        let Some(p) = strip(path) else { return Ok(()) };
        let (attr, filter) = split_path(&p)?;
        match (attr.as_str(), filter) {
            ("members", Some(f)) => {
                self.members.retain(|m| !entry_matches(&f, m, "User"));
                self.add("members", value)
            }
            (_, Some(_)) => Err(ScimError::bad(
                "invalidFilter",
                format!("`{path}`: only members take a value filter in a replace"),
            )),
            _ => self.set(path, value, true),
        }
    }

    /// Every cap on a finished draft.
    fn check(&self) -> Result<(), ScimError> {
        let bad = |m: String| Err(ScimError::bad("invalidValue", m));
        if self.display_name.is_empty() {
            return bad("displayName is required and cannot be empty".into());
        }
        if self.display_name.chars().any(char::is_control) {
            return bad("displayName must not hold control characters".into());
        }
        let within = limits::check_len("displayName", &self.display_name, limits::GROUP_NAME_MAX)
            .and_then(|_| match &self.external_id {
                Some(x) => limits::check_len("externalId", x, limits::EXTERNAL_ID_MAX),
                None => Ok(()),
            });
        if let Err(e) = within {
            return bad(e.to_string());
        }
        if self.members.len() > GROUP_MEMBERS_MAX {
            return bad(format!(
                "a group holds at most {GROUP_MEMBERS_MAX} members; this one would hold {}",
                self.members.len()
            ));
        }
        if self.roles.len() > limits::ROLES_MAX {
            return bad(format!("a group gives at most {} roles", limits::ROLES_MAX));
        }
        for r in &self.roles {
            if let Err(e) = limits::check_len("roles.value", r, limits::ROLE_MAX) {
                return bad(e.to_string());
            }
        }
        Ok(())
    }

    fn into_group(self, id: String, created_at: u64, now: u64) -> Group {
        Group {
            connection: Default::default(),
            synced: Default::default(),
            id,
            display_name: self.display_name,
            external_id: self.external_id,
            members: self.members,
            roles: self.roles,
            created_at,
            updated_at: now,
        }
    }
}

/// Apply a PatchOp body to a draft; counts the member values it names.
fn apply_patch(d: &mut Draft, body: &Value) -> Result<(), ScimError> {
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
    // The member values of all operations together, before any is applied.
    let named: usize = ops
        .iter()
        .filter_map(|op| get_ci(op.as_object()?, "value"))
        .map(|v| match v {
            // `members` under any spelling the write itself accepts (any case, or
            // the schema's full name): each is applied, so each is counted.
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| strip(k).as_deref() == Some("members"))
                .map(|(_, m)| entries(m).len())
                .sum(),
            other => entries(other).len(),
        })
        .sum();
    if named > SCIM_MEMBERS_PER_REQUEST_MAX {
        return Err(too_many_values(named));
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
            ("remove", Some(p), v) => d.remove(p, v)?,
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
            ("add", Some(p), Some(v)) => d.add(p, v)?,
            ("replace", Some(p), Some(v)) => d.replace(p, v)?,
            ("add" | "replace", None, Some(Value::Object(attrs))) => {
                for (k, v) in attrs {
                    if name == "add" {
                        d.add(k, v)?;
                    } else {
                        d.set(k, v, false)?;
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

fn check_version(g: &Versioned<Group>, if_match: Option<&str>) -> Result<(), ScimError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = etag(g);
    let strip = |v: &str| v.trim().trim_start_matches("W/").to_string();
    if header
        .split(',')
        .any(|v| v.trim() == "*" || strip(v) == strip(&current))
    {
        Ok(())
    } else {
        Err(ScimError::precondition())
    }
}

/// A store refusal of a group write, as SCIM says it.
fn refused(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict("displayName") => {
            ScimError::uniqueness("another group has that displayName")
        }
        other => other.into(),
    }
}

fn no_account(id: &str) -> ScimError {
    ScimError::bad(
        "invalidValue",
        format!("member `{id}` is no User of this server"),
    )
}

/// How the members changed, for the audit trail (counts, never ids).
fn change_detail(old: &Draft, new: &Draft) -> Vec<String> {
    let joined = new
        .members
        .iter()
        .filter(|m| !old.members.contains(m))
        .count();
    let left = old
        .members
        .iter()
        .filter(|m| !new.members.contains(m))
        .count();
    let mut changed = Vec::new();
    if old.display_name != new.display_name {
        changed.push("displayName");
    }
    if old.external_id != new.external_id {
        changed.push("externalId");
    }
    if old.roles != new.roles {
        changed.push("roles");
    }
    if joined + left > 0 {
        changed.push("members");
    }
    vec![
        format!("changed: {}", changed.join(", ")),
        format!("{joined} member(s) joined, {left} left"),
    ]
}

impl Admin<'_> {
    async fn load_group(&self, id: &str) -> Result<Versioned<Group>, ScimError> {
        self.store
            .group(id)
            .await?
            .ok_or_else(|| ScimError::not_found(&format!("Group {id}")))
    }

    fn group_answer(&self, status: u16, g: &Versioned<Group>) -> Answer {
        let base = self.base();
        Answer {
            status,
            body: Some(to_json(g, &base)),
            etag: Some(etag(g)),
            location: (status == 201).then(|| format!("{base}/Groups/{}", g.value.id)),
        }
    }

    /// `GET /Groups`: filter, then page, in creation order.
    pub async fn list_groups(
        &self,
        filter_text: Option<&str>,
        start_index: Option<&str>,
        count: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let filter = match filter_text.filter(|f| !f.trim().is_empty()) {
            None => None,
            Some(text) => {
                let f = filter::parse(text).map_err(|e| ScimError::bad("invalidFilter", e))?;
                Some(f.try_map(&mut |p: &String| {
                    filter_attr(p).ok_or_else(|| {
                        ScimError::bad(
                            "invalidFilter",
                            format!("`{p}` cannot be filtered on; try displayName, externalId, members.value or id"),
                        )
                    })
                })?)
            }
        };
        let start = number(start_index, "startIndex")?.unwrap_or(1).max(1);
        let count = page_size(count)?;
        let page = self
            .store
            .query_groups(&GroupQuery {
                filter,
                start: usize::try_from(start - 1).unwrap_or(usize::MAX),
                count,
            })
            .await?;
        let base = self.base();
        let resources: Vec<Value> = page.groups.iter().map(|g| to_json(g, &base)).collect();
        Ok(Answer::ok(json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })))
    }

    pub async fn get_group(&self, id: &str) -> Result<Answer, ScimError> {
        Ok(self.group_answer(200, &self.load_group(id).await?))
    }

    /// `POST /Groups`.
    pub async fn create_group(&self, body: &Value) -> Result<Answer, ScimError> {
        let draft = Draft::from_json(body)?;
        draft.check()?;
        let members = draft.members.len();
        let group = draft.into_group(crate::crypto::ordered_id("g_"), self.now, self.now);
        match self.store.create_group(&group).await.map_err(refused)? {
            GroupWrite::Written => {}
            GroupWrite::NoSuchAccount(id) => return Err(no_account(&id)),
            GroupWrite::Stale => return Err(ScimError::uniqueness("the group id is taken")),
        }
        self.store.flush().await?;
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_GROUP_CREATED,
            Some(self.client_id),
            None,
            vec![
                format!("group {} ({})", group.id, group.display_name),
                format!("{members} member(s)"),
            ],
        )
        .await;
        let written = self.load_group(&group.id).await?;
        Ok(self.group_answer(201, &written))
    }

    /// `PUT /Groups/{id}` and `PATCH /Groups/{id}`: `edit` turns the current group
    /// into the new one; retried on a lost race unless `If-Match` names a version.
    async fn write_group(
        &self,
        id: &str,
        if_match: Option<&str>,
        edit: &(dyn Fn(&Group) -> Result<Draft, ScimError> + Sync),
    ) -> Result<Answer, ScimError> {
        for _ in 0..SWAP_ATTEMPTS {
            let current = self.load_group(id).await?;
            check_version(&current, if_match)?;
            let draft = edit(&current.value)?;
            draft.check()?;
            let before = Draft::of(&current.value);
            if draft == before {
                return Ok(self.group_answer(200, &current));
            }
            let detail = change_detail(&before, &draft);
            let mut group = draft.into_group(id.to_string(), current.value.created_at, self.now);
            // Which connection keeps the group, and which members it added, are not
            // SCIM's to change; a member taken out by hand is no longer the connection's.
            group.connection = current.value.connection.clone();
            group.synced = (current.value.synced.iter())
                .filter(|m| group.members.contains(m))
                .cloned()
                .collect();
            match self
                .store
                .swap_group(&group, current.version)
                .await
                .map_err(refused)?
            {
                GroupWrite::Written => {
                    self.store.flush().await?;
                    audit::record(
                        self.store,
                        self.now,
                        kind::ADMIN_GROUP_UPDATED,
                        Some(self.client_id),
                        None,
                        [vec![format!("group {id}")], detail].concat(),
                    )
                    .await;
                    return Ok(self.group_answer(200, &self.load_group(id).await?));
                }
                GroupWrite::NoSuchAccount(m) => return Err(no_account(&m)),
                GroupWrite::Stale if if_match.is_some() => return Err(ScimError::precondition()),
                GroupWrite::Stale => continue,
            }
        }
        Err(ScimError::new(
            409,
            None,
            "the group is being changed by many requests at once; try again",
        ))
    }

    pub async fn replace_group(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let draft = Draft::from_json(body)?;
        self.write_group(id, if_match, &|_| Ok(draft.clone())).await
    }

    pub async fn patch_group(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        self.write_group(id, if_match, &|g| {
            let mut d = Draft::of(g);
            apply_patch(&mut d, body)?;
            Ok(d)
        })
        .await
    }

    pub async fn delete_group(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let current = self.load_group(id).await?;
        check_version(&current, if_match)?;
        let expected = if_match.map(|_| current.version);
        if !self.store.delete_group(id, expected).await? {
            return Err(match expected {
                Some(_) => ScimError::precondition(),
                None => ScimError::not_found(&format!("Group {id}")),
            });
        }
        self.store.flush().await?;
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_GROUP_DELETED,
            Some(self.client_id),
            None,
            vec![
                format!("group {id} ({})", current.value.display_name),
                format!("{} member(s)", current.value.members.len()),
            ],
        )
        .await;
        Ok(Answer {
            status: 204,
            body: None,
            etag: None,
            location: None,
        })
    }
}
