//! Account queries pushed into SQL: the filter tree of `store::query` becomes one
//! `WHERE`, and the order, the page and the total come back in one round trip, however
//! many accounts there are. The comparison rules are the in-memory ones
//! ([`Filter::matches`]), held to the same answers by a test that runs random filters
//! through both.
//!
//! Every attribute is a set of values (a single-valued one has at most one), so every
//! comparison has one shape, `EXISTS (SELECT 1 FROM <values> WHERE v IS NOT NULL AND
//! <comparison>)`, and `ne` is the negated `eq`, as in memory.

use async_trait::async_trait;
use tokio_postgres::types::{ToSql, Type};

use super::{col, json_of, uint, PgStore};
use crate::store::query::{Filter, Literal, Op, UserAttr, UserPage, UserQuery};
use crate::store::*;

/// A `WHERE` clause under construction, with its parameters.
struct Where {
    /// Each with its type: the statement is sent typed and unnamed (see
    /// `query_users`).
    params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
    /// The collation `lower()` folds with: a Unicode one where the server has ICU, so
    /// case-insensitive comparisons fold every letter as Usher does in memory.
    fold: &'static str,
}

impl Where {
    fn param(&mut self, value: impl ToSql + Sync + Send + 'static, ty: Type) -> String {
        self.params.push((Box::new(value), ty));
        format!("${}", self.params.len())
    }

    /// The values of an attribute, as a subquery with one text or boolean column `v`.
    fn values(attr: UserAttr) -> &'static str {
        match attr {
            UserAttr::Id => "SELECT u.id AS v",
            UserAttr::ExternalId => "SELECT e.external_id AS v FROM external_ids e WHERE e.user_id = u.id",
            UserAttr::Username => "SELECT u.value->>'username' AS v",
            UserAttr::Name => "SELECT u.value->>'name' AS v",
            UserAttr::GivenName => "SELECT u.value->>'given_name' AS v",
            UserAttr::FamilyName => "SELECT u.value->>'family_name' AS v",
            UserAttr::Email => "SELECT u.value->>'email' AS v",
            UserAttr::Picture => "SELECT u.value->>'picture' AS v",
            UserAttr::Role => {
                "SELECT r AS v FROM jsonb_array_elements_text(coalesce(u.value->'roles', '[]'::jsonb)) r"
            }
            UserAttr::Active => {
                "SELECT NOT coalesce((u.value->>'disabled')::boolean, false) AS v"
            }
            UserAttr::EmailVerified => {
                "SELECT coalesce((u.value->>'email_verified')::boolean, false) AS v"
            }
            UserAttr::Created => {
                "SELECT to_char(to_timestamp(u.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS v"
            }
            UserAttr::Updated => {
                "SELECT to_char(to_timestamp((u.value->>'updated_at')::bigint) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS v"
            }
            UserAttr::IdentityConnection => {
                "SELECT i.connection AS v FROM identities i WHERE i.user_id = u.id"
            }
            UserAttr::IdentitySubject => {
                "SELECT i.subject AS v FROM identities i WHERE i.user_id = u.id"
            }
            UserAttr::Totp => {
                "SELECT EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id AND t.confirmed) AS v"
            }
        }
    }

    fn is_bool(attr: UserAttr) -> bool {
        matches!(
            attr,
            UserAttr::Active | UserAttr::EmailVerified | UserAttr::Totp
        )
    }

    fn clause(&mut self, filter: &Filter<UserAttr>) -> String {
        match filter {
            Filter::And(a, b) => format!("({} AND {})", self.clause(a), self.clause(b)),
            Filter::Or(a, b) => format!("({} OR {})", self.clause(a), self.clause(b)),
            Filter::Not(f) => format!("(NOT {})", self.clause(f)),
            Filter::Present(attr) => {
                let nonempty = if Self::is_bool(*attr) {
                    "true"
                } else {
                    "s.v <> ''"
                };
                self.exists(*attr, nonempty)
            }
            Filter::Compare(attr, op, Literal::Null) => match op {
                // `eq null`: no value; `ne null`: some value; anything else never.
                Op::Eq => format!("(NOT {})", self.exists(*attr, "true")),
                Op::Ne => self.exists(*attr, "true"),
                _ => "false".into(),
            },
            Filter::Compare(attr, Op::Ne, lit) => {
                let eq = self.compare(*attr, Op::Eq, lit);
                format!("(NOT {})", self.exists(*attr, &eq))
            }
            Filter::Compare(attr, op, lit) => {
                let test = self.compare(*attr, *op, lit);
                self.exists(*attr, &test)
            }
        }
    }

    fn exists(&self, attr: UserAttr, test: &str) -> String {
        format!(
            "EXISTS (SELECT 1 FROM ({}) s WHERE s.v IS NOT NULL AND {test})",
            Self::values(attr)
        )
    }

    /// One value `s.v` against a literal; `false` where the types differ, as in memory.
    fn compare(&mut self, attr: UserAttr, op: Op, lit: &Literal) -> String {
        match lit {
            Literal::Bool(b) if Self::is_bool(attr) => match op {
                Op::Eq => format!("s.v = {}::boolean", self.param(*b, Type::BOOL)),
                Op::Ne => format!("s.v <> {}::boolean", self.param(*b, Type::BOOL)),
                _ => "false".into(),
            },
            Literal::Str(text) if !Self::is_bool(attr) => {
                let (value, literal) = if attr.case_exact() {
                    let p = self.param(text.clone(), Type::TEXT);
                    (
                        "(s.v COLLATE \"C\")".to_string(),
                        format!("({p}::text COLLATE \"C\")"),
                    )
                } else {
                    let p = self.param(text.clone(), Type::TEXT);
                    let fold = self.fold;
                    (
                        format!("(lower(s.v COLLATE \"{fold}\") COLLATE \"C\")"),
                        format!("(lower({p}::text COLLATE \"{fold}\") COLLATE \"C\")"),
                    )
                };
                match op {
                    Op::Eq => format!("{value} = {literal}"),
                    Op::Ne => format!("{value} <> {literal}"),
                    Op::Co => format!("strpos({value}, {literal}) > 0"),
                    Op::Sw => format!("starts_with({value}, {literal})"),
                    Op::Ew => format!("right({value}, length({literal})) = {literal}"),
                    Op::Gt => format!("{value} > {literal}"),
                    Op::Ge => format!("{value} >= {literal}"),
                    Op::Lt => format!("{value} < {literal}"),
                    Op::Le => format!("{value} <= {literal}"),
                }
            }
            _ => "false".into(),
        }
    }
}

impl PgStore {
    /// The collation case-insensitive comparisons fold with, found once per store.
    async fn fold_collation(&self) -> StoreResult<&'static str> {
        if let Some(c) = self.fold.get() {
            return Ok(c);
        }
        let icu = self
            .query_opt(
                "SELECT 1 AS one FROM pg_collation WHERE collname = 'und-x-icu'",
                &[],
            )
            .await?
            .is_some();
        let chosen = if icu { "und-x-icu" } else { "default" };
        Ok(self.fold.get_or_init(|| chosen))
    }
}

#[async_trait]
impl UserQueryStore for PgStore {
    async fn user_extras(
        &self,
        user_ids: &[String],
    ) -> StoreResult<std::collections::BTreeMap<String, UserExtras>> {
        super::groups::user_extras(self, user_ids).await
    }

    async fn query_users(&self, query: &UserQuery) -> StoreResult<UserPage> {
        let mut w = Where {
            params: Vec::new(),
            fold: self.fold_collation().await?,
        };
        let condition = match &query.filter {
            Some(f) => w.clause(f),
            None => "true".into(),
        };
        let limit = w.param(i64::try_from(query.count).unwrap_or(i64::MAX), Type::INT8);
        let offset = w.param(i64::try_from(query.start).unwrap_or(i64::MAX), Type::INT8);
        // The total and the page in one round trip: the outer join keeps a row (with
        // no account) when the page is empty, so the total still comes back.
        let sql = format!(
            "WITH m AS (SELECT u.id, u.created_at, u.value FROM users u WHERE {condition})
             SELECT t.total, p.value FROM (SELECT count(*) AS total FROM m) t
             LEFT JOIN (SELECT value, created_at, id FROM m ORDER BY created_at, id LIMIT {limit} OFFSET {offset}) p
             ON true ORDER BY p.created_at, p.id"
        );
        let params: Vec<(&(dyn ToSql + Sync), Type)> = w
            .params
            .iter()
            .map(|(p, ty)| (p.as_ref() as &(dyn ToSql + Sync), ty.clone()))
            .collect();
        // Every filter is its own SQL text: sent as an unnamed, typed statement (one
        // round trip, as a cached one), not kept in the connection's statement cache,
        // where ever new filters would pile up on the node and on the server.
        let rows = self.query_unprepared(&sql, &params).await?;
        let total: i64 = match rows.first() {
            Some(r) => col(r, "total")?,
            None => 0,
        };
        let mut users = Vec::new();
        for row in &rows {
            let present: Option<tokio_postgres::types::Json<serde_json::Value>> =
                col(row, "value")?;
            if present.is_some() {
                users.push(json_of(row, "value")?);
            }
        }
        Ok(UserPage {
            users,
            total: uint(total) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::store::query::scan;

    /// Attributes with a few values each, so random filters hit and miss.
    fn attr() -> impl Strategy<Value = UserAttr> {
        prop::sample::select(ATTRS.to_vec())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop::sample::select(OPS.to_vec())
    }

    /// Texts equal to, around and inside the seeded values.
    const TEXTS: [&str; 17] = [
        "u1",
        "U2",
        "ann",
        "ANN",
        "Émile",
        "émile",
        "",
        "a",
        "e",
        "example.com",
        "admin",
        "github",
        "1970-01-01T00:00:20Z",
        "1970",
        "x-1",
        "EXT-2",
        "ext-2",
    ];

    fn literals() -> Vec<Literal> {
        let mut all: Vec<Literal> = TEXTS.iter().map(|s| Literal::Str(s.to_string())).collect();
        all.extend([Literal::Bool(true), Literal::Bool(false), Literal::Null]);
        all
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop::sample::select(literals())
    }

    const ATTRS: [UserAttr; 12] = [
        UserAttr::Id,
        UserAttr::ExternalId,
        UserAttr::Username,
        UserAttr::Name,
        UserAttr::Email,
        UserAttr::Role,
        UserAttr::Active,
        UserAttr::EmailVerified,
        UserAttr::Created,
        UserAttr::IdentityConnection,
        UserAttr::IdentitySubject,
        UserAttr::Totp,
    ];
    const OPS: [Op; 9] = [
        Op::Eq,
        Op::Ne,
        Op::Co,
        Op::Sw,
        Op::Ew,
        Op::Gt,
        Op::Ge,
        Op::Lt,
        Op::Le,
    ];

    fn filter() -> impl Strategy<Value = Filter<UserAttr>> {
        let leaf = prop_oneof![
            attr().prop_map(Filter::Present),
            (attr(), op(), literal()).prop_map(|(a, o, l)| Filter::Compare(a, o, l)),
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    async fn seeded() -> Option<PgStore> {
        let store = super::super::cluster::fresh_store().await?;
        let people = [
            (
                "u1",
                "ann",
                Some("Ann@Example.com"),
                Some("Ann"),
                vec!["admin"],
                10,
                false,
            ),
            (
                "u2",
                "Émile",
                Some("emile@example.com"),
                Some("Émile Zola"),
                vec![],
                20,
                true,
            ),
            ("u3", "bob", None, None, vec!["admin", "ops"], 20, false),
            (
                "x-1",
                "carla",
                Some("c@other.org"),
                Some(""),
                vec![""],
                30,
                false,
            ),
        ];
        for (id, name, email, display, roles, created, disabled) in people {
            let mut u = crate::store::contract::user(id, name, "unused@x");
            u.email = email.map(String::from);
            u.email_verified = id == "u1";
            u.name = display.map(String::from);
            u.roles = roles.into_iter().map(String::from).collect();
            u.created_at = created;
            u.disabled = disabled;
            store.create_user(&u).await.unwrap();
        }
        store.set_external_id("u2", Some("EXT-2")).await.unwrap();
        store.link_identity("github", "77", "u3").await.unwrap();
        store.link_identity("google", "a", "u3").await.unwrap();
        let mut totp = crate::store::contract::totp_credential();
        store.put_totp("u1", &totp).await.unwrap();
        totp.confirmed = false;
        store.put_totp("u2", &totp).await.unwrap();
        Some(store)
    }

    /// Every single comparison (attribute × operator × literal) and presence test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_comparison_answers_as_the_in_memory_scan_does() {
        let Some(store) = seeded().await else {
            return;
        };
        let mut filters: Vec<Filter<UserAttr>> =
            ATTRS.iter().map(|a| Filter::Present(*a)).collect();
        for attr in ATTRS {
            for op in OPS {
                for lit in literals() {
                    filters.push(Filter::Compare(attr, op, lit));
                }
            }
        }
        for f in filters {
            let query = UserQuery {
                filter: Some(f),
                start: 0,
                count: 10,
            };
            let pushed = store.query_users(&query).await.unwrap();
            let scanned = scan(&store, &query).await.unwrap();
            assert_eq!(pushed, scanned, "{query:?}");
        }
    }

    /// Combinations, offsets and page sizes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_filters_answer_as_the_in_memory_scan_does() {
        let Some(store) = seeded().await else {
            return;
        };
        let store = Arc::new(store);
        let runtime = tokio::runtime::Handle::current();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 200,
            ..ProptestConfig::default()
        });
        let result = tokio::task::spawn_blocking(move || {
            runner.run(&(filter(), 0usize..3, 1usize..4), |(f, start, count)| {
                let query = UserQuery {
                    filter: Some(f),
                    start,
                    count,
                };
                let (pushed, scanned) = runtime.block_on(async {
                    (
                        store.query_users(&query).await.unwrap(),
                        scan(store.as_ref(), &query).await.unwrap(),
                    )
                });
                prop_assert_eq!(pushed, scanned, "{:?}", query);
                Ok(())
            })
        })
        .await
        .unwrap();
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
