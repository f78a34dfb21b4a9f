//! Unlocking an account by its verified email. After the hard cap of consecutive
//! failures only two things lift the lock: an administrator, or the account's owner
//! following a single-use link mailed to the account's verified address. The link is
//! offered when a sign-in runs into such a lock, at most once a day per account (a
//! stranger hammering a locked account cannot turn it into a mail cannon), and it
//! resets the account's count the way an administrator's unlock does.

use super::Ctx;
use crate::authn::attempts;
use crate::crypto::{random_token, token_hash};
use crate::secret::Secret;
use crate::store::{StoreResult, User};

/// How long an unlock link works, and how often one is offered per account.
pub const LINK_SECONDS: u64 = 24 * 60 * 60;

/// An unlock link to mail.
#[derive(Debug)]
pub struct UnlockMail {
    /// The account's verified address.
    pub to: String,
    /// The token of the link (`/unlock/{token}`); stored only by its hash.
    pub token: Secret,
}

fn link_key(token: &str) -> String {
    format!("unlock:{}", token_hash(token))
}

/// The link to mail for an account locked for good, if it has a verified address and
/// none was offered in the last day.
pub async fn offer(ctx: Ctx<'_>, user: &User) -> StoreResult<Option<UnlockMail>> {
    let Some(to) = user.email.clone().filter(|_| user.email_verified) else {
        return Ok(None);
    };
    let offered = ctx
        .store
        .hit(
            &format!("unlock-offered:{}", user.id),
            ctx.now,
            ctx.now + LINK_SECONDS,
        )
        .await?;
    if offered.count > 1 {
        return Ok(None);
    }
    let token = random_token(32);
    ctx.store
        .put_flash(
            &link_key(&token),
            user.id.as_bytes(),
            ctx.now + LINK_SECONDS,
        )
        .await?;
    Ok(Some(UnlockMail {
        to,
        token: Secret::new(token),
    }))
}

/// Follow an unlock link: once, before it expires. Returns the account it unlocked.
pub async fn redeem(ctx: Ctx<'_>, token: &str) -> StoreResult<Option<String>> {
    let Some(bytes) = ctx.store.take_flash(&link_key(token), ctx.now).await? else {
        return Ok(None);
    };
    let user_id = String::from_utf8_lossy(&bytes).into_owned();
    attempts::forgive_account(ctx.store, &user_id).await?;
    ctx.store
        .reset_counter(&format!("unlock-offered:{user_id}"))
        .await?;
    crate::audit::record(
        ctx.store,
        ctx.now,
        crate::audit::kind::ACCOUNT_UNLOCKED_BY_EMAIL,
        None,
        Some(&user_id),
        vec!["the owner followed the unlock link sent to the verified email address".into()],
    )
    .await;
    Ok(Some(user_id))
}
