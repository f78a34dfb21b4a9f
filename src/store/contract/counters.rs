//! Contract: counters with an expiry, and the attempt limits `authn::attempts` builds
//! on them — reserve-then-check must grant exactly the limit however many requests race.

use super::*;
use crate::authn::attempts::{self, Limit};

pub async fn parallel_hits_count_every_one_exactly_once(f: &dyn StoreFactory) {
    let s = f.fresh();
    let mut counts = race(&s, |s, _| async move {
        s.hit("k", 1000, 1900).await.unwrap().count
    })
    .await;
    counts.sort();
    let expected: Vec<u32> = (1..=PARALLEL as u32).collect();
    assert_eq!(counts, expected);
    assert_eq!(
        s.counter("k", 1000).await.unwrap(),
        Some(Counter {
            count: PARALLEL as u32,
            expires_at: 1900
        })
    );
}

pub async fn a_counter_keeps_its_expiry_and_restarts_after_it(f: &dyn StoreFactory) {
    let s = f.fresh();
    assert_eq!(s.counter("k", 1000).await.unwrap(), None);
    assert_eq!(
        s.hit("k", 1000, 1100).await.unwrap(),
        Counter {
            count: 1,
            expires_at: 1100
        }
    );
    // A live counter keeps the expiry it started with.
    assert_eq!(
        s.hit("k", 1050, 1150).await.unwrap(),
        Counter {
            count: 2,
            expires_at: 1100
        }
    );
    assert_eq!(
        s.counter("k", 1099).await.unwrap().map(|c| c.count),
        Some(2)
    );
    // At its expiry it is gone, and the next hit starts over.
    assert_eq!(s.counter("k", 1100).await.unwrap(), None);
    assert_eq!(
        s.hit("k", 1100, 1200).await.unwrap(),
        Counter {
            count: 1,
            expires_at: 1200
        }
    );
    // Keys are independent; a reset forgets one.
    s.hit("other", 1100, 1200).await.unwrap();
    s.reset_counter("k").await.unwrap();
    assert_eq!(s.counter("k", 1100).await.unwrap(), None);
    assert_eq!(
        s.counter("other", 1100).await.unwrap().map(|c| c.count),
        Some(1)
    );
}

pub async fn extending_a_counter_never_shortens_it_nor_revives_it(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.hit("k", 1000, 1100).await.unwrap();
    s.extend_counter("k", 1000, 1500).await.unwrap();
    assert_eq!(
        s.counter("k", 1400).await.unwrap().map(|c| c.expires_at),
        Some(1500)
    );
    s.extend_counter("k", 1000, 1200).await.unwrap();
    assert_eq!(
        s.counter("k", 1400).await.unwrap().map(|c| c.expires_at),
        Some(1500)
    );
    // An expired counter stays expired; a missing one is not created.
    s.extend_counter("k", 1500, 2000).await.unwrap();
    assert_eq!(s.counter("k", 1500).await.unwrap(), None);
    s.extend_counter("none", 1000, 2000).await.unwrap();
    assert_eq!(s.counter("none", 1000).await.unwrap(), None);
}

pub async fn expired_counters_are_swept(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.hit("old", 1000, 1100).await.unwrap();
    s.hit("edge", 1000, 1200).await.unwrap();
    s.hit("live", 1000, 1300).await.unwrap();
    assert_eq!(s.sweep_counters(1200).await.unwrap(), 2);
    assert_eq!(s.sweep_counters(1200).await.unwrap(), 0);
    assert_eq!(
        s.counter("live", 1200).await.unwrap().map(|c| c.count),
        Some(1)
    );
}

pub async fn taking_back_undoes_one_hit_exactly_and_removes_at_zero(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Missing or expired counters are left alone.
    assert_eq!(s.take_back("k", 1000).await.unwrap(), None);
    s.hit("old", 1000, 1100).await.unwrap();
    assert_eq!(s.take_back("old", 1100).await.unwrap(), None);
    s.hit("k", 1000, 1900).await.unwrap();
    s.hit("k", 1000, 1900).await.unwrap();
    // One back, keeping the expiry; the last one back removes the counter.
    assert_eq!(
        s.take_back("k", 1001).await.unwrap(),
        Some(Counter {
            count: 1,
            expires_at: 1900
        })
    );
    assert_eq!(s.take_back("k", 1001).await.unwrap(), None);
    assert_eq!(s.counter("k", 1001).await.unwrap(), None);
    // A hit after it starts a new counter with the expiry it names.
    assert_eq!(s.hit("k", 1002, 2000).await.unwrap().expires_at, 2000);
}

pub async fn parallel_hits_and_take_backs_lose_no_count(f: &dyn StoreFactory) {
    let s = f.fresh();
    s.hit("k", 1000, 1900).await.unwrap();
    // Every caller reserves twice and gives one back: the count ends at 1 + PARALLEL.
    race(&s, |s, _| async move {
        s.hit("k", 1000, 1900).await.unwrap();
        s.hit("k", 1000, 1900).await.unwrap();
        s.take_back("k", 1000).await.unwrap();
    })
    .await;
    assert_eq!(
        s.counter("k", 1000).await.unwrap().map(|c| c.count),
        Some(1 + PARALLEL as u32)
    );
    let mut left = race(&s, |s, _| async move {
        s.take_back("k", 1000).await.unwrap().map_or(0, |c| c.count)
    })
    .await;
    left.sort();
    let expected: Vec<u32> = (1..=PARALLEL as u32).collect();
    assert_eq!(left, expected);
}

const LIMIT: Limit = Limit {
    max: 5,
    seconds: 900,
};

pub async fn failures_lock_after_the_limit_and_the_lock_expires(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    for i in 0..4 {
        let a = attempts::fail(s, "password:u1", LIMIT, 1000 + i)
            .await
            .unwrap();
        assert_eq!(a.failures, i as u32 + 1);
        assert!(!a.locked_at(1000 + i), "locked after {} failures", i + 1);
        assert!(!attempts::locked(s, "password:u1", 1000 + i).await.unwrap());
    }
    let a = attempts::fail(s, "password:u1", LIMIT, 1004).await.unwrap();
    assert!(a.locked_at(1005));
    assert!(attempts::locked(s, "password:u1", 1800).await.unwrap());
    assert!(attempts::locked(s, "password:u1", 1903).await.unwrap());
    assert!(!attempts::locked(s, "password:u1", 1904).await.unwrap());
    // Another account is not locked with it.
    assert!(!attempts::locked(s, "password:u2", 1005).await.unwrap());
    // After the lock runs out, counting starts over.
    let a = attempts::fail(s, "password:u1", LIMIT, 2000).await.unwrap();
    assert_eq!(a.failures, 1);
    assert!(!a.locked_at(2000));
    // Failures spread wider than the window never lock.
    for i in 0..10 {
        let a = attempts::fail(s, "password:u3", LIMIT, 10_000 + i * 300)
            .await
            .unwrap();
        assert!(!a.locked_at(10_000 + i * 300), "locked at {i}");
    }
}

pub async fn parallel_reservations_grant_exactly_the_limit(f: &dyn StoreFactory) {
    let s = f.fresh();
    // Each request reserves an attempt before checking its code, as
    // `authn::steps::otp_attempt` does, and may check only within the limit.
    let granted = race(&s, |s, _| async move {
        let a = attempts::fail(s.as_ref(), "totp:u1", LIMIT, 1000)
            .await
            .unwrap();
        a.failures <= LIMIT.max
    })
    .await;
    assert_eq!(
        granted.iter().filter(|&&g| g).count(),
        LIMIT.max as usize,
        "{granted:?}"
    );
    assert!(attempts::locked(s.as_ref(), "totp:u1", 1001).await.unwrap());
    let state = attempts::state(s.as_ref(), "totp:u1", 1001).await.unwrap();
    assert_eq!(state.failures, PARALLEL as u32);
    assert_eq!(state.locked_until, 1900);
}

pub async fn a_success_forgives_the_failures_and_lifts_the_lock(f: &dyn StoreFactory) {
    let store = f.fresh();
    let s = store.as_ref();
    for _ in 0..LIMIT.max {
        attempts::fail(s, "totp:u1", LIMIT, 1000).await.unwrap();
    }
    assert!(attempts::locked(s, "totp:u1", 1000).await.unwrap());
    attempts::forgive(s, "totp:u1").await.unwrap();
    assert!(!attempts::locked(s, "totp:u1", 1000).await.unwrap());
    assert_eq!(
        attempts::fail(s, "totp:u1", LIMIT, 1001)
            .await
            .unwrap()
            .failures,
        1
    );
}

pub async fn parallel_account_attempts_check_exactly_one_block(f: &dyn StoreFactory) {
    let s = f.fresh();
    let rules = attempts::Rules {
        block: 5,
        first_lock: 900,
        longest_lock: 86_400,
        cap: 100,
    };
    let alice = attempts::Holder::account("u1");
    // Every caller reserves before its (wrong) check, as `authn::steps` does: however
    // the requests interleave, one block is checked and the rest refused unchecked.
    let attempt = move |s: Arc<dyn Store>, now: u64| {
        let alice = alice.clone();
        async move {
            match attempts::reserve(s.as_ref(), &alice, rules, now)
                .await
                .unwrap()
            {
                attempts::Reserved::Granted(_) => true,
                attempts::Reserved::Locked { for_good } => {
                    assert!(!for_good);
                    false
                }
            }
        }
    };
    let again = attempt.clone();
    let granted = race(&s, move |s, _| attempt(s, 1000)).await;
    assert_eq!(granted.iter().filter(|&&g| g).count(), 5, "{granted:?}");
    // Refused attempts were given back: the count is the checked ones.
    let state = attempts::state(s.as_ref(), "password:u1", 1000)
        .await
        .unwrap();
    assert_eq!((state.failures, state.locked_until), (5, 1900));
    // After the lock, the next block: again exactly five, locked twice as long.
    let granted = race(&s, move |s, _| again(s, 1900)).await;
    assert_eq!(granted.iter().filter(|&&g| g).count(), 5, "{granted:?}");
    let state = attempts::state(s.as_ref(), "password:u1", 1900)
        .await
        .unwrap();
    assert_eq!((state.failures, state.locked_until), (10, 1900 + 1800));
}

pub async fn several_counters_are_forgotten_in_one_call(f: &dyn StoreFactory) {
    let s = f.fresh();
    for key in ["a", "b", "c"] {
        s.hit(key, 1000, 1900).await.unwrap();
    }
    s.reset_counters(&["a".into(), "c".into(), "never-hit".into()])
        .await
        .unwrap();
    assert_eq!(s.counter("a", 1000).await.unwrap(), None);
    assert_eq!(s.counter("c", 1000).await.unwrap(), None);
    assert_eq!(
        s.counter("b", 1000).await.unwrap().map(|c| c.count),
        Some(1)
    );
    s.reset_counters(&[]).await.unwrap();
    assert!(s.counter("b", 1000).await.unwrap().is_some());
    // A forgotten counter starts over.
    assert_eq!(s.hit("a", 1000, 1900).await.unwrap().count, 1);
}
