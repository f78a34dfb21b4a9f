//! Creating an account from the sign-in page: the checks a new email and password must
//! pass, and the account itself. Hashing the password is the shell's (Argon2 belongs on
//! the blocking pool), between [`sign_up_problems`] and [`sign_up`].

use super::Ctx;
use crate::authn::{password, steps};
use crate::config::StepOption;
use crate::crypto::random_token;
use crate::flow::Flow;
pub use crate::names::plausible_email;
use crate::store::{PasswordHash, StoreError, StoreResult, User};

pub const EMAIL_TAKEN: &str = "An account with this email already exists. Sign in instead.";

/// The outcome of creating an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedUp {
    /// The account exists and step `step` is satisfied by it.
    Created { user_id: String },
    /// Someone holds that email (a parallel sign-up may have won); the flow carries the
    /// message.
    Taken,
}

/// What is wrong with a sign-up form, one message a line; empty means go ahead and hash
/// the password. Remembers the email for the form's next showing.
pub async fn sign_up_problems(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    email: &str,
    new_password: &str,
    confirm: &str,
) -> StoreResult<Vec<String>> {
    // Before the email is remembered or looked up, and before Argon2 could see the
    // password: an oversized value is refused and kept nowhere.
    let capped = crate::limits::check_len("email address", email, crate::limits::EMAIL_MAX)
        .and(crate::limits::check_bytes(
            "password",
            new_password,
            crate::limits::PASSWORD_MAX,
        ))
        .and(crate::limits::check_bytes(
            "password",
            confirm,
            crate::limits::PASSWORD_MAX,
        ));
    if let Err(too_long) = capped {
        flow.last_login = None;
        let problem = format!("The {too_long}.");
        flow.tell(problem.clone());
        return Ok(vec![problem]);
    }
    flow.last_login = Some(email.to_string());
    let mut errors = Vec::new();
    if !plausible_email(email) {
        errors.push("Enter a valid email address.".to_string());
    }
    errors.extend(password::check_policy(
        &ctx.config.security.password_policy,
        new_password,
    ));
    if new_password != confirm {
        errors.push("The two passwords do not match.".into());
    }
    if errors.is_empty() && ctx.store.find_user(email).await?.is_some() {
        errors.push(EMAIL_TAKEN.into());
    }
    if !errors.is_empty() {
        flow.tell(errors.join("\n"));
    }
    Ok(errors)
}

/// Create the account for `email` with the password `hash`, and let it satisfy step
/// `step` of the flow. The shell makes it durable before the next page.
pub async fn sign_up(
    ctx: Ctx<'_>,
    flow: &mut Flow,
    step: usize,
    app_id: &str,
    email: &str,
    hash: PasswordHash,
) -> StoreResult<SignedUp> {
    let now = ctx.now;
    let user = User {
        id: format!("u_{}", random_token(16)),
        username: email.to_string(),
        email: Some(email.to_string()),
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: Some(hash),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    match ctx.store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            flow.tell(EMAIL_TAKEN);
            return Ok(SignedUp::Taken);
        }
        Err(e) => return Err(e),
    }
    crate::audit::record(
        ctx.store,
        now,
        crate::audit::kind::USER_SIGNED_UP,
        Some(app_id),
        Some(&user.id),
        Vec::new(),
    )
    .await;
    flow.log(format!("step {step}: signed up as {}", user.id));
    if let Err(e) = flow.step_succeeded(
        step,
        &StepOption::Password,
        steps::subject_of(ctx.store, ctx.config, &user).await?,
        vec!["pwd".into()],
        now,
    ) {
        flow.tell(e.description);
    }
    Ok(SignedUp::Created { user_id: user.id })
}
