//! Mail as a user receives it: an e-mail OTP sent through the SMTP transport to a local
//! sink arrives with the code in it, and the development outbox writes it as an `.eml`
//! file someone can open.

use std::path::Path;
use std::time::Duration;

use crate::smtp_sink::SmtpSink;
use usher::authn::email_otp::{generate_code, CODE_TTL_MINUTES};
use usher::config::{EmailConfig, SmtpConfig, SmtpTls};
use usher::mail::{render_email_otp, MailError, Mailer};

fn smtp_to(port: u16) -> Mailer {
    Mailer::from_config(&EmailConfig::Smtp(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Usher <usher@example.com>".into(),
    }))
    .unwrap()
}

/// Sends on the blocking pool, as the server does.
async fn send(
    mailer: Mailer,
    to: &str,
    subject: &str,
    text: &str,
    html: &str,
) -> Result<(), MailError> {
    let (to, subject, text, html) = (
        to.to_string(),
        subject.to_string(),
        text.to_string(),
        html.to_string(),
    );
    tokio::task::spawn_blocking(move || mailer.send(&to, &subject, &text, &html))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_code_arrives_through_smtp() {
    let sink = SmtpSink::start().await;
    let code = generate_code();
    let mail = render_email_otp("Thrift", &code, CODE_TTL_MINUTES).unwrap();
    send(
        smtp_to(sink.port()),
        "alice@example.com",
        &mail.subject,
        &mail.text,
        &mail.html,
    )
    .await
    .unwrap();

    let message = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .expect("no message reached the sink");
    assert!(
        message.contains("From: Usher <usher@example.com>"),
        "{message}"
    );
    assert!(message.contains("To: alice@example.com"), "{message}");
    assert!(
        message.contains("Subject: Your Thrift sign-in code"),
        "{message}"
    );
    assert!(message.contains("multipart/alternative"), "{message}");
    // The code is in both parts, readable as sent.
    assert_eq!(message.matches(code.as_str()).count(), 2, "{message}");
    assert!(message.contains("next 5 minutes"), "{message}");
    assert!(sink
        .wait_for_message(Duration::from_millis(50))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_starting_with_a_dot_survive_the_trip() {
    let sink = SmtpSink::start().await;
    let text = "first\n.starts with a dot\n..two dots\nlast";
    send(
        smtp_to(sink.port()),
        "bob@example.com",
        "dots",
        text,
        "<p>dots</p>",
    )
    .await
    .unwrap();
    let message = sink
        .wait_for_message(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        message.contains("\r\nfirst\r\n.starts with a dot\r\n..two dots\r\nlast"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_smtp_server_is_an_error() {
    // A port that was just free: nothing listens there now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = send(smtp_to(port), "alice@example.com", "s", "t", "<p>h</p>")
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Smtp(_)), "{err}");
}

fn eml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_outbox_writes_each_message_as_an_eml_file() {
    let dir = tempfile::tempdir().unwrap();
    // The folder does not exist yet; the first message creates it.
    let outbox = dir.path().join("data").join("outbox");
    let mailer = Mailer::from_config(&EmailConfig::Outbox(outbox.clone())).unwrap();
    let code = generate_code();
    let mail = render_email_otp("Thrift", &code, CODE_TTL_MINUTES).unwrap();
    mailer
        .send("alice@example.com", &mail.subject, &mail.text, &mail.html)
        .unwrap();
    mailer
        .send("alice@example.com", &mail.subject, &mail.text, &mail.html)
        .unwrap();

    let names = eml_files(&outbox);
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        // `<unix seconds>-<random>.eml`: sorts by time, unique within a second.
        let (time, rest) = name.split_once('-').unwrap();
        assert!(
            time.len() == 10 && time.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        assert!(rest.ends_with(".eml"), "{name}");
        let text = std::fs::read_to_string(outbox.join(name)).unwrap();
        assert!(text.contains("To: alice@example.com"), "{text}");
        assert!(text.contains("Subject: Your Thrift sign-in code"), "{text}");
        assert!(text.contains(&code), "{text}");
        // RFC 5322 line endings, so mail clients open it as is.
        assert!(text.contains("\r\n\r\n"), "{text}");
    }
    assert_ne!(names[0], names[1]);
}
