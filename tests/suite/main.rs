//! Usher's integration tests, built as one binary so the suite links once: real
//! servers on ephemeral ports, temporary stores, stand-in upstreams and an SMTP sink.

mod accounts_world;
mod common;
mod smtp_sink;

mod accounts_and_reload;
mod admin_cli;
mod attacks_lifecycle;
mod bench;
mod bounded_input;
mod config_admin;
mod config_errors;
mod demo;
mod federation;
mod fixtures;
mod groups_signin;
mod hardening;
mod limits;
mod lockout;
mod mail;
mod metrics;
mod multinode;
mod my_account;
mod oidc_errors;
mod oidc_login;
mod operations;
mod password_reset;
mod recording;
mod revocation;
mod revocation_account;
mod scim;
mod scim_conformance;
mod scim_groups;
mod script_context;
mod script_steps;
mod scripts;
mod second_factors;
mod seed_scenarios;
mod standin;
mod step_up;
mod store_copy;
mod throttles;
mod upstream_groups;
mod userinfo;
