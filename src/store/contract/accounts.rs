//! Contract: accounts, their unique names, federated identities, paging and queries,
//! and the per-account session index.

use super::*;
use crate::store::query::{Filter, Literal, Op, UserAttr};

pub fn usernames_and_emails_are_unique_case_insensitively(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "Alice", "alice@example.com"))
        .unwrap();
    let dup = s.create_user(&user("u2", "alice", "other@example.com"));
    assert!(
        matches!(dup, Err(StoreError::Conflict("username"))),
        "{dup:?}"
    );
    let dup = s.create_user(&user("u3", "bob", "ALICE@example.com"));
    assert!(matches!(dup, Err(StoreError::Conflict("email"))), "{dup:?}");
    assert_eq!(s.user_count().unwrap(), 1);
    assert_eq!(s.find_user("ALICE").unwrap().unwrap().id, "u1");
    assert_eq!(s.find_user("alice@EXAMPLE.com").unwrap().unwrap().id, "u1");
    assert!(s.find_user("bob").unwrap().is_none());
}

/// Sign-in resolves a name as a username, then as an email: if one account's username
/// could be another's email, signing in with it would reach the wrong account. So the
/// two are one namespace, checked with the write, whichever way a collision comes.
pub fn a_username_may_not_be_another_accounts_email_nor_the_reverse(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "alice", "alice@example.com"))
        .unwrap();
    // A new account named like Alice's email, in any case.
    let named = s.create_user(&user("u2", "ALICE@example.com", "mallory@example.com"));
    assert!(
        matches!(named, Err(StoreError::Conflict("username"))),
        "{named:?}"
    );
    // A new account whose email is Alice's username.
    let mailed = s.create_user(&user("u3", "mallory", "Alice"));
    assert!(
        matches!(mailed, Err(StoreError::Conflict("email"))),
        "{mailed:?}"
    );
    // The same through a first federated sign-in.
    let federated = s.create_federated_user(
        &user("u4", "alice@example.com", "ada@example.com"),
        "google",
        "g-1",
    );
    assert!(
        matches!(federated, Err(StoreError::Conflict("username"))),
        "{federated:?}"
    );
    // And through a rename of an existing account, either field.
    let mut bob = user("u5", "bob", "bob@example.com");
    s.create_user(&bob).unwrap();
    bob.username = "alice@example.com".into();
    assert!(matches!(
        s.update_user(&bob),
        Err(StoreError::Conflict("username"))
    ));
    bob.username = "bob".into();
    bob.email = Some("alice".into());
    assert!(matches!(
        s.update_user(&bob),
        Err(StoreError::Conflict("email"))
    ));
    // An account's own username may be its email (sign-up does exactly that).
    s.create_user(&user("u6", "carol@example.com", "carol@example.com"))
        .unwrap();
    assert_eq!(s.find_user("alice@example.com").unwrap().unwrap().id, "u1");
    assert_eq!(s.user_count().unwrap(), 3);
}

pub fn renaming_moves_the_index_and_refuses_a_taken_name(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mut u = user("u1", "alice", "alice@example.com");
    s.create_user(&u).unwrap();
    s.create_user(&user("u2", "bob", "bob@example.com"))
        .unwrap();
    u.username = "alicia".into();
    u.email = Some("alicia@example.com".into());
    s.update_user(&u).unwrap();
    assert!(s.find_user("alice").unwrap().is_none());
    assert!(s.find_user("alice@example.com").unwrap().is_none());
    assert_eq!(s.find_user("alicia@example.com").unwrap().unwrap().id, "u1");
    // The old name is free again; Bob's is not.
    u.username = "BOB".into();
    assert!(matches!(
        s.update_user(&u),
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(s.user("u1").unwrap().unwrap().username, "alicia");
    let ghost = user("u9", "ghost", "ghost@example.com");
    assert!(matches!(s.update_user(&ghost), Err(StoreError::NotFound)));
}

pub fn parallel_first_logins_of_one_identity_make_exactly_one_account(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Every request made its own account to insert; all carry the upstream's name.
    let ids = race(&s, |s, i| {
        let mine = user(&format!("u{i}"), "ada", "ada@example.com");
        s.create_federated_user(&mine, "google", "g-1").unwrap().id
    });
    let winner = &ids[0];
    assert!(ids.iter().all(|id| id == winner), "{ids:?}");
    assert_eq!(s.user_count().unwrap(), 1);
    assert_eq!(
        s.identity("google", "g-1").unwrap().as_deref(),
        Some(winner.as_str())
    );
    assert_eq!(
        s.identities_of(winner).unwrap(),
        [("google".to_string(), "g-1".to_string())]
    );
    // Another identity with a taken name is refused, not merged.
    let other = user("u_x", "ADA", "x@example.com");
    assert!(matches!(
        s.create_federated_user(&other, "github", "7"),
        Err(StoreError::Conflict("username"))
    ));
    assert!(s.identity("github", "7").unwrap().is_none());
}

pub fn an_identity_is_linked_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    for i in 0..PARALLEL {
        s.create_user(&user(
            &format!("u{i}"),
            &format!("n{i}"),
            &format!("{i}@x.example"),
        ))
        .unwrap();
    }
    let linked = race(&s, |s, i| {
        s.link_identity("google", "g-1", &format!("u{i}")).unwrap()
    });
    assert_eq!(linked.iter().filter(|&&l| l).count(), 1, "{linked:?}");
    let owner = s.identity("google", "g-1").unwrap().unwrap();
    assert_eq!(
        owner,
        format!("u{}", linked.iter().position(|&l| l).unwrap())
    );
    assert_eq!(s.identities_of(&owner).unwrap().len(), 1);
}

pub fn deleting_an_account_frees_its_names_and_identities(f: &dyn StoreFactory) {
    let s = f.fresh();
    let ada = user("u_ada", "Ada", "ada@example.com");
    s.create_federated_user(&ada, "google", "g-1").unwrap();
    assert!(s.link_identity("github", "7", "u_ada").unwrap());
    s.set_external_id("u_ada", Some("HR-1")).unwrap();
    assert_eq!(s.external_id("u_ada").unwrap().as_deref(), Some("HR-1"));
    s.delete_user("u_ada").unwrap();
    assert!(s.user("u_ada").unwrap().is_none());
    assert!(s.find_user("ada").unwrap().is_none());
    assert!(s.find_user("ada@example.com").unwrap().is_none());
    assert!(s.identity("google", "g-1").unwrap().is_none());
    assert!(s.identity("github", "7").unwrap().is_none());
    assert!(s.identities_of("u_ada").unwrap().is_empty());
    assert_eq!(s.external_id("u_ada").unwrap(), None);
    assert!(matches!(s.delete_user("u_ada"), Err(StoreError::NotFound)));
    // The name and address can be used again.
    s.create_user(&user("u_new", "ada", "ada@example.com"))
        .unwrap();
    assert_eq!(s.user_count().unwrap(), 1);
}

pub fn unlinking_needs_the_owner(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u_a", "a", "a@example.com")).unwrap();
    s.link_identity("google", "g-1", "u_a").unwrap();
    assert!(!s.unlink_identity("google", "g-1", "u_b").unwrap());
    assert_eq!(s.identity("google", "g-1").unwrap().as_deref(), Some("u_a"));
    assert!(s.unlink_identity("google", "g-1", "u_a").unwrap());
    assert!(s.identity("google", "g-1").unwrap().is_none());
    assert!(s.identities_of("u_a").unwrap().is_empty());
    assert!(!s.unlink_identity("google", "g-1", "u_a").unwrap());
}

pub fn accounts_are_paged_in_id_order(f: &dyn StoreFactory) {
    let s = f.fresh();
    for id in ["u3", "u1", "u5", "u2", "u4"] {
        s.create_user(&user(id, id, &format!("{id}@example.com")))
            .unwrap();
    }
    let ids = |page: Vec<User>| page.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(s.users_after(None, 2).unwrap()), ["u1", "u2"]);
    assert_eq!(ids(s.users_after(Some("u2"), 2).unwrap()), ["u3", "u4"]);
    assert_eq!(ids(s.users_after(Some("u4"), 2).unwrap()), ["u5"]);
    assert!(s.users_after(Some("u5"), 2).unwrap().is_empty());
    let every = crate::store::all_users(s.as_ref()).unwrap();
    assert_eq!(ids(every), ["u1", "u2", "u3", "u4", "u5"]);
}

fn compare(attr: UserAttr, op: Op, value: &str) -> Filter<UserAttr> {
    Filter::Compare(attr, op, Literal::Str(value.into()))
}

/// The ids of a query's page, and the total.
fn run(
    s: &dyn Store,
    filter: Option<Filter<UserAttr>>,
    start: usize,
    count: usize,
) -> (Vec<String>, usize) {
    let page = s
        .query_users(&UserQuery {
            filter,
            start,
            count,
        })
        .unwrap();
    (page.users.into_iter().map(|u| u.id).collect(), page.total)
}

pub fn queries_filter_order_page_and_count(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Created out of id order: the answer is in creation order, ties by id.
    for (id, name, created) in [
        ("u_c", "carol", 10),
        ("u_a", "Alice", 30),
        ("u_b", "alfred", 20),
        ("u_d", "dave", 20),
        ("u_e", "alma", 40),
    ] {
        let mut u = user(id, name, &format!("{name}@example.com"));
        u.created_at = created;
        u.disabled = id == "u_e";
        s.create_user(&u).unwrap();
    }
    assert_eq!(
        run(s.as_ref(), None, 0, 10),
        (
            vec![
                "u_c".into(),
                "u_b".into(),
                "u_d".into(),
                "u_a".into(),
                "u_e".into()
            ],
            5
        )
    );
    // Names compare case-insensitively.
    let al = compare(UserAttr::Username, Op::Sw, "AL");
    assert_eq!(
        run(s.as_ref(), Some(al.clone()), 0, 10),
        (vec!["u_b".into(), "u_a".into(), "u_e".into()], 3)
    );
    // A page of one, and the total still counts every match.
    assert_eq!(
        run(s.as_ref(), Some(al.clone()), 1, 1),
        (vec!["u_a".into()], 3)
    );
    assert_eq!(run(s.as_ref(), Some(al.clone()), 5, 10), (vec![], 3));
    let active = Filter::Compare(UserAttr::Active, Op::Eq, Literal::Bool(true));
    let both = Filter::And(Box::new(al.clone()), Box::new(active));
    assert_eq!(
        run(s.as_ref(), Some(both.clone()), 0, 10),
        (vec!["u_b".into(), "u_a".into()], 2)
    );
    let either = Filter::Or(
        Box::new(compare(UserAttr::Id, Op::Eq, "u_c")),
        Box::new(compare(UserAttr::Email, Op::Eq, "DAVE@example.com")),
    );
    assert_eq!(
        run(s.as_ref(), Some(either), 0, 10),
        (vec!["u_c".into(), "u_d".into()], 2)
    );
    // Ids compare exactly.
    assert_eq!(
        run(
            s.as_ref(),
            Some(compare(UserAttr::Id, Op::Eq, "U_C")),
            0,
            10
        ),
        (vec![], 0)
    );
    let not = Filter::Not(Box::new(both));
    assert_eq!(
        run(s.as_ref(), Some(not), 0, 10),
        (vec!["u_c".into(), "u_d".into(), "u_e".into()], 3)
    );
    let unnamed = Filter::Compare(UserAttr::GivenName, Op::Eq, Literal::Null);
    assert_eq!(run(s.as_ref(), Some(unnamed), 0, 0), (vec![], 5));
}

pub fn queries_see_external_ids_identities_and_authenticators(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "ada", "ada@example.com"))
        .unwrap();
    s.create_user(&user("u2", "bob", "bob@example.com"))
        .unwrap();
    s.set_external_id("u1", Some("HR-7")).unwrap();
    s.link_identity("github", "77", "u2").unwrap();
    s.put_totp("u2", &totp_credential()).unwrap();
    let mut pending = totp_credential();
    pending.confirmed = false;
    s.put_totp("u1", &pending).unwrap();
    let one = |filter| run(s.as_ref(), Some(filter), 0, 10).0;
    assert_eq!(one(compare(UserAttr::ExternalId, Op::Eq, "HR-7")), ["u1"]);
    assert!(one(compare(UserAttr::ExternalId, Op::Eq, "hr-7")).is_empty());
    assert_eq!(
        one(compare(UserAttr::IdentityConnection, Op::Eq, "github")),
        ["u2"]
    );
    assert_eq!(
        one(compare(UserAttr::IdentitySubject, Op::Eq, "77")),
        ["u2"]
    );
    // Only a confirmed authenticator counts.
    assert_eq!(
        one(Filter::Compare(UserAttr::Totp, Op::Eq, Literal::Bool(true))),
        ["u2"]
    );
    assert_eq!(one(Filter::Present(UserAttr::ExternalId)), ["u1"]);
}

fn hashes(s: &dyn Store, user_id: &str) -> Vec<String> {
    let mut h: Vec<String> = s
        .sessions_of(user_id)
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    h.sort();
    h
}

pub fn the_session_index_follows_puts_and_deletes(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    s.put_session("h1", &session(Some("u_a"), 100)).unwrap();
    s.put_session("h2", &session(Some("u_a"), 100)).unwrap();
    s.put_session("h3", &session(Some("u_b"), 100)).unwrap();
    s.put_session("h4", &session(None, 100)).unwrap();
    assert_eq!(hashes(s, "u_a"), ["h1", "h2"]);
    assert_eq!(hashes(s, "u_b"), ["h3"]);
    assert_eq!(s.session("h4").unwrap().unwrap().sub, "github|1");
    // The same cookie now signed in as someone else moves between indexes.
    s.put_session("h2", &session(Some("u_b"), 100)).unwrap();
    assert_eq!(hashes(s, "u_a"), ["h1"]);
    assert_eq!(hashes(s, "u_b"), ["h2", "h3"]);
    s.delete_session("h1").unwrap();
    assert!(hashes(s, "u_a").is_empty());
    assert!(s.session("h1").unwrap().is_none());
    // Expired sessions are swept with their index entries; a session expiring exactly
    // now is expired.
    s.put_session("h5", &session(Some("u_b"), 50)).unwrap();
    s.put_session("h6", &session(None, 60)).unwrap();
    assert_eq!(s.sweep_sessions(60).unwrap(), 2);
    assert_eq!(hashes(s, "u_b"), ["h2", "h3"]);
    assert!(s.session("h6").unwrap().is_none());
}
