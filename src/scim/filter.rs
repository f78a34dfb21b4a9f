//! SCIM filters (RFC 7644 §3.4.2.2): parsing the expression and testing resources
//! against it.
//!
//! Supported: the comparison operators `eq ne co sw ew gt ge lt le`, `pr`, `and`, `or`,
//! `not (…)` and parentheses, with `and` binding tighter than `or`. Keywords and
//! attribute names are case-insensitive. Value-path filters (`emails[type eq "work"]`)
//! are refused with a clear error rather than half-supported. The attributes a filter
//! may name are decided by the resource (see `resource::filter_attr`), and the store
//! evaluates the result (`store::query`).
//!
//! The text is bounded before it is read ([`SCIM_FILTER_MAX`] bytes) and the parser
//! counts its nesting as it descends ([`SCIM_FILTER_DEPTH_MAX`]), so no filter can make
//! it recurse deeper than the cap: a filter nested thousands deep is an error, not a
//! stack overflow. Within the length cap an `and`/`or` chain holds at most a few hundred
//! terms, which bounds the depth of the tree the evaluation walks.

// The filter tree and its evaluation are the store's query language, so a backend can
// translate what SCIM parses; this module only reads the text.
pub use crate::store::query::{Filter, Literal, Op, Val};

use crate::limits::{SCIM_FILTER_DEPTH_MAX, SCIM_FILTER_MAX};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    Word(String),
    Str(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '[' | ']' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find the closing quote, honouring backslash escapes,
                // and let serde_json undo the escapes.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err("a string is not closed with `\"`".into());
                }
                i += 1;
                let raw: String = chars[start..i].iter().collect();
                let s: String = serde_json::from_str(&raw)
                    .map_err(|_| format!("{raw} is not a valid string"))?;
                out.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// How many `(` the parser is inside; checked before it descends into another.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// The inside of a `(…)` whose `(` was just read. The depth is checked before the
    /// descent, so the recursion `or → and → unary → group` stops at the cap.
    fn group(&mut self) -> Result<Filter, String> {
        if self.depth >= SCIM_FILTER_DEPTH_MAX {
            return Err(format!(
                "the filter nests parentheses too deep (at most {SCIM_FILTER_DEPTH_MAX} levels)"
            ));
        }
        self.depth += 1;
        let inner = self.or();
        self.depth -= 1;
        let inner = inner?;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => Err("a `(` is not closed with `)`".into()),
        }
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.at += 1;
            return match self.next() {
                Some(Token::Open) => Ok(Filter::Not(Box::new(self.group()?))),
                _ => Err("`not` must be followed by `(`".into()),
            };
        }
        match self.next() {
            Some(Token::Open) => self.group(),
            Some(Token::Word(path)) => self.comparison(path),
            Some(Token::Str(s)) => Err(format!("expected an attribute name, found \"{s}\"")),
            Some(_) => Err("expected an attribute name".into()),
            None => Err("the filter ends too early".into()),
        }
    }

    fn comparison(&mut self, path: String) -> Result<Filter, String> {
        if matches!(self.peek(), Some(Token::OpenBracket)) {
            return Err(format!(
                "value filters like `{path}[...]` are not supported; compare a sub-attribute instead, e.g. `{path}.value eq \"...\"`"
            ));
        }
        let path = path.to_lowercase();
        let op = match self.next() {
            Some(Token::Word(w)) => w.to_lowercase(),
            _ => return Err(format!("expected an operator after `{path}`")),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => {
                return Err(format!(
                    "unknown operator `{other}`; use eq, ne, co, sw, ew, gt, ge, lt, le or pr"
                ))
            }
        };
        let literal = match self.next() {
            Some(Token::Str(s)) => Literal::Str(s),
            Some(Token::Word(w)) => match w.to_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" => Literal::Null,
                _ => Literal::Num(
                    w.parse()
                        .map_err(|_| format!("`{w}` is not a value; quote strings: \"{w}\""))?,
                ),
            },
            _ => return Err(format!("expected a value after `{path}`")),
        };
        Ok(Filter::Compare(path, op, literal))
    }
}

/// Parse a filter expression of at most [`SCIM_FILTER_MAX`] bytes.
pub fn parse(text: &str) -> Result<Filter, String> {
    if text.len() > SCIM_FILTER_MAX {
        return Err(format!(
            "the filter is too long (at most {SCIM_FILTER_MAX} bytes)"
        ));
    }
    let mut p = Parser {
        tokens: tokenize(text)?,
        at: 0,
        depth: 0,
    };
    if p.tokens.is_empty() {
        return Err("the filter is empty".into());
    }
    let f = p.or()?;
    match p.peek() {
        None => Ok(f),
        Some(Token::Word(w)) => Err(format!(
            "unexpected `{w}`; join conditions with `and` or `or`"
        )),
        Some(_) => Err("unexpected text after the filter".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(path: &str) -> (Vec<Val>, bool) {
        match path {
            "username" => (vec![Val::Str("Alice".into())], false),
            "emails.value" => (
                vec![
                    Val::Str("alice@example.com".into()),
                    Val::Str("a@work.example".into()),
                ],
                false,
            ),
            "externalid" => (vec![Val::Str("HR-7".into())], true),
            "active" => (vec![Val::Bool(true)], false),
            _ => (vec![], false),
        }
    }

    fn check(text: &str) -> bool {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .matches(&|p: &String| lookup(p))
    }

    #[test]
    fn operators_follow_case_rules() {
        assert!(check("userName eq \"alice\""), "userName is not case-exact");
        assert!(
            check("USERNAME Eq \"ALICE\""),
            "names and keywords are case-insensitive"
        );
        assert!(!check("externalId eq \"hr-7\""), "externalId is case-exact");
        assert!(check("externalId eq \"HR-7\""));
        assert!(check("emails.value co \"@work\""));
        assert!(check("emails.value sw \"ALICE@\""));
        assert!(check("emails.value ew \".example\""));
        assert!(check("userName gt \"aaa\" and userName lt \"b\""));
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(check("userName ne \"bob\""));
        assert!(check("externalId pr"));
        assert!(!check("name.givenName pr"));
        assert!(check("name.givenName eq null"));
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_negates() {
        assert!(check(
            "userName eq \"x\" or userName eq \"alice\" and active eq true"
        ));
        assert!(!check(
            "(userName eq \"x\" or userName eq \"alice\") and active eq false"
        ));
        assert!(check("not (userName eq \"bob\")"));
        assert!(!check("not(userName eq \"alice\")"));
        assert_eq!(
            parse("a eq \"1\" and b pr").unwrap().paths(),
            vec!["a", "b"]
        );
    }

    #[test]
    fn escapes_in_strings_are_honoured() {
        let f = parse(r#"userName eq "quote\"d""#).unwrap();
        assert_eq!(
            f,
            Filter::Compare("username".into(), Op::Eq, Literal::Str("quote\"d".into()))
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, says) in [
            ("", "empty"),
            ("userName", "operator"),
            ("userName eq", "value"),
            ("userName eq alice", "quote strings"),
            ("userName like \"a\"", "unknown operator"),
            ("(userName eq \"a\"", "not closed"),
            ("userName eq \"a", "not closed"),
            ("userName eq \"a\" userName eq \"b\"", "join conditions"),
            ("emails[type eq \"work\"]", "not supported"),
            ("not userName eq \"a\"", "followed by `(`"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}

/// Properties over generated input: the parser answers every string with a filter or an
/// error, never a panic or an overflow, and what it parses it reads back the same.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// SCIM text for a filter, every operand in parentheses.
    fn render(f: &Filter) -> String {
        match f {
            Filter::And(a, b) => format!("({}) and ({})", render(a), render(b)),
            Filter::Or(a, b) => format!("({}) or ({})", render(a), render(b)),
            Filter::Not(a) => format!("not ({})", render(a)),
            Filter::Present(p) => format!("{p} pr"),
            Filter::Compare(p, op, lit) => {
                let op = match op {
                    Op::Eq => "eq",
                    Op::Ne => "ne",
                    Op::Co => "co",
                    Op::Sw => "sw",
                    Op::Ew => "ew",
                    Op::Gt => "gt",
                    Op::Ge => "ge",
                    Op::Lt => "lt",
                    Op::Le => "le",
                };
                let lit = match lit {
                    Literal::Str(s) => serde_json::to_string(s).unwrap(),
                    Literal::Bool(b) => b.to_string(),
                    Literal::Num(n) => n.to_string(),
                    Literal::Null => "null".into(),
                };
                format!("{p} {op} {lit}")
            }
        }
    }

    fn depth(f: &Filter) -> usize {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => 1 + depth(a).max(depth(b)),
            Filter::Not(a) => 1 + depth(a),
            _ => 0,
        }
    }

    fn path() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,6}(\\.[a-z]{1,6})?".prop_filter("not a keyword", |p| {
            !matches!(p.as_str(), "and" | "or" | "not")
        })
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<String>().prop_map(Literal::Str),
            any::<bool>().prop_map(Literal::Bool),
            any::<i32>().prop_map(|n| Literal::Num(f64::from(n))),
            Just(Literal::Null),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Eq),
            Just(Op::Ne),
            Just(Op::Co),
            Just(Op::Sw),
            Just(Op::Ew),
            Just(Op::Gt),
            Just(Op::Ge),
            Just(Op::Lt),
            Just(Op::Le),
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            path().prop_map(Filter::Present),
            (path(), op(), literal()).prop_map(|(p, o, l)| Filter::Compare(p, o, l)),
        ];
        leaf.prop_recursive(6, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Filter::Not(Box::new(a))),
            ]
        })
    }

    /// Text made of the filter grammar's own pieces, so the parser goes deep into its
    /// rules rather than failing at the first character.
    fn filterish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("(".to_string()),
            Just(")".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(" and ".to_string()),
            Just(" or ".to_string()),
            Just("not ".to_string()),
            Just(" pr".to_string()),
            Just(" eq ".to_string()),
            Just("\"x\\\"".to_string()),
            Just("\\".to_string()),
            // Fixed words rather than regex strategies, which are compiled for every
            // value drawn and made this property slow.
            prop::sample::select(vec![
                "userName",
                "emails.value",
                "a",
                "x.y",
                "1",
                "-2.5",
                "1e3",
                "true",
                "null"
            ])
            .prop_map(str::to_string),
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..100).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_is_a_filter_or_an_error(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn grammar_shaped_text_is_a_filter_or_an_error(text in filterish()) {
            if let Ok(f) = parse(&text) {
                // Whatever parsed can be walked without trouble.
                let _ = f.paths();
                let _ = f.matches(&|_: &String| (vec![Val::Str("x".into())], false));
            }
        }

        #[test]
        fn generated_filters_read_back_the_same(f in filter()) {
            let text = render(&f);
            prop_assume!(text.len() <= SCIM_FILTER_MAX);
            prop_assert_eq!(parse(&text), Ok(f));
        }

        #[test]
        fn nesting_past_the_cap_is_refused_at_any_depth(extra in 1usize..5000, not in any::<bool>()) {
            let open = if not { "not (" } else { "(" };
            let levels = SCIM_FILTER_DEPTH_MAX + extra;
            let text = format!("{}a pr{}", open.repeat(levels), ")".repeat(levels));
            let e = parse(&text).unwrap_err();
            prop_assert!(e.contains("too deep") || e.contains("too long"), "{}", e);
        }
    }

    #[test]
    fn nesting_up_to_the_cap_is_accepted() {
        let levels = SCIM_FILTER_DEPTH_MAX;
        let text = format!("{}a pr{}", "not (".repeat(levels), ")".repeat(levels));
        let f = parse(&text).unwrap();
        assert_eq!(depth(&f), levels);
        let over = format!("({text})");
        assert!(parse(&over).unwrap_err().contains("too deep"));
    }

    #[test]
    fn the_longest_chain_the_length_cap_allows_is_walked_safely() {
        // The shortest terms and joins give the deepest tree a filter of the cap holds.
        let mut text = String::from("a pr");
        while text.len() + 8 <= SCIM_FILTER_MAX {
            text.push_str(" or a pr");
        }
        let f = parse(&text).unwrap();
        assert!(depth(&f) > 200, "{}", depth(&f));
        let mapped = f.try_map(&mut |p: &String| Ok::<_, ()>(p.clone())).unwrap();
        assert!(mapped.matches(&|_: &String| (vec![Val::Str("x".into())], false)));
        assert!(parse(&format!("{text} or a pr"))
            .unwrap_err()
            .contains("too long"));
    }
}
