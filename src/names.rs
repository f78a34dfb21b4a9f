//! Sign-in names: what a username and an email address must look like, wherever they
//! come from (the sign-up form, the username prompt of a first federated sign-in, an
//! upstream's `preferred_username` taken silently). One rule for every path, so a name
//! the prompt would refuse cannot slip in through JIT provisioning.

/// The longest username a person (or an upstream) may choose, in characters. Shorter
/// than `limits::USERNAME_MAX`, which bounds any name typed at sign-in (an email
/// address is a sign-in name too).
pub const MAX_USERNAME: usize = 64;

/// A username: 1 to 64 characters, no spaces or control characters.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_USERNAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A cheap plausibility check of an email address (the mailbox itself is not verified
/// here).
pub fn plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.len() <= crate::limits::EMAIL_MAX
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_and_unbroken() {
        assert!(valid_username("octocat"));
        assert!(valid_username("ada.lovelace"));
        assert!(!valid_username(""));
        assert!(!valid_username("two words"));
        assert!(!valid_username("tab\there"));
        assert!(!valid_username("nul\0"));
        assert!(!valid_username(&"x".repeat(65)));
        assert!(valid_username(&"é".repeat(64)), "characters, not bytes");
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(plausible_email("ada@example.com"));
        assert!(!plausible_email("ada@localhost"));
        assert!(!plausible_email("@example.com"));
        assert!(!plausible_email("ada example@example.com"));
        assert!(!plausible_email(&format!(
            "{}@example.com",
            "a".repeat(250)
        )));
    }
}
