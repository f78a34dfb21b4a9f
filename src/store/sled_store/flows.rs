//! The sled side of short-lived records: in-progress flows (with the live count the
//! metrics gauge reads), upstream round trips, and My Account's flash messages.

use std::sync::atomic::Ordering;

use super::{backend, SledStore};
use crate::store::*;
use async_trait::async_trait;

#[async_trait]
impl FlowStore for SledStore {
    async fn put_flow(&self, id: &str, bytes: &[u8]) -> StoreResult<()> {
        if self.flows.insert(id, bytes).map_err(backend)?.is_none() {
            self.live_flows.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn flow(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.flows.get(id).map_err(backend)?.map(|v| v.to_vec()))
    }

    async fn delete_flow(&self, id: &str) -> StoreResult<()> {
        if self.flows.remove(id).map_err(backend)?.is_some() {
            self.forget_flows(1);
        }
        Ok(())
    }

    async fn flow_count(&self) -> StoreResult<usize> {
        Ok(self.live_flows.load(Ordering::Relaxed))
    }

    async fn put_upstream_state(&self, state_hash: &str, flow_id: &str) -> StoreResult<()> {
        self.upstream_states
            .insert(state_hash, flow_id.as_bytes())
            .map_err(backend)?;
        Ok(())
    }

    async fn take_upstream_state(&self, state_hash: &str) -> StoreResult<Option<String>> {
        // `remove` is atomic: exactly one caller sees the value.
        Ok(self
            .upstream_states
            .remove(state_hash)
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn sweep_flows(&self, cutoff: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_flows_now(cutoff)).await
    }
}

#[async_trait]
impl FlashStore for SledStore {
    async fn put_flash(&self, id: &str, bytes: &[u8], expires_at: u64) -> StoreResult<()> {
        let mut value = expires_at.to_be_bytes().to_vec();
        value.extend_from_slice(bytes);
        self.flashes.insert(id, value).map_err(backend)?;
        Ok(())
    }

    async fn take_flash(&self, id: &str, now: u64) -> StoreResult<Option<Vec<u8>>> {
        // `remove` is atomic: exactly one caller sees the value.
        let Some(value) = self.flashes.remove(id).map_err(backend)? else {
            return Ok(None);
        };
        Ok(split_flash(&value)
            .filter(|(expires_at, _)| *expires_at > now)
            .map(|(_, body)| body.to_vec()))
    }

    async fn sweep_flashes(&self, now: u64) -> StoreResult<usize> {
        self.off_runtime(move |s| s.sweep_flashes_now(now)).await
    }
}

/// A stored flash as (expiry, message); `None` if it is too short to hold an expiry.
pub(super) fn split_flash(value: &[u8]) -> Option<(u64, &[u8])> {
    let (head, body) = value.split_at_checked(8)?;
    let expires_at = u64::from_be_bytes(head.try_into().ok()?);
    Some((expires_at, body))
}

impl SledStore {
    /// Count `n` flows as gone, never below zero.
    fn forget_flows(&self, n: usize) {
        let _ = self
            .live_flows
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(n))
            });
    }
}

/// The sweeps: each walks a whole tree, so the trait methods run them on the
/// blocking pool.
impl SledStore {
    fn sweep_flows_now(&self, cutoff: u64) -> StoreResult<usize> {
        // Ids start with their creation time in fixed-width hex, so the old ones are a
        // prefix range of the tree.
        let end = format!("{cutoff:016x}");
        let mut removed = 0;
        for entry in self.flows.range(..end.as_bytes()) {
            let (key, _) = entry.map_err(backend)?;
            // A flow finished meanwhile is not counted twice.
            if self.flows.remove(key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        self.forget_flows(removed);
        // Round trips that never came back: their value is the (time-prefixed) flow id.
        for entry in self.upstream_states.iter() {
            let (key, flow_id) = entry.map_err(backend)?;
            let started = crate::crypto::id_time(&String::from_utf8_lossy(&flow_id));
            if started.is_none_or(|t| t < cutoff) {
                self.upstream_states.remove(key).map_err(backend)?;
            }
        }
        Ok(removed)
    }

    fn sweep_flashes_now(&self, now: u64) -> StoreResult<usize> {
        let mut removed = 0;
        for entry in self.flashes.iter() {
            let (key, value) = entry.map_err(backend)?;
            let expired = split_flash(&value).is_none_or(|(expires_at, _)| expires_at <= now);
            if expired && self.flashes.remove(key).map_err(backend)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
