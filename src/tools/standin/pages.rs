//! The stand-ins' two pages: the consent form and the error page.
//!
//! They are plain HTML with an inline style and no external resources, so they work
//! offline, and their form is simple enough for a test to parse: one hidden `request`
//! field, a radio group `user` and two submit buttons named `decision`. Every value
//! shown or placed in an attribute is escaped.

use std::fmt::Write;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::StandinUser;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2129;\
margin:0;padding:2rem 1rem}main{max-width:28rem;margin:0 auto;background:#fff;\
border:1px solid #d0d4da;border-radius:8px;padding:1.5rem 2rem}h1{font-size:1.35rem;\
margin-top:0}fieldset{border:0;padding:0;margin:1rem 0}legend{font-weight:600;\
margin-bottom:.5rem}.user{display:flex;gap:.6rem;align-items:center;padding:.5rem;\
border:1px solid #d0d4da;border-radius:6px;margin-bottom:.5rem}.user small{display:block;\
color:#555}.actions{display:flex;gap:.75rem}button{font-size:1rem;padding:.5rem 1.2rem;\
border-radius:6px;border:1px solid #1f6feb;cursor:pointer}button[value=authorize]\
{background:#1f6feb;color:#fff}button[value=deny]{background:#fff;color:#1f6feb}\
button:focus-visible,input:focus-visible{outline:3px solid #f0b400;outline-offset:2px}\
.note{color:#555;font-size:.85rem}";

/// Escape text for an HTML body or a quoted attribute value.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        title = escape(title),
    )
}

/// What the consent page shows.
pub(super) struct Consent<'a> {
    /// The heading, e.g. "Thrift wants to sign you in" (plain text; escaped here).
    pub heading: String,
    /// A line under the heading (plain text).
    pub intro: String,
    /// Where the form posts (a path on the stand-in).
    pub action: &'a str,
    /// The server-side id of the pending request.
    pub request_id: &'a str,
    pub users: &'a [StandinUser],
    /// The scopes asked for, listed for the user.
    pub scopes: Vec<&'a str>,
}

impl Consent<'_> {
    pub(super) fn render(&self) -> Response {
        let mut body = String::new();
        let _ = write!(
            body,
            "<h1>{}</h1>\n<p>{}</p>\n",
            escape(&self.heading),
            escape(&self.intro)
        );
        if !self.scopes.is_empty() {
            body.push_str("<p class=\"note\">Access requested:</p>\n<ul class=\"note\">");
            for scope in &self.scopes {
                let _ = write!(body, "<li><code>{}</code></li>", escape(scope));
            }
            body.push_str("</ul>\n");
        }
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{}\">\n\
<input type=\"hidden\" name=\"request\" value=\"{}\">\n",
            escape(self.action),
            escape(self.request_id)
        );
        if self.users.is_empty() {
            body.push_str("<p>This stand-in has no users; only Deny is possible.</p>\n");
        } else {
            body.push_str("<fieldset>\n<legend>Sign in as</legend>\n");
            for (i, user) in self.users.iter().enumerate() {
                let _ = writeln!(
                    body,
                    "<label class=\"user\" for=\"user-{i}\"><input type=\"radio\" \
name=\"user\" id=\"user-{i}\" value=\"{id}\"{checked}><span>{name}\
<small>{email}</small></span></label>",
                    id = escape(&user.id),
                    checked = if i == 0 { " checked" } else { "" },
                    name = escape(&user.name),
                    email = escape(&user.email),
                );
            }
            body.push_str("</fieldset>\n");
        }
        body.push_str(
            "<div class=\"actions\">\
<button type=\"submit\" name=\"decision\" value=\"authorize\">Authorize</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></div>\n</form>\n\
<p class=\"note\">A local stand-in for an upstream identity provider, for tests and demos.</p>",
        );
        let page = document(&self.heading, &body);
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            page,
        )
            .into_response()
    }
}

/// An error shown to the user instead of a redirect: used when the redirect target
/// itself cannot be trusted (unknown client, bad `redirect_uri`) or the form is stale.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in cannot continue</h1>\n<p>{}</p>",
        escape(message)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        document("Error", &body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_values_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
