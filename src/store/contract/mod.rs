//! The store contract suite: one set of tests, generic over a backend, that proves the
//! promises the store traits' docs make — uniqueness, single use under concurrency,
//! counters that count every hit, expiry sweeps — and that the core's rules built on
//! them (attempt limits, e-mail code limits) hold on that backend.
//!
//! A backend runs it with [`store_contract_tests!`](crate::store_contract_tests) and a
//! factory of fresh, empty stores: sled does in `store::tests`; a PostgreSQL backend
//! gives a factory that makes a schema per store, and reuses the suite unchanged. It is
//! compiled for the crate's own tests, and with the `contract-tests` feature as library
//! code, so a backend's tests outside this crate's unit tests (an integration test that
//! needs a database, another crate) can call it as well.
//!
//! Also here: [`hooked::Hooked`], a wrapping store that runs a test's closure before a
//! named call, for tests that need a parallel request to land at an exact point.

// Test code, compiled into the library only behind the `contract-tests` feature: a
// broken promise must fail loudly, which is what unwrap and panic are for here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod accounts;
pub mod combined;
pub mod counters;
pub mod credentials;
pub mod grants;
pub mod groups;
pub mod hooked;
pub mod short_lived;
pub mod tokens;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Barrier};

use super::*;

/// Makes stores for the suite.
pub trait StoreFactory: Sync {
    /// A new, empty store that no other test sees.
    fn fresh(&self) -> Arc<dyn Store>;
}

impl<F: Fn() -> Arc<dyn Store> + Sync> StoreFactory for F {
    fn fresh(&self) -> Arc<dyn Store> {
        self()
    }
}

/// Parallel callers in the concurrency tests: well past any pool or lock size a small
/// backend might have, so a race shows.
pub const PARALLEL: usize = 50;

/// Run `f(store, i)` on [`PARALLEL`] threads released at once, each driving its future
/// on the test's runtime (so a network backend's connections work), and their
/// answers, by `i`. Threads rather than tasks: an embedded backend that never yields
/// still races for real.
pub async fn race<T, F, Fut>(store: &Arc<dyn Store>, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(PARALLEL));
    let threads: Vec<_> = (0..PARALLEL)
        .map(|i| {
            let (f, start, store, runtime) =
                (f.clone(), start.clone(), store.clone(), runtime.clone());
            std::thread::spawn(move || {
                start.wait();
                runtime.block_on(f(store, i))
            })
        })
        .collect();
    // Joined off the runtime: the threads need its workers to make progress.
    tokio::task::spawn_blocking(move || threads.into_iter().map(|h| h.join().unwrap()).collect())
        .await
        .unwrap()
}

/// An account with a name and an address.
pub fn user(id: &str, name: &str, email: &str) -> User {
    User {
        role_sources: Default::default(),
        id: id.into(),
        username: name.into(),
        email: Some(email.into()),
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        picture: None,
        roles: vec![],
        password_hash: None,
        disabled: false,
        created_at: 1,
        updated_at: 1,
    }
}

/// An authorization code for `u1`, expiring at 100.
pub fn code() -> CodeRecord {
    CodeRecord {
        client_id: "thrift".into(),
        redirect_uri: "http://localhost:3000/callback".into(),
        code_challenge: None,
        nonce: None,
        scopes: vec!["openid".into()],
        grant: GrantData {
            sub: "u1".into(),
            user_id: Some("u1".into()),
            auth_time: 1,
            amr: vec!["pwd".into()],
            claims: BTreeMap::new(),
            sid: None,
            session: None,
        },
        expires_at: 100,
        redeemed_by: None,
    }
}

/// The grant a code exchange would write.
pub fn grant(id: &str) -> Grant {
    let c = code();
    Grant {
        id: id.into(),
        client_id: c.client_id,
        scopes: c.scopes,
        nonce: None,
        data: c.grant,
        revoked: false,
        offline: false,
        created_at: 1,
        expires_at: 100,
    }
}

/// An SSO session of `user_id` (or of a subject without an account).
pub fn session(user_id: Option<&str>, expires_at: u64) -> Session {
    Session {
        sub: user_id.unwrap_or("github|1").into(),
        user_id: user_id.map(String::from),
        auth_time: 10,
        amr: vec!["pwd".into()],
        satisfied: BTreeMap::new(),
        idp: "local".into(),
        claims: BTreeMap::new(),
        clients: vec![],
        created_at: 10,
        expires_at,
        asserted: Default::default(),
    }
}

/// A confirmed authenticator that has accepted no step yet.
pub fn totp_credential() -> TotpCredential {
    TotpCredential {
        sealed_secret: vec![1, 2, 3],
        created_at: 1,
        last_step: 0,
        confirmed: true,
    }
}

/// One multi-threaded `#[tokio::test]` per contract test, each on a fresh store from `$factory` (anything
/// that is a [`StoreFactory`], e.g. a `fn() -> Arc<dyn Store>`). Use it inside a test
/// module: `usher::store_contract_tests!(fresh_store);`.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:expr) => {
        $crate::store_contract_tests!($factory; when = true);
    };
    // `when`: checked first by every test, which does nothing when it is false (a
    // backend whose server is not installed; its guard says so loudly).
    ($factory:expr; when = $guard:expr) => {
        $crate::__store_contract_tests! { $factory; $guard;
            accounts::usernames_and_emails_are_unique_case_insensitively,
            accounts::a_username_may_not_be_another_accounts_email_nor_the_reverse,
            accounts::renaming_moves_the_index_and_refuses_a_taken_name,
            accounts::parallel_first_logins_of_one_identity_make_exactly_one_account,
            accounts::an_identity_is_linked_once_even_in_parallel,
            accounts::deleting_an_account_frees_its_names_and_identities,
            accounts::unlinking_needs_the_owner,
            accounts::accounts_are_paged_in_id_order,
            accounts::queries_filter_order_page_and_count,
            accounts::queries_see_external_ids_identities_and_authenticators,
            accounts::the_session_index_follows_puts_and_deletes,
            accounts::crossed_names_in_parallel_conflict_cleanly,
            groups::of_parallel_creations_with_one_name_exactly_one_makes_a_group,
            groups::parallel_member_additions_lose_none,
            groups::a_stale_swap_writes_nothing_and_renames_move_the_name,
            groups::members_are_accounts_and_leave_with_them,
            groups::parallel_deletions_and_additions_leave_no_member_that_is_gone,
            groups::a_page_of_accounts_reads_its_extras_and_groups_at_once,
            groups::group_queries_filter_order_and_page,
            counters::parallel_hits_count_every_one_exactly_once,
            counters::a_counter_keeps_its_expiry_and_restarts_after_it,
            counters::extending_a_counter_never_shortens_it_nor_revives_it,
            counters::expired_counters_are_swept,
            counters::taking_back_undoes_one_hit_exactly_and_removes_at_zero,
            counters::parallel_hits_and_take_backs_lose_no_count,
            counters::failures_lock_after_the_limit_and_the_lock_expires,
            counters::parallel_reservations_grant_exactly_the_limit,
            counters::a_success_forgives_the_failures_and_lifts_the_lock,
            counters::parallel_account_attempts_check_exactly_one_block,
            credentials::a_totp_step_is_accepted_once_even_in_parallel,
            credentials::of_parallel_enrolments_the_first_secret_stays,
            credentials::a_recovery_code_is_consumed_once_even_in_parallel,
            credentials::parallel_new_recovery_codes_leave_exactly_one_set,
            credentials::an_email_code_record_swaps_once_per_version,
            credentials::an_email_code_works_once_and_a_new_one_supersedes_it,
            credentials::parallel_checks_of_one_email_code_give_one_success,
            credentials::parallel_wrong_email_codes_are_each_counted,
            credentials::an_expired_email_code_is_refused,
            credentials::five_wrong_tries_burn_an_email_code,
            credentials::resending_is_limited_per_window_even_after_codes_are_used,
            credentials::parallel_sends_cannot_pass_the_resend_limit_together,
            tokens::parallel_redemptions_of_one_code_give_exactly_one_success,
            tokens::a_reuse_that_beats_the_first_exchange_bars_its_grant,
            tokens::refresh_rotation_detects_reuse,
            tokens::parallel_refreshes_rotate_once_and_the_reuse_names_the_family,
            tokens::expired_tokens_are_swept_and_late_code_reuse_is_still_seen,
            grants::grants_are_listed_by_account_and_by_session,
            grants::ending_a_session_revokes_its_grants_and_can_keep_offline_ones,
            grants::revoking_an_account_revokes_every_grant_it_holds,
            grants::parallel_revocations_count_each_grant_once,
            grants::swept_grants_leave_both_indexes,
            grants::a_sessions_grants_move_to_the_session_replacing_it,
            grants::a_refresh_token_is_looked_up_without_being_spent,
            tokens::server_secrets_are_created_once_even_in_parallel,
            tokens::signing_keys_are_kept,
            tokens::a_signing_key_is_added_once_even_in_parallel,
            short_lived::flows_are_counted_and_swept_by_age,
            short_lived::an_upstream_state_is_taken_once_even_in_parallel,
            short_lived::abandoned_round_trips_are_swept_with_their_flows,
            short_lived::a_flash_is_taken_once_even_in_parallel,
            short_lived::lookups_of_text_holding_a_nul_find_nothing,
            short_lived::an_expired_flash_is_not_shown_and_is_swept,
            short_lived::events_scan_in_order_and_sweep_by_age,
            combined::an_account_is_read_with_its_second_factors,
            combined::a_session_is_read_with_its_account,
            combined::a_redemption_reads_the_account_and_session_it_needs,
            combined::parallel_redemptions_read_standing_once,
            combined::a_grant_and_its_refresh_token_are_written_together_or_not_at_all,
            combined::a_code_is_written_with_its_audit_events,
            combined::a_rotation_reads_the_grant_session_and_account_it_needs,
            combined::a_rotation_of_a_grant_without_a_session_has_none_to_check,
            combined::parallel_rotations_at_spend_a_token_once,
            accounts::an_accounts_sessions_end_together_but_the_kept_one,
            accounts::a_session_is_updated_only_while_it_is_there,
            grants::revoking_an_account_can_spare_one_apps_grant_in_one_session,
            counters::several_counters_are_forgotten_in_one_call,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_tests {
    ($factory:expr; $guard:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if !$guard {
                    return;
                }
                $crate::store::contract::$module::$name(&$factory).await;
            }
        )*
    };
}
