//! What a core call needs from the running server, handed in rather than reached for:
//! the config snapshot of the request, the store, and the request's time. A shell (the
//! web layer, `usher test`, a test) builds one per request; core functions that need
//! more (signing keys, the sealing key) take it beside this, so a test of a rule that
//! never signs anything need not make keys.

use crate::config::Config;
use crate::store::Store;

/// One request's view of the server, borrowed for the length of a core call.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    /// The time of the request, read once from the clock.
    pub now: u64,
}
