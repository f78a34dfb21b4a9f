//! Notices of credential changes: every change of the password, the email address, a
//! second factor, the recovery codes or a linked connection is mailed to the account's
//! address — what changed, when, from which client address, and what to do if it was
//! not its owner. The rule is here, once; My Account's forms call [`changed`], and so
//! does any other path that changes a credential (a password reset).
//!
//! A notice never decides a change: the change is made first, and a notice that cannot
//! be rendered or sent is logged, never reported as the change failing.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::mail::{Mailer, RenderedMail};
use crate::store::User;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Password,
    /// The password was set through a reset (a code or link by email).
    PasswordReset,
    /// The account's email address; the notice goes to the old address.
    Email,
    TotpEnrolled,
    TotpRemoved,
    RecoveryCodes,
    /// A connection (its display name) was linked to the account.
    ConnectionLinked(String),
    /// A connection (its display name) was unlinked from the account.
    ConnectionUnlinked(String),
}

impl Change {
    /// The change in a few words, as the subject line says it.
    pub fn what(&self) -> String {
        match self {
            Change::Password => "Your password was changed".into(),
            Change::PasswordReset => "Your password was reset".into(),
            Change::Email => "Your email address was changed".into(),
            Change::TotpEnrolled => "An authenticator app was set up".into(),
            Change::TotpRemoved => "Your authenticator app was removed".into(),
            Change::RecoveryCodes => "New recovery codes were made".into(),
            Change::ConnectionLinked(c) => format!("{c} was linked to your account"),
            Change::ConnectionUnlinked(c) => format!("{c} was unlinked from your account"),
        }
    }
}

/// Who made a change, as far as the server can tell, and how its owner is told: the
/// request's client address (decided once, `crate::client_addr`) and the mailer.
#[derive(Clone, Default)]
pub struct By {
    pub client: Option<IpAddr>,
    /// `None` sends nothing (a test of a rule that mails nobody).
    pub mailer: Option<Arc<Mailer>>,
}

impl std::fmt::Debug for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("By")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The notice of `change` on `user`'s account at `at`, made from `client`.
pub fn render(
    config: &Config,
    user: &User,
    change: &Change,
    at: u64,
    client: Option<IpAddr>,
) -> RenderedMail {
    let what = change.what();
    let when = crate::timefmt::rfc3339(at);
    let from = client.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
    let issuer = crate::oidc::issuer(config);
    let account = format!("{}/myaccount", issuer.trim_end_matches('/'));
    let who = &user.username;
    let lines = [
        format!("{what} on your account {who} at {when} (UTC), from the address {from}."),
        "If this was you, there is nothing to do.".to_string(),
        format!(
            "If it was not you, someone else may be able to sign in as you: sign in at {account}, change your password, check your authenticator app, linked connections and sessions, and tell your administrator. If you cannot sign in any more, tell your administrator now."
        ),
    ];
    let text = format!("{}\n", lines.join("\n\n"));
    let html = lines
        .iter()
        .map(|l| format!("<p>{}</p>", escape(l)))
        .collect::<String>();
    RenderedMail {
        subject: what,
        text,
        html,
    }
}

/// Tell `user` that `change` was made at `at` by `by`. Nothing is sent to an account
/// without a verified address; a failure is logged. Sending runs on the blocking pool and is
/// awaited, so the notice has left (or failed) when the change's answer goes back.
pub async fn changed(config: &Config, by: &By, user: &User, change: Change, at: u64) {
    let Some(mailer) = by.mailer.clone() else {
        return;
    };
    // Only a verified address: an unproven one may be a stranger's, who would learn the
    // username and the client address of every change.
    let Some(to) = user
        .email
        .clone()
        .filter(|e| !e.is_empty() && user.email_verified)
    else {
        tracing::debug!(user = %user.id, change = ?change, "no verified address to send the notice to");
        return;
    };
    let mail = render(config, user, &change, at, by.client);
    let sent = tokio::task::spawn_blocking(move || {
        mailer.send(&to, &mail.subject, &mail.text, &mail.html)
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, user = %user.id, change = ?change, "could not send the notice of a change")
        }
        Err(e) => {
            tracing::error!(error = %e, user = %user.id, change = ?change, "the notice of a change was not sent")
        }
    }
}

/// [`changed`] for the account `user_id`, read from the store (a change made while
/// signing in, where the flow knows only the id). A store failure is logged like a
/// failure to send.
pub async fn changed_by_id(ctx: &crate::context::Ctx<'_>, by: &By, user_id: &str, change: Change) {
    match ctx.store.user(user_id).await {
        Ok(Some(user)) => changed(ctx.config, by, &user, change, ctx.now).await,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, user = user_id, change = ?change, "could not read the account to send the notice of a change")
        }
    }
}

/// The client address a sign-in recorded (`Flow::ip`), for a notice.
pub fn flow_client(ip: &str) -> Option<IpAddr> {
    ip.parse().ok()
}
