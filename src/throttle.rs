//! Per-client throttles: how many requests of one kind (signing in, signing up, email
//! sends, `/token`, the admin APIs) one client address may make in a window, built on
//! the store's counters so the limit holds across every Usher node.
//!
//! The rule is a *sliding-window counter*, not a token bucket: a token bucket needs a
//! compare-and-swap of its level, and the counter store offers only an atomic hit with
//! an expiry. Each window of `seconds` has a counter per (class, client); a request hits
//! the current window's counter and is let through when
//!
//! ```text
//! previous window's count × (share of the previous window still inside the last
//! `seconds`) + current window's count ≤ max
//! ```
//!
//! which approximates "at most `max` in any `seconds`" without the doubled burst a
//! plain fixed window allows at its edge. Because the hit is atomic and returns a
//! distinct count to each of N parallel callers, no more than `max` of them are let
//! through, whatever the timing. Refused requests count too, so a client that keeps
//! hammering stays refused until it slows down; one that stops is free again within two
//! windows at most. Counters expire after two windows and the sweeper removes them.
//!
//! The client is named in the keys only by a keyed hash (a secret in the store, shared
//! by the nodes), so the counters hold no addresses. Nothing here knows HTTP.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Rate, Throttles};
use crate::store::{CounterStore, StoreResult};

/// The kinds of request that are throttled, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Password and code posts, the linking proof, and My Account's password and
    /// authenticator forms: where guessing happens.
    SignIn,
    /// New accounts.
    SignUp,
    /// Email code sends.
    Email,
    /// The token endpoint.
    Token,
    /// SCIM and the admin API.
    Api,
}

impl Class {
    /// The name used in config (`security.throttle.<name>`) and in counter keys.
    pub fn name(self) -> &'static str {
        match self {
            Class::SignIn => "sign_in",
            Class::SignUp => "sign_up",
            Class::Email => "email",
            Class::Token => "token",
            Class::Api => "api",
        }
    }

    /// This class's limit.
    pub fn rate(self, throttles: &Throttles) -> Rate {
        match self {
            Class::SignIn => throttles.sign_in,
            Class::SignUp => throttles.sign_up,
            Class::Email => throttles.email,
            Class::Token => throttles.token,
            Class::Api => throttles.api,
        }
    }
}

/// A throttle's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Over the limit; a request is likely to be let through again after this many
    /// seconds (at least 1).
    Refused {
        retry_after: u64,
    },
}

/// The keyed hash that stands for a client in counter keys.
pub fn client_tag(secret: &[u8], client: IpAddr) -> String {
    let subject = crate::client_addr::throttle_subject(client);
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(b"usher throttle v1\0");
            mac.update(subject.as_bytes());
            crate::crypto::b64url(&mac.finalize().into_bytes()[..16])
        }
        // HMAC takes a key of any length; this arm is never reached.
        Err(_) => crate::crypto::token_hash(&subject),
    }
}

fn key(class: Class, window: u64, tag: &str) -> String {
    format!("throttle:{}:{window}:{tag}", class.name())
}

/// Count one request of `class` from the client `tag` at `now`, and say whether it may
/// go ahead. When throttles are off it is always allowed and nothing is counted.
pub async fn admit<S: CounterStore + ?Sized>(
    store: &S,
    throttles: &Throttles,
    class: Class,
    tag: &str,
    now: u64,
) -> StoreResult<Admission> {
    if !throttles.enabled {
        return Ok(Admission::Allowed);
    }
    let rate = class.rate(throttles);
    let w = rate.seconds.max(1);
    let window = now / w;
    let elapsed = now % w;
    // The counter is read as "previous" for the whole next window, so it lives two.
    let expires = window.saturating_add(2).saturating_mul(w);
    let current = u64::from(
        store
            .hit(&key(class, window, tag), now, expires)
            .await?
            .count,
    );
    let previous = match window.checked_sub(1) {
        Some(p) => store
            .counter(&key(class, p, tag), now)
            .await?
            .map_or(0, |c| u64::from(c.count)),
        None => 0,
    };
    let max = u64::from(rate.max);
    // Integer form of `previous × (w − elapsed) / w + current ≤ max`.
    let weighted = previous.saturating_mul(w - elapsed);
    if weighted.saturating_add(current.saturating_mul(w)) <= max.saturating_mul(w) {
        return Ok(Admission::Allowed);
    }
    Ok(Admission::Refused {
        retry_after: retry_after(previous, current, max, w, elapsed),
    })
}

/// Seconds until one more request would be let through, if nothing else arrives: later
/// in this window once the previous window's weight has faded enough, or else in the
/// next window once this one's has.
fn retry_after(previous: u64, current: u64, max: u64, w: u64, elapsed: u64) -> u64 {
    // Still in this window: previous × (w − e) + (current + 1) × w ≤ max × w.
    let this_window = (current < max && previous > 0).then(|| {
        let room = (max - current - 1).saturating_mul(w);
        // e ≥ w − room / previous, rounded up.
        let e = w.saturating_sub(room / previous);
        e.saturating_sub(elapsed)
    });
    // Next window at offset e: current × (w − e) + w ≤ max × w.
    let next_window = {
        let room = max.saturating_sub(1).saturating_mul(w);
        // No count in this window: the next one starts empty.
        let e = room.checked_div(current).map_or(0, |r| w.saturating_sub(r));
        (w - elapsed).saturating_add(e)
    };
    this_window
        .filter(|&s| s < next_window)
        .unwrap_or(next_window)
        .max(1)
}

#[cfg(test)]
mod tests;
