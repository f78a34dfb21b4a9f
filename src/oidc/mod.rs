//! The provider side of OpenID Connect: request validation, token minting, keys.
//! Nothing here knows about HTTP; `web` parses requests and calls in.

pub mod authorize;
pub mod claims;
pub mod client_credentials;
pub mod error;
pub mod keys;
pub mod logout;
pub mod revocation;
pub mod token;

pub use error::{ErrorCode, OAuthError};

/// Access tokens are always ES256, whatever an app picks for its ID tokens: the app's
/// `signing_alg` is about what its client library can check, while access tokens are
/// checked by Usher itself (userinfo, the admin APIs) and by resource servers that find
/// the key in the JWKS by `kid`. An RSA signature costs thirty ES256 ones, so RS256 apps
/// pay for one RSA signature per sign-in or refresh instead of two.
pub const ACCESS_TOKEN_ALG: crate::config::SigningAlg = crate::config::SigningAlg::Es256;

use crate::config::Config;

/// The issuer as it appears in `iss` and discovery (see [`Config::issuer_id`]).
pub fn issuer(config: &Config) -> String {
    config.issuer_id()
}

/// The discovery document.
pub fn discovery(config: &Config) -> serde_json::Value {
    let iss = issuer(config);
    serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "end_session_endpoint": format!("{iss}/logout"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint": format!("{iss}/introspect"),
        // Confidential clients only: a public client cannot introspect.
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access", "groups", "roles"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid",
            "name", "given_name", "family_name", "preferred_username", "picture", "updated_at",
            "email", "email_verified", "groups", "roles"
        ],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}
