//! Typed contexts for the hosted pages, and the template environment that renders them.
//!
//! Every page is a `Serialize` struct rendered by one template that extends
//! `base.html`. Built-in templates are compiled into the binary; a theme folder named in
//! the config overrides any of them by file name.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

/// What every page needs from the layout.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    /// Page title (also the `<h1>` unless the page says otherwise).
    pub title: String,
    /// The app the user is signing in to, when there is one.
    pub app_name: Option<String>,
    pub app_logo: Option<String>,
    /// Path prefix of the issuer (`""` when the issuer has no path), for links and assets.
    pub base: String,
}

/// One button on the step chooser.
#[derive(Debug, Clone, Serialize)]
pub struct OptionButton {
    /// The option's id (`password`, `google`, …), posted back as `option`.
    pub id: String,
    /// "Email and password", "Google", …
    pub label: String,
    /// `local` or `federated`; lets the theme style connections differently.
    pub kind: &'static str,
    /// A connection's kind (`google`, `github`, `oidc`, `oauth2`), empty for a local
    /// option: picks the button's badge, so Google and GitHub do not both show a "G".
    pub provider: &'static str,
}

/// `login.html`: the options of the current step.
#[derive(Debug, Clone, Serialize)]
pub struct LoginPage {
    pub layout: Layout,
    /// Form action for picking an option.
    pub action: String,
    pub csrf: String,
    /// 1-based step number and how many steps the app declares.
    pub step: usize,
    pub steps: usize,
    pub options: Vec<OptionButton>,
    /// Link to the sign-up page, when the app allows sign-up.
    pub sign_up_url: Option<String>,
    /// Form action that gives up on this sign-in.
    pub cancel_url: Option<String>,
}

/// `password.html`: username and password.
#[derive(Debug, Clone, Serialize)]
pub struct PasswordPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    /// Prefilled username (from `login_hint` or the last attempt).
    pub username: String,
    /// A message for the user after a failed attempt.
    pub error: Option<String>,
    /// Back to the chooser, when the step has other options.
    pub back_url: Option<String>,
    pub sign_up_url: Option<String>,
    /// "Forgot your password?".
    pub forgot_url: String,
    pub cancel_url: Option<String>,
}

/// `forgot.html`: asking for a password reset code.
#[derive(Debug, Clone, Serialize)]
pub struct ForgotPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub username: String,
    pub error: Option<String>,
    /// Back to the sign-in's password step.
    pub back_url: String,
}

/// `reset.html`: the mailed code and a new password.
#[derive(Debug, Clone, Serialize)]
pub struct ResetPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    /// What happened to the request (the same whatever was typed).
    pub info: String,
    /// Problems with the last try, one per line.
    pub errors: Vec<String>,
    /// The password rules, shown as hints.
    pub rules: Vec<String>,
    /// Back to the request page.
    pub again_url: String,
    pub back_url: String,
}

/// `verify_email.html`: the code mailed to a new account's address.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyEmailPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub email: String,
    pub error: Option<String>,
    /// Back to the sign-up form.
    pub sign_up_url: String,
}

/// `totp.html`: a code from the authenticator app, or enrolling one first.
#[derive(Debug, Clone, Serialize)]
pub struct TotpPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    /// Present while enrolling: the QR code and the key as text.
    pub enrol: Option<TotpEnrol>,
    pub error: Option<String>,
    pub back_url: Option<String>,
    pub cancel_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TotpEnrol {
    /// `data:image/png;base64,…`
    pub qr_data_url: String,
    /// The key in base32, grouped for reading.
    pub secret: String,
    pub otpauth_uri: String,
}

/// `email_code.html`: the code sent by email.
#[derive(Debug, Clone, Serialize)]
pub struct EmailOtpPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub info: String,
    pub error: Option<String>,
    pub back_url: Option<String>,
    pub cancel_url: Option<String>,
}

/// `recovery_code.html`: one of the saved recovery codes.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryCodePage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub error: Option<String>,
    pub back_url: Option<String>,
    pub cancel_url: Option<String>,
}

/// `recovery_codes.html`: the recovery codes, shown once after enrolment.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryCodesPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub codes: Vec<String>,
}

/// `federation.html`: what just-in-time provisioning needs from the user.
#[derive(Debug, Clone, Serialize)]
pub struct FederationPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    /// `consent`, `username` or `link`.
    pub need: &'static str,
    /// The connection's display name.
    pub connection: String,
    /// What the new account will hold (consent).
    pub details: Vec<Detail>,
    /// Prefilled username.
    pub username: String,
    /// The existing account's email (link).
    pub email: String,
    pub error: Option<String>,
    pub cancel_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub label: String,
    pub value: String,
}

/// `signup.html`: email and password for a new local account.
#[derive(Debug, Clone, Serialize)]
pub struct SignUpPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    pub email: String,
    /// Problems with what was entered, one per line.
    pub errors: Vec<String>,
    /// The password rules, shown as hints.
    pub rules: Vec<String>,
    pub sign_in_url: String,
}

/// `error.html`: something went wrong; never shows internals.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorPage {
    pub layout: Layout,
    /// A sentence for the user.
    pub message: String,
    /// What they can do about it, if anything.
    pub hint: Option<String>,
    /// Quoted to support; the logs carry the same id.
    pub request_id: String,
    /// A way back (the app, or a fresh sign-in), when there is one.
    pub back_url: Option<String>,
}

/// `logout.html`: confirm signing out.
#[derive(Debug, Clone, Serialize)]
pub struct LogoutPage {
    pub layout: Layout,
    pub action: String,
    pub csrf: String,
    /// Passed through the confirmation form.
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
    /// Whether there is a session at all (otherwise the page says so).
    pub signed_in: bool,
}

/// `message.html`: a plain informational page (signed out, nothing to do).
#[derive(Debug, Clone, Serialize)]
pub struct MessagePage {
    pub layout: Layout,
    pub message: String,
}

/// The issuer's root URL: which server this is, and where a person may go from here.
#[derive(Debug, Serialize)]
pub struct HomePage {
    pub layout: Layout,
    pub issuer: String,
    /// Whether My Account is served (`my_account.enabled`).
    pub my_account: bool,
}

const BUILT_IN: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "password.html",
        include_str!("../../templates/password.html"),
    ),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    (
        "verify_email.html",
        include_str!("../../templates/verify_email.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    ("logout.html", include_str!("../../templates/logout.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("cancel.html", include_str!("../../templates/cancel.html")),
    (
        "otp_links.html",
        include_str!("../../templates/otp_links.html"),
    ),
    ("totp.html", include_str!("../../templates/totp.html")),
    (
        "email_code.html",
        include_str!("../../templates/email_code.html"),
    ),
    (
        "recovery_code.html",
        include_str!("../../templates/recovery_code.html"),
    ),
    (
        "recovery_codes.html",
        include_str!("../../templates/recovery_codes.html"),
    ),
    (
        "federation.html",
        include_str!("../../templates/federation.html"),
    ),
    ("account.html", include_str!("../../templates/account.html")),
    (
        "account_totp.html",
        include_str!("../../templates/account_totp.html"),
    ),
];

/// The stylesheet served at `/assets/usher.css`.
pub const STYLESHEET: &str = include_str!("../../templates/usher.css");

/// Build the template environment: the theme folder first, then the built-in templates.
pub fn environment(theme: Option<&Path>) -> Environment<'static> {
    let mut env = Environment::new();
    let theme: Option<PathBuf> = theme.map(Path::to_path_buf);
    env.set_loader(move |name| {
        if let Some(dir) = &theme {
            // Only plain file names: a template name must not walk out of the theme folder.
            if !name.contains(['/', '\\']) && !name.starts_with('.') {
                match std::fs::read_to_string(dir.join(name)) {
                    Ok(text) => return Ok(Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read theme template {name}: {e}"),
                        ))
                    }
                }
            }
        }
        Ok(BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| (*text).to_string()))
    });
    env
}
