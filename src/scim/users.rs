//! The admin operations on users: list (filter, paging), get, create, replace, patch,
//! delete, and the TOTP reset the CLI offers. Each write is checked (username, email,
//! picture URL, password policy), made durable before the answer, and audited.
//! Deactivating or deleting an account also ends its SSO sessions.
//!
//! Every string a write keeps is capped (`crate::limits`), checked on the finished
//! draft so POST, PUT and PATCH are held to the same numbers; a value over its cap is
//! `invalidValue` and nothing is written.

use serde_json::{json, Value};

use super::filter;
use super::patch;
use super::resource::{self, Draft, Record};
use super::{Answer, ScimError, LIST_RESPONSE};
use crate::account::{sign_out_everywhere, Keep};
use crate::audit::{self, kind};
use crate::authn::password;
use crate::config::Config;
use crate::context::Ctx;
use crate::limits::{self, TooLong};
use crate::store::{Store, User, UserQuery};

/// Results per page when the request does not say, and the most it may ask for.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 200;

/// One admin client acting on the store.
pub struct Admin<'a> {
    pub store: &'a dyn Store,
    pub config: &'a Config,
    /// The client acting; audited as the event's `app`.
    pub client_id: &'a str,
    pub now: u64,
}

pub(super) fn number(text: Option<&str>, name: &str) -> Result<Option<i64>, ScimError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| ScimError::bad("invalidValue", format!("{name} must be an integer"))),
    }
}

/// `count` of a list request: the default when absent, negative as 0 (RFC 7644
/// §3.4.2.4), at most [`MAX_COUNT`].
pub(super) fn page_size(count: Option<&str>) -> Result<usize, ScimError> {
    Ok(number(count, "count")?
        .map_or(DEFAULT_COUNT, |c| usize::try_from(c.max(0)).unwrap_or(0))
        .min(MAX_COUNT))
}

fn plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Every string of a draft within its cap. The message names the attribute, never the
/// value (it may be a megabyte long).
fn within_caps(d: &Draft) -> Result<(), TooLong> {
    let opt = |field, v: &Option<String>, max| match v {
        Some(v) => limits::check_len(field, v, max),
        None => Ok(()),
    };
    limits::check_len("userName", &d.user_name, limits::USERNAME_MAX)?;
    opt("emails.value", &d.email, limits::EMAIL_MAX)?;
    opt("externalId", &d.external_id, limits::EXTERNAL_ID_MAX)?;
    opt("displayName", &d.name, limits::NAME_MAX)?;
    opt("name.givenName", &d.given_name, limits::NAME_MAX)?;
    opt("name.familyName", &d.family_name, limits::NAME_MAX)?;
    if let Some(p) = &d.picture {
        limits::check_bytes("photos.value", p, limits::URL_MAX)?;
    }
    if let Some(p) = &d.password {
        limits::check_bytes("password", p, limits::PASSWORD_MAX)?;
    }
    if d.roles.len() > limits::ROLES_MAX {
        return Err(TooLong {
            field: "roles",
            max: limits::ROLES_MAX,
            unit: "values",
        });
    }
    for r in &d.roles {
        limits::check_len("roles.value", r, limits::ROLE_MAX)?;
    }
    Ok(())
}

/// The names of the attributes that differ, for the audit trail (never their values:
/// the trail outlives the data it describes).
fn changes(old: &Draft, new: &Draft) -> Vec<String> {
    let mut out = Vec::new();
    let mut diff = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_string());
        }
    };
    diff("userName", old.user_name != new.user_name);
    diff("externalId", old.external_id != new.external_id);
    diff("displayName", old.name != new.name);
    diff("name.givenName", old.given_name != new.given_name);
    diff("name.familyName", old.family_name != new.family_name);
    diff("emails", old.email != new.email);
    diff("emailVerified", old.email_verified != new.email_verified);
    diff("photos", old.picture != new.picture);
    diff("roles", old.roles != new.roles);
    diff("active", old.active != new.active);
    diff("password", new.password.is_some());
    out
}

impl<'a> Admin<'a> {
    /// `client_id` acting on the store of `ctx`.
    pub fn new(ctx: &Ctx<'a>, client_id: &'a str) -> Admin<'a> {
        Admin {
            store: ctx.store,
            config: ctx.config,
            client_id,
            now: ctx.now,
        }
    }

    /// The SCIM base URL, for `meta.location`.
    pub fn base(&self) -> String {
        format!("{}/scim/v2", crate::oidc::issuer(self.config))
    }

    fn answer(&self, status: u16, record: &Record) -> Answer {
        Answer {
            status,
            body: Some(record.to_json(&self.base())),
            etag: Some(record.version()),
            location: (status == 201).then(|| format!("{}/Users/{}", self.base(), record.user.id)),
        }
    }

    async fn load(&self, id: &str) -> Result<Record, ScimError> {
        Record::load(self.store, id)
            .await?
            .ok_or_else(|| ScimError::not_found(&format!("User {id}")))
    }

    /// `If-Match`: the request goes ahead only on the current version (or `*`).
    fn check_version(record: &Record, if_match: Option<&str>) -> Result<(), ScimError> {
        let Some(header) = if_match else {
            return Ok(());
        };
        let current = record.version();
        let strip = |v: &str| v.trim().trim_start_matches("W/").to_string();
        let ok = header
            .split(',')
            .any(|v| v.trim() == "*" || strip(v) == strip(&current));
        if ok {
            Ok(())
        } else {
            Err(ScimError::precondition())
        }
    }

    fn validate(&self, d: &Draft) -> Result<(), ScimError> {
        let invalid = |m: String| Err(ScimError::bad("invalidValue", m));
        // First, so no check below reads (or a message repeats) an oversized value.
        if let Err(e) = within_caps(d) {
            return invalid(e.to_string());
        }
        if d.user_name.is_empty()
            || d.user_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid("userName must not be empty or hold spaces".into());
        }
        if let Some(e) = &d.email {
            if !plausible_email(e) {
                return invalid(format!("`{e}` is not an email address"));
            }
        }
        if let Some(p) = &d.picture {
            let ok = url::Url::parse(p).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                return invalid("photos.value must be an http:// or https:// URL".into());
            }
        }
        if let Some(p) = &d.password {
            let problems = password::check_policy(&self.config.security.password_policy, p);
            if !problems.is_empty() {
                return invalid(format!(
                    "the password does not meet the policy: {}",
                    problems.join(" ")
                ));
            }
        }
        Ok(())
    }

    /// `GET /Users`: filter, then page (1-based `startIndex`, `count`). The store
    /// filters and pages (`UserQueryStore::query_users`).
    pub async fn list(
        &self,
        filter_text: Option<&str>,
        start_index: Option<&str>,
        count: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let filter = match filter_text.filter(|f| !f.trim().is_empty()) {
            None => None,
            Some(text) => {
                let f = filter::parse(text).map_err(|e| ScimError::bad("invalidFilter", e))?;
                let mapped = f.try_map(&mut |p: &String| {
                    resource::filter_attr(p).ok_or_else(|| {
                        ScimError::bad(
                            "invalidFilter",
                            format!("`{p}` cannot be filtered on; try userName, emails.value, externalId, displayName, active or id"),
                        )
                    })
                })?;
                Some(mapped)
            }
        };
        let start = number(start_index, "startIndex")?.unwrap_or(1).max(1);
        let count = page_size(count)?;
        let page = self
            .store
            .query_users(&UserQuery {
                filter,
                start: usize::try_from(start - 1).unwrap_or(usize::MAX),
                count,
            })
            .await?;
        let base = self.base();
        let resources: Vec<Value> = Record::page(self.store, page.users)
            .await?
            .iter()
            .map(|r| r.to_json(&base))
            .collect();
        Ok(Answer::ok(json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })))
    }

    pub async fn get(&self, id: &str) -> Result<Answer, ScimError> {
        Ok(self.answer(200, &self.load(id).await?))
    }

    /// `POST /Users`. Blocking (Argon2 when a password is given).
    pub async fn create(&self, body: &Value) -> Result<Answer, ScimError> {
        let draft = Draft::from_json(body)?;
        self.validate(&draft)?;
        let mut user = blank_user();
        user.id = crate::crypto::account_id();
        user.created_at = self.now;
        apply(&mut user, &draft, self.now).await?;
        self.store.create_user(&user).await?;
        self.store
            .set_external_id(&user.id, draft.external_id.as_deref())
            .await?;
        self.store.flush().await?;
        let record = self.load(&user.id).await?;
        let mut detail = vec![format!("userName {}", user.username)];
        if !draft.active {
            detail.push("created inactive".into());
        }
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_USER_CREATED,
            Some(self.client_id),
            Some(&user.id),
            detail,
        )
        .await;
        Ok(self.answer(201, &record))
    }

    /// `PUT /Users/{id}`: the body replaces every writable attribute.
    pub async fn replace(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        Self::check_version(&record, if_match)?;
        let mut draft = Draft::from_json(body)?;
        // emailVerified is Usher's own; a resource from elsewhere need not carry it.
        let carries_verified = body
            .get(super::USHER_USER_SCHEMA)
            .and_then(|e| e.get("emailVerified"))
            .is_some();
        if !carries_verified && draft.email == record.user.email {
            draft.email_verified = record.user.email_verified;
        }
        self.write(record, draft).await
    }

    /// `PATCH /Users/{id}`: all operations apply, or none.
    pub async fn patch(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        Self::check_version(&record, if_match)?;
        let mut draft = Draft::from_record(&record);
        patch::apply(&mut draft, body)?;
        if draft.email != record.user.email && draft.email_verified == record.user.email_verified {
            // A new address is unproven unless the request says otherwise.
            draft.email_verified = false;
        }
        self.write(record, draft).await
    }

    async fn write(&self, record: Record, draft: Draft) -> Result<Answer, ScimError> {
        self.validate(&draft)?;
        let before = Draft::from_record(&record);
        let changed = changes(&before, &draft);
        if changed.is_empty() {
            return Ok(self.answer(200, &record));
        }
        let mut user = record.user.clone();
        apply(&mut user, &draft, self.now).await?;
        self.store.update_user(&user).await?;
        self.store
            .set_external_id(&user.id, draft.external_id.as_deref())
            .await?;
        let mut detail = vec![format!("changed: {}", changed.join(", "))];
        // Disabling shuts the account off; a password set by an administrator is a
        // reset: either way nothing signed in before may stay.
        let disabled = user.disabled && !record.user.disabled;
        if disabled || changed.iter().any(|c| c == "password") {
            let ended = sign_out_everywhere(self.store, &user.id, Keep::default()).await?;
            detail.push(ended.to_string());
        }
        self.store.flush().await?;
        let kind = match (record.user.disabled, user.disabled) {
            (false, true) => kind::ADMIN_USER_DISABLED,
            (true, false) => kind::ADMIN_USER_ENABLED,
            _ => kind::ADMIN_USER_UPDATED,
        };
        audit::record(
            self.store,
            self.now,
            kind,
            Some(self.client_id),
            Some(&user.id),
            detail,
        )
        .await;
        Ok(self.answer(200, &self.load(&user.id).await?))
    }

    /// `DELETE /Users/{id}`: the account, its identities, second factors and sessions.
    pub async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        Self::check_version(&record, if_match)?;
        let ended = sign_out_everywhere(self.store, id, Keep::default()).await?;
        crate::authn::reset_totp(self.store, id).await?;
        crate::authn::attempts::forgive_account(self.store, id).await?;
        self.store.delete_user(id).await?;
        self.store.flush().await?;
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_USER_DELETED,
            Some(self.client_id),
            Some(id),
            vec![
                format!("userName {}", record.user.username),
                format!(
                    "{} identity link(s) removed, {ended}",
                    record.identities.len()
                ),
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

    /// Remove the account's authenticator app and recovery codes; it enrols again at
    /// its next sign-in that needs TOTP. Whoever held the old factor may be signed in:
    /// every session ends and every grant is revoked.
    pub async fn reset_totp(&self, id: &str) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        let ended = sign_out_everywhere(self.store, id, Keep::default()).await?;
        crate::authn::reset_totp(self.store, id).await?;
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_TOTP_RESET,
            Some(self.client_id),
            Some(id),
            vec![
                format!("had an authenticator: {}", record.totp),
                ended.to_string(),
            ],
        )
        .await;
        Ok(self.answer(200, &self.load(id).await?))
    }

    /// Sign the account out everywhere: every SSO session ends and every grant is
    /// revoked, offline ones included (a lost laptop, a departing employee who keeps
    /// the account). Answers the SCIM representation of the user.
    pub async fn sign_out(&self, id: &str) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        let ended = sign_out_everywhere(self.store, id, Keep::default()).await?;
        self.store.flush().await?;
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_USER_SIGNED_OUT,
            Some(self.client_id),
            Some(id),
            vec![ended.to_string()],
        )
        .await;
        Ok(self.answer(200, &record))
    }

    /// Lift the account's lock and forgive its consecutive failures, the cap's
    /// lock-for-good included (`authn::attempts`).
    pub async fn unlock(&self, id: &str) -> Result<Answer, ScimError> {
        let record = self.load(id).await?;
        let before = crate::authn::attempts::standing(self.store, id, self.now).await?;
        crate::authn::attempts::forgive_account(self.store, id).await?;
        self.store.flush().await?;
        let was = match before.locked_until {
            0 => "not locked".to_string(),
            u64::MAX => "locked until unlocked".to_string(),
            until => format!("locked until {}", crate::timefmt::rfc3339(until)),
        };
        audit::record(
            self.store,
            self.now,
            kind::ADMIN_USER_UNLOCKED,
            Some(self.client_id),
            Some(id),
            vec![format!(
                "{} consecutive failure(s) forgiven; was {was}",
                before.failures
            )],
        )
        .await;
        Ok(self.answer(200, &record))
    }
}

fn blank_user() -> User {
    User {
        role_sources: Default::default(),
        id: String::new(),
        username: String::new(),
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: Vec::new(),
        password_hash: None,
        disabled: false,
        created_at: 0,
        updated_at: 0,
    }
}

/// Write a draft into an account; a password is hashed on the blocking pool.
async fn apply(user: &mut User, d: &Draft, now: u64) -> Result<(), ScimError> {
    user.username = d.user_name.clone();
    user.email = d.email.clone();
    user.email_verified = d.email.is_some() && d.email_verified;
    user.name = d.name.clone();
    user.given_name = d.given_name.clone();
    user.family_name = d.family_name.clone();
    user.picture = d.picture.clone();
    user.roles = d.roles.clone();
    user.disabled = !d.active;
    if let Some(p) = &d.password {
        let hash = password::hash_off_runtime(p).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ScimError::new(500, None, "the server could not complete the request")
        })?;
        user.password_hash = Some(hash);
    }
    user.updated_at = now;
    Ok(())
}
