//! The sliding-window rule: what it lets through, when it lets a refused client back
//! in, and that racing requests never get more than the limit.

use std::sync::Arc;

use super::*;
use crate::config::{Rate, Throttles};
use crate::store::{CounterStore, SledStore};

fn throttles(max: u32, seconds: u64) -> Throttles {
    let rate = Rate { max, seconds };
    Throttles {
        enabled: true,
        sign_in: rate,
        sign_up: rate,
        email: rate,
        token: rate,
        api: rate,
    }
}

async fn allowed(store: &SledStore, t: &Throttles, tag: &str, now: u64) -> bool {
    admit(store, t, Class::SignIn, tag, now).await.unwrap() == Admission::Allowed
}

#[tokio::test]
async fn a_client_gets_max_requests_then_a_retry_after() {
    let s = SledStore::temporary().unwrap();
    let t = throttles(3, 60);
    // Start at the beginning of a window with nothing before it.
    let t0 = 600_000;
    for _ in 0..3 {
        assert!(allowed(&s, &t, "a", t0).await);
    }
    match admit(&s, &t, Class::SignIn, "a", t0).await.unwrap() {
        Admission::Refused { retry_after } => {
            assert!((1..=120).contains(&retry_after), "{retry_after}")
        }
        Admission::Allowed => panic!("the fourth request went through"),
    }
    // Another client and another class are counted apart.
    assert!(allowed(&s, &t, "b", t0).await);
    assert_eq!(
        admit(&s, &t, Class::Token, "a", t0).await.unwrap(),
        Admission::Allowed
    );
}

#[tokio::test]
async fn the_previous_window_still_weighs_so_its_edge_is_no_double_burst() {
    let s = SledStore::temporary().unwrap();
    let t = throttles(10, 60);
    let t0 = 600_000;
    for _ in 0..10 {
        assert!(allowed(&s, &t, "a", t0 + 59).await);
    }
    // One second into the next window, the previous ten still count almost fully.
    assert!(!allowed(&s, &t, "a", t0 + 61).await);
    // Half way, half of them (5) plus the refused one (1) leave room for 4.
    let mut let_through = 0;
    for _ in 0..10 {
        if allowed(&s, &t, "a", t0 + 90).await {
            let_through += 1;
        }
    }
    assert_eq!(let_through, 4, "10×½ + 1 refused + 4 = 10");
}

#[tokio::test]
async fn the_retry_after_it_gives_is_when_a_request_goes_through_again() {
    let s = SledStore::temporary().unwrap();
    let t = throttles(5, 60);
    let t0 = 600_000;
    for _ in 0..5 {
        assert!(allowed(&s, &t, "a", t0 + 10).await);
    }
    let Admission::Refused { retry_after } =
        admit(&s, &t, Class::SignIn, "a", t0 + 10).await.unwrap()
    else {
        panic!("not refused")
    };
    let back = t0 + 10 + retry_after;
    assert!(
        allowed(&s, &t, "a", back).await,
        "refused at the promised time"
    );
    // And the promise is not wildly generous: two windows at most.
    assert!(retry_after <= 120, "{retry_after}");
}

#[tokio::test]
async fn switched_off_throttles_count_nothing() {
    let s = SledStore::temporary().unwrap();
    let mut t = throttles(1, 60);
    t.enabled = false;
    for _ in 0..5 {
        assert!(allowed(&s, &t, "a", 600_000).await);
    }
    assert_eq!(
        s.sweep_counters(u64::MAX).await.unwrap(),
        0,
        "no counters written"
    );
}

#[tokio::test]
async fn counters_expire_after_two_windows_and_are_swept() {
    let s = SledStore::temporary().unwrap();
    let t = throttles(1, 60);
    assert!(allowed(&s, &t, "a", 600_000).await);
    assert_eq!(s.sweep_counters(600_119).await.unwrap(), 0, "still needed");
    assert_eq!(s.sweep_counters(600_120).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_get_no_more_than_the_limit() {
    let s = Arc::new(SledStore::temporary().unwrap());
    let t = throttles(7, 60);
    let rt = tokio::runtime::Handle::current();
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let (s, t, rt) = (s.clone(), t.clone(), rt.clone());
            std::thread::spawn(move || rt.block_on(allowed(&s, &t, "a", 600_030)))
        })
        .collect();
    let let_through = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    assert_eq!(let_through, 7);
}

#[test]
fn a_client_is_named_by_a_keyed_hash_of_its_address() {
    let a: IpAddr = "203.0.113.9".parse().unwrap();
    let tag = client_tag(b"secret one", a);
    assert!(!tag.contains("203"), "the address is not in the key");
    assert_ne!(tag, client_tag(b"secret two", a));
    assert_eq!(tag, client_tag(b"secret one", a));
}
