//! The admin dashboard (`/admin/{org}`): the organization at a glance (seats, members by kind,
//! domains, SSO connections and their certificates, pending migrations, sign-ins per day over 30
//! days) and the warnings an admin should act on, each linking to the page that fixes it. Read
//! only: it gathers from each room and changes nothing.

pub mod charts;
pub mod pages;
pub mod signins;

use crate::clock::{DAY_MS, format_time};
use crate::domains::{Domain, DomainStatus};
use crate::migration::overview::SeatView;
use crate::saml::Connection;

/// Days before a certificate's expiry from which the dashboard warns (as the expiry emails).
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// Something to fix, with the page where it is fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// A stable code (tests, and the element's class).
    pub code: &'static str,
    pub message: String,
    pub link: String,
    pub link_label: &'static str,
}

/// What the warnings are computed from.
pub struct Facts<'a> {
    pub slug: &'a str,
    pub now: i64,
    pub seats: SeatView,
    pub domains: &'a [Domain],
    pub connections: &'a [Connection],
    /// Admins who could sign in if the IdP failed (`sign_in::break_glass_admins`).
    pub break_glass_admins: usize,
}

/// Every warning that holds now, most urgent first.
pub fn warnings(f: &Facts<'_>) -> Vec<Warning> {
    let mut out = Vec::new();
    let admin = |page: &str| format!("/admin/{}/{page}", f.slug);
    for c in f.connections {
        for cert in &c.certificates {
            let days = (cert.not_after - f.now).div_euclid(DAY_MS);
            if days >= CERTIFICATE_WARNING_DAYS {
                continue;
            }
            let message = if cert.not_after <= f.now {
                format!(
                    "The signing certificate of the SSO connection \u{201c}{}\u{201d} expired on {}. Sign-in through it fails until the IdP's new certificate is added.",
                    c.name,
                    format_time(cert.not_after)
                )
            } else {
                format!(
                    "The signing certificate of the SSO connection \u{201c}{}\u{201d} expires on {} ({} days left). Add the IdP's new certificate before then.",
                    c.name,
                    format_time(cert.not_after),
                    days
                )
            };
            out.push(Warning {
                code: "certificate_expiring",
                message,
                link: admin("sso"),
                link_label: "Update the certificate",
            });
        }
    }
    if f.seats.managed > f.seats.subscribed {
        out.push(Warning {
            code: "over_seats",
            message: format!(
                "{} managed accounts use more than the {} subscribed seats. No managed account can be created and no migration requested until you add seats.",
                f.seats.managed, f.seats.subscribed
            ),
            link: admin("billing"),
            link_label: "Add seats",
        });
    }
    for d in f.domains {
        if let Some(message) = domain_problem(d) {
            out.push(Warning {
                code: "domain_check_failing",
                message,
                link: format!("{}#domain-{}", admin("domains"), d.id),
                link_label: "Check the domain",
            });
        }
    }
    if !f.connections.is_empty() && f.break_glass_admins == 0 {
        out.push(Warning {
            code: "no_break_glass_admin",
            message: "No admin can sign in without SSO. If the IdP fails, nobody could manage this organization: keep at least one admin who is a Nulab account with a password and two-step verification (set up on their account page).".to_string(),
            link: admin("members"),
            link_label: "Review the admins",
        });
    }
    if f.connections.is_empty() {
        out.push(Warning {
            code: "no_sso_connection",
            message: "No SSO connection yet: managed accounts cannot sign in through your identity provider.".to_string(),
            link: admin("sso"),
            link_label: "Connect an IdP",
        });
    }
    out
}

/// Why a domain needs attention, if it does.
fn domain_problem(d: &Domain) -> Option<String> {
    let last = d.last_check_message.as_deref().unwrap_or("no result");
    match d.status {
        DomainStatus::Verified => d.record_missing_since.map(|since| {
            format!(
                "The TXT record of {} has been missing since {} (last check: {last}). Publish it again before the grace period ends, or the domain lapses.",
                d.name,
                format_time(since)
            )
        }),
        DomainStatus::Lapsed => Some(format!(
            "{} has lapsed: its TXT record is missing (last check: {last}). Its managed accounts cannot sign in through SSO until it is verified again.",
            d.name
        )),
        DomainStatus::Expired => Some(format!(
            "{} was not verified in time. Retry to get a new record.",
            d.name
        )),
        DomainStatus::Pending => d
            .last_check_result
            .as_ref()
            .filter(|code| code.as_str() != "found")
            .map(|_| {
                format!(
                    "{} is not verified yet (last check: {last}). Publish the TXT record shown on the Domains page, then verify.",
                    d.name
                )
            }),
    }
}

/// How many days until a certificate expires (negative once expired), for the page.
pub fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(DAY_MS)
}
