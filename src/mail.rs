//! Outgoing mail: the e-mail OTP message, and the two ways it leaves — an outbox folder
//! of `.eml` files for development, or an SMTP server.
//!
//! Sending is blocking (lettre's synchronous transport, and file writes); callers run
//! [`Mailer::send`] on the blocking pool. Messages are `multipart/alternative` with a
//! plain-text and an HTML part, rendered from `templates/email_otp.{txt,html}`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use minijinja::{context, Environment};

use crate::config::{EmailConfig, SmtpTls};
use crate::crypto::{random_token, unix_now};

/// The sender of outbox messages, which have no configured `from`. Nothing is delivered
/// from the outbox, so the address only has to be well formed.
const OUTBOX_FROM: &str = "Usher <usher@localhost>";

/// How long one SMTP exchange may take. lettre's default is a minute; a sign-in page
/// waiting on a stuck server should give up sooner and say so.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("`{address}` is not a usable e-mail address: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("cannot write to the outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the SMTP transport for {host}: {reason}")]
    Setup { host: String, reason: String },
    #[error("the SMTP server refused or failed: {0}")]
    Smtp(String),
    #[error("cannot render the mail template {name}: {reason}")]
    Template { name: &'static str, reason: String },
}

/// Where mail goes, as configured.
pub enum Mailer {
    /// Each message becomes a file in this folder.
    Outbox { dir: PathBuf, from: Mailbox },
    Smtp {
        transport: SmtpTransport,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    // By hand, so the SMTP credentials inside the transport can never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Outbox { dir, from } => f
                .debug_struct("Outbox")
                .field("dir", dir)
                .field("from", &from.to_string())
                .finish(),
            Mailer::Smtp { from, .. } => f
                .debug_struct("Smtp")
                .field("from", &from.to_string())
                .finish_non_exhaustive(),
        }
    }
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            address: address.to_string(),
            reason: e.to_string(),
        })
}

impl Mailer {
    /// Builds the mailer. Makes no connection: an unreachable SMTP server shows up at
    /// the first send, not at start.
    pub fn from_config(config: &EmailConfig) -> Result<Mailer, MailError> {
        match config {
            EmailConfig::Outbox(dir) => Ok(Mailer::Outbox {
                dir: dir.clone(),
                from: mailbox(OUTBOX_FROM)?,
            }),
            EmailConfig::Smtp(smtp) => {
                let setup = |e: lettre::transport::smtp::Error| MailError::Setup {
                    host: smtp.host.clone(),
                    reason: e.to_string(),
                };
                let builder = match smtp.tls {
                    // Plain text: only for a relay on the same machine or a test sink.
                    SmtpTls::None => SmtpTransport::builder_dangerous(&smtp.host),
                    SmtpTls::StartTls => {
                        SmtpTransport::starttls_relay(&smtp.host).map_err(setup)?
                    }
                    SmtpTls::Tls => SmtpTransport::relay(&smtp.host).map_err(setup)?,
                };
                let mut builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
                if let Some(username) = &smtp.username {
                    let password = smtp
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(username.clone(), password));
                }
                Ok(Mailer::Smtp {
                    transport: builder.build(),
                    from: mailbox(&smtp.from)?,
                })
            }
        }
    }

    /// Sends one message with a plain-text and an HTML body. Blocking.
    pub fn send(
        &self,
        to: &str,
        subject: &str,
        text_body: &str,
        html_body: &str,
    ) -> Result<(), MailError> {
        let from = match self {
            Mailer::Outbox { from, .. } | Mailer::Smtp { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(mailbox(to)?)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(
                text_body.to_string(),
                html_body.to_string(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::Outbox { dir, .. } => write_to_outbox(dir, &message).map(|_| ()),
            Mailer::Smtp { transport, .. } => transport
                .send(&message)
                .map(|_| ())
                .map_err(|e| MailError::Smtp(e.to_string())),
        }
    }
}

/// Writes `message` as `<unix seconds>-<random>.eml`: names sort by time, and the
/// random part keeps two messages of the same second apart.
fn write_to_outbox(dir: &std::path::Path, message: &Message) -> Result<PathBuf, MailError> {
    let outbox_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| MailError::Outbox { path, source }
    };
    std::fs::create_dir_all(dir).map_err(outbox_error(dir))?;
    let path = dir.join(format!("{:010}-{}.eml", unix_now(), random_token(6)));
    let mut options = std::fs::OpenOptions::new();
    // Never overwrite another message; and the files hold live codes, so keep them
    // to the owner.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(&path)
        .and_then(|mut file| file.write_all(&message.formatted()))
        .map_err(outbox_error(&path))?;
    Ok(path)
}

/// A rendered message, ready for [`Mailer::send`].
#[derive(Clone)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for RenderedMail {
    // The bodies carry the code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedMail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

const OTP_TEXT: (&str, &str) = ("email_otp.txt", include_str!("../templates/email_otp.txt"));
const OTP_HTML: (&str, &str) = (
    "email_otp.html",
    include_str!("../templates/email_otp.html"),
);

/// Text made safe to put inside HTML.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A message of plain paragraphs, as text and as HTML (each paragraph escaped).
fn paragraphs(subject: String, paragraphs: &[String]) -> RenderedMail {
    RenderedMail {
        subject,
        text: format!("{}\n", paragraphs.join("\n\n")),
        html: paragraphs
            .iter()
            .map(|p| format!("<p>{}</p>", escape_html(p)))
            .collect(),
    }
}

/// The mail with the code that lets the owner of an account choose a new password.
pub fn reset_code_mail(code: &str, minutes: u64) -> RenderedMail {
    paragraphs(
        "Your password reset code".into(),
        &[
            "Someone asked to reset the password of your account. If that was you, enter this code on the page where you asked:".into(),
            code.to_string(),
            format!("It works once, within the next {minutes} minutes."),
            "If you did not ask for this, ignore this mail: your password stays as it is, and nobody can change it without this code.".into(),
        ],
    )
}

/// The notice that an account's password was reset with a mailed code.
pub fn password_reset_notice(when: &str, from: &str) -> RenderedMail {
    paragraphs(
        "Your password was reset".into(),
        &[
            format!("The password of your account was reset at {when}, from the address {from}, with a code sent to this email address. Every session of the account was signed out."),
            "If that was not you, someone can read your email: secure your mailbox first, then reset your password again and tell your administrator.".into(),
        ],
    )
}

/// The mail with the code that proves a new account's address belongs to whoever signs
/// up with it.
pub fn verify_email_mail(code: &str, minutes: u64) -> RenderedMail {
    paragraphs(
        "Confirm your email address".into(),
        &[
            "Someone is creating an account with this email address. If that was you, enter this code on the sign-up page:".into(),
            code.to_string(),
            format!("It works once, within the next {minutes} minutes."),
            "If you did not ask for this, ignore this mail: no account is created without this code.".into(),
        ],
    )
}

/// The mail that carries an unlock link to the owner of an account locked for good.
pub fn unlock_mail(link: &str) -> RenderedMail {
    let text = format!(
        "Someone tried the wrong password or code on your account too many times, so it was locked.\n\nIf that was you, or to use your account again, open this link within a day:\n\n{link}\n\nThe link works once. If you did not expect this, tell your administrator.\n"
    );
    // The link is Usher's own issuer and a base64url token: nothing in it needs
    // escaping, but escape anyway so the HTML can never be more than text and a link.
    let escaped = link
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let html = format!(
        "<p>Someone tried the wrong password or code on your account too many times, so it was locked.</p><p>If that was you, or to use your account again, open this link within a day:</p><p><a href=\"{escaped}\">{escaped}</a></p><p>The link works once. If you did not expect this, tell your administrator.</p>"
    );
    RenderedMail {
        subject: "Unlock your account".into(),
        text,
        html,
    }
}

/// The e-mail OTP message for `code`, valid for `minutes`, from `app_name`.
pub fn render_email_otp(
    app_name: &str,
    code: &str,
    minutes: u64,
) -> Result<RenderedMail, MailError> {
    // minijinja escapes by file extension: the `.html` template gets HTML escaping (an
    // app name is admin-written but still text), the `.txt` one none.
    let mut env = Environment::new();
    for (name, source) in [OTP_TEXT, OTP_HTML] {
        env.add_template(name, source)
            .map_err(|e| MailError::Template {
                name,
                reason: e.to_string(),
            })?;
    }
    let ctx = context! { app_name, code, minutes };
    let render = |name: &'static str| {
        env.get_template(name)
            .and_then(|t| t.render(&ctx))
            .map_err(|e| MailError::Template {
                name,
                reason: e.to_string(),
            })
    };
    Ok(RenderedMail {
        subject: format!("Your {app_name} sign-in code"),
        text: render(OTP_TEXT.0)?,
        html: render(OTP_HTML.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_otp_mail_names_the_code_its_life_and_what_to_do_if_unexpected() {
        let mail = render_email_otp("Thrift <Shop>", "042917", 5).unwrap();
        assert_eq!(mail.subject, "Your Thrift <Shop> sign-in code");
        for body in [&mail.text, &mail.html] {
            assert!(body.contains("042917"), "{body}");
            assert!(body.contains("5 minutes"), "{body}");
            assert!(body.contains("did not try to sign in"), "{body}");
        }
        assert!(mail.text.contains("Thrift <Shop>"), "{}", mail.text);
        // The HTML part escapes what it is given.
        assert!(mail.html.contains("Thrift &lt;Shop&gt;"), "{}", mail.html);
        assert!(!format!("{mail:?}").contains("042917"));
    }

    #[test]
    fn the_reset_mails_carry_the_code_and_say_what_to_do_if_unexpected() {
        let mail = reset_code_mail("042917", 5);
        for body in [&mail.text, &mail.html] {
            assert!(body.contains("042917"), "{body}");
            assert!(body.contains("5 minutes"), "{body}");
            assert!(body.contains("did not ask for this"), "{body}");
        }
        assert!(
            mail.text.contains("\n042917\n"),
            "the code on a line of its own"
        );
        assert!(!format!("{mail:?}").contains("042917"));
        let notice = password_reset_notice("2026-12-02T05:00:00Z", "203.0.113.9 <b>");
        for body in [&notice.text, &notice.html] {
            assert!(body.contains("2026-12-02T05:00:00Z"), "{body}");
            assert!(body.contains("was not you"), "{body}");
        }
        assert!(
            notice.html.contains("203.0.113.9 &lt;b&gt;"),
            "{}",
            notice.html
        );
        let verify = verify_email_mail("123456", 5);
        assert!(verify.text.contains("\n123456\n"), "{}", verify.text);
    }

    #[test]
    fn bad_addresses_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let mailer = Mailer::from_config(&EmailConfig::Outbox(outbox.clone())).unwrap();
        let err = mailer
            .send("not an address", "s", "t", "<p>h</p>")
            .unwrap_err();
        assert!(matches!(err, MailError::Address { .. }), "{err}");
        assert!(!outbox.exists());
    }
}
