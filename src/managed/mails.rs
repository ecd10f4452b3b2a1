//! The emails of managed accounts: created with a temporary password, activation link,
//! password reset link.

use crate::accounts::Account;
use crate::mail::{Mail, MailAction};
use crate::orgs::Org;

/// An account created with a temporary password: where to sign in.
pub(super) fn created(org: &Org, account: &Account, base_url: &str) -> Mail {
    Mail {
        kind: crate::mail::MailKind::ManagedAccountCreated,
        to: account.email.clone(),
        subject: format!("Your {} account on nulab-pass", org.name),
        paragraphs: vec![
            format!("Hello {},", account.name),
            format!(
                "{} created an account for you ({}). Your administrator will give you a temporary password; you will choose your own at the first sign-in.",
                org.name, account.email
            ),
        ],
        action: Some(MailAction {
            label: "Sign in".to_string(),
            url: format!("{base_url}/signin"),
        }),
        closing: vec![format!(
            "This account is managed by {}: its administrators control its password settings, status and deletion.",
            org.name
        )],
    }
}

/// An account created without a password: the link that activates it.
pub(super) fn activation(org: &Org, account: &Account, url: String) -> Mail {
    Mail {
        kind: crate::mail::MailKind::ManagedAccountActivation,
        to: account.email.clone(),
        subject: format!("Activate your {} account", org.name),
        paragraphs: vec![
            format!("Hello {},", account.name),
            format!(
                "{} created an account for you ({}). Choose your password to activate it.",
                org.name, account.email
            ),
        ],
        action: Some(MailAction {
            label: "Choose my password".to_string(),
            url,
        }),
        closing: vec![
            "The link works once and expires in 7 days.".to_string(),
            format!(
                "This account is managed by {}: its administrators control its password settings, status and deletion.",
                org.name
            ),
        ],
    }
}

/// An administrator reset the password: the link that sets a new one.
pub(super) fn password_reset(org: &Org, account: &Account, url: String) -> Mail {
    Mail {
        kind: crate::mail::MailKind::ManagedAccountPasswordReset,
        to: account.email.clone(),
        subject: format!("Reset your {} password", org.name),
        paragraphs: vec![
            format!("Hello {},", account.name),
            format!(
                "An administrator of {} asked for your password to be reset. Choose a new password with the link below.",
                org.name
            ),
        ],
        action: Some(MailAction {
            label: "Choose a new password".to_string(),
            url,
        }),
        closing: vec![
            "The link works once and expires in 24 hours. Earlier links no longer work."
                .to_string(),
        ],
    }
}
