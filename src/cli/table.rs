//! Readable output for the CLI: aligned tables of users and events, and one user as a
//! list of fields.

use serde_json::Value;

use crate::scim::USHER_USER_SCHEMA;

/// Columns padded to their widest cell, two spaces apart.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn email(u: &Value) -> String {
    u["emails"]
        .as_array()
        .and_then(|e| e.first())
        .map(|e| text(&e["value"]))
        .unwrap_or_default()
}

fn identities(u: &Value) -> String {
    u[USHER_USER_SCHEMA]["identities"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|i| format!("{}:{}", text(&i["connection"]), text(&i["subject"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn yes_no(b: Option<bool>) -> String {
    match b {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

pub fn users(users: &[Value]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                text(&u["id"]),
                text(&u["userName"]),
                email(u),
                yes_no(u["active"].as_bool()),
                yes_no(u[USHER_USER_SCHEMA]["totp"].as_bool()),
                identities(u),
            ]
        })
        .collect();
    let mut out = render(
        &["ID", "USERNAME", "EMAIL", "ACTIVE", "TOTP", "IDENTITIES"],
        &rows,
    );
    out.push_str(&format!("{} user(s)\n", users.len()));
    out
}

pub fn user(u: &Value) -> String {
    let ext = &u[USHER_USER_SCHEMA];
    let rows = vec![
        vec!["id".to_string(), text(&u["id"])],
        vec!["userName".into(), text(&u["userName"])],
        vec!["externalId".into(), text(&u["externalId"])],
        vec!["displayName".into(), text(&u["displayName"])],
        vec!["email".into(), email(u)],
        vec![
            "emailVerified".into(),
            yes_no(ext["emailVerified"].as_bool()),
        ],
        vec!["active".into(), yes_no(u["active"].as_bool())],
        vec!["password".into(), yes_no(ext["hasPassword"].as_bool())],
        vec!["totp".into(), yes_no(ext["totp"].as_bool())],
        vec!["identities".into(), identities(u)],
        vec!["created".into(), text(&u["meta"]["created"])],
        vec!["lastModified".into(), text(&u["meta"]["lastModified"])],
    ];
    render(&["FIELD", "VALUE"], &rows)
}

pub fn events(events: &[Value], detail: bool) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                text(&e["time"]),
                text(&e["kind"]),
                text(&e["app"]),
                text(&e["sub"]),
                text(&e["outcome"]),
            ]
        })
        .collect();
    let table = render(&["TIME", "KIND", "APP", "SUBJECT", "OUTCOME"], &rows);
    let mut lines = table.lines();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, e) in lines.zip(events) {
        out.push_str(line);
        out.push('\n');
        if detail {
            for d in e["detail"].as_array().into_iter().flatten() {
                out.push_str(&format!("    {}\n", text(d)));
            }
        }
    }
    out.push_str(&format!("{} event(s)\n", events.len()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let out = super::render(
            &["ID", "NAME"],
            &[
                vec!["u_1".into(), "ada".into()],
                vec!["u_22222".into(), "bob".into()],
            ],
        );
        assert_eq!(out, "ID       NAME\nu_1      ada\nu_22222  bob\n");
    }
}
