//! The account-wide rules over a real store, time moved by hand: blocks that lock with
//! doubling windows, the cap that only an administrator lifts, successes that give their
//! attempt back without resetting the count, the race at a block's boundary, and the
//! hashed, expiring counters of names nobody has.

use std::sync::{Arc, Mutex};

use super::*;
use crate::store::contract::hooked::Hooked;
use crate::store::{SledStore, Store};

const RULES: Rules = Rules {
    block: 5,
    first_lock: 900,
    longest_lock: 86_400,
    cap: 100,
};

const T0: u64 = 1_700_000_000;

/// One wrong secret: reserve and keep the reservation. `None` when locked.
async fn wrong(store: &dyn Store, holder: &Holder, now: u64) -> Option<Ticket> {
    match reserve(store, holder, RULES, now).await.unwrap() {
        Reserved::Granted(t) => Some(t),
        Reserved::Locked { .. } => None,
    }
}

async fn is_locked(store: &dyn Store, holder: &Holder, now: u64) -> Option<bool> {
    match reserve(store, holder, RULES, now).await.unwrap() {
        Reserved::Granted(t) => {
            give_back(store, t, now).await.unwrap();
            None
        }
        Reserved::Locked { for_good } => Some(for_good),
    }
}

#[tokio::test]
async fn the_lock_doubles_with_each_block_up_to_the_longest() {
    assert_eq!(RULES.lock_after(4), None);
    let windows: Vec<u64> = (1..=10).filter_map(|b| RULES.lock_after(b * 5)).collect();
    assert_eq!(
        windows,
        [900, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400, 86_400]
    );
    assert_eq!(RULES.lock_after(100), Some(u64::MAX));
    let store = SledStore::temporary().unwrap();
    let alice = Holder::account("u_alice");
    let mut now = T0;
    for block in 0..3u32 {
        for i in 1..=5 {
            let t = wrong(&store, &alice, now).await.expect("within the block");
            assert_eq!(t.failures, block * 5 + i);
        }
        let window = 900 << block;
        assert_eq!(
            is_locked(&store, &alice, now + window - 1).await,
            Some(false)
        );
        now += window;
    }
    assert_eq!(standing(&store, "u_alice", now).await.unwrap().failures, 15);
}

#[tokio::test]
async fn after_the_cap_the_account_stays_locked_until_an_administrator_unlocks_it() {
    let store = SledStore::temporary().unwrap();
    let alice = Holder::account("u_alice");
    let mut now = T0;
    let mut checked = 0;
    // An attacker who waits out every lock: 100 guesses, then nothing.
    while checked < 100 {
        match wrong(&store, &alice, now).await {
            Some(_) => checked += 1,
            None => now += 3600,
        }
    }
    assert_eq!(checked, 100);
    let s = standing(&store, "u_alice", now).await.unwrap();
    assert_eq!((s.failures, s.locked_until), (100, u64::MAX));
    // Years later, far past every window: still locked, and the page says for good.
    for later in [now + 86_400, now + 10 * 365 * 86_400] {
        assert_eq!(is_locked(&store, &alice, later).await, Some(true));
    }
    assert_eq!(
        standing(&store, "u_alice", now).await.unwrap().failures,
        100
    );
    // The sweep keeps it: it never expires.
    store.sweep_counters(now + 20 * 365 * 86_400).await.unwrap();
    assert_eq!(is_locked(&store, &alice, now + 1).await, Some(true));
    // The admin unlock (`Admin::unlock`) forgives it all.
    forgive_account(&store, "u_alice").await.unwrap();
    assert_eq!(is_locked(&store, &alice, now + 1).await, None);
    assert_eq!(wrong(&store, &alice, now + 1).await.unwrap().failures, 1);
}

#[tokio::test]
async fn a_right_secret_gives_its_attempt_back_and_only_a_finished_sign_in_resets_the_count() {
    let store = SledStore::temporary().unwrap();
    let alice = Holder::account("u_alice");
    for _ in 0..4 {
        wrong(&store, &alice, T0).await.unwrap();
    }
    // The right password: the attempt goes back, the four failures stay, so passing
    // the password again buys no new guesses at the second factor.
    let right = wrong(&store, &alice, T0).await.unwrap();
    assert_eq!(right.failures, 5);
    assert_eq!(right.locks_until, T0 + 900, "the boundary locks at once");
    give_back(&store, right, T0).await.unwrap();
    let s = standing(&store, "u_alice", T0).await.unwrap();
    assert_eq!(
        (s.failures, s.locked_until),
        (4, 0),
        "its lock went with it"
    );
    let fifth = wrong(&store, &alice, T0).await.unwrap();
    assert_eq!((fifth.failures, fifth.locks_until), (5, T0 + 900));
    // The whole sign-in succeeded (`signin::complete`): the count starts over.
    forgive_account(&store, "u_alice").await.unwrap();
    assert_eq!(
        standing(&store, "u_alice", T0).await.unwrap(),
        Standing {
            failures: 0,
            locked_until: 0
        }
    );
    assert_eq!(wrong(&store, &alice, T0).await.unwrap().failures, 1);
}

#[tokio::test]
async fn an_attempt_counted_before_its_blocks_lock_is_checked_whatever_it_reads_after() {
    let hooked = Arc::new(Hooked::new(Arc::new(SledStore::temporary().unwrap())));
    let alice = Holder::account("u_alice");
    for _ in 0..3 {
        wrong(hooked.as_ref(), &alice, T0).await.unwrap();
    }
    // The fourth attempt takes its place; then, after it has read the tally of locks
    // and before any further read, the fifth fills the block and locks it.
    let fifth = Arc::new(Mutex::new(None));
    let (outer, who, seen) = (hooked.clone(), alice.clone(), fifth.clone());
    hooked.before("hit", move |_| {
        let inner_outer = outer.clone();
        outer.before("counter", move |_| {
            inner_outer.before("counter", move |inner| async move {
                let t = wrong(inner.as_ref(), &who, T0).await;
                *seen.lock().unwrap() = Some(t);
            });
            async {}
        });
        async {}
    });
    let fourth = wrong(hooked.as_ref(), &alice, T0).await;
    assert_eq!(
        fourth.map(|t| t.failures),
        Some(4),
        "counted before the lock: the block is checked whole"
    );
    // Whether or not the fourth read anything after the tally, the fifth ran (here if
    // not yet) and locked.
    let ran = fifth.lock().unwrap().take();
    let fifth = match ran {
        Some(t) => t,
        None => wrong(hooked.inner(), &alice, T0).await,
    };
    assert_eq!(
        fifth.map(|t| (t.failures, t.locks_until)),
        Some((5, T0 + 900))
    );
    assert_eq!(is_locked(hooked.inner(), &alice, T0 + 1).await, Some(false));
}

#[tokio::test]
async fn an_attempt_past_a_boundary_whose_lock_is_still_being_set_is_refused() {
    let hooked = Arc::new(Hooked::new(Arc::new(SledStore::temporary().unwrap())));
    let alice = Holder::account("u_alice");
    for _ in 0..4 {
        wrong(hooked.as_ref(), &alice, T0).await.unwrap();
    }
    // Right after this attempt takes the fifth place, and before it sets the lock,
    // another arrives.
    let (outer, who) = (hooked.clone(), alice.clone());
    hooked.before("hit", move |_| {
        outer.before("counter", move |inner| async move {
            assert_eq!(
                reserve(inner.as_ref(), &who, RULES, T0).await.unwrap(),
                Reserved::Locked { for_good: false },
                "the sixth may not be checked while the fifth is in flight"
            );
        });
        async {}
    });
    let fifth = wrong(hooked.as_ref(), &alice, T0)
        .await
        .expect("the fifth is checked");
    assert_eq!((fifth.failures, fifth.locks_until), (5, T0 + 900));
    assert_eq!(
        standing(hooked.inner(), "u_alice", T0)
            .await
            .unwrap()
            .failures,
        5
    );
    // Once the lock has passed, the next block opens.
    assert_eq!(
        wrong(hooked.as_ref(), &alice, T0 + 900)
            .await
            .unwrap()
            .failures,
        6
    );
}

#[tokio::test]
async fn unknown_names_count_under_a_hashed_key_that_expires_and_is_swept() {
    let store = SledStore::temporary().unwrap();
    let mallory = Holder::of(None, "  Mallory ");
    assert_eq!(
        mallory,
        Holder::of(None, "mallory"),
        "names fold like logins"
    );
    assert!(mallory.key().starts_with("unknown:"));
    assert!(!mallory.key().to_lowercase().contains("mallory"));
    assert_eq!(
        mallory.key().len(),
        "unknown:".len() + 22,
        "16 bytes, base64url"
    );
    assert_ne!(mallory, Holder::of(None, "mallory2"));
    // It locks like an account would.
    for _ in 0..5 {
        wrong(&store, &mallory, T0).await.unwrap();
    }
    assert_eq!(is_locked(&store, &mallory, T0 + 1).await, Some(false));
    assert_eq!(
        store
            .counter(mallory.key(), T0)
            .await
            .unwrap()
            .map(|c| c.count),
        Some(5)
    );
    // Nothing is kept past the longest lock: the sweep removes all of it.
    let gone = T0 + RULES.longest_lock;
    assert_eq!(
        store.sweep_counters(gone).await.unwrap(),
        4,
        "count, lock, the boundary's lock, lock tally"
    );
    assert_eq!(store.counter(mallory.key(), gone).await.unwrap(), None);
    assert_eq!(wrong(&store, &mallory, gone).await.unwrap().failures, 1);
}

#[tokio::test]
async fn an_unknown_name_at_the_cap_reads_as_locked_for_good_yet_expires() {
    let store = SledStore::temporary().unwrap();
    let rules = Rules { cap: 7, ..RULES };
    let ghost = Holder::of(None, "ghost");
    let mut now = T0;
    let mut checked = 0;
    while checked < 7 {
        match reserve(&store, &ghost, rules, now).await.unwrap() {
            Reserved::Granted(t) => {
                checked += 1;
                assert_eq!(t.capped, checked == 7);
            }
            Reserved::Locked { .. } => now += 900,
        }
    }
    assert_eq!(
        reserve(&store, &ghost, rules, now + 3600).await.unwrap(),
        Reserved::Locked { for_good: true },
        "the page says what it says for an account"
    );
    let later = now + 2 * RULES.longest_lock;
    store.sweep_counters(later).await.unwrap();
    assert_eq!(store.counter(ghost.key(), later).await.unwrap(), None);
}
