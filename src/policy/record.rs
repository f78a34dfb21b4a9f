//! The records a script reads — `ctx`, `ctx.request`, a subject, a step's result — as
//! one Rhai type with a fixed set of members per kind.
//!
//! A plain Rhai map answers `()` for a key it lacks, so `first.usr.has_account` or
//! `ctx.steps[1].ipd == "local"` would quietly be false and a policy ported from
//! elsewhere would skip the step its author meant to require. A record refuses a member
//! its kind does not have, with the nearest valid name, and the error carries the line:
//! the sign-in fails with a page and the trace names the mistake.

use rhai::{Dynamic, Engine, EvalAltResult, Map};

/// Which record, and so which members are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ctx,
    Request,
    Subject,
    /// The result of `execute_step` and `ctx.steps[n]`, succeeded or failed.
    Step,
}

impl Kind {
    /// Every member a script may read, in the order the docs list them.
    pub fn members(self) -> &'static [&'static str] {
        match self {
            Kind::Ctx => &["app", "request", "user", "steps", "now"],
            Kind::Request => &[
                "ip",
                "user_agent",
                "headers",
                "scopes",
                "acr_values",
                "prompt",
                "login_hint",
                "client_id",
            ],
            Kind::Subject => &[
                "id",
                "user_id",
                "username",
                "email",
                "idp",
                "is_federated",
                "has_account",
                "enrolled",
                "roles",
                "groups",
                "sessions",
                "claims",
                "upstream_amr",
            ],
            Kind::Step => &[
                "step",
                "option",
                "idp",
                "user",
                "subject",
                "amr",
                "from_session",
                "failed",
                "reason",
            ],
        }
    }

    /// How an error message names the record.
    fn noun(self) -> &'static str {
        match self {
            Kind::Ctx => "`ctx`",
            Kind::Request => "`ctx.request`",
            Kind::Subject => "a subject (`ctx.user`, `step.user`)",
            Kind::Step => "a step result (`execute_step(n)`, `ctx.steps[n]`)",
        }
    }
}

/// A record: its kind and its values. A member of the kind that this record has no
/// value for (a failed step's `user`) reads as `()`.
#[derive(Debug, Clone)]
pub struct Record {
    kind: Kind,
    fields: Map,
}

impl Record {
    pub fn new(kind: Kind, fields: Map) -> Record {
        Record { kind, fields }
    }

    pub fn fields(&self) -> &Map {
        &self.fields
    }

    fn get(&self, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Some(v) = self.fields.get(name) {
            return Ok(v.clone());
        }
        if self.kind.members().contains(&name) {
            return Ok(Dynamic::UNIT);
        }
        Err(super::api::api_error(unknown_member(self.kind, name)))
    }
}

/// "… has no member `usr`; did you mean `user`?"
fn unknown_member(kind: Kind, name: &str) -> String {
    let mut text = format!("{} has no member `{name}`", kind.noun());
    match nearest(name, kind.members()) {
        Some(near) => text.push_str(&format!("; did you mean `{near}`?")),
        None => text.push_str(&format!(
            " (it has {})",
            kind.members()
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    text
}

/// The valid name closest to `name`: the same letters regardless of case and
/// underscores (`onSuccess` → `on_success`), else the most similar above a threshold.
pub fn nearest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let folded = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = folded(name);
    if let Some(same) = valid.iter().find(|v| folded(v) == want) {
        return Some(same);
    }
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(&want, &folded(v)), *v))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}

pub fn register(e: &mut Engine) {
    e.register_type_with_name::<Record>("record");
    // `record.name` falls back to this indexer, as does `record["name"]`.
    e.register_indexer_get(|r: &mut Record, name: &str| r.get(name));
    e.register_fn("contains", |r: &mut Record, name: &str| {
        r.fields.contains_key(name)
    });
    e.register_fn("keys", |r: &mut Record| -> rhai::Array {
        r.fields.keys().map(|k| Dynamic::from(k.clone())).collect()
    });
    e.register_fn("to_string", |r: &mut Record| {
        Dynamic::from(r.fields.clone()).to_string()
    });
    e.register_fn("to_debug", |r: &mut Record| {
        format!("{:?}", Dynamic::from(r.fields.clone()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_ignores_case_and_underscores_then_spelling() {
        let options = ["options", "on_success", "on_fail"];
        assert_eq!(nearest("onSuccess", &options), Some("on_success"));
        assert_eq!(nearest("onFail", &options), Some("on_fail"));
        assert_eq!(nearest("on_sucess", &options), Some("on_success"));
        assert_eq!(nearest("colour", &options), None);
        assert_eq!(nearest("usr", Kind::Ctx.members()), Some("user"));
    }
}
