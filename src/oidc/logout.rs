//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), without HTTP: which
//! return address a request may use, whether the user must confirm, and ending the
//! SSO session.
//!
//! A return address is honoured only when registered for the app the request names
//! (by `client_id` or the audience of `id_token_hint`). A valid hint for the signed-in
//! user proves the request came from that user's own app, so sign-out needs no
//! confirmation; without one, a page asks, so a stray link cannot sign anyone out.

use std::collections::HashMap;

use super::authorize;
use super::keys::Keys;
use crate::context::Ctx;
use crate::crypto::token_hash;
use crate::store::StoreResult;

/// What a logout request asks for, once checked against the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// A registered `post_logout_redirect_uri`.
    pub redirect: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
    /// The `sub` of a valid `id_token_hint`.
    pub hinted_sub: Option<String>,
}

impl Target {
    /// Where to send the browser once signed out, with `state` added; `None` shows the
    /// signed-out page.
    pub fn return_url(&self) -> Option<url::Url> {
        let mut url = url::Url::parse(self.redirect.as_deref()?).ok()?;
        if let Some(s) = &self.state {
            url.query_pairs_mut().append_pair("state", s);
        }
        Some(url)
    }
}

/// Check a logout request's parameters. The error is a message for the user: the
/// return address cannot be trusted, so there is nowhere to send them.
pub fn target(ctx: &Ctx, keys: &Keys, params: &HashMap<String, String>) -> Result<Target, String> {
    let config = ctx.config;
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    #[derive(serde::Deserialize)]
    struct Hint {
        sub: String,
        aud: String,
    }
    let hint: Option<Hint> = get("id_token_hint")
        .and_then(|t| keys.verify_ignoring_expiry(&t, "JWT", &super::issuer(config)));
    let client_id = get("client_id").or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    let redirect = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let app = client_id
                .as_deref()
                .and_then(|c| authorize::app_by_client_id(config, c))
                .ok_or_else(|| {
                    "A sign-out return address was given without naming a known application (client_id or id_token_hint).".to_string()
                })?;
            if !authorize::registered_redirect(&app.post_logout_redirect_uris, &uri) {
                return Err(format!(
                    "The sign-out return address is not registered for {}.",
                    app.name
                ));
            }
            Some(uri)
        }
    };
    Ok(Target {
        redirect,
        state: get("state"),
        client_id,
        hinted_sub: hint.map(|h| h.sub),
    })
}

/// What to do with a logout request that arrived by a link (GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sign out now.
    SignOut,
    /// Ask first: a session is live and nothing proves the request is its user's.
    Confirm,
}

/// Whether a logout by link needs the user's confirmation. `session_cookie` is the
/// browser's SSO session cookie.
pub async fn decide(
    ctx: &Ctx<'_>,
    target: &Target,
    session_cookie: Option<&str>,
) -> StoreResult<Decision> {
    let session = match session_cookie {
        Some(value) => ctx
            .store
            .session(&token_hash(value))
            .await?
            .filter(|s| s.expires_at > ctx.now),
        None => None,
    };
    Ok(match (session, &target.hinted_sub) {
        (None, _) => Decision::SignOut,
        (Some(s), Some(sub)) if &s.sub == sub => Decision::SignOut,
        (Some(_), _) => Decision::Confirm,
    })
}

/// End the SSO session named by the cookie, if any, and revoke the grants issued
/// under it except `offline_access` ones: the apps' refresh tokens die with the
/// session. Returns how many grants were revoked. Blocking (flush).
pub async fn end_session(ctx: &Ctx<'_>, session_cookie: Option<&str>) -> StoreResult<usize> {
    let Some(value) = session_cookie else {
        return Ok(0);
    };
    let hash = token_hash(value);
    ctx.store.delete_session(&hash).await?;
    let revoked = ctx.store.revoke_session_grants(&hash, true).await?;
    ctx.store.flush().await?;
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Session, SessionStore, SledStore};

    fn config() -> crate::config::Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usher.yaml");
        std::fs::write(
            &path,
            "issuer: http://localhost:9000\napps:\n  a:\n    name: A\n    client_id: a\n    redirect_uris: [http://localhost:1/cb]\n    sign_in: { steps: [[password]] }\n",
        )
        .unwrap();
        crate::config::load_with_env(&path, &|_| None)
            .unwrap_or_else(|d| panic!("{d}"))
            .config
    }

    fn session(sub: &str) -> Session {
        Session {
            sub: sub.into(),
            user_id: Some(sub.into()),
            auth_time: 1,
            amr: vec![],
            satisfied: Default::default(),
            idp: "local".into(),
            claims: Default::default(),
            clients: vec![],
            created_at: 1,
            expires_at: 100,
            asserted: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_link_signs_out_at_once_only_without_a_session_or_with_its_users_hint() {
        let store = SledStore::temporary().unwrap();
        let config = config();
        let ctx = Ctx {
            config: &config,
            store: &store,
            now: 5,
        };
        store
            .put_session(&token_hash("cookie"), &session("u_ada"))
            .await
            .unwrap();
        let hinted = |sub: &str| Target {
            hinted_sub: Some(sub.into()),
            ..Default::default()
        };
        let decide = |t: &Target, c: Option<&'static str>| {
            let (ctx, t) = (&ctx, t.clone());
            async move { decide(ctx, &t, c).await.unwrap() }
        };
        assert_eq!(decide(&Target::default(), None).await, Decision::SignOut);
        assert_eq!(
            decide(&Target::default(), Some("other")).await,
            Decision::SignOut
        );
        assert_eq!(
            decide(&Target::default(), Some("cookie")).await,
            Decision::Confirm,
            "a stray link cannot sign anyone out"
        );
        assert_eq!(
            decide(&hinted("u_bob"), Some("cookie")).await,
            Decision::Confirm
        );
        assert_eq!(
            decide(&hinted("u_ada"), Some("cookie")).await,
            Decision::SignOut
        );
        let later = Ctx { now: 100, ..ctx };
        assert_eq!(
            super::decide(&later, &Target::default(), Some("cookie"))
                .await
                .unwrap(),
            Decision::SignOut,
            "an expired session is no session"
        );
        end_session(&ctx, Some("cookie")).await.unwrap();
        assert!(store
            .session(&token_hash("cookie"))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn ending_the_session_revokes_its_grants_but_offline_ones() {
        use crate::store::TokenStore;
        let store = SledStore::temporary().unwrap();
        let config = config();
        let ctx = Ctx {
            config: &config,
            store: &store,
            now: 5,
        };
        let hash = token_hash("cookie");
        store.put_session(&hash, &session("u_ada")).await.unwrap();
        for (id, session, offline) in [
            ("g1", hash.as_str(), false),
            ("g2", hash.as_str(), true),
            ("g3", "another", false),
        ] {
            let mut g = crate::store::contract::grant(id);
            g.data.session = Some(session.into());
            g.offline = offline;
            assert!(store.create_grant(&g).await.unwrap());
        }
        assert_eq!(end_session(&ctx, None).await.unwrap(), 0);
        assert_eq!(end_session(&ctx, Some("cookie")).await.unwrap(), 1);
        assert!(store.session(&hash).await.unwrap().is_none());
        assert!(store.grant("g1").await.unwrap().unwrap().revoked);
        assert!(!store.grant("g2").await.unwrap().unwrap().revoked);
        assert!(!store.grant("g3").await.unwrap().unwrap().revoked);
    }

    #[test]
    fn the_return_address_carries_the_state() {
        let target = Target {
            redirect: Some("https://app.example.com/bye?x=1".into()),
            state: Some("s 1".into()),
            ..Default::default()
        };
        assert_eq!(
            target.return_url().unwrap().as_str(),
            "https://app.example.com/bye?x=1&state=s+1"
        );
        assert_eq!(Target::default().return_url(), None);
    }
}
