//! A tiny SMTP server for tests: plain text on `127.0.0.1:0`, no TLS, no auth. It
//! accepts every message and keeps its raw text (headers and body, dot-unstuffed), so
//! a test can send real mail through Usher's SMTP transport and read what arrived.
//!
//! Speaks just enough of RFC 5321 for a well-behaved client: EHLO/HELO, MAIL FROM,
//! RCPT TO, DATA, RSET, NOOP and QUIT, with the usual sequence checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct SmtpSink {
    pub addr: SocketAddr,
    /// Every message received, oldest first.
    pub messages: Arc<Mutex<Vec<String>>>,
    /// How many messages `wait_for_message` has handed out.
    taken: Mutex<usize>,
    arrived: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Starts the sink on an ephemeral port; it runs until dropped.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (m, a) = (messages.clone(), arrived.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (m, a) = (m.clone(), a.clone());
                tokio::spawn(async move {
                    // A client that hangs up mid-session is its own problem.
                    let _ = session(stream, m, a).await;
                });
            }
        });
        SmtpSink {
            addr,
            messages,
            taken: Mutex::new(0),
            arrived,
            server,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The oldest message not yet returned by an earlier call, waiting up to `timeout`
    /// for one to arrive.
    pub async fn wait_for_message(&self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an arrival between the look and the wait
            // still wakes us.
            let notified = self.arrived.notified();
            if let Some(message) = self.take_next() {
                return Some(message);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.take_next();
            }
        }
    }

    fn take_next(&self) -> Option<String> {
        let messages = self.messages.lock().unwrap();
        let mut taken = self.taken.lock().unwrap();
        let message = messages.get(*taken).cloned()?;
        *taken += 1;
        Some(message)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn session(
    stream: TcpStream,
    messages: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 usher-test-sink ESMTP ready\r\n")
        .await?;
    let mut from = false;
    let mut recipients = 0usize;
    loop {
        let Some(line) = read_line(&mut lines).await? else {
            return Ok(());
        };
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => b"250-usher-test-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 usher-test-sink\r\n",
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                from = true;
                recipients = 0;
                b"250 sender ok\r\n"
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from {
                    recipients += 1;
                    b"250 recipient ok\r\n"
                } else {
                    b"503 MAIL first\r\n"
                }
            }
            "DATA" if !from || recipients == 0 => b"503 need MAIL and RCPT first\r\n",
            "DATA" => {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(message) = read_data(&mut lines).await? else {
                    return Ok(());
                };
                messages.lock().unwrap().push(message);
                arrived.notify_waiters();
                from = false;
                recipients = 0;
                b"250 queued\r\n"
            }
            "RSET" => {
                from = false;
                recipients = 0;
                b"250 reset\r\n"
            }
            "NOOP" => b"250 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// One line without its line ending; `None` at end of stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if reader.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The DATA section up to the lone `.` line, dot-unstuffed, lines joined with CRLF.
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut lines = Vec::new();
    loop {
        let Some(line) = read_line(reader).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(lines.join("\r\n")));
        }
        // A client doubles a leading dot (RFC 5321 §4.5.2); take one away.
        lines.push(match line.strip_prefix('.') {
            Some(rest) => rest.to_string(),
            None => line,
        });
    }
}
