//! A store that wraps another and can run a test's closure just before a named call —
//! to put another request's write between two reads of the code under test, on any
//! backend. Every call is passed through unchanged otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::store::*;

/// A test's one-off action, run with the wrapped store.
pub type Hook = Box<dyn FnOnce(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// `inner`, with one-off hooks before named calls (`"find_user"`, `"redeem_code"`, … —
/// the trait method's name).
pub struct Hooked {
    inner: Arc<dyn Store>,
    hooks: Mutex<HashMap<&'static str, Hook>>,
}

impl Hooked {
    pub fn new(inner: Arc<dyn Store>) -> Hooked {
        Hooked {
            inner,
            hooks: Mutex::new(HashMap::new()),
        }
    }

    /// Run `hook` once, at the start of the next call of `method`.
    pub fn before<Fut>(
        &self,
        method: &'static str,
        hook: impl FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    ) where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(method, Box::new(move |s| Box::pin(hook(s))));
    }

    /// The wrapped store.
    pub fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }

    async fn at(&self, method: &'static str) {
        // Taken out before it runs: a hook that calls `method` itself does not recurse.
        let hook = self
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(method);
        if let Some(hook) = hook {
            hook(self.inner.clone()).await;
        }
    }
}

/// Each method: run its hook, then pass the call on.
macro_rules! pass {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        #[async_trait]
        impl $trait for Hooked {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.at(stringify!($name)).await;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

pass! {
    UserStore {
        fn create_user(&self, user: &User) -> StoreResult<()>;
        fn user(&self, id: &str) -> StoreResult<Option<User>>;
        fn find_user(&self, login: &str) -> StoreResult<Option<User>>;
        fn update_user(&self, user: &User) -> StoreResult<()>;
        fn user_count(&self) -> StoreResult<usize>;
        fn users_after(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<User>>;
        fn delete_user(&self, id: &str) -> StoreResult<()>;
        fn external_id(&self, user_id: &str) -> StoreResult<Option<String>>;
        fn set_external_id(&self, user_id: &str, external_id: Option<&str>) -> StoreResult<()>;
    }
}

pass! {
    UserQueryStore {
        fn query_users(&self, query: &UserQuery) -> StoreResult<UserPage>;
        fn user_extras(&self, user_ids: &[String]) -> StoreResult<std::collections::BTreeMap<String, UserExtras>>;
    }
}

pass! {
    GroupStore {
        fn create_group(&self, group: &Group) -> StoreResult<GroupWrite>;
        fn group(&self, id: &str) -> StoreResult<Option<Versioned<Group>>>;
        fn find_group(&self, display_name: &str) -> StoreResult<Option<Versioned<Group>>>;
        fn swap_group(&self, group: &Group, expected: u64) -> StoreResult<GroupWrite>;
        fn delete_group(&self, id: &str, expected: Option<u64>) -> StoreResult<bool>;
        fn groups_after(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Versioned<Group>>>;
        fn memberships(&self, user_ids: &[String]) -> StoreResult<std::collections::BTreeMap<String, Vec<Membership>>>;
        fn query_groups(&self, query: &GroupQuery) -> StoreResult<GroupPage>;
    }
}

pass! {
    IdentityStore {
        fn identity(&self, connection: &str, subject: &str) -> StoreResult<Option<String>>;
        fn create_federated_user(&self, user: &User, connection: &str, subject: &str) -> StoreResult<User>;
        fn link_identity(&self, connection: &str, subject: &str, user_id: &str) -> StoreResult<bool>;
        fn identities_of(&self, user_id: &str) -> StoreResult<Vec<(String, String)>>;
        fn unlink_identity(&self, connection: &str, subject: &str, user_id: &str) -> StoreResult<bool>;
    }
}

pass! {
    CounterStore {
        fn hit(&self, key: &str, now: u64, expires_at: u64) -> StoreResult<Counter>;
        fn counter(&self, key: &str, now: u64) -> StoreResult<Option<Counter>>;
        fn extend_counter(&self, key: &str, now: u64, until: u64) -> StoreResult<()>;
        fn take_back(&self, key: &str, now: u64) -> StoreResult<Option<Counter>>;
        fn reset_counter(&self, key: &str) -> StoreResult<()>;
        fn sweep_counters(&self, now: u64) -> StoreResult<usize>;
    }
}

pass! {
    CredentialStore {
        fn put_totp(&self, user_id: &str, credential: &TotpCredential) -> StoreResult<()>;
        fn create_totp(&self, user_id: &str, credential: &TotpCredential) -> StoreResult<TotpCredential>;
        fn totp(&self, user_id: &str) -> StoreResult<Option<TotpCredential>>;
        fn delete_totp(&self, user_id: &str) -> StoreResult<()>;
        fn accept_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool>;
        fn put_recovery_codes(&self, user_id: &str, hashes: &[String]) -> StoreResult<()>;
        fn consume_recovery_code(&self, user_id: &str, hash: &str) -> StoreResult<bool>;
        fn recovery_codes_left(&self, user_id: &str) -> StoreResult<usize>;
        fn put_email_code(&self, key: &str, code: &EmailCode) -> StoreResult<()>;
        fn email_code(&self, key: &str) -> StoreResult<Option<Versioned<EmailCode>>>;
        fn swap_email_code(&self, key: &str, expected: Option<u64>, code: &EmailCode) -> StoreResult<bool>;
    }
}

pass! {
    SessionStore {
        fn put_session(&self, id_hash: &str, session: &Session) -> StoreResult<()>;
        fn session(&self, id_hash: &str) -> StoreResult<Option<Session>>;
        fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
        fn sessions_of(&self, user_id: &str) -> StoreResult<Vec<(String, Session)>>;
        fn update_session(&self, id_hash: &str, session: &Session) -> StoreResult<bool>;
        fn end_sessions_of(&self, user_id: &str, keep: Option<&str>) -> StoreResult<usize>;
        fn sweep_sessions(&self, now: u64) -> StoreResult<usize>;
    }
}

pass! {
    FlowStore {
        fn put_flow(&self, id: &str, bytes: &[u8]) -> StoreResult<()>;
        fn flow(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
        fn delete_flow(&self, id: &str) -> StoreResult<()>;
        fn sweep_flows(&self, cutoff: u64) -> StoreResult<usize>;
        fn flow_count(&self) -> StoreResult<usize>;
        fn put_upstream_state(&self, state_hash: &str, flow_id: &str) -> StoreResult<()>;
        fn take_upstream_state(&self, state_hash: &str) -> StoreResult<Option<String>>;
    }
}

pass! {
    FlashStore {
        fn put_flash(&self, id: &str, bytes: &[u8], expires_at: u64) -> StoreResult<()>;
        fn take_flash(&self, id: &str, now: u64) -> StoreResult<Option<Vec<u8>>>;
        fn sweep_flashes(&self, now: u64) -> StoreResult<usize>;
    }
}

pass! {
    TokenStore {
        fn put_code(&self, code_hash: &str, record: &CodeRecord) -> StoreResult<()>;
        fn sweep_tokens(&self, now: u64) -> StoreResult<usize>;
        fn redeem_code(&self, code_hash: &str, grant_id: &str) -> StoreResult<Redeem>;
        fn create_grant(&self, grant: &Grant) -> StoreResult<bool>;
        fn grant(&self, id: &str) -> StoreResult<Option<Grant>>;
        fn revoke_grant(&self, id: &str) -> StoreResult<()>;
        fn bar_grant(&self, barred: &Grant) -> StoreResult<()>;
        fn grants_of(&self, user_id: &str) -> StoreResult<Vec<Grant>>;
        fn session_grants(&self, session: &str) -> StoreResult<Vec<Grant>>;
        fn revoke_grants_of(&self, user_id: &str) -> StoreResult<usize>;
        fn revoke_grants_of_except(&self, user_id: &str, client_id: &str, session: &str) -> StoreResult<usize>;
        fn revoke_session_grants(&self, session: &str, keep_offline: bool) -> StoreResult<usize>;
        fn move_session_grants(&self, from: &str, to: &str, sid: &str) -> StoreResult<usize>;
        fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>>;
        fn put_refresh(&self, token_hash: &str, record: &RefreshRecord) -> StoreResult<()>;
        fn rotate_refresh(&self, old_hash: &str, new_hash: &str, new: &RefreshRecord) -> StoreResult<Rotate>;
    }
}

pass! {
    KeyStore {
        fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
        fn put_signing_key(&self, key: &StoredKey) -> StoreResult<()>;
        fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool>;
        fn secret(&self, name: &str, make: &(dyn Fn() -> Vec<u8> + Send + Sync)) -> StoreResult<Vec<u8>>;
    }
}

pass! {
    AuditStore {
        fn append_event(&self, event: &AuditEvent) -> StoreResult<()>;
        fn events(&self, since: u64, limit: usize) -> StoreResult<Vec<AuditEvent>>;
        fn scan_events(&self, since: u64, visit: &mut (dyn FnMut(AuditEvent) -> bool + Send)) -> StoreResult<()>;
        fn sweep_events(&self, cutoff: u64) -> StoreResult<usize>;
    }
}

pass! {
    Store {
        fn flush(&self) -> StoreResult<()>;
    }
}
