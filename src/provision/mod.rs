//! Just-in-time provisioning: turning an upstream identity into a subject under the
//! connection's `jit:` rules — a local account found, created or linked (JIT on), or a
//! pass-through subject with no account (JIT off).
//!
//! The account is created the moment the federated step succeeds, so later steps of the
//! same sign-in (TOTP enrolment) can use it. Creation is one store transaction keyed on
//! (connection, upstream subject), so concurrent first logins make exactly one account.
//! Never linked silently on an email match.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Connection, JitAttributes, JitLink, JitScheme};
use crate::flow::Subject;
use crate::names;
use crate::store::{Store, StoreError, StoreResult, User};
use crate::upstream::UpstreamIdentity;

/// What provisioning decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioned {
    /// The step succeeds for this subject.
    Subject(Box<Subject>),
    /// The user must confirm creating an account (`scheme: prompt_consent`).
    NeedsConsent,
    /// The user must choose a username (`scheme: prompt_username`).
    NeedsUsername,
    /// An account with this verified email exists; its owner must prove its password
    /// before the identity is linked to it (`link: verified_email_with_proof`).
    NeedsLinkProof { user_id: String },
    /// The step fails, with a reason for the user.
    Refused(String),
}

/// An interaction provisioning is waiting for, kept in the flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingFederation {
    pub step: usize,
    pub identity: UpstreamIdentity,
    pub need: Need,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Need {
    Consent,
    Username,
    LinkProof { user_id: String },
}

/// The `sub` of a pass-through subject: distinct per connection and upstream subject,
/// and never a local id (those start with `u_`, connection ids cannot contain `|`).
pub fn passthrough_sub(connection: &str, subject: &str) -> String {
    format!("{connection}|{subject}")
}

/// A subject for an identity with no account.
pub fn passthrough(identity: &UpstreamIdentity) -> Subject {
    Subject {
        sub: passthrough_sub(&identity.connection, &identity.subject),
        user_id: None,
        username: identity.claim_str("preferred_username"),
        email: identity.claim_str("email"),
        idp: identity.connection.clone(),
        claims: identity.claims.clone(),
        upstream_amr: identity.amr.clone(),
        ..Subject::default()
    }
}

/// The subject of an account reached through a connection.
pub fn account_subject(user: &User, identity: &UpstreamIdentity) -> Subject {
    Subject {
        sub: user.id.clone(),
        user_id: Some(user.id.clone()),
        username: Some(user.username.clone()),
        email: user.email.clone(),
        idp: identity.connection.clone(),
        claims: identity.claims.clone(),
        roles: user.roles.clone(),
        upstream_amr: identity.amr.clone(),
        ..Subject::default()
    }
}

/// The `amr` a connection step contributes: `fed`, plus the upstream's own methods when
/// the connection trusts them.
pub fn step_amr(conn: &Connection, identity: &UpstreamIdentity) -> Vec<String> {
    let mut amr = vec!["fed".to_string()];
    if conn.trust_upstream_mfa {
        for m in &identity.amr {
            if !amr.contains(m) {
                amr.push(m.clone());
            }
        }
    }
    amr
}

/// Decide what an upstream identity becomes. May write (attribute re-sync); the caller
/// flushes before answering.
pub async fn provision(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    now: u64,
) -> StoreResult<Provisioned> {
    let mut decided = decide(store, conn, identity, now).await?;
    if let Provisioned::Subject(subject) = &mut decided {
        crate::authn::steps::add_memberships(store, subject).await?;
        add_upstream_memberships(subject, identity);
    }
    Ok(decided)
}

pub mod memberships;

use memberships::Reach;
pub use memberships::UPSTREAM_NAMES_MAX;

/// Add the groups and roles a connection maps from the upstream (`claims: { groups:
/// …, roles: … }`) to the subject, for this sign-in: scripts see them beside the
/// account's own (a pass-through subject has only these), including names a sync did
/// not store (a group of that name is an administrator's).
fn add_upstream_memberships(subject: &mut Subject, identity: &UpstreamIdentity) {
    let names = |claim| {
        memberships::asserted(None, identity, claim, crate::limits::GROUP_NAME_MAX)
            .unwrap_or_default()
    };
    subject.asserted = crate::flow::Asserted {
        groups: names("groups"),
        roles: names("roles"),
    };
    subject
        .asserted
        .add_to(&mut subject.groups, &mut subject.roles);
}

/// [`provision`] before the account's groups are added to its subject.
async fn decide(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    now: u64,
) -> StoreResult<Provisioned> {
    if let Some(user_id) = store.identity(&conn.id, &identity.subject).await? {
        return returning(store, conn, identity, &user_id, now).await;
    }
    if !conn.jit.provision {
        return Ok(Provisioned::Subject(Box::new(passthrough(identity))));
    }
    if let Some(email) = identity.claim_str("email") {
        if let Some(existing) = store.find_user(&email).await? {
            // A parallel first login of this same identity may have created the account
            // between the two reads; the identity index, written in the same
            // transaction as the email, tells that apart from someone else's account.
            if let Some(user_id) = store.identity(&conn.id, &identity.subject).await? {
                return returning(store, conn, identity, &user_id, now).await;
            }
            // An address an account holds unverified is not claimed: it neither blocks
            // an identity whose provider verified it nor may be linked to by one. The
            // holder gives the address up, and the identity gets an account of its own.
            if identity.email_verified() && unverified_holder(&existing, &email) {
                release_unverified(store, &existing, &email, now).await?;
                return Ok(match conn.jit.scheme {
                    JitScheme::Silent => create(store, conn, identity, None, now).await?,
                    JitScheme::PromptConsent => Provisioned::NeedsConsent,
                    JitScheme::PromptUsername => Provisioned::NeedsUsername,
                });
            }
            return Ok(match conn.jit.link {
                JitLink::VerifiedEmailWithProof if identity.email_verified() => {
                    Provisioned::NeedsLinkProof { user_id: existing.id }
                }
                _ => Provisioned::Refused(format!(
                    "an account with the email address {email} already exists, and this connection does not link to existing accounts"
                )),
            });
        }
    }
    Ok(match conn.jit.scheme {
        JitScheme::Silent => create(store, conn, identity, None, now).await?,
        JitScheme::PromptConsent => Provisioned::NeedsConsent,
        JitScheme::PromptUsername => Provisioned::NeedsUsername,
    })
}

/// Whether `holder` holds `address` only as an unverified email: nobody proved the
/// address is theirs, so it is not claimed. An account whose *username* is the address
/// but whose email is another (or none) holds it as a name an administrator chose, and
/// keeps it.
pub fn unverified_holder(holder: &User, address: &str) -> bool {
    !holder.email_verified
        && holder
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(address.trim()))
}

/// Take an unverified address from the account holding it, for someone who proved it:
/// its email is cleared, and a username equal to the address (a sign-up's) becomes the
/// account's id, since usernames and emails share one namespace. The account itself
/// stays — its password, factors and sessions untouched — so nothing of a real person's
/// is lost; an administrator finds it by id (`usher users show <id>`) to rename, merge
/// or delete it. Audited as `user.email_released`.
pub async fn release_unverified(
    store: &dyn Store,
    holder: &User,
    address: &str,
    now: u64,
) -> StoreResult<()> {
    let mut released = holder.clone();
    released.email = None;
    released.email_verified = false;
    let renamed = released.username.eq_ignore_ascii_case(address.trim());
    if renamed {
        released.username = released.id.clone();
    }
    released.updated_at = now;
    store.update_user(&released).await?;
    let mut detail =
        vec!["an unverified email address was given up to someone who proved it".to_string()];
    if renamed {
        detail.push(format!("username is now {}", released.id));
    }
    crate::audit::record(
        store,
        now,
        crate::audit::kind::EMAIL_RELEASED,
        None,
        Some(&holder.id),
        detail,
    )
    .await;
    Ok(())
}

/// The account an identity is already linked to, re-synced under the connection's rules.
async fn returning(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    user_id: &str,
    now: u64,
) -> StoreResult<Provisioned> {
    let Some(user) = store.user(user_id).await? else {
        return Ok(Provisioned::Refused(
            "the linked account no longer exists".into(),
        ));
    };
    if user.disabled {
        return Ok(Provisioned::Refused("this account is disabled".into()));
    }
    let user = sync_attributes(store, conn, identity, user, now).await?;
    sync_groups(store, conn, identity, &user.id, Reach::returning(conn), now).await?;
    Ok(Provisioned::Subject(Box::new(account_subject(
        &user, identity,
    ))))
}

fn str_claim(identity: &UpstreamIdentity, name: &str) -> Option<String> {
    identity
        .claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A new account from an identity's claims.
fn new_user(conn: &Connection, identity: &UpstreamIdentity, username: String, now: u64) -> User {
    let mut user = User {
        role_sources: Default::default(),
        id: crate::crypto::account_id(),
        username,
        email: str_claim(identity, "email"),
        email_verified: identity.email_verified(),
        name: str_claim(identity, "name"),
        given_name: str_claim(identity, "given_name"),
        family_name: str_claim(identity, "family_name"),
        picture: str_claim(identity, "picture"),
        roles: vec![],
        password_hash: None,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    if let Some(roles) = memberships::asserted_roles(conn, identity) {
        memberships::apply_roles(&mut user, &conn.id, &roles, Reach::Full);
    }
    user
}

/// Apply the groups the upstream asserts (when the connection maps them) to the
/// account, as far as `reach` allows.
async fn sync_groups(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    user_id: &str,
    reach: Reach,
    now: u64,
) -> StoreResult<()> {
    let Some(names) = memberships::asserted_groups(conn, identity) else {
        return Ok(());
    };
    let done = memberships::sync_groups(store, &conn.id, user_id, &names, reach, now).await?;
    if !done.skipped.is_empty() {
        tracing::info!(
            connection = %conn.id,
            account = user_id,
            skipped = ?done.skipped,
            "upstream groups not applied: a group of that name is not this connection's, is full, or the account is at the cap"
        );
    }
    Ok(())
}

/// Create the account (with `username` if the user chose one). Silent creation tries
/// the upstream's email, then its username, then `<connection>-<subject>`; each must
/// pass the rule the username prompt applies (`names`), so an upstream cannot hand in a
/// name a person could not choose.
pub async fn create(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    chosen: Option<&str>,
    now: u64,
) -> StoreResult<Provisioned> {
    let candidates: Vec<String> = match chosen {
        Some(name) if names::valid_username(name.trim()) => vec![name.trim().to_string()],
        Some(_) => return Ok(Provisioned::Refused("that username is not valid".into())),
        None => [
            str_claim(identity, "email").filter(|e| names::plausible_email(e)),
            str_claim(identity, "preferred_username").filter(|n| names::valid_username(n)),
            Some(fallback_username(conn, identity)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    for username in candidates {
        let user = new_user(conn, identity, username, now);
        match store
            .create_federated_user(&user, &conn.id, &identity.subject)
            .await
        {
            Ok(winner) if winner.disabled => {
                return Ok(Provisioned::Refused("this account is disabled".into()))
            }
            Ok(winner) => {
                sync_groups(store, conn, identity, &winner.id, Reach::Full, now).await?;
                return Ok(Provisioned::Subject(Box::new(account_subject(
                    &winner, identity,
                ))));
            }
            Err(StoreError::Conflict("username")) if chosen.is_some() => {
                return Ok(Provisioned::Refused("that username is taken".into()))
            }
            Err(StoreError::Conflict("username")) => continue,
            Err(StoreError::Conflict("email")) => {
                return Ok(Provisioned::Refused(
                    "an account with this email address already exists".into(),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Provisioned::Refused(
        "no free username could be found".into(),
    ))
}

/// `<connection>-<subject>`, or, when an upstream's subject makes that too long or
/// odd, the connection and a digest of the subject (still stable per identity).
fn fallback_username(conn: &Connection, identity: &UpstreamIdentity) -> String {
    let plain = format!("{}-{}", conn.id, identity.subject);
    if names::valid_username(&plain) {
        return plain;
    }
    let digest = crate::crypto::b64url(&crate::crypto::sha256(identity.subject.as_bytes())[..12]);
    format!("{}-{digest}", conn.id.chars().take(40).collect::<String>())
}

/// Link the identity to an account whose owner proved its password.
pub async fn link(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    user: &User,
    now: u64,
) -> StoreResult<Provisioned> {
    if user.disabled {
        return Ok(Provisioned::Refused("this account is disabled".into()));
    }
    if !store
        .link_identity(&identity.connection, &identity.subject, &user.id)
        .await?
    {
        // Linked meanwhile (to this or another account): follow the link that exists.
        return Ok(
            match store
                .identity(&identity.connection, &identity.subject)
                .await?
            {
                Some(id) if id == user.id => {
                    Provisioned::Subject(Box::new(account_subject(user, identity)))
                }
                _ => Provisioned::Refused(
                    "this identity is already linked to another account".into(),
                ),
            },
        );
    }
    // The account was the owner's before the upstream's: its groups and roles follow
    // the upstream only as far as a returning sign-in's would.
    let reach = Reach::returning(conn);
    let mut user = user.clone();
    if let Some(roles) = memberships::asserted_roles(conn, identity) {
        let before = user.clone();
        memberships::apply_roles(&mut user, &conn.id, &roles, reach);
        if user != before {
            user.updated_at = now;
            store.update_user(&user).await?;
        }
    }
    sync_groups(store, conn, identity, &user.id, reach, now).await?;
    Ok(Provisioned::Subject(Box::new(account_subject(
        &user, identity,
    ))))
}

/// Re-sync profile attributes from the upstream, per `jit.attributes`.
async fn sync_attributes(
    store: &dyn Store,
    conn: &Connection,
    identity: &UpstreamIdentity,
    user: User,
    now: u64,
) -> StoreResult<User> {
    if conn.jit.attributes == JitAttributes::None {
        return Ok(user);
    }
    let overwrite = conn.jit.attributes == JitAttributes::Override;
    let mut updated = user.clone();
    let set = |field: &mut Option<String>, claim: &str| {
        if let Some(v) = str_claim(identity, claim) {
            if overwrite || field.is_none() {
                *field = Some(v);
            }
        }
    };
    set(&mut updated.name, "name");
    set(&mut updated.given_name, "given_name");
    set(&mut updated.family_name, "family_name");
    set(&mut updated.picture, "picture");
    if let Some(roles) = memberships::asserted_roles(conn, identity) {
        memberships::apply_roles(&mut updated, &conn.id, &roles, Reach::returning(conn));
    }
    // An address is taken over only when the upstream vouches for it: an unverified one
    // must never become the account's (it is a sign-in and recovery channel).
    if let Some(email) = str_claim(identity, "email").filter(|_| identity.email_verified()) {
        if (overwrite && updated.email.as_deref() != Some(email.as_str()))
            || updated.email.is_none()
        {
            updated.email = Some(email);
            updated.email_verified = true;
        }
    }
    if updated == user {
        return Ok(user);
    }
    updated.updated_at = now;
    match store.update_user(&updated).await {
        Ok(()) => Ok(updated),
        Err(StoreError::Conflict("email")) => {
            // Another account has the new address: keep this one's, sync the rest.
            updated.email = user.email.clone();
            updated.email_verified = user.email_verified;
            updated.updated_at = user.updated_at;
            if updated == user {
                return Ok(user);
            }
            updated.updated_at = now;
            store.update_user(&updated).await?;
            Ok(updated)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;

/// What [`settle`] did to the flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The step succeeded (`account`: the subject has an account, which the caller
    /// must make durable before answering).
    Passed { account: bool },
    /// Provisioning waits for the user; `flow.federation` says what for.
    Waiting,
    /// The step failed; the reason is for the user.
    Refused(String),
}

/// What happened to a federated identity, for the trace and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The identity was linked to an account already.
    Found,
    /// A new account was created for it (or would be, once the user answers).
    Provisioned,
    /// It was linked to an existing account whose owner proved its password.
    Linked,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Found => "found the linked account",
            How::Provisioned => "provisioned",
            How::Linked => "linked to",
        }
    }
}

/// An upstream identity arriving at step `step` through `conn`.
pub struct Arrival<'a> {
    pub conn: &'a Connection,
    pub step: usize,
    pub identity: UpstreamIdentity,
    pub how: How,
}

/// Apply provisioning's decision to the flow — the same for a real sign-in and for a
/// fixture.
pub async fn settle(
    store: &dyn Store,
    config: &crate::config::Config,
    flow: &mut crate::flow::Flow,
    arrival: Arrival<'_>,
    decided: Provisioned,
    now: u64,
) -> StoreResult<Settled> {
    let Arrival {
        conn,
        step,
        identity,
        how,
    } = arrival;
    let how = how.as_str();
    let need = match decided {
        Provisioned::Subject(mut subject) => {
            flow.federation = None;
            let account = subject.user_id.clone();
            match &account {
                Some(uid) => {
                    match store.user(uid).await? {
                        Some(user) => {
                            (subject.enrolled, subject.factors) =
                                crate::authn::steps::enrolled_and_factors(store, config, &user)
                                    .await?;
                            crate::authn::steps::script_view(store, config, &mut subject, &user, now, None)
                                .await?;
                        }
                        None => {
                            subject.enrolled = crate::authn::steps::enrolled(store, uid).await?;
                        }
                    }
                    flow.log(format!(
                        "step {step}: {} identity {}: {how} {uid}",
                        conn.id, identity.subject
                    ));
                }
                None => flow.log(format!(
                    "step {step}: {} identity {} passed through without an account (jit.provision is off)",
                    conn.id, identity.subject
                )),
            }
            let amr = step_amr(conn, &identity);
            let option = crate::config::StepOption::Connection(conn.id.clone());
            if let Err(e) = flow.step_succeeded(step, &option, *subject, amr, now) {
                flow.tell(e.description);
            }
            return Ok(Settled::Passed {
                account: account.is_some(),
            });
        }
        Provisioned::Refused(reason) => {
            flow.federation = None;
            flow.step_failed(
                step,
                &conn.id,
                &format!("provisioning refused: {reason}"),
                now,
            );
            return Ok(Settled::Refused(reason));
        }
        Provisioned::NeedsConsent => Need::Consent,
        Provisioned::NeedsUsername => Need::Username,
        Provisioned::NeedsLinkProof { user_id } => Need::LinkProof { user_id },
    };
    flow.log(format!(
        "step {step}: provisioning waits for the user ({need:?})"
    ));
    flow.federation = Some(PendingFederation {
        step,
        identity,
        need,
    });
    Ok(Settled::Waiting)
}
