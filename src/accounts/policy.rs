//! Password policy of an organization's managed accounts, and the bundled list of common
//! passwords (`data/common-passwords.txt`). A policy applies whenever a password is set; a
//! changed policy never invalidates passwords already set, except through the maximum age.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::clock::DAY_MS;

/// Shortest minimum length an admin may choose.
pub const MIN_LENGTH_FLOOR: i64 = 12;
/// Longest minimum length an admin may choose.
pub const MIN_LENGTH_CEILING: i64 = 128;
/// Longest maximum password age, in days.
pub const MAX_AGE_CEILING: i64 = 3650;

/// The rules for managed accounts' passwords in one organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasswordPolicy {
    /// Minimum length in characters, 12–128.
    #[schema(minimum = 12, maximum = 128)]
    pub min_length: i64,
    /// Require at least three of: lowercase letters, uppercase letters, digits, symbols.
    pub require_three_classes: bool,
    /// Refuse passwords found in the bundled list of 30,000 common passwords.
    pub reject_common: bool,
    /// Days after which a password must be changed at the next sign-in (1–3650); `null` for
    /// never.
    #[schema(minimum = 1, maximum = 3650)]
    pub max_age_days: Option<i64>,
    /// Whether managed accounts may sign in with a password at all.
    pub password_sign_in: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: MIN_LENGTH_FLOOR,
            require_three_classes: false,
            reject_common: true,
            max_age_days: None,
            password_sign_in: true,
        }
    }
}

impl PasswordPolicy {
    /// Checks the policy's own values; the message says which value is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_LENGTH_FLOOR..=MIN_LENGTH_CEILING).contains(&self.min_length) {
            return Err(format!(
                "the minimum length must be between {MIN_LENGTH_FLOOR} and {MIN_LENGTH_CEILING} characters"
            ));
        }
        if let Some(days) = self.max_age_days
            && !(1..=MAX_AGE_CEILING).contains(&days)
        {
            return Err(format!(
                "the maximum password age must be between 1 and {MAX_AGE_CEILING} days, or empty for none"
            ));
        }
        Ok(())
    }

    /// Every rule `password` breaks, in words; empty when it satisfies the policy.
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut broken = Vec::new();
        let length = password.chars().count() as i64;
        if length < self.min_length {
            broken.push(format!(
                "it must be at least {} characters long",
                self.min_length
            ));
        }
        if length > super::MAX_PASSWORD_LEN as i64 {
            broken.push(format!(
                "it must be at most {} characters long",
                super::MAX_PASSWORD_LEN
            ));
        }
        if self.require_three_classes && character_classes(password) < 3 {
            broken.push("it must mix at least three of: lowercase letters, uppercase letters, digits, symbols".to_string());
        }
        if self.reject_common && is_common(password) {
            broken.push("it is one of the most common passwords".to_string());
        }
        broken
    }

    /// Whether a password set at `changed_at` must be changed at `now`.
    pub fn is_expired(&self, changed_at: Option<i64>, now: i64) -> bool {
        match (self.max_age_days, changed_at) {
            (Some(days), Some(at)) => now >= at + days * DAY_MS,
            _ => false,
        }
    }

    /// Short sentences for forms: what a new password needs.
    pub fn hints(&self) -> Vec<String> {
        let mut hints = vec![format!("At least {} characters.", self.min_length)];
        if self.require_three_classes {
            hints.push(
                "At least three of: lowercase letters, uppercase letters, digits, symbols."
                    .to_string(),
            );
        }
        if self.reject_common {
            hints.push("Not a commonly used password.".to_string());
        }
        hints
    }
}

/// How many of the four classes (lowercase, uppercase, digits, other) `password` uses.
pub fn character_classes(password: &str) -> usize {
    let lower = password.chars().any(char::is_lowercase);
    let upper = password.chars().any(char::is_uppercase);
    let digit = password.chars().any(|c| c.is_ascii_digit());
    let other = password.chars().any(|c| !c.is_alphanumeric());
    [lower, upper, digit, other]
        .into_iter()
        .filter(|b| *b)
        .count()
}

static COMMON: OnceLock<HashSet<String>> = OnceLock::new();

/// Whether `password` (ignoring letter case) is on the bundled common-password list.
pub fn is_common(password: &str) -> bool {
    let list = COMMON.get_or_init(|| {
        include_str!("../../data/common-passwords.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    });
    list.contains(&password.to_lowercase())
}

/// How many passwords the bundled list holds.
pub fn common_list_len() -> usize {
    is_common("");
    COMMON.get().map_or(0, HashSet::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_list_is_large_and_case_insensitive() {
        assert!(common_list_len() >= 10_000);
        assert!(is_common("password"));
        assert!(is_common("PassWord"));
        assert!(is_common("1qaz2wsx3edc"));
        assert!(!is_common("violet mountain river 42"));
    }

    #[test]
    fn each_rule_is_reported() {
        let strict = PasswordPolicy {
            min_length: 16,
            require_three_classes: true,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            strict.violations("aaaaaaaaaaaaaaaaaaaa").len(),
            1,
            "one class only"
        );
        assert_eq!(strict.violations("short").len(), 2);
        assert!(strict.violations("Violet-mountain-river-42").is_empty());
        let default = PasswordPolicy::default();
        assert_eq!(
            default.violations("1qaz2wsx3edc"),
            vec!["it is one of the most common passwords".to_string()]
        );
        assert!(
            PasswordPolicy {
                reject_common: false,
                ..default.clone()
            }
            .violations("1qaz2wsx3edc")
            .is_empty()
        );
    }

    #[test]
    fn policy_values_are_bounded() {
        assert!(PasswordPolicy::default().validate().is_ok());
        for bad in [11, 129, 0] {
            assert!(
                PasswordPolicy {
                    min_length: bad,
                    ..PasswordPolicy::default()
                }
                .validate()
                .is_err()
            );
        }
        for bad in [0, -1, 3651] {
            assert!(
                PasswordPolicy {
                    max_age_days: Some(bad),
                    ..PasswordPolicy::default()
                }
                .validate()
                .is_err()
            );
        }
    }

    #[test]
    fn expiry_follows_max_age() {
        let policy = PasswordPolicy {
            max_age_days: Some(90),
            ..PasswordPolicy::default()
        };
        assert!(!policy.is_expired(Some(0), 89 * DAY_MS));
        assert!(policy.is_expired(Some(0), 90 * DAY_MS));
        assert!(!PasswordPolicy::default().is_expired(Some(0), 10_000 * DAY_MS));
    }

    #[test]
    fn classes_are_counted() {
        assert_eq!(character_classes("abc"), 1);
        assert_eq!(character_classes("abcD1"), 3);
        assert_eq!(character_classes("aB1!"), 4);
    }
}
