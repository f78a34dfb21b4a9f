//! Contract: accounts, their unique names, federated identities, paging and queries,
//! and the per-account session index.

use super::*;
use crate::store::query::{Filter, Literal, Op, UserAttr};

pub async fn usernames_and_emails_are_unique_case_insensitively(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "Alice", "alice@example.com"))
        .await
        .unwrap();
    let dup = s
        .create_user(&user("u2", "alice", "other@example.com"))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("username"))),
        "{dup:?}"
    );
    let dup = s.create_user(&user("u3", "bob", "ALICE@example.com")).await;
    assert!(matches!(dup, Err(StoreError::Conflict("email"))), "{dup:?}");
    assert_eq!(s.user_count().await.unwrap(), 1);
    assert_eq!(s.find_user("ALICE").await.unwrap().unwrap().id, "u1");
    assert_eq!(
        s.find_user("alice@EXAMPLE.com").await.unwrap().unwrap().id,
        "u1"
    );
    assert!(s.find_user("bob").await.unwrap().is_none());
}

/// Sign-in resolves a name as a username, then as an email: if one account's username
/// could be another's email, signing in with it would reach the wrong account. So the
/// two are one namespace, checked with the write, whichever way a collision comes.
pub async fn a_username_may_not_be_another_accounts_email_nor_the_reverse(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "alice", "alice@example.com"))
        .await
        .unwrap();
    // A new account named like Alice's email, in any case.
    let named = s
        .create_user(&user("u2", "ALICE@example.com", "mallory@example.com"))
        .await;
    assert!(
        matches!(named, Err(StoreError::Conflict("username"))),
        "{named:?}"
    );
    // A new account whose email is Alice's username.
    let mailed = s.create_user(&user("u3", "mallory", "Alice")).await;
    assert!(
        matches!(mailed, Err(StoreError::Conflict("email"))),
        "{mailed:?}"
    );
    // The same through a first federated sign-in.
    let federated = s
        .create_federated_user(
            &user("u4", "alice@example.com", "ada@example.com"),
            "google",
            "g-1",
        )
        .await;
    assert!(
        matches!(federated, Err(StoreError::Conflict("username"))),
        "{federated:?}"
    );
    // And through a rename of an existing account, either field.
    let mut bob = user("u5", "bob", "bob@example.com");
    s.create_user(&bob).await.unwrap();
    bob.username = "alice@example.com".into();
    assert!(matches!(
        s.update_user(&bob).await,
        Err(StoreError::Conflict("username"))
    ));
    bob.username = "bob".into();
    bob.email = Some("alice".into());
    assert!(matches!(
        s.update_user(&bob).await,
        Err(StoreError::Conflict("email"))
    ));
    // An account's own username may be its email (sign-up does exactly that).
    s.create_user(&user("u6", "carol@example.com", "carol@example.com"))
        .await
        .unwrap();
    assert_eq!(
        s.find_user("alice@example.com").await.unwrap().unwrap().id,
        "u1"
    );
    assert_eq!(s.user_count().await.unwrap(), 3);
}

pub async fn renaming_moves_the_index_and_refuses_a_taken_name(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mut u = user("u1", "alice", "alice@example.com");
    s.create_user(&u).await.unwrap();
    s.create_user(&user("u2", "bob", "bob@example.com"))
        .await
        .unwrap();
    u.username = "alicia".into();
    u.email = Some("alicia@example.com".into());
    s.update_user(&u).await.unwrap();
    assert!(s.find_user("alice").await.unwrap().is_none());
    assert!(s.find_user("alice@example.com").await.unwrap().is_none());
    assert_eq!(
        s.find_user("alicia@example.com").await.unwrap().unwrap().id,
        "u1"
    );
    // The old name is free again; Bob's is not.
    u.username = "BOB".into();
    assert!(matches!(
        s.update_user(&u).await,
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(s.user("u1").await.unwrap().unwrap().username, "alicia");
    let ghost = user("u9", "ghost", "ghost@example.com");
    assert!(matches!(
        s.update_user(&ghost).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn parallel_first_logins_of_one_identity_make_exactly_one_account(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Every request made its own account to insert; all carry the upstream's name.
    let ids = race(&s, |s, i| async move {
        let mine = user(&format!("u{i}"), "ada", "ada@example.com");
        s.create_federated_user(&mine, "google", "g-1")
            .await
            .unwrap()
            .id
    })
    .await;
    let winner = &ids[0];
    assert!(ids.iter().all(|id| id == winner), "{ids:?}");
    assert_eq!(s.user_count().await.unwrap(), 1);
    assert_eq!(
        s.identity("google", "g-1").await.unwrap().as_deref(),
        Some(winner.as_str())
    );
    assert_eq!(
        s.identities_of(winner).await.unwrap(),
        [("google".to_string(), "g-1".to_string())]
    );
    // Another identity with a taken name is refused, not merged.
    let other = user("u_x", "ADA", "x@example.com");
    assert!(matches!(
        s.create_federated_user(&other, "github", "7").await,
        Err(StoreError::Conflict("username"))
    ));
    assert!(s.identity("github", "7").await.unwrap().is_none());
}

pub async fn an_identity_is_linked_once_even_in_parallel(f: &dyn StoreFactory) {
    let s = f.fresh();
    for i in 0..PARALLEL {
        s.create_user(&user(
            &format!("u{i}"),
            &format!("n{i}"),
            &format!("{i}@x.example"),
        ))
        .await
        .unwrap();
    }
    let linked = race(&s, |s, i| async move {
        s.link_identity("google", "g-1", &format!("u{i}"))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(linked.iter().filter(|&&l| l).count(), 1, "{linked:?}");
    let owner = s.identity("google", "g-1").await.unwrap().unwrap();
    assert_eq!(
        owner,
        format!("u{}", linked.iter().position(|&l| l).unwrap())
    );
    assert_eq!(s.identities_of(&owner).await.unwrap().len(), 1);
}

pub async fn deleting_an_account_frees_its_names_and_identities(f: &dyn StoreFactory) {
    let s = f.fresh();
    let ada = user("u_ada", "Ada", "ada@example.com");
    s.create_federated_user(&ada, "google", "g-1")
        .await
        .unwrap();
    assert!(s.link_identity("github", "7", "u_ada").await.unwrap());
    s.set_external_id("u_ada", Some("HR-1")).await.unwrap();
    assert_eq!(
        s.external_id("u_ada").await.unwrap().as_deref(),
        Some("HR-1")
    );
    s.delete_user("u_ada").await.unwrap();
    assert!(s.user("u_ada").await.unwrap().is_none());
    assert!(s.find_user("ada").await.unwrap().is_none());
    assert!(s.find_user("ada@example.com").await.unwrap().is_none());
    assert!(s.identity("google", "g-1").await.unwrap().is_none());
    assert!(s.identity("github", "7").await.unwrap().is_none());
    assert!(s.identities_of("u_ada").await.unwrap().is_empty());
    assert_eq!(s.external_id("u_ada").await.unwrap(), None);
    assert!(matches!(
        s.delete_user("u_ada").await,
        Err(StoreError::NotFound)
    ));
    // The name and address can be used again.
    s.create_user(&user("u_new", "ada", "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(s.user_count().await.unwrap(), 1);
}

pub async fn unlinking_needs_the_owner(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u_a", "a", "a@example.com"))
        .await
        .unwrap();
    s.link_identity("google", "g-1", "u_a").await.unwrap();
    assert!(!s.unlink_identity("google", "g-1", "u_b").await.unwrap());
    assert_eq!(
        s.identity("google", "g-1").await.unwrap().as_deref(),
        Some("u_a")
    );
    assert!(s.unlink_identity("google", "g-1", "u_a").await.unwrap());
    assert!(s.identity("google", "g-1").await.unwrap().is_none());
    assert!(s.identities_of("u_a").await.unwrap().is_empty());
    assert!(!s.unlink_identity("google", "g-1", "u_a").await.unwrap());
}

pub async fn accounts_are_paged_in_id_order(f: &dyn StoreFactory) {
    let s = f.fresh();
    for id in ["u3", "u1", "u5", "u2", "u4"] {
        s.create_user(&user(id, id, &format!("{id}@example.com")))
            .await
            .unwrap();
    }
    let ids = |page: Vec<User>| page.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(s.users_after(None, 2).await.unwrap()), ["u1", "u2"]);
    assert_eq!(
        ids(s.users_after(Some("u2"), 2).await.unwrap()),
        ["u3", "u4"]
    );
    assert_eq!(ids(s.users_after(Some("u4"), 2).await.unwrap()), ["u5"]);
    assert!(s.users_after(Some("u5"), 2).await.unwrap().is_empty());
    let every = crate::store::all_users(s.as_ref()).await.unwrap();
    assert_eq!(ids(every), ["u1", "u2", "u3", "u4", "u5"]);
}

fn compare(attr: UserAttr, op: Op, value: &str) -> Filter<UserAttr> {
    Filter::Compare(attr, op, Literal::Str(value.into()))
}

/// The ids of a query's page, and the total.
async fn run(
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
        .await
        .unwrap();
    (page.users.into_iter().map(|u| u.id).collect(), page.total)
}

pub async fn queries_filter_order_page_and_count(f: &dyn StoreFactory) {
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
        s.create_user(&u).await.unwrap();
    }
    assert_eq!(
        run(s.as_ref(), None, 0, 10).await,
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
        run(s.as_ref(), Some(al.clone()), 0, 10).await,
        (vec!["u_b".into(), "u_a".into(), "u_e".into()], 3)
    );
    // A page of one, and the total still counts every match.
    assert_eq!(
        run(s.as_ref(), Some(al.clone()), 1, 1).await,
        (vec!["u_a".into()], 3)
    );
    assert_eq!(run(s.as_ref(), Some(al.clone()), 5, 10).await, (vec![], 3));
    let active = Filter::Compare(UserAttr::Active, Op::Eq, Literal::Bool(true));
    let both = Filter::And(Box::new(al.clone()), Box::new(active));
    assert_eq!(
        run(s.as_ref(), Some(both.clone()), 0, 10).await,
        (vec!["u_b".into(), "u_a".into()], 2)
    );
    let either = Filter::Or(
        Box::new(compare(UserAttr::Id, Op::Eq, "u_c")),
        Box::new(compare(UserAttr::Email, Op::Eq, "DAVE@example.com")),
    );
    assert_eq!(
        run(s.as_ref(), Some(either), 0, 10).await,
        (vec!["u_c".into(), "u_d".into()], 2)
    );
    // Ids compare exactly.
    assert_eq!(
        run(
            s.as_ref(),
            Some(compare(UserAttr::Id, Op::Eq, "U_C")),
            0,
            10
        )
        .await,
        (vec![], 0)
    );
    let not = Filter::Not(Box::new(both));
    assert_eq!(
        run(s.as_ref(), Some(not), 0, 10).await,
        (vec!["u_c".into(), "u_d".into(), "u_e".into()], 3)
    );
    let unnamed = Filter::Compare(UserAttr::GivenName, Op::Eq, Literal::Null);
    assert_eq!(run(s.as_ref(), Some(unnamed), 0, 0).await, (vec![], 5));
}

pub async fn queries_see_external_ids_identities_and_authenticators(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.create_user(&user("u1", "ada", "ada@example.com"))
        .await
        .unwrap();
    s.create_user(&user("u2", "bob", "bob@example.com"))
        .await
        .unwrap();
    s.set_external_id("u1", Some("HR-7")).await.unwrap();
    s.link_identity("github", "77", "u2").await.unwrap();
    s.put_totp("u2", &totp_credential()).await.unwrap();
    let mut pending = totp_credential();
    pending.confirmed = false;
    s.put_totp("u1", &pending).await.unwrap();
    let one = |filter| run(s.as_ref(), Some(filter), 0, 10);
    assert_eq!(
        one(compare(UserAttr::ExternalId, Op::Eq, "HR-7")).await.0,
        ["u1"]
    );
    assert!(one(compare(UserAttr::ExternalId, Op::Eq, "hr-7"))
        .await
        .0
        .is_empty());
    assert_eq!(
        one(compare(UserAttr::IdentityConnection, Op::Eq, "github"))
            .await
            .0,
        ["u2"]
    );
    assert_eq!(
        one(compare(UserAttr::IdentitySubject, Op::Eq, "77"))
            .await
            .0,
        ["u2"]
    );
    // Only a confirmed authenticator counts.
    assert_eq!(
        one(Filter::Compare(UserAttr::Totp, Op::Eq, Literal::Bool(true)))
            .await
            .0,
        ["u2"]
    );
    assert_eq!(one(Filter::Present(UserAttr::ExternalId)).await.0, ["u1"]);
}

async fn hashes(s: &dyn Store, user_id: &str) -> Vec<String> {
    let mut h: Vec<String> = s
        .sessions_of(user_id)
        .await
        .unwrap()
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    h.sort();
    h
}

pub async fn the_session_index_follows_puts_and_deletes(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    s.put_session("h1", &session(Some("u_a"), 100))
        .await
        .unwrap();
    s.put_session("h2", &session(Some("u_a"), 100))
        .await
        .unwrap();
    s.put_session("h3", &session(Some("u_b"), 100))
        .await
        .unwrap();
    s.put_session("h4", &session(None, 100)).await.unwrap();
    assert_eq!(hashes(s, "u_a").await, ["h1", "h2"]);
    assert_eq!(hashes(s, "u_b").await, ["h3"]);
    assert_eq!(s.session("h4").await.unwrap().unwrap().sub, "github|1");
    // The same cookie now signed in as someone else moves between indexes.
    s.put_session("h2", &session(Some("u_b"), 100))
        .await
        .unwrap();
    assert_eq!(hashes(s, "u_a").await, ["h1"]);
    assert_eq!(hashes(s, "u_b").await, ["h2", "h3"]);
    s.delete_session("h1").await.unwrap();
    assert!(hashes(s, "u_a").await.is_empty());
    assert!(s.session("h1").await.unwrap().is_none());
    // Expired sessions are swept with their index entries; a session expiring exactly
    // now is expired.
    s.put_session("h5", &session(Some("u_b"), 50))
        .await
        .unwrap();
    s.put_session("h6", &session(None, 60)).await.unwrap();
    assert_eq!(s.sweep_sessions(60).await.unwrap(), 2);
    assert_eq!(hashes(s, "u_b").await, ["h2", "h3"]);
    assert!(s.session("h6").await.unwrap().is_none());
}

/// Two accounts claiming each other's names at once (one's username the other's email,
/// or two renames swapping names): every call answers `Ok` or `Conflict`, never a
/// storage error, and of two creations claiming one name exactly one succeeds. A
/// backend that takes the names' locks in whatever order the record lists them can
/// deadlock here, and the database then aborts one transaction with an error.
pub async fn crossed_names_in_parallel_conflict_cleanly(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Pairs (2k, 2k+1): username x_k with email y_k, and username y_k with email x_k.
    let created = race(&s, |s, i| async move {
        let (k, second) = (i / 2, i % 2 == 1);
        let (x, y) = (format!("x{k}@example.com"), format!("y{k}@example.com"));
        let u = if second {
            user(&format!("b{k}"), &y, &x)
        } else {
            user(&format!("a{k}"), &x, &y)
        };
        match s.create_user(&u).await {
            Ok(()) => true,
            Err(StoreError::Conflict(_)) => false,
            Err(e) => panic!("creation {i} failed: {e}"),
        }
    })
    .await;
    for pair in created.chunks(2) {
        assert_eq!(pair.iter().filter(|&&ok| ok).count(), 1, "{created:?}");
    }

    // Pairs of existing accounts trying to take each other's username at once.
    let s = f.fresh();
    for k in 0..PARALLEL / 2 {
        s.create_user(&user(
            &format!("p{k}"),
            &format!("p{k}"),
            &format!("p{k}@x.example"),
        ))
        .await
        .unwrap();
        s.create_user(&user(
            &format!("q{k}"),
            &format!("q{k}"),
            &format!("q{k}@x.example"),
        ))
        .await
        .unwrap();
    }
    race(&s, |s, i| async move {
        let (k, second) = (i / 2, i % 2 == 1);
        let (me, other) = if second { ("q", "p") } else { ("p", "q") };
        let mut u = s.user(&format!("{me}{k}")).await.unwrap().unwrap();
        u.username = format!("{other}{k}");
        match s.update_user(&u).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("rename {i} failed: {e}"),
        }
    })
    .await;
    for k in 0..PARALLEL / 2 {
        // The other's username stays the other's: each rename was refused.
        assert_eq!(
            s.find_user(&format!("p{k}")).await.unwrap().unwrap().id,
            format!("p{k}")
        );
        assert_eq!(
            s.find_user(&format!("q{k}")).await.unwrap().unwrap().id,
            format!("q{k}")
        );
    }
}

pub async fn an_accounts_sessions_end_together_but_the_kept_one(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    for (hash, user) in [("h1", "u_a"), ("h2", "u_a"), ("h3", "u_a"), ("h4", "u_b")] {
        s.put_session(hash, &session(Some(user), 100))
            .await
            .unwrap();
    }
    assert_eq!(s.end_sessions_of("u_a", Some("h2")).await.unwrap(), 2);
    assert_eq!(hashes(s, "u_a").await, ["h2"]);
    assert!(s.session("h1").await.unwrap().is_none());
    assert!(s.session("h2").await.unwrap().is_some(), "the kept session");
    assert_eq!(hashes(s, "u_b").await, ["h4"], "another account's session");
    assert_eq!(s.end_sessions_of("u_a", None).await.unwrap(), 1);
    assert!(hashes(s, "u_a").await.is_empty());
    assert_eq!(s.end_sessions_of("nobody", None).await.unwrap(), 0);
    // Parallel calls end each session once between them.
    for i in 0..10 {
        s.put_session(&format!("p{i}"), &session(Some("u_a"), 100))
            .await
            .unwrap();
    }
    let counts = race(&store, |s, _| async move {
        s.end_sessions_of("u_a", None).await.unwrap()
    })
    .await;
    assert_eq!(counts.iter().sum::<usize>(), 10, "{counts:?}");
    assert!(hashes(s, "u_a").await.is_empty());
}

pub async fn a_session_is_updated_only_while_it_is_there(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    s.put_session("h1", &session(Some("u_a"), 100))
        .await
        .unwrap();
    let mut longer = session(Some("u_a"), 200);
    longer.clients = vec!["thrift".into()];
    assert!(s.update_session("h1", &longer).await.unwrap());
    assert_eq!(s.session("h1").await.unwrap(), Some(longer.clone()));
    assert_eq!(hashes(s, "u_a").await, ["h1"]);
    // Ended (signed out elsewhere): the update writes nothing back.
    s.delete_session("h1").await.unwrap();
    assert!(!s.update_session("h1", &longer).await.unwrap());
    assert_eq!(s.session("h1").await.unwrap(), None);
    assert!(hashes(s, "u_a").await.is_empty(), "the index came back");
    // An update racing a sign-out everywhere: the session is gone afterwards either way.
    s.put_session("h2", &session(Some("u_a"), 100))
        .await
        .unwrap();
    let results = race(&store, |s, i| async move {
        if i == 0 {
            s.end_sessions_of("u_a", None).await.unwrap();
            false
        } else {
            let mut later = session(Some("u_a"), 100);
            later.clients = vec![format!("app{i}")];
            s.update_session("h2", &later).await.unwrap()
        }
    })
    .await;
    let after = s.session("h2").await.unwrap();
    // Updates that landed before the sign-out were ended with it; none after it wrote.
    assert_eq!(after, None, "updates: {results:?}");
}
