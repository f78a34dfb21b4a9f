//! Passwords: Argon2id hashing and verification, and the password policy. The limit on
//! wrong passwords is `attempts`', shared with every other factor.
//!
//! Hashing is deliberately slow (OWASP minimum: 19 MiB, 2 passes, 1 lane); callers run
//! [`hash`] and [`verify`] on the blocking pool, never on the async runtime. At most one
//! hash per CPU core runs at a time: more would not finish sooner, but each would hold
//! its 19 MiB, so a burst of sign-ins would grow memory without bound. Verification, the
//! hot path, reuses one 19 MiB work area per core instead of allocating it every time:
//! freed blocks that size stay with whichever allocator arena last held them, and a busy
//! server's blocking threads would otherwise keep hundreds of MiB of them resident.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use crate::config::PasswordPolicy;
use crate::store::{PasswordHash, User};

/// Memory cost in KiB, passes and lanes: the OWASP minimum for Argon2id.
pub const M_COST: u32 = 19 * 1024;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

fn argon2() -> Argon2<'static> {
    // The constants are valid parameters; `Params::DEFAULT` is the fallback that can
    // never be reached, kept so this path has no panic.
    let params = Params::new(M_COST, T_COST, P_COST, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Admits as many hashes at once as there are cores; the rest wait their turn. It
/// keeps the work areas of finished verifications for the next ones.
struct Gate {
    state: std::sync::Mutex<GateState>,
    freed: std::sync::Condvar,
    limit: usize,
}

#[derive(Default)]
struct GateState {
    running: usize,
    spare: Vec<Vec<Block>>,
}

/// One admitted hash, with a work area to use (empty until asked for).
struct Turn<'a> {
    gate: &'a Gate,
    memory: Vec<Block>,
}

impl Gate {
    fn global() -> &'static Gate {
        static GATE: std::sync::OnceLock<Gate> = std::sync::OnceLock::new();
        GATE.get_or_init(|| Gate {
            state: std::sync::Mutex::new(GateState::default()),
            freed: std::sync::Condvar::new(),
            limit: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait (blocking) for a free core.
    fn enter(&self) -> Turn<'_> {
        let mut state = self.lock();
        while state.running >= self.limit {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.running += 1;
        let memory = state.spare.pop().unwrap_or_default();
        Turn { gate: self, memory }
    }
}

impl Turn<'_> {
    /// A work area of at least `blocks` blocks, kept for the next turn.
    fn memory(&mut self, blocks: usize) -> &mut [Block] {
        if self.memory.len() < blocks {
            self.memory = vec![Block::default(); blocks];
        }
        &mut self.memory
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.running = state.running.saturating_sub(1);
        if !self.memory.is_empty() && state.spare.len() < self.gate.limit {
            state.spare.push(std::mem::take(&mut self.memory));
        }
        self.gate.freed.notify_one();
    }
}

/// Does `password` hash to the PHC string's hash, under the PHC string's own
/// algorithm, version, parameters and salt? The comparison is constant-time.
fn matches(phc: &argon2::PasswordHash<'_>, password: &[u8]) -> bool {
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(phc) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut computed = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut turn = Gate::global().enter();
    let ok = argon2
        .hash_password_into_with_memory(password, salt, &mut computed, turn.memory(blocks))
        .is_ok();
    drop(turn);
    ok && bool::from(expected.as_bytes().ct_eq(&computed))
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hash a new password. Blocking.
pub fn hash(password: &str) -> Result<PasswordHash, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let _turn = Gate::global().enter();
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| PasswordHash(h.to_string()))
        .map_err(|e| HashError(e.to_string()))
}

/// [`hash`] on the blocking pool, for async callers.
pub async fn hash_off_runtime(password: &str) -> Result<PasswordHash, HashError> {
    let password = password.to_string();
    crate::offload::cpu(move || hash(&password))
        .await
        .map_err(|e| HashError(e.to_string()))?
}

/// [`verify`] on the blocking pool, for async callers; `false` if it could not run.
pub async fn verify_off_runtime(user: Option<&User>, password: &str) -> bool {
    let (user, password) = (user.cloned(), password.to_string());
    crate::offload::cpu(move || verify(user.as_ref(), &password))
        .await
        .unwrap_or(false)
}

/// A fixed hash verified against when the account does not exist, so an unknown
/// username costs the same time as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash("usher-decoy-password")
            .map(|h| h.0)
            .unwrap_or_default()
    })
}

/// Check a password against an account (or against the decoy when there is none).
/// Blocking. `true` only for an existing account with a password that matches.
pub fn verify(user: Option<&User>, password: &str) -> bool {
    let stored: Option<&str> = user
        .and_then(|u| u.password_hash.as_ref())
        .map(|h| h.0.as_str());
    let phc: &str = match stored {
        Some(s) => s,
        None => decoy(),
    };
    let ok = match argon2::PasswordHash::new(phc) {
        Ok(parsed) => matches(&parsed, password.as_bytes()),
        Err(_) => false,
    };
    ok && stored.is_some()
}

/// Problems with a new password, in words for the sign-up page; empty means it is fine.
pub fn check_policy(policy: &PasswordPolicy, password: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let len = password.chars().count();
    if len < policy.min_length {
        problems.push(format!("Use at least {} characters.", policy.min_length));
    }
    if len > policy.max_length {
        problems.push(format!("Use at most {} characters.", policy.max_length));
    }
    if policy.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
        problems.push("Include a digit.".into());
    }
    if policy.require_symbol && password.chars().all(char::is_alphanumeric) {
        problems.push("Include a symbol.".into());
    }
    if policy.require_mixed_case
        && !(password.chars().any(char::is_lowercase) && password.chars().any(char::is_uppercase))
    {
        problems.push("Mix upper- and lower-case letters.".into());
    }
    problems
}

/// The rules, as hints for the sign-up form.
pub fn describe_policy(policy: &PasswordPolicy) -> Vec<String> {
    let mut rules = vec![format!("At least {} characters", policy.min_length)];
    if policy.require_digit {
        rules.push("At least one digit".into());
    }
    if policy.require_symbol {
        rules.push("At least one symbol".into());
    }
    if policy.require_mixed_case {
        rules.push("Upper- and lower-case letters".into());
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_with(password: &str) -> User {
        User {
            role_sources: Default::default(),
            id: "u1".into(),
            username: "alice".into(),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            roles: vec![],
            password_hash: Some(hash(password).unwrap()),
            disabled: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash("correct horse").unwrap();
        assert!(
            h.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.0
        );
        let u = user_with("correct horse");
        assert!(verify(Some(&u), "correct horse"));
        assert!(!verify(Some(&u), "correct horsf"));
        assert!(
            !verify(None, "usher-decoy-password"),
            "the decoy must never sign anyone in"
        );
    }

    #[test]
    fn pooled_verification_agrees_with_the_argon2_crate() {
        use argon2::password_hash::PasswordVerifier;
        // Other parameters and variants than ours, as hashes imported from elsewhere
        // or made before a parameter change would have.
        let salt = SaltString::generate(&mut OsRng);
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(64, 1, 1, None).unwrap(),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x13,
                Params::new(128, 2, 2, None).unwrap(),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x10,
                Params::new(256, 1, 1, Some(16)).unwrap(),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(M_COST * 2, 1, 1, None).unwrap(),
            ),
        ];
        for (alg, version, params) in cases {
            let phc = Argon2::new(alg, version, params)
                .hash_password(b"s3cret", &salt)
                .unwrap()
                .to_string();
            let parsed = argon2::PasswordHash::new(&phc).unwrap();
            for attempt in [&b"s3cret"[..], b"s3creT", b""] {
                assert_eq!(
                    matches(&parsed, attempt),
                    argon2().verify_password(attempt, &parsed).is_ok(),
                    "{phc} with {attempt:?}"
                );
            }
            assert!(matches(&parsed, b"s3cret"));
        }
    }

    #[test]
    fn policy_lists_every_problem() {
        let policy = PasswordPolicy {
            min_length: 10,
            max_length: 64,
            require_digit: true,
            require_symbol: true,
            require_mixed_case: true,
        };
        assert_eq!(check_policy(&policy, "short").len(), 4);
        assert!(check_policy(&policy, "Longer-pass1").is_empty());
    }
}
