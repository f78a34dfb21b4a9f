//! Contract: groups — unique names under concurrency, compare-and-swap writes that lose
//! no parallel change, members that must be accounts and leave with them, and the
//! batch reads a page of accounts is shown with.

use super::*;
use crate::store::groups::GroupAttr;
use crate::store::query::{Filter, Literal, Op};

pub fn group(id: &str, name: &str, members: &[&str]) -> Group {
    Group {
        connection: Default::default(),
        synced: Default::default(),
        id: id.into(),
        display_name: name.into(),
        external_id: None,
        members: members.iter().map(|m| m.to_string()).collect(),
        roles: vec![],
        created_at: 1,
        updated_at: 1,
    }
}

async fn accounts(s: &Arc<dyn Store>, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("u{i:03}");
        s.create_user(&user(
            &id,
            &format!("user{i}"),
            &format!("user{i}@example.com"),
        ))
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// Add `member` to the group the way the core does: read, change, swap, again on
/// `Stale`.
async fn add_member(s: &dyn Store, group_id: &str, member: &str) -> GroupWrite {
    loop {
        let current = s.group(group_id).await.unwrap().unwrap();
        let mut g = current.value.clone();
        g.members.push(member.to_string());
        match s.swap_group(&g, current.version).await.unwrap() {
            GroupWrite::Stale => continue,
            other => return other,
        }
    }
}

pub async fn of_parallel_creations_with_one_name_exactly_one_makes_a_group(f: &dyn StoreFactory) {
    let s = f.fresh();
    let outcomes = race(&s, |s, i| async move {
        // One name, in different cases and with spaces around it.
        let name = if i % 2 == 0 { "Admins" } else { " admins " };
        s.create_group(&group(&format!("g{i:02}"), name, &[])).await
    })
    .await;
    let made = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(GroupWrite::Written)))
        .count();
    assert_eq!(made, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Ok(GroupWrite::Written) | Err(StoreError::Conflict("displayName"))
    )));
    let page = s
        .query_groups(&GroupQuery {
            filter: None,
            start: 0,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert!(s.find_group("ADMINS").await.unwrap().is_some());
}

pub async fn parallel_member_additions_lose_none(f: &dyn StoreFactory) {
    let s = f.fresh();
    let ids = accounts(&s, PARALLEL).await;
    assert_eq!(
        s.create_group(&group("g1", "staff", &[])).await.unwrap(),
        GroupWrite::Written
    );
    let ids2 = ids.clone();
    let outcomes = race(&s, move |s, i| {
        let member = ids2[i].clone();
        async move { add_member(s.as_ref(), "g1", &member).await }
    })
    .await;
    assert!(outcomes.iter().all(|o| *o == GroupWrite::Written));
    let g = s.group("g1").await.unwrap().unwrap();
    let mut members = g.value.members.clone();
    members.sort();
    assert_eq!(members, ids, "every parallel addition is kept, once");
    assert_eq!(g.version, 1 + PARALLEL as u64);
    let of = s.memberships(&ids).await.unwrap();
    assert_eq!(of.len(), PARALLEL);
    assert!(of
        .values()
        .all(|m| m.len() == 1 && m[0].display_name == "staff"));
}

pub async fn a_stale_swap_writes_nothing_and_renames_move_the_name(f: &dyn StoreFactory) {
    let s = f.fresh();
    accounts(&s, 2).await;
    s.create_group(&group("g1", "one", &["u000"]))
        .await
        .unwrap();
    s.create_group(&group("g2", "two", &[])).await.unwrap();
    let v = s.group("g1").await.unwrap().unwrap();
    let mut renamed = v.value.clone();
    renamed.display_name = "uno".into();
    renamed.members = vec!["u001".into()];
    assert_eq!(
        s.swap_group(&renamed, v.version).await.unwrap(),
        GroupWrite::Written
    );
    // The same version again: someone else wrote meanwhile.
    let mut late = v.value.clone();
    late.display_name = "late".into();
    assert_eq!(
        s.swap_group(&late, v.version).await.unwrap(),
        GroupWrite::Stale
    );
    assert!(s.find_group("late").await.unwrap().is_none());
    assert!(
        s.find_group("one").await.unwrap().is_none(),
        "the old name is free"
    );
    assert_eq!(s.find_group("UNO").await.unwrap().unwrap().value.id, "g1");
    let of = s
        .memberships(&["u000".to_string(), "u001".to_string()])
        .await
        .unwrap();
    assert!(!of.contains_key("u000"), "left the group: {of:?}");
    assert_eq!(of["u001"][0].group_id, "g1");
    // A rename onto another group's name.
    let v2 = s.group("g2").await.unwrap().unwrap();
    let mut clash = v2.value.clone();
    clash.display_name = "Uno".into();
    assert!(matches!(
        s.swap_group(&clash, v2.version).await,
        Err(StoreError::Conflict("displayName"))
    ));
    assert_eq!(s.group("g2").await.unwrap().unwrap(), v2, "nothing written");
    // And the freed name can be taken.
    let mut taken = v2.value.clone();
    taken.display_name = "one".into();
    assert_eq!(
        s.swap_group(&taken, v2.version).await.unwrap(),
        GroupWrite::Written
    );
}

pub async fn members_are_accounts_and_leave_with_them(f: &dyn StoreFactory) {
    let s = f.fresh();
    accounts(&s, 2).await;
    assert_eq!(
        s.create_group(&group("g1", "a", &["u000", "nobody"]))
            .await
            .unwrap(),
        GroupWrite::NoSuchAccount("nobody".into())
    );
    assert!(s.group("g1").await.unwrap().is_none(), "nothing written");
    assert!(s.find_group("a").await.unwrap().is_none());
    s.create_group(&group("g1", "a", &["u000", "u001"]))
        .await
        .unwrap();
    s.create_group(&group("g2", "b", &["u000"])).await.unwrap();
    let v = s.group("g1").await.unwrap().unwrap();
    let mut g = v.value.clone();
    g.members.push("ghost".into());
    assert_eq!(
        s.swap_group(&g, v.version).await.unwrap(),
        GroupWrite::NoSuchAccount("ghost".into())
    );
    s.delete_user("u000").await.unwrap();
    let g1 = s.group("g1").await.unwrap().unwrap();
    assert_eq!(g1.value.members, ["u001"]);
    assert!(
        g1.version > v.version,
        "an ETag held before no longer matches"
    );
    assert!(s
        .group("g2")
        .await
        .unwrap()
        .unwrap()
        .value
        .members
        .is_empty());
    assert!(s.memberships(&["u000".into()]).await.unwrap().is_empty());
    // A deleted group frees its name and its members' memberships; a stale delete
    // does nothing.
    assert!(!s.delete_group("g1", Some(v.version)).await.unwrap());
    assert!(s.delete_group("g1", Some(g1.version)).await.unwrap());
    assert!(!s.delete_group("g1", None).await.unwrap());
    assert!(s.memberships(&["u001".into()]).await.unwrap().is_empty());
    s.create_group(&group("g3", "A", &[])).await.unwrap();
}

pub async fn parallel_deletions_and_additions_leave_no_member_that_is_gone(f: &dyn StoreFactory) {
    let s = f.fresh();
    let ids = accounts(&s, PARALLEL / 2).await;
    s.create_group(&group("g1", "crowd", &[])).await.unwrap();
    let ids2 = ids.clone();
    race(&s, move |s, i| {
        let member = ids2[i / 2].clone();
        async move {
            if i % 2 == 0 {
                add_member(s.as_ref(), "g1", &member).await;
            } else {
                s.delete_user(&member).await.unwrap();
            }
        }
    })
    .await;
    let g = s.group("g1").await.unwrap().unwrap();
    for m in &g.value.members {
        assert!(s.user(m).await.unwrap().is_some(), "{m} is gone but kept");
    }
    assert_eq!(s.user_count().await.unwrap(), 0);
    assert!(g.value.members.is_empty(), "{:?}", g.value.members);
}

pub async fn a_page_of_accounts_reads_its_extras_and_groups_at_once(f: &dyn StoreFactory) {
    let s = f.fresh();
    let ids = accounts(&s, 3).await;
    s.set_external_id("u000", Some("HR-0")).await.unwrap();
    s.link_identity("google", "g-1", "u001").await.unwrap();
    s.put_totp("u002", &totp_credential()).await.unwrap();
    let mut admins = group("g1", "admins", &["u000", "u001"]);
    admins.roles = vec!["admin".into()];
    s.create_group(&admins).await.unwrap();
    s.create_group(&group("g2", "staff", &["u000"]))
        .await
        .unwrap();
    let extras = s.user_extras(&ids).await.unwrap();
    assert_eq!(extras["u000"].external_id.as_deref(), Some("HR-0"));
    let names: Vec<&str> = extras["u000"]
        .groups
        .iter()
        .map(|g| g.display_name.as_str())
        .collect();
    assert_eq!(names, ["admins", "staff"]);
    assert_eq!(extras["u000"].groups[0].roles, ["admin"]);
    assert_eq!(
        extras["u001"].identities,
        [("google".to_string(), "g-1".to_string())]
    );
    assert!(extras["u002"].totp && extras["u002"].groups.is_empty());
    assert!(!extras["u000"].totp);
}

pub async fn group_queries_filter_order_and_page(f: &dyn StoreFactory) {
    let s = f.fresh();
    accounts(&s, 1).await;
    for (i, name) in ["Zeta", "alpha", "Beta"].iter().enumerate() {
        let mut g = group(&format!("g{}", 3 - i), name, &[]);
        g.created_at = 10 + i as u64;
        if i == 1 {
            g.members = vec!["u000".into()];
            g.external_id = Some("EXT".into());
        }
        s.create_group(&g).await.unwrap();
    }
    let all = s
        .query_groups(&GroupQuery {
            filter: None,
            start: 1,
            count: 1,
        })
        .await
        .unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(all.groups[0].value.display_name, "alpha", "creation order");
    let by = |attr, lit: &str| GroupQuery {
        filter: Some(Filter::Compare(attr, Op::Eq, Literal::Str(lit.into()))),
        start: 0,
        count: 10,
    };
    let found = s
        .query_groups(&by(GroupAttr::DisplayName, "BETA"))
        .await
        .unwrap();
    assert_eq!(found.groups[0].value.display_name, "Beta");
    let found = s
        .query_groups(&by(GroupAttr::Member, "u000"))
        .await
        .unwrap();
    assert_eq!(found.groups[0].value.display_name, "alpha");
    let none = s
        .query_groups(&by(GroupAttr::ExternalId, "ext"))
        .await
        .unwrap();
    assert_eq!(none.total, 0, "externalId is case-exact");
}
