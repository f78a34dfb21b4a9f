//! The SCIM discovery documents (RFC 7644 §4): `ServiceProviderConfig`,
//! `ResourceTypes` and `Schemas`, describing exactly what `users.rs` implements.

use serde_json::{json, Value};

use super::{ScimError, LIST_RESPONSE, USER_SCHEMA, USHER_USER_SCHEMA};

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
    list(vec![user_resource_type(base)])
}

pub fn resource_type(base: &str, id: &str) -> Result<Value, ScimError> {
    if id == "User" {
        Ok(user_resource_type(base))
    } else {
        Err(ScimError::not_found(&format!("ResourceType {id}")))
    }
}

/// One attribute definition.
fn attr(name: &str, kind: &str, multi: bool, mutability: &str, case_exact: bool) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "required": name == "userName",
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": if name == "password" { "never" } else { "default" },
        "uniqueness": if name == "userName" { "server" } else { "none" },
    })
}

fn complex(name: &str, multi: bool, mutability: &str, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", multi, mutability, false);
    a["subAttributes"] = Value::Array(subs);
    a
}

fn user_schema(base: &str) -> Value {
    let rw = "readWrite";
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User account",
        "attributes": [
            attr("userName", "string", false, rw, false),
            attr("externalId", "string", false, rw, true),
            attr("displayName", "string", false, rw, false),
            complex("name", false, rw, vec![
                attr("formatted", "string", false, rw, false),
                attr("givenName", "string", false, rw, false),
                attr("familyName", "string", false, rw, false),
            ]),
            complex("emails", true, rw, vec![
                attr("value", "string", false, rw, false),
                attr("primary", "boolean", false, rw, false),
            ]),
            complex("photos", true, rw, vec![
                attr("value", "reference", false, rw, true),
                attr("primary", "boolean", false, rw, false),
            ]),
            complex("roles", true, rw, vec![attr("value", "string", false, rw, false)]),
            attr("active", "boolean", false, rw, false),
            attr("password", "string", false, "writeOnly", true),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}") },
    })
}

fn usher_schema(base: &str) -> Value {
    let ro = "readOnly";
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": USHER_USER_SCHEMA,
        "name": "UsherUser",
        "description": "What Usher adds to a user: linked federated identities and sign-in state",
        "attributes": [
            complex("identities", true, ro, vec![
                attr("connection", "string", false, ro, true),
                attr("subject", "string", false, ro, true),
            ]),
            attr("emailVerified", "boolean", false, "readWrite", false),
            attr("hasPassword", "boolean", false, ro, false),
            attr("totp", "boolean", false, ro, false),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{USHER_USER_SCHEMA}") },
    })
}

pub fn schemas(base: &str) -> Value {
    list(vec![user_schema(base), usher_schema(base)])
}

pub fn schema(base: &str, id: &str) -> Result<Value, ScimError> {
    match id {
        USER_SCHEMA => Ok(user_schema(base)),
        USHER_USER_SCHEMA => Ok(usher_schema(base)),
        _ => Err(ScimError::not_found(&format!("Schema {id}"))),
    }
}
