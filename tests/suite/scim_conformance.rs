//! SCIM conformance, checked against what the server itself publishes: every response
//! is validated programmatically against `/Schemas` and `/ResourceTypes` — declared
//! attributes only, their types, single or multi-valued, declared sub-attributes, the
//! required ones present, nothing `returned: never` — never against hand-written
//! expectations. The walk covers every resource type the server lists: create, get,
//! list, filter, `attributes`/`excludedAttributes`, replace, PATCH add/remove/replace,
//! delete; and every error under `/scim/v2` is a SCIM error body.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::accounts_world::*;

const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// RFC 7644 §3.12, table 9.
const SCIM_TYPES: [&str; 10] = [
    "invalidFilter",
    "tooMany",
    "uniqueness",
    "mutability",
    "invalidSyntax",
    "invalidPath",
    "noTarget",
    "invalidValue",
    "invalidVers",
    "sensitive",
];

/// A resource type as `/ResourceTypes` publishes it.
#[derive(Debug, Clone)]
struct ResourceType {
    name: String,
    endpoint: String,
    schema: String,
    extensions: Vec<String>,
}

/// The published schemas and resource types, and a validator over them.
struct Published {
    schemas: HashMap<String, Value>,
    types: Vec<ResourceType>,
}

fn find_attr<'a>(attrs: &'a [Value], name: &str) -> Option<&'a Value> {
    attrs.iter().find(|a| {
        a["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

fn rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && (text.ends_with('Z') || text[19..].contains('+') || text[19..].contains('-'))
}

impl Published {
    async fn fetch(http: &reqwest::Client, base: &str) -> Published {
        let get = |path: &str| {
            let url = format!("{base}{path}");
            let http = http.clone();
            async move {
                let res = http.get(url).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                res.json::<Value>().await.unwrap()
            }
        };
        let schemas: HashMap<String, Value> = get("/Schemas").await["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
            .collect();
        let types = get("/ResourceTypes").await["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ResourceType {
                name: t["name"].as_str().unwrap().into(),
                endpoint: t["endpoint"].as_str().unwrap().into(),
                schema: t["schema"].as_str().unwrap().into(),
                extensions: t["schemaExtensions"]
                    .as_array()
                    .map(|e| {
                        e.iter()
                            .map(|x| x["schema"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect::<Vec<_>>();
        // The published documents are themselves well formed.
        for s in schemas.values() {
            for a in s["attributes"].as_array().unwrap() {
                Self::check_definition(a);
            }
        }
        for t in &types {
            assert!(schemas.contains_key(&t.schema), "{t:?}");
            for e in &t.extensions {
                assert!(schemas.contains_key(e), "{t:?}");
            }
        }
        Published { schemas, types }
    }

    /// An attribute definition has what RFC 7643 §7 asks of one.
    fn check_definition(a: &Value) {
        for key in [
            "name",
            "type",
            "multiValued",
            "description",
            "required",
            "mutability",
            "returned",
            "uniqueness",
        ] {
            assert!(a.get(key).is_some(), "{key} missing in {a}");
        }
        let kind = a["type"].as_str().unwrap();
        assert!(
            [
                "string",
                "boolean",
                "decimal",
                "integer",
                "dateTime",
                "reference",
                "binary",
                "complex"
            ]
            .contains(&kind),
            "{a}"
        );
        if kind == "reference" {
            assert!(a["referenceTypes"].is_array(), "{a}");
        }
        if kind == "complex" {
            for sub in a["subAttributes"].as_array().unwrap() {
                assert_ne!(sub["type"], "complex", "complex inside complex: {a}");
                Self::check_definition(sub);
            }
        }
    }

    fn resource_type(&self, name: &str) -> &ResourceType {
        self.types.iter().find(|t| t.name == name).unwrap()
    }

    /// Problems of one value against one attribute definition.
    fn value_problems(def: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        if def["returned"] == "never" {
            out.push(format!("{path} is returned: never, yet returned"));
        }
        let single = |v: &Value, out: &mut Vec<String>| {
            let ok = match def["type"].as_str().unwrap() {
                "string" | "reference" | "binary" => v.is_string(),
                "boolean" => v.is_boolean(),
                "integer" => v.is_i64() || v.is_u64(),
                "decimal" => v.is_number(),
                "dateTime" => v.as_str().is_some_and(rfc3339),
                "complex" => v.is_object(),
                other => panic!("unknown type {other}"),
            };
            if !ok {
                out.push(format!("{path}: {v} is not a {}", def["type"]));
                return;
            }
            if let Some(canonical) = def["canonicalValues"].as_array() {
                if !canonical.contains(v) {
                    out.push(format!("{path}: {v} is not one of {canonical:?}"));
                }
            }
            if let Value::Object(o) = v {
                let subs = def["subAttributes"].as_array().unwrap();
                for (k, sv) in o {
                    match find_attr(subs, k) {
                        Some(sd) => Self::value_problems(sd, sv, &format!("{path}.{k}"), out),
                        None => out.push(format!("{path}.{k} is not a declared sub-attribute")),
                    }
                }
            }
        };
        match (def["multiValued"].as_bool().unwrap(), value) {
            (true, Value::Array(items)) => items.iter().for_each(|v| single(v, out)),
            (true, other) => out.push(format!("{path} is multi-valued, got {other}")),
            (false, Value::Array(_)) => out.push(format!("{path} is single-valued, got a list")),
            (false, v) => single(v, out),
        }
    }

    /// Problems of an object against a schema's attributes; `full`: a whole
    /// representation, so the required ones must be there.
    fn object_problems(
        &self,
        schema: &str,
        obj: &serde_json::Map<String, Value>,
        skip: &[&str],
        full: bool,
        out: &mut Vec<String>,
    ) {
        let attrs = self.schemas[schema]["attributes"].as_array().unwrap();
        for (k, v) in obj {
            if skip.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                continue;
            }
            match find_attr(attrs, k) {
                Some(def) => Self::value_problems(def, v, k, out),
                None => out.push(format!("`{k}` is not declared by {schema}")),
            }
        }
        if full {
            for a in attrs.iter().filter(|a| a["required"] == true) {
                let name = a["name"].as_str().unwrap();
                if !obj.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                    out.push(format!("required `{name}` of {schema} is missing"));
                }
            }
        }
    }

    /// Every problem of a resource of type `rt`.
    fn problems(&self, rt: &ResourceType, resource: &Value, full: bool) -> Vec<String> {
        let mut out = Vec::new();
        let Some(obj) = resource.as_object() else {
            return vec![format!("not an object: {resource}")];
        };
        let schemas: Vec<&str> = obj
            .get("schemas")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !schemas.contains(&rt.schema.as_str()) {
            out.push(format!("schemas {schemas:?} lacks {}", rt.schema));
        }
        for s in &schemas {
            if *s != rt.schema && !rt.extensions.iter().any(|e| e == s) {
                out.push(format!(
                    "schemas names {s}, which {} does not take",
                    rt.name
                ));
            }
        }
        if !obj.get("id").is_some_and(Value::is_string) {
            out.push("id is missing (returned: always)".into());
        }
        if let Some(x) = obj.get("externalId") {
            if !x.is_string() {
                out.push("externalId is not a string".into());
            }
        }
        if let Some(meta) = obj.get("meta") {
            if meta
                .get("resourceType")
                .is_some_and(|t| *t != json!(rt.name))
                || (full && meta.get("resourceType").is_none())
            {
                out.push(format!("meta.resourceType is not {}", rt.name));
            }
            for t in ["created", "lastModified"] {
                if let Some(v) = meta.get(t) {
                    if !v.as_str().is_some_and(rfc3339) {
                        out.push(format!("meta.{t} is not a dateTime"));
                    }
                }
            }
        } else if full {
            out.push("meta is missing".into());
        }
        let mut skip = vec!["schemas", "id", "externalId", "meta"];
        for e in &rt.extensions {
            skip.push(e.as_str());
            if let Some(ext) = obj.get(e) {
                match ext.as_object() {
                    Some(o) => self.object_problems(e, o, &[], full, &mut out),
                    None => out.push(format!("{e} is not an object")),
                }
                if !schemas.contains(&e.as_str()) {
                    out.push(format!("{e} is present but not named in schemas"));
                }
            }
        }
        self.object_problems(&rt.schema, obj, &skip, full, &mut out);
        out
    }

    fn assert_valid(&self, rt: &ResourceType, resource: &Value, full: bool, what: &str) {
        let problems = self.problems(rt, resource, full);
        assert!(problems.is_empty(), "{what}: {problems:#?}\n{resource:#}");
    }

    fn assert_list(&self, rt: &ResourceType, body: &Value, full: bool, what: &str) {
        assert_eq!(body["schemas"], json!([LIST]), "{what}");
        for k in ["totalResults", "startIndex", "itemsPerPage"] {
            assert!(body[k].is_u64(), "{what}: {k} in {body}");
        }
        let items = body["Resources"].as_array().unwrap();
        assert_eq!(body["itemsPerPage"], items.len(), "{what}");
        for r in items {
            self.assert_valid(rt, r, full, what);
        }
    }
}

/// An error body as RFC 7644 §3.12 defines it, with the HTTP status it came with.
fn assert_error(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(body["schemas"], json!([ERROR]), "{what}: {body}");
    assert_eq!(
        body["status"],
        status.as_u16().to_string(),
        "{what}: {body}"
    );
    assert!(body["detail"].is_string(), "{what}: {body}");
    if let Some(t) = body.get("scimType") {
        assert!(SCIM_TYPES.contains(&t.as_str().unwrap()), "{what}: {body}");
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Client {
    pub async fn of(w: &World) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: w.usher.url("/scim/v2"),
            token: bearer(w, "ops", OPS_SECRET).await,
        }
    }

    /// Send a request; any 4xx or 5xx must come with a SCIM error body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        if status.is_client_error() || status.is_server_error() {
            assert_error(status, &body, path);
        }
        (status, body)
    }
}

fn q(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn patch(ops: Value) -> Value {
    json!({ "schemas": [PATCH], "Operations": ops })
}

/// What the walk needs per resource type: a new resource, a filter that finds it, a
/// replacement, and PATCH operations of each kind.
struct Plan {
    create: Value,
    filter: String,
    replace: Value,
    patches: Vec<Value>,
}

fn plans(member: &str) -> HashMap<&'static str, Plan> {
    let mut p = HashMap::new();
    p.insert(
        "User",
        Plan {
            create: json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "conformance",
                "externalId": "HR-1",
                "name": { "givenName": "Con", "familyName": "Formance" },
                "emails": [{ "value": "con@example.com", "primary": true, "type": "work" }],
                "photos": [{ "value": "https://example.com/c.png", "type": "photo" }],
                "roles": [{ "value": "staff" }],
                "password": "a-long-enough-password",
            }),
            filter: "userName eq \"CONFORMANCE\"".into(),
            replace: json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "conformance",
                "displayName": "Con F.",
                "emails": [{ "value": "con@example.com", "primary": true }],
                "active": true,
            }),
            patches: vec![
                patch(json!([{ "op": "add", "path": "roles", "value": [{ "value": "admin" }] }])),
                patch(json!([{ "op": "replace", "path": "roles", "value": [{ "value": "auditor" }] }])),
                patch(json!([{ "op": "replace", "path": "active", "value": false }])),
                patch(json!([{ "op": "replace", "path": "password", "value": "another-long-password" }])),
                patch(json!([{ "op": "replace", "path": "emails[type eq \"work\"].value", "value": "con@work.example" }])),
                patch(json!([{ "op": "add", "path": "emails", "value": [{ "value": "con2@example.com", "primary": true }] }])),
                patch(json!([{ "op": "remove", "path": "roles[value eq \"auditor\"]" }])),
                patch(json!([{ "op": "replace", "value": { "active": true, "displayName": "Con" } }])),
            ],
        },
    );
    p.insert(
        "Group",
        Plan {
            create: json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Conformance",
                "externalId": "G-1",
                "members": [{ "value": member, "type": "User" }],
            }),
            filter: "displayName eq \"conformance\"".into(),
            replace: json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Conformance",
                "members": [],
            }),
            patches: vec![
                patch(json!([{ "op": "add", "path": "members", "value": [{ "value": member }] }])),
                patch(json!([{ "op": "remove", "path": format!("members[value eq \"{member}\"]") }])),
                patch(json!([{ "op": "replace", "path": "members", "value": [{ "value": member }] }])),
                patch(json!([{ "op": "add", "path": "urn:usher:params:scim:schemas:extension:2.0:Group:roles", "value": [{ "value": "admin" }] }])),
                patch(json!([{ "op": "replace", "path": "displayName", "value": "Conformance 2" }])),
            ],
        },
    );
    p
}

#[tokio::test]
async fn every_response_validates_against_the_published_schemas() {
    let w = world().await;
    let http = reqwest::Client::new();
    let base = w.usher.url("/scim/v2");
    let published = Published::fetch(&http, &base).await;
    let c = Client {
        http,
        base,
        token: bearer(&w, "ops", OPS_SECRET).await,
    };
    // A member for the group to hold.
    let (s, member) = c
        .send(
            Method::POST,
            "/Users",
            Some(json!({ "userName": "member", "emails": [{ "value": "m@example.com" }] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let member = member["id"].as_str().unwrap().to_string();
    let mut plans = plans(&member);
    let names: Vec<String> = published.types.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["User", "Group"], "every resource type is walked");
    for rt in published.types.clone() {
        let plan = plans.remove(rt.name.as_str()).unwrap();
        let what = |step: &str| format!("{} {step}", rt.name);
        let ep = rt.endpoint.clone();

        let (s, created) = c.send(Method::POST, &ep, Some(plan.create.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        published.assert_valid(&rt, &created, true, &what("create"));
        let id = created["id"].as_str().unwrap().to_string();
        let one = format!("{ep}/{id}");

        let (s, got) = c.send(Method::GET, &one, None).await;
        assert_eq!(s, StatusCode::OK);
        published.assert_valid(&rt, &got, true, &what("get"));
        assert_eq!(got, created, "a get shows what the create answered");

        let (s, list) = c.send(Method::GET, &ep, None).await;
        assert_eq!(s, StatusCode::OK);
        published.assert_list(&rt, &list, true, &what("list"));
        let ids: Vec<&str> = list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids.last(),
            Some(&id.as_str()),
            "the newest is last in the default order"
        );

        let (s, found) = c
            .send(
                Method::GET,
                &format!("{ep}?filter={}", q(&plan.filter)),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        published.assert_list(&rt, &found, true, &what("filter"));
        assert_eq!(found["totalResults"], 1);

        // Some attributes only, or all but some: still valid, `id` always there.
        let every: Vec<String> = published.schemas[&rt.schema]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        for name in &every {
            for param in ["attributes", "excludedAttributes"] {
                let path = format!("{one}?{param}={}", q(name));
                let (s, part) = c.send(Method::GET, &path, None).await;
                assert_eq!(s, StatusCode::OK);
                published.assert_valid(&rt, &part, false, &what(&path));
                assert_eq!(part["id"], json!(id));
                let has = part
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(name));
                if param == "excludedAttributes" {
                    assert!(!has, "{path}: {part}");
                } else if created
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(name))
                {
                    assert!(has, "{path}: {part}");
                    let extra: Vec<&String> = part
                        .as_object()
                        .unwrap()
                        .keys()
                        .filter(|k| !["schemas", "id"].contains(&k.as_str()))
                        .filter(|k| !k.eq_ignore_ascii_case(name))
                        .collect();
                    assert!(extra.is_empty(), "{path}: {part}");
                }
            }
        }
        let path = format!(
            "{ep}?attributes={}",
            q(&format!("{},meta.version", every[0]))
        );
        let (_, part) = c.send(Method::GET, &path, None).await;
        published.assert_list(&rt, &part, false, &what(&path));

        let (s, replaced) = c.send(Method::PUT, &one, Some(plan.replace.clone())).await;
        assert_eq!(s, StatusCode::OK, "{replaced}");
        published.assert_valid(&rt, &replaced, true, &what("replace"));

        for (i, p) in plan.patches.iter().enumerate() {
            let (s, patched) = c.send(Method::PATCH, &one, Some(p.clone())).await;
            assert_eq!(s, StatusCode::OK, "{} patch {i}: {patched}", rt.name);
            published.assert_valid(&rt, &patched, true, &what(&format!("patch {i}")));
            let (_, again) = c.send(Method::GET, &one, None).await;
            assert_eq!(again, patched, "patch {i} is what a get shows");
        }
        // The answer of a write honours `attributes` too.
        let (s, part) = c
            .send(
                Method::PATCH,
                &format!("{one}?excludedAttributes=meta"),
                Some(plan.patches[0].clone()),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(part.get("meta").is_none(), "{part}");
        published.assert_valid(&rt, &part, false, &what("patch with excludedAttributes"));

        let (s, _) = c.send(Method::DELETE, &one, None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = c.send(Method::GET, &one, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

/// A request, and the status and `scimType` it is refused with.
type Refusal = (
    Method,
    &'static str,
    Option<Value>,
    StatusCode,
    Option<&'static str>,
);

#[tokio::test]
async fn every_refusal_under_scim_is_a_scim_error_with_its_type() {
    let w = world().await;
    let c = Client {
        http: reqwest::Client::new(),
        base: w.usher.url("/scim/v2"),
        token: bearer(&w, "ops", OPS_SECRET).await,
    };
    // `send` checks every 4xx body is a SCIM error; here the status and type too.
    let cases: Vec<Refusal> = vec![
        (Method::GET, "/Nope", None, StatusCode::NOT_FOUND, None),
        (Method::GET, "/Users/x/y", None, StatusCode::NOT_FOUND, None),
        (Method::DELETE, "/Users", None, StatusCode::METHOD_NOT_ALLOWED, None),
        (Method::POST, "/Schemas", None, StatusCode::METHOD_NOT_ALLOWED, None),
        (Method::GET, "/Groups/g_missing", None, StatusCode::NOT_FOUND, None),
        (
            Method::GET,
            "/Groups?filter=displayName%20eq",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        ),
        (
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": "" })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": "x", "members": [{ "value": "u_nobody" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": "x", "members": [{ "value": "g_1", "type": "Group" }] })),
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
        (
            Method::GET,
            "/Users?attributes=a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a,a",
            None,
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
        ),
    ];
    for (method, path, body, status, scim_type) in cases {
        let (s, b) = c.send(method.clone(), path, body).await;
        assert_eq!(s, status, "{method} {path}: {b}");
        assert_eq!(b["scimType"].as_str(), scim_type, "{method} {path}: {b}");
    }
    // A group name is unique, case-insensitively.
    let (s, _) = c
        .send(
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": "Ops" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = c
        .send(
            Method::POST,
            "/Groups",
            Some(json!({ "displayName": " ops " })),
        )
        .await;
    assert_eq!(
        (s, b["scimType"].as_str()),
        (StatusCode::CONFLICT, Some("uniqueness"))
    );
    // An added address that is not primary would have to displace the one Usher keeps.
    let (_, u) = c
        .send(
            Method::POST,
            "/Users",
            Some(json!({ "userName": "pat", "emails": [{ "value": "pat@example.com" }] })),
        )
        .await;
    let one = format!("/Users/{}", u["id"].as_str().unwrap());
    let add = patch(
        json!([{ "op": "add", "path": "emails", "value": [{ "value": "p2@example.com", "type": "home" }] }]),
    );
    let (s, b) = c.send(Method::PATCH, &one, Some(add)).await;
    assert_eq!(
        (s, b["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue"))
    );
    let (_, still) = c.send(Method::GET, &one, None).await;
    assert_eq!(
        still["emails"],
        json!([{ "value": "pat@example.com", "primary": true }])
    );
}

/// The validator finds what a strict client would reject, so the walk above can fail.
#[tokio::test]
async fn the_validator_rejects_what_the_schemas_do_not_allow() {
    let w = world().await;
    let http = reqwest::Client::new();
    let published = Published::fetch(&http, &w.usher.url("/scim/v2")).await;
    let rt = published.resource_type("User");
    let good = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u_1",
        "userName": "ada",
        "meta": { "resourceType": "User", "created": "2026-01-01T00:00:00Z" },
    });
    assert!(published.problems(rt, &good, true).is_empty());
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut r = good.clone();
        edit(&mut r);
        published.problems(rt, &r, true)
    };
    for (what, problems) in [
        (
            "an undeclared sub-attribute",
            bad(&|r| r["photos"] = json!([{ "value": "https://x/p", "size": 3 }])),
        ),
        (
            "a string for a boolean",
            bad(&|r| r["active"] = json!("true")),
        ),
        (
            "a list for a single value",
            bad(&|r| r["displayName"] = json!(["a"])),
        ),
        (
            "one value for a list",
            bad(&|r| r["emails"] = json!({ "value": "a@b.c" })),
        ),
        (
            "a required attribute missing",
            bad(&|r| {
                r.as_object_mut().unwrap().remove("userName");
            }),
        ),
        (
            "a never-returned attribute",
            bad(&|r| r["password"] = json!("x")),
        ),
        (
            "an undeclared attribute",
            bad(&|r| r["nickName"] = json!("x")),
        ),
        (
            "an extension not named in schemas",
            bad(&|r| {
                r["urn:usher:params:scim:schemas:extension:2.0:User"] = json!({ "totp": true })
            }),
        ),
        (
            "a bad dateTime",
            bad(&|r| r["meta"]["created"] = json!("yesterday")),
        ),
        (
            "a value outside the canonical ones",
            bad(&|r| r["photos"] = json!([{ "value": "https://x/p", "type": "selfie" }])),
        ),
    ] {
        assert!(!problems.is_empty(), "{what} passed");
    }
}
