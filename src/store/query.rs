//! Querying accounts: a small, backend-neutral filter language (attribute, operator,
//! value, `and`/`or`/`not`), a page request, and the in-memory evaluation that is
//! every backend's fallback.
//!
//! SCIM parses its filter text into [`Filter<String>`] and maps the attribute paths to
//! [`UserAttr`]; a backend that can do better (PostgreSQL: one `SELECT … WHERE … ORDER
//! BY created_at, id LIMIT … OFFSET …` plus a `count(*)`) translates the same tree to its
//! query language, and one that cannot uses [`scan`], which walks the accounts in pages
//! of [`SCAN_BATCH`] and tests each with [`Filter::matches`]. The comparison rules live
//! here once, so the fallback and any translation are held to the same answers by the
//! contract suite.

use super::{User, UserQueryStore};
use crate::store::StoreResult;
use crate::timefmt::rfc3339;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Num(f64),
    Null,
}

/// A value an attribute holds, as a filter sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Bool(bool),
}

/// A filter over attributes named by `P`: lower-cased paths as parsed, or
/// [`UserAttr`] once they are known to name something.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter<P = String> {
    And(Box<Filter<P>>, Box<Filter<P>>),
    Or(Box<Filter<P>>, Box<Filter<P>>),
    Not(Box<Filter<P>>),
    Present(P),
    Compare(P, Op, Literal),
}

impl<P> Filter<P> {
    /// Every attribute the filter names.
    pub fn paths(&self) -> Vec<&P> {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut v = a.paths();
                v.extend(b.paths());
                v
            }
            Filter::Not(f) => f.paths(),
            Filter::Present(p) | Filter::Compare(p, _, _) => vec![p],
        }
    }

    /// The same filter with each attribute replaced by `f`'s answer; the first error
    /// stops the mapping (an attribute that cannot be filtered on).
    pub fn try_map<Q, E>(&self, f: &mut impl FnMut(&P) -> Result<Q, E>) -> Result<Filter<Q>, E> {
        Ok(match self {
            Filter::And(a, b) => Filter::And(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Filter::Or(a, b) => Filter::Or(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Filter::Not(a) => Filter::Not(Box::new(a.try_map(f)?)),
            Filter::Present(p) => Filter::Present(f(p)?),
            Filter::Compare(p, op, lit) => Filter::Compare(f(p)?, *op, lit.clone()),
        })
    }

    /// Test a resource. `lookup` gives an attribute's values and whether it compares
    /// case-exactly; a multi-valued attribute matches when any value does.
    pub fn matches(&self, lookup: &dyn Fn(&P) -> (Vec<Val>, bool)) -> bool {
        match self {
            Filter::And(a, b) => a.matches(lookup) && b.matches(lookup),
            Filter::Or(a, b) => a.matches(lookup) || b.matches(lookup),
            Filter::Not(f) => !f.matches(lookup),
            Filter::Present(p) => lookup(p)
                .0
                .iter()
                .any(|v| !matches!(v, Val::Str(s) if s.is_empty())),
            Filter::Compare(p, op, lit) => {
                let (values, exact) = lookup(p);
                if matches!(lit, Literal::Null) {
                    // `eq null` is "has no value"; `ne null` is "has one".
                    return match op {
                        Op::Eq => values.is_empty(),
                        Op::Ne => !values.is_empty(),
                        _ => false,
                    };
                }
                if *op == Op::Ne {
                    return !values.iter().any(|v| compare(v, Op::Eq, lit, exact));
                }
                values.iter().any(|v| compare(v, *op, lit, exact))
            }
        }
    }
}

fn compare(value: &Val, op: Op, lit: &Literal, exact: bool) -> bool {
    match (value, lit) {
        (Val::Bool(v), Literal::Bool(l)) => match op {
            Op::Eq => v == l,
            Op::Ne => v != l,
            _ => false,
        },
        (Val::Str(v), Literal::Str(l)) => {
            let (v, l) = if exact {
                (v.clone(), l.clone())
            } else {
                (v.to_lowercase(), l.to_lowercase())
            };
            match op {
                Op::Eq => v == l,
                Op::Ne => v != l,
                Op::Co => v.contains(&l),
                Op::Sw => v.starts_with(&l),
                Op::Ew => v.ends_with(&l),
                Op::Gt => v > l,
                Op::Ge => v >= l,
                Op::Lt => v < l,
                Op::Le => v <= l,
            }
        }
        _ => false,
    }
}

/// What a filter over accounts may name. Multi-valued ones (roles, identities) match
/// when any value does; optional ones hold no value when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAttr {
    Id,
    /// The provisioning system's id (`UserStore::external_id`).
    ExternalId,
    Username,
    /// The account's display name (`User::name`).
    Name,
    GivenName,
    FamilyName,
    Email,
    Picture,
    Role,
    /// Not disabled.
    Active,
    EmailVerified,
    /// `created_at` as RFC 3339 text in UTC, compared as text (which orders like time).
    Created,
    /// `updated_at`, the same way.
    Updated,
    /// The connection of a linked federated identity.
    IdentityConnection,
    /// The upstream subject of a linked federated identity.
    IdentitySubject,
    /// A confirmed authenticator app is enrolled.
    Totp,
}

impl UserAttr {
    /// Whether text compares case-exactly (ids, URLs, times) or folded (names, emails).
    pub fn case_exact(self) -> bool {
        matches!(
            self,
            UserAttr::Id
                | UserAttr::ExternalId
                | UserAttr::Picture
                | UserAttr::Created
                | UserAttr::Updated
                | UserAttr::IdentityConnection
                | UserAttr::IdentitySubject
        )
    }

    /// Held by another record than the account itself (a backend joins it).
    fn joined(self) -> bool {
        matches!(
            self,
            UserAttr::ExternalId
                | UserAttr::IdentityConnection
                | UserAttr::IdentitySubject
                | UserAttr::Totp
        )
    }
}

/// A page of accounts to find.
#[derive(Debug, Clone, PartialEq)]
pub struct UserQuery {
    /// Only accounts this matches; `None` for every account.
    pub filter: Option<Filter<UserAttr>>,
    /// How many matching accounts to skip (0 for the first page).
    pub start: usize,
    /// The most accounts to return.
    pub count: usize,
}

/// One page of a [`UserQuery`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPage {
    /// Ordered by creation time, then id.
    pub users: Vec<User>,
    /// How many accounts match in all, across every page.
    pub total: usize,
}

/// How many accounts [`scan`] reads per call of `UserStore::users_after`.
pub const SCAN_BATCH: usize = 500;

/// An account with the joined values a filter may need.
struct Row {
    user: User,
    external_id: Option<String>,
    identities: Vec<(String, String)>,
    totp: bool,
}

impl Row {
    fn values(&self, attr: UserAttr) -> (Vec<Val>, bool) {
        let u = &self.user;
        let s = |v: &Option<String>| v.iter().map(|x| Val::Str(x.clone())).collect();
        let one = |v: String| vec![Val::Str(v)];
        let values = match attr {
            UserAttr::Id => one(u.id.clone()),
            UserAttr::ExternalId => s(&self.external_id),
            UserAttr::Username => one(u.username.clone()),
            UserAttr::Name => s(&u.name),
            UserAttr::GivenName => s(&u.given_name),
            UserAttr::FamilyName => s(&u.family_name),
            UserAttr::Email => s(&u.email),
            UserAttr::Picture => s(&u.picture),
            UserAttr::Role => u.roles.iter().map(|r| Val::Str(r.clone())).collect(),
            UserAttr::Active => vec![Val::Bool(!u.disabled)],
            UserAttr::EmailVerified => vec![Val::Bool(u.email_verified)],
            UserAttr::Created => one(rfc3339(u.created_at)),
            UserAttr::Updated => one(rfc3339(u.updated_at)),
            UserAttr::IdentityConnection => self
                .identities
                .iter()
                .map(|(c, _)| Val::Str(c.clone()))
                .collect(),
            UserAttr::IdentitySubject => self
                .identities
                .iter()
                .map(|(_, s)| Val::Str(s.clone()))
                .collect(),
            UserAttr::Totp => vec![Val::Bool(self.totp)],
        };
        (values, attr.case_exact())
    }
}

/// The generic answer to [`UserQueryStore::query_users`]: every account is read, in
/// pages, and tested in memory. Fine for the embedded store of one organisation; a
/// networked backend should push the filter into its query instead.
///
/// Not a snapshot: an account created or deleted while the pages are read may or may
/// not be counted.
pub async fn scan<S: UserQueryStore + ?Sized>(
    store: &S,
    query: &UserQuery,
) -> StoreResult<UserPage> {
    let joined = query
        .filter
        .as_ref()
        .is_some_and(|f| f.paths().into_iter().any(|a| a.joined()));
    let mut matched = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store.users_after(after.as_deref(), SCAN_BATCH).await?;
        let last_batch = batch.len() < SCAN_BATCH;
        after = batch.last().map(|u| u.id.clone());
        for user in batch {
            let Some(filter) = &query.filter else {
                matched.push(user);
                continue;
            };
            // Only a filter that names them pays for the joined values.
            let row = if joined {
                Row {
                    external_id: store.external_id(&user.id).await?,
                    identities: store.identities_of(&user.id).await?,
                    totp: store.totp(&user.id).await?.is_some_and(|c| c.confirmed),
                    user,
                }
            } else {
                Row {
                    user,
                    external_id: None,
                    identities: Vec::new(),
                    totp: false,
                }
            };
            if filter.matches(&|a| row.values(*a)) {
                matched.push(row.user);
            }
        }
        if last_batch || after.is_none() {
            break;
        }
    }
    matched.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let total = matched.len();
    let users = matched
        .into_iter()
        .skip(query.start)
        .take(query.count)
        .collect();
    Ok(UserPage { users, total })
}
