//! The SCIM discovery documents (RFC 7644 §4): `ServiceProviderConfig`,
//! `ResourceTypes` and `Schemas`, describing exactly what `users.rs` and `groups.rs`
//! return and accept: every attribute a response carries is declared here, with its
//! sub-attributes, and nothing is declared that is never returned or kept.

use serde_json::{json, Value};

use super::{
    ScimError, GROUP_SCHEMA, LIST_RESPONSE, USER_SCHEMA, USHER_GROUP_SCHEMA, USHER_USER_SCHEMA,
};

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": super::users::MAX_COUNT },
        "changePassword": { "supported": true },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "An access token from the client_credentials grant at the token endpoint, for an app granted the `scim` scope.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn user_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "An account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{ "schema": USHER_USER_SCHEMA, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
    })
}

fn group_resource_type(base: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group of accounts; members are Users (groups do not nest)",
        "schema": GROUP_SCHEMA,
        "schemaExtensions": [{ "schema": USHER_GROUP_SCHEMA, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

pub fn resource_types(base: &str) -> Value {
    list(vec![user_resource_type(base), group_resource_type(base)])
}

pub fn resource_type(base: &str, id: &str) -> Result<Value, ScimError> {
    match id {
        "User" => Ok(user_resource_type(base)),
        "Group" => Ok(group_resource_type(base)),
        _ => Err(ScimError::not_found(&format!("ResourceType {id}"))),
    }
}

/// One attribute definition (RFC 7643 §7): what it holds and how it may be written and
/// is returned.
struct Attr {
    name: &'static str,
    kind: &'static str,
    multi: bool,
    description: &'static str,
    required: bool,
    case_exact: bool,
    mutability: &'static str,
    returned: &'static str,
    uniqueness: &'static str,
    reference_types: &'static [&'static str],
    canonical: &'static [&'static str],
    subs: Vec<Value>,
}

fn a(name: &'static str, kind: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind,
        multi: false,
        description,
        required: false,
        case_exact: false,
        mutability: "readWrite",
        returned: "default",
        uniqueness: "none",
        reference_types: &[],
        canonical: &[],
        subs: Vec::new(),
    }
}

impl Attr {
    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn read_only(mut self) -> Self {
        self.mutability = "readOnly";
        self
    }
    fn immutable(mut self) -> Self {
        self.mutability = "immutable";
        self
    }
    fn write_only(mut self) -> Self {
        self.mutability = "writeOnly";
        self.returned = "never";
        self
    }
    fn unique(mut self) -> Self {
        self.uniqueness = "server";
        self
    }
    fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }
    fn subs(mut self, subs: Vec<Attr>) -> Self {
        self.subs = subs.into_iter().map(Attr::json).collect();
        self
    }
    fn json(self) -> Value {
        let mut out = json!({
            "name": self.name,
            "type": self.kind,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        });
        if !self.reference_types.is_empty() {
            out["referenceTypes"] = json!(self.reference_types);
        }
        if !self.canonical.is_empty() {
            out["canonicalValues"] = json!(self.canonical);
        }
        if self.kind == "complex" {
            out["subAttributes"] = Value::Array(self.subs);
        }
        out
    }
}

fn schema_doc(base: &str, id: &str, name: &str, description: &str, attrs: Vec<Attr>) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.into_iter().map(Attr::json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

fn user_schema(base: &str) -> Value {
    let primary = || a("primary", "boolean", "Whether this is the primary value");
    schema_doc(
        base,
        USER_SCHEMA,
        "User",
        "User account",
        vec![
            a(
                "userName",
                "string",
                "The name the user signs in with; unique, case-insensitive",
            )
            .required()
            .unique(),
            a("displayName", "string", "The name shown for the user"),
            a("name", "complex", "The user's name").subs(vec![
                a("formatted", "string", "The full name"),
                a("givenName", "string", "Given name"),
                a("familyName", "string", "Family name"),
            ]),
            a(
                "emails",
                "complex",
                "The user's email address (Usher keeps one)",
            )
            .multi()
            .subs(vec![a("value", "string", "The address"), primary()]),
            a("photos", "complex", "The user's picture (Usher keeps one)")
                .multi()
                .subs(vec![
                    a("value", "reference", "The picture's http(s) URL")
                        .exact()
                        .refs(&["external"]),
                    a("type", "string", "The kind of picture").canonical(&["photo", "thumbnail"]),
                    primary(),
                ]),
            a(
                "roles",
                "complex",
                "Roles the account holds itself (its groups may give more)",
            )
            .multi()
            .subs(vec![a("value", "string", "The role's name")]),
            a(
                "groups",
                "complex",
                "The groups the user is in; changed through /Groups",
            )
            .multi()
            .read_only()
            .subs(vec![
                a("value", "string", "The group's id").exact().read_only(),
                a("$ref", "reference", "The group's URI")
                    .exact()
                    .read_only()
                    .refs(&["Group"]),
                a("display", "string", "The group's displayName").read_only(),
                a("type", "string", "How the user is a member")
                    .read_only()
                    .canonical(&["direct"]),
            ]),
            a("active", "boolean", "false disables the account"),
            a("password", "string", "Write-only; hashed with Argon2id")
                .exact()
                .write_only(),
        ],
    )
}

fn usher_schema(base: &str) -> Value {
    schema_doc(
        base,
        USHER_USER_SCHEMA,
        "UsherUser",
        "What Usher adds to a user: linked federated identities and sign-in state",
        vec![
            a("identities", "complex", "Linked federated identities")
                .multi()
                .read_only()
                .subs(vec![
                    a("connection", "string", "The connection's id")
                        .exact()
                        .read_only(),
                    a("subject", "string", "The upstream subject")
                        .exact()
                        .read_only(),
                ]),
            a(
                "emailVerified",
                "boolean",
                "Whether the email address is proven",
            ),
            a("hasPassword", "boolean", "Whether a password is set").read_only(),
            a(
                "totp",
                "boolean",
                "Whether an authenticator app is enrolled",
            )
            .read_only(),
        ],
    )
}

fn group_schema(base: &str) -> Value {
    schema_doc(
        base,
        GROUP_SCHEMA,
        "Group",
        "Group",
        vec![
            a(
                "displayName",
                "string",
                "The group's name; unique, case-insensitive",
            )
            .required()
            .unique(),
            a(
                "members",
                "complex",
                "The group's members: Users only (groups do not nest)",
            )
            .multi()
            .subs(vec![
                a("value", "string", "The member's id").exact().immutable(),
                a("$ref", "reference", "The member's URI")
                    .exact()
                    .immutable()
                    .refs(&["User"]),
                a("type", "string", "The member's resource type")
                    .immutable()
                    .canonical(&["User"]),
            ]),
        ],
    )
}

fn usher_group_schema(base: &str) -> Value {
    schema_doc(
        base,
        USHER_GROUP_SCHEMA,
        "UsherGroup",
        "What Usher adds to a group: the roles its members hold through it",
        vec![a("roles", "complex", "Roles every member holds")
            .multi()
            .subs(vec![a("value", "string", "The role's name")])],
    )
}

pub fn schemas(base: &str) -> Value {
    list(vec![
        user_schema(base),
        usher_schema(base),
        group_schema(base),
        usher_group_schema(base),
    ])
}

pub fn schema(base: &str, id: &str) -> Result<Value, ScimError> {
    match id {
        USER_SCHEMA => Ok(user_schema(base)),
        USHER_USER_SCHEMA => Ok(usher_schema(base)),
        GROUP_SCHEMA => Ok(group_schema(base)),
        USHER_GROUP_SCHEMA => Ok(usher_group_schema(base)),
        _ => Err(ScimError::not_found(&format!("Schema {id}"))),
    }
}
