//! Usher: an identity provider whose sign-in flows are declared, not coded.
//!
//! The core (`signin`, `account`, `oidc`, `flow`, `policy`, `authn`, `provision`,
//! `config`, `store`) knows nothing about HTTP; `web` is the axum shell around it,
//! `fixtures` the offline one (`usher test`), and `server` runs the web shell with
//! config reloading.
//! `tools` (the bench, the demo and the stand-ins for Google and GitHub) is built into
//! the binary on top of the product; no product module imports it.

// A request must never panic the server: unwrap, expect and panic are refused outside
// tests (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod account;
pub mod audit;
pub mod authn;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod context;
pub mod crypto;
pub mod data_folder;
pub mod fixtures;
pub mod flow;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod names;
pub mod offload;
pub mod oidc;
pub mod policy;
pub mod provision;
pub mod scim;
pub mod secret;
pub mod server;
pub mod signin;
pub mod store;
pub mod throttle;
pub mod timefmt;
pub mod tools;
pub mod transport;
pub mod upstream;
pub mod web;
