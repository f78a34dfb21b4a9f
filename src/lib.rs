//! Usher: an identity provider whose sign-in flows are declared, not coded.
//!
//! The core (`config`, `flow`, `oidc`, `authn`, `store`) knows nothing about HTTP;
//! `web` is the axum shell around it and `server` runs it with config reloading.

// A request must never panic the server: unwrap, expect and panic are refused outside
// tests (tests may use them).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod account;
pub mod audit;
pub mod authn;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod crypto;
pub mod demo;
pub mod fixtures;
pub mod flow;
pub mod mail;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod provision;
pub mod scim;
pub mod secret;
pub mod server;
pub mod standin;
pub mod store;
pub mod timefmt;
pub mod upstream;
pub mod web;
