//! Changing the account's email address in My Account: the new address must be proven
//! before it replaces the old one.
//!
//! [`request_change`] mails a six-digit code to the new address; [`confirm_change`]
//! takes it back and only then writes the address, verified. Nothing is stored about the
//! change but the code's hash, bound to the account *and* the new address (the confirm
//! form carries the address back; a different one does not match the hash), under the
//! email code's rules (`authn::email_otp`: five minutes, used once, five wrong tries,
//! three sends per ten minutes per account, at most ten wrong codes a day). Until the
//! code comes back the old address stays, verified as it was. A new address that
//! another account holds verified is refused; one another account holds *unverified* is
//! not claimed, and that account gives it up (`provision::release_unverified`) when this
//! one proves it.

use super::{record, refuse, AccountError};
use crate::audit::kind;
use crate::authn::email_otp::{self, EmailCheck, EmailIssue};
use crate::context::Ctx;
use crate::names::plausible_email;
use crate::secret::Secret;
use crate::store::{StoreError, User};

/// A code to mail to the new address.
#[derive(Debug)]
pub struct ChangeCode {
    pub to: String,
    pub code: Secret,
}

fn record_key(user_id: &str) -> String {
    format!("email-change:{user_id}")
}

fn code_hash(user_id: &str, address: &str, code: &str) -> String {
    email_otp::hash_code(
        &format!("email-change\0{user_id}\0{}", address.to_lowercase()),
        code,
    )
}

/// The new address as typed, checked: bounded, plausible, not the current one, and not
/// another account's verified address.
async fn checked_address(
    ctx: &Ctx<'_>,
    user: &User,
    address: &str,
) -> Result<String, AccountError> {
    let address = address.trim();
    if crate::limits::check_len("email address", address, crate::limits::EMAIL_MAX).is_err()
        || !plausible_email(address)
    {
        return refuse("Enter a valid email address.");
    }
    if user.email_verified
        && user
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(address))
    {
        return refuse("That is already your email address.");
    }
    if let Some(holder) = ctx.store.find_user(address).await? {
        if holder.id != user.id && !crate::provision::unverified_holder(&holder, address) {
            return refuse("That email address belongs to another account.");
        }
    }
    Ok(address.to_string())
}

/// Mail a code to `address`, the account's new email address to be. The shell mails it.
pub async fn request_change(
    ctx: &Ctx<'_>,
    user: &User,
    address: &str,
) -> Result<ChangeCode, AccountError> {
    let address = checked_address(ctx, user, address).await?;
    let code = email_otp::generate_code();
    let hash = code_hash(&user.id, &address, &code);
    match email_otp::store_code(ctx.store, &record_key(&user.id), &hash, ctx.now).await? {
        EmailIssue::Issued => {}
        EmailIssue::TooMany { .. } => {
            return refuse(
                "Too many codes were sent. Wait a few minutes before asking for another.",
            )
        }
    }
    ctx.store.flush().await?;
    Ok(ChangeCode {
        to: address,
        code: Secret::new(code),
    })
}

/// The code mailed to `address` came back: it becomes the account's email, verified. A
/// username that was the old address (a sign-up's) follows it. Returns the new address.
pub async fn confirm_change(
    ctx: &Ctx<'_>,
    user: &User,
    address: &str,
    code: &str,
) -> Result<String, AccountError> {
    let (store, now) = (ctx.store, ctx.now);
    if crate::limits::check_bytes("code", code, 32).is_err() {
        return refuse("That code is not right.");
    }
    let address = checked_address(ctx, user, address).await?;
    let hash = code_hash(&user.id, &address, code);
    let key = record_key(&user.id);
    if !email_otp::reserve_try(store, &key, now).await? {
        store.flush().await?;
        return refuse("Too many wrong codes today. Try again tomorrow.");
    }
    let checked = email_otp::check_hash(store, &key, &hash, now).await?;
    email_otp::settle_try(store, &key, checked, now).await?;
    match checked {
        EmailCheck::Ok => {}
        EmailCheck::Wrong { tries_left: 0 } => {
            store.flush().await?;
            return refuse("That code is not right, and it no longer works. Ask for a new one.");
        }
        EmailCheck::Wrong { .. } => {
            store.flush().await?;
            return refuse("That code is not right.");
        }
        EmailCheck::Expired | EmailCheck::Missing => {
            return refuse(
                "That code has expired or was replaced by a newer one. Ask for a new one.",
            )
        }
    }
    if let Some(holder) = store.find_user(&address).await? {
        if holder.id != user.id && crate::provision::unverified_holder(&holder, &address) {
            crate::provision::release_unverified(store, &holder, &address, now).await?;
        }
    }
    let mut updated = user.clone();
    let old = updated.email.replace(address.clone());
    if old
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(&updated.username))
    {
        updated.username = address.clone();
    }
    updated.email_verified = true;
    updated.updated_at = now;
    match store.update_user(&updated).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return refuse("That email address belongs to another account.")
        }
        Err(e) => return Err(e.into()),
    }
    store.flush().await?;
    record(
        store,
        now,
        kind::ACCOUNT_EMAIL,
        &user.id,
        vec!["the new address was proven with a mailed code".into()],
    )
    .await;
    Ok(address)
}
