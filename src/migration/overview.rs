//! What the admin sees before asking: which members are eligible (and why the others are not),
//! the seats, and whether an SSO connection routes each account's domain. Read only.

use super::{Ineligible, domain_of, store};
use crate::db::Db;
use crate::ids::{AccountId, OrgId};
use crate::orgs;

/// Most members the overview reads.
const MAX_MEMBERS: i64 = 5000;

/// A Nulab-account member and whether it can be asked now.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub account_id: AccountId,
    pub email: String,
    pub name: String,
    pub domain: String,
    pub problem: Option<Ineligible>,
    /// Name of the SSO connection that routes the account's domain, if any.
    pub sso_connection: Option<String>,
}

impl Candidate {
    /// Whether the admin's text filter `q` (case-insensitive) is part of the email, the name or
    /// the domain; an empty filter matches everyone.
    pub fn matches(&self, q: &str) -> bool {
        let q = q.trim().to_lowercase();
        q.is_empty()
            || [&self.email, &self.name, &self.domain]
                .iter()
                .any(|field| field.to_lowercase().contains(&q))
    }
}

/// Seats as migration sees them.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeatView {
    pub subscribed: i64,
    pub managed: i64,
    pub pending: i64,
}

impl SeatView {
    /// Seats neither used nor reserved by a pending request.
    pub fn free(&self) -> i64 {
        (self.subscribed - self.managed - self.pending).max(0)
    }
    /// Seats in use if every pending request is accepted.
    pub fn if_all_accept(&self) -> i64 {
        self.managed + self.pending
    }
}

pub async fn seats(db: &Db, org: OrgId) -> Result<SeatView, sqlx::Error> {
    let seats = crate::orgs::seats::of(db.pool(), org).await?;
    Ok(SeatView {
        subscribed: seats.subscribed,
        managed: seats.used,
        pending: store::pending_count(db.pool(), org).await?,
    })
}

/// Every Nulab-account member (up to `MAX_MEMBERS`), each with the reason it cannot be asked
/// (if any).
pub async fn candidates(db: &Db, org: OrgId) -> Result<Vec<Candidate>, orgs::OrgError> {
    let members = store::candidates(db.pool(), org, MAX_MEMBERS).await?;
    let verified = crate::domains::verified_domains(db.pool(), org).await?;
    let connections = crate::saml::connections_of(db.pool(), org).await?;
    Ok(members
        .into_iter()
        .map(|m| {
            let domain = domain_of(&m.email);
            let problem = if !m.active {
                Some(Ineligible::AccountInactive)
            } else if !m.email_verified {
                Some(Ineligible::EmailNotVerified)
            } else if !verified.contains(&domain) {
                Some(Ineligible::DomainNotVerified(domain.clone()))
            } else if m.pending {
                Some(Ineligible::PendingRequest)
            } else {
                None
            };
            Candidate {
                account_id: m.account_id,
                email: m.email,
                name: m.name,
                sso_connection: connections
                    .iter()
                    .find(|c| c.routes(&domain))
                    .map(|c| c.name.clone()),
                domain,
                problem,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_matches_email_name_or_domain_ignoring_case() {
        let c = Candidate {
            account_id: AccountId::new(),
            email: "ann.lee@corp.test".into(),
            name: "Ann Lee".into(),
            domain: "corp.test".into(),
            problem: None,
            sso_connection: None,
        };
        for q in ["", "  ", "ANN", "lee@", "ann lee", "Corp.Test", " corp "] {
            assert!(c.matches(q), "{q:?} matches");
        }
        for q in ["bob", "other.test", "ann  lee"] {
            assert!(!c.matches(q), "{q:?} does not match");
        }
    }
}
