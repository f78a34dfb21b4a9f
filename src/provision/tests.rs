//! Provisioning against a temporary store.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::config::{ConnectionKind, Jit};
use crate::secret::Secret;
use crate::store::contract::hooked::Hooked;
use crate::store::{IdentityStore, SledStore, UserStore};

fn conn(
    provision: bool,
    scheme: JitScheme,
    attributes: JitAttributes,
    link: JitLink,
) -> Connection {
    Connection {
        id: "google".into(),
        kind: ConnectionKind::Google,
        display_name: "Google".into(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        issuer: None,
        issuer_text: None,
        authorize_url: None,
        token_url: None,
        userinfo_url: None,
        userinfo: crate::config::UserinfoMode::Auto,
        emails_url: None,
        scopes: vec![],
        claims: BTreeMap::new(),
        jit: Jit {
            provision,
            scheme,
            attributes,
            link,
        },
        trust_upstream_mfa: false,
    }
}

fn identity(sub: &str, name: &str) -> UpstreamIdentity {
    let mut claims = BTreeMap::new();
    claims.insert("email".into(), json!(format!("{sub}@example.com")));
    claims.insert("email_verified".into(), json!(true));
    claims.insert("name".into(), json!(name));
    UpstreamIdentity {
        connection: "google".into(),
        subject: sub.into(),
        claims,
        amr: vec![],
        raw: Default::default(),
    }
}

fn silent() -> Connection {
    conn(
        true,
        JitScheme::Silent,
        JitAttributes::Override,
        JitLink::Never,
    )
}

#[tokio::test]
async fn first_login_creates_and_the_second_finds() {
    let store = SledStore::temporary().unwrap();
    let c = silent();
    let Provisioned::Subject(first) = provision(&store, &c, &identity("ada", "Ada"), 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    let user = store
        .user(first.user_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert_eq!(user.name.as_deref(), Some("Ada"));
    let Provisioned::Subject(second) = provision(&store, &c, &identity("ada", "Ada"), 2)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(first.sub, second.sub);
    assert_eq!(store.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn override_resyncs_and_preserve_local_does_not() {
    let store = SledStore::temporary().unwrap();
    let c = silent();
    provision(&store, &c, &identity("ada", "Ada"), 1)
        .await
        .unwrap();
    let Provisioned::Subject(s) = provision(&store, &c, &identity("ada", "Ada Lovelace"), 2)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        store
            .user(s.user_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada Lovelace")
    );
    let keep = conn(
        true,
        JitScheme::Silent,
        JitAttributes::PreserveLocal,
        JitLink::Never,
    );
    let Provisioned::Subject(s) = provision(&store, &keep, &identity("ada", "Someone Else"), 3)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        store
            .user(s.user_id.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Ada Lovelace")
    );
}

#[tokio::test]
async fn override_takes_a_new_verified_address_unless_someone_has_it() {
    let store = SledStore::temporary().unwrap();
    let c = silent();
    let Provisioned::Subject(s) = provision(&store, &c, &identity("ada", "Ada"), 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    let uid = s.user_id.unwrap();
    let moved = |email: &str, verified: bool, name: &str| {
        let mut i = identity("ada", name);
        i.claims.insert("email".into(), json!(email));
        i.claims.insert("email_verified".into(), json!(verified));
        i
    };
    // Unverified upstream addresses are not taken over.
    provision(&store, &c, &moved("ada@new.example", false, "Ada"), 2)
        .await
        .unwrap();
    let u = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(u.email.as_deref(), Some("ada@example.com"));
    // A verified one is, and the email index follows.
    provision(&store, &c, &moved("ada@new.example", true, "Ada"), 3)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_user("ada@new.example")
            .await
            .unwrap()
            .unwrap()
            .id,
        uid
    );
    // One that another account holds is not; the rest of the profile still syncs.
    provision(&store, &c, &identity("bob", "Bob"), 4)
        .await
        .unwrap();
    provision(&store, &c, &moved("bob@example.com", true, "Ada L."), 5)
        .await
        .unwrap();
    let u = store.user(&uid).await.unwrap().unwrap();
    assert_eq!(u.email.as_deref(), Some("ada@new.example"));
    assert_eq!(u.name.as_deref(), Some("Ada L."));
    assert_ne!(
        store
            .find_user("bob@example.com")
            .await
            .unwrap()
            .unwrap()
            .id,
        uid
    );
}

#[tokio::test]
async fn pass_through_writes_nothing_and_has_a_distinct_sub() {
    let store = SledStore::temporary().unwrap();
    let c = conn(
        false,
        JitScheme::Silent,
        JitAttributes::Override,
        JitLink::Never,
    );
    let Provisioned::Subject(s) = provision(&store, &c, &identity("583231", "Octo"), 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.sub, "google|583231");
    assert!(!s.has_account() && s.is_federated());
    assert_eq!(store.user_count().await.unwrap(), 0);
}

#[tokio::test]
async fn an_existing_email_is_never_linked_silently() {
    let store = SledStore::temporary().unwrap();
    let mut local = crate::store::User {
        role_sources: Default::default(),
        id: "u_local".into(),
        username: "ada".into(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: None,
        disabled: false,
        created_at: 0,
        updated_at: 0,
    };
    store.create_user(&local).await.unwrap();
    assert!(matches!(
        provision(&store, &silent(), &identity("ada", "Ada"), 1)
            .await
            .unwrap(),
        Provisioned::Refused(_)
    ));
    let linking = conn(
        true,
        JitScheme::Silent,
        JitAttributes::Override,
        JitLink::VerifiedEmailWithProof,
    );
    assert_eq!(
        provision(&store, &linking, &identity("ada", "Ada"), 1)
            .await
            .unwrap(),
        Provisioned::NeedsLinkProof {
            user_id: "u_local".into()
        }
    );
    assert!(
        store.identity("google", "ada").await.unwrap().is_none(),
        "nothing linked before proof"
    );
    let Provisioned::Subject(s) = link(&store, &linking, &identity("ada", "Ada"), &local, 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.sub, "u_local");
    local.disabled = true;
    store.update_user(&local).await.unwrap();
    assert!(
        matches!(provision(&store, &linking, &identity("ada", "Ada"), 2).await.unwrap(), Provisioned::Refused(r) if r.contains("disabled"))
    );
}

#[tokio::test]
async fn a_chosen_username_that_exists_is_refused() {
    let store = SledStore::temporary().unwrap();
    let c = conn(
        true,
        JitScheme::PromptUsername,
        JitAttributes::Override,
        JitLink::Never,
    );
    assert_eq!(
        provision(&store, &c, &identity("ada", "Ada"), 1)
            .await
            .unwrap(),
        Provisioned::NeedsUsername
    );
    let Provisioned::Subject(a) = create(&store, &c, &identity("ada", "Ada"), Some("ada"), 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    let taken = create(&store, &c, &identity("bob", "Bob"), Some("ADA"), 1)
        .await
        .unwrap();
    assert!(matches!(taken, Provisioned::Refused(r) if r.contains("taken")));
    assert_eq!(store.identity("google", "ada").await.unwrap(), a.user_id);
    assert!(store.identity("google", "bob").await.unwrap().is_none());
}

#[tokio::test]
async fn a_parallel_first_login_that_commits_between_the_lookups_is_followed() {
    let store = Hooked::new(Arc::new(SledStore::temporary().unwrap()));
    let c = silent();
    // The other request creates Ada's account just after this one found no identity
    // and just before it looks the email address up.
    let winner = c.clone();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    store.before("find_user", move |s| async move {
        create(s.as_ref(), &winner, &identity("ada", "Ada"), None, 1)
            .await
            .unwrap();
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let Provisioned::Subject(s) = provision(&store, &c, &identity("ada", "Ada"), 1)
        .await
        .unwrap()
    else {
        panic!("refused as if someone else had the address")
    };
    assert!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        "the other request never ran"
    );
    assert_eq!(store.identity("google", "ada").await.unwrap(), s.user_id);
    assert_eq!(store.user_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_first_logins_make_one_account() {
    let store = Arc::new(SledStore::temporary().unwrap());
    let rt = tokio::runtime::Handle::current();
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (store, rt) = (store.clone(), rt.clone());
            std::thread::spawn(move || {
                let made = rt.block_on(provision(
                    store.as_ref(),
                    &silent(),
                    &identity("ada", "Ada"),
                    1,
                ));
                match made.unwrap() {
                    Provisioned::Subject(s) => s.sub,
                    other => panic!("{other:?}"),
                }
            })
        })
        .collect();
    let subs: std::collections::BTreeSet<String> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(store.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn silent_jit_takes_only_names_the_username_prompt_would_accept() {
    let store = SledStore::temporary().unwrap();
    let conn = silent();
    let mut odd = identity("g-7", "Odd");
    odd.claims.remove("email");
    odd.claims
        .insert("preferred_username".into(), json!("two words\u{0}"));
    let Provisioned::Subject(s) = provision(&store, &conn, &odd, 1).await.unwrap() else {
        panic!("created");
    };
    assert_eq!(s.username.as_deref(), Some("google-g-7"));

    let mut long = identity("g-8", "Long");
    long.claims.remove("email");
    long.claims
        .insert("preferred_username".into(), json!("x".repeat(500)));
    long.subject = "s".repeat(300);
    let Provisioned::Subject(s) = provision(&store, &conn, &long, 1).await.unwrap() else {
        panic!("created");
    };
    let name = s.username.unwrap();
    assert!(crate::names::valid_username(&name), "{name}");
    assert!(name.starts_with("google-"));

    // A chosen name is held to the same rule.
    let chosen = identity("g-9", "Chooser");
    assert!(matches!(
        create(&store, &conn, &chosen, Some("no spaces please"), 1)
            .await
            .unwrap(),
        Provisioned::Refused(_)
    ));
}

fn holder(username: &str, email: Option<&str>, verified: bool) -> crate::store::User {
    crate::store::User {
        role_sources: Default::default(),
        id: "u_holder".into(),
        username: username.into(),
        email: email.map(String::from),
        email_verified: verified,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: None,
        disabled: false,
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test]
async fn an_unverified_holder_gives_its_address_up_to_a_verified_identity() {
    let store = SledStore::temporary().unwrap();
    store
        .create_user(&holder("ada@example.com", Some("ada@example.com"), false))
        .await
        .unwrap();
    let linking = conn(
        true,
        JitScheme::Silent,
        JitAttributes::Override,
        JitLink::VerifiedEmailWithProof,
    );
    let Provisioned::Subject(s) = provision(&store, &linking, &identity("ada", "Ada"), 7)
        .await
        .unwrap()
    else {
        panic!("an account of its own, not a link proof")
    };
    let id = s.user_id.unwrap();
    assert_ne!(id, "u_holder");
    let created = store.user(&id).await.unwrap().unwrap();
    assert_eq!(created.email.as_deref(), Some("ada@example.com"));
    assert!(created.email_verified);
    let released = store.user("u_holder").await.unwrap().unwrap();
    assert_eq!(released.email, None);
    assert_eq!(released.username, "u_holder");
    assert_eq!(released.updated_at, 7);
}

#[tokio::test]
async fn an_unverified_identity_takes_nothing_and_a_chosen_username_is_kept() {
    let store = SledStore::temporary().unwrap();
    store
        .create_user(&holder("ada@example.com", Some("ada@example.com"), false))
        .await
        .unwrap();
    // The upstream did not verify the address either: refused as before.
    let mut unverified = identity("ada", "Ada");
    unverified
        .claims
        .insert("email_verified".into(), json!(false));
    assert!(matches!(
        provision(&store, &silent(), &unverified, 1).await.unwrap(),
        Provisioned::Refused(_)
    ));
    assert_eq!(
        store
            .user("u_holder")
            .await
            .unwrap()
            .unwrap()
            .email
            .as_deref(),
        Some("ada@example.com")
    );

    // A name an administrator chose (the address as username, no email) is not an
    // unverified claim: it is kept, and the identity is refused.
    let named = holder("bob@example.com", None, false);
    assert!(!unverified_holder(&named, "bob@example.com"));
    assert!(unverified_holder(
        &holder("x", Some("Bob@Example.com"), false),
        "bob@example.com"
    ));
    assert!(!unverified_holder(
        &holder("x", Some("bob@example.com"), true),
        "bob@example.com"
    ));
}
