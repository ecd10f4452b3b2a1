//! The life cycle of a domain as pure rules: what a lookup's answer means for a domain's
//! record ([`CheckResult`]) and what a check does to the domain ([`decide`]).

use super::{DnsFailure, Domain, DomainSettings, DomainStatus, TxtAnswer};

/// The outcome of one check, compared with the domain's own record text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// A TXT record matches exactly (after trimming).
    Matched,
    /// No TXT record at the name, or no such name.
    NoRecords,
    /// TXT records exist, none matches.
    NoMatch { found: usize },
    /// The lookup got no answer: says nothing about the record.
    Failed(DnsFailure),
    /// The record matches, but another organization holds the domain verified.
    VerifiedElsewhere,
}

impl CheckResult {
    /// Compares a lookup's answer with the expected record text.
    pub fn of(answer: &TxtAnswer, expected: &str) -> CheckResult {
        match answer {
            TxtAnswer::Found(texts) if texts.iter().any(|t| t.trim() == expected) => {
                CheckResult::Matched
            }
            TxtAnswer::Found(texts) => CheckResult::NoMatch { found: texts.len() },
            TxtAnswer::NoRecords => CheckResult::NoRecords,
            TxtAnswer::Failure(failure) => CheckResult::Failed(failure.clone()),
        }
    }

    /// A stable code for storage and the API.
    pub fn code(&self) -> &'static str {
        match self {
            CheckResult::Matched => "found",
            CheckResult::NoRecords => "no_records",
            CheckResult::NoMatch { .. } => "no_match",
            CheckResult::Failed(failure) => failure.code(),
            CheckResult::VerifiedElsewhere => "verified_elsewhere",
        }
    }

    /// The result in words for admins.
    pub fn describe(&self) -> String {
        match self {
            CheckResult::Matched => "the record was found".to_string(),
            CheckResult::NoRecords => "no TXT records found".to_string(),
            CheckResult::NoMatch { found: 1 } => {
                "found 1 TXT record, it does not match".to_string()
            }
            CheckResult::NoMatch { found } => format!("found {found} TXT records, none matches"),
            CheckResult::Failed(failure) => failure.describe(),
            CheckResult::VerifiedElsewhere => {
                "the record was found, but another organization has verified this domain"
                    .to_string()
            }
        }
    }

    /// Whether the lookup answered that the record is not there.
    fn is_absent(&self) -> bool {
        matches!(self, CheckResult::NoRecords | CheckResult::NoMatch { .. })
    }
}

/// What a check does to a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing but the "last check" fields.
    None,
    /// Pending or lapsed → verified.
    Verified,
    /// An admin's check of a pending domain did not find the record.
    VerificationFailed,
    /// A verified domain's record is gone: the grace period starts.
    RecordMissing,
    /// A verified domain's missing record is back within the grace period.
    RecordRestored,
    /// The grace period ended without the record.
    Lapsed,
    /// A pending domain waited too long.
    Expired,
}

/// The rule of the domain life cycle, without side effects. `manual` is an admin's "verify
/// now". A failed lookup never starts or advances a lapse.
pub fn decide(
    domain: &Domain,
    result: &CheckResult,
    now: i64,
    settings: &DomainSettings,
    manual: bool,
) -> Change {
    match domain.status {
        DomainStatus::Expired => Change::None,
        DomainStatus::Pending => {
            if *result == CheckResult::Matched {
                Change::Verified
            } else if now >= domain.token_issued_at + settings.pending_ms {
                Change::Expired
            } else if manual {
                Change::VerificationFailed
            } else {
                Change::None
            }
        }
        DomainStatus::Verified => match (result, domain.record_missing_since) {
            (CheckResult::Matched, Some(_)) => Change::RecordRestored,
            (r, None) if r.is_absent() => Change::RecordMissing,
            (r, Some(since)) if r.is_absent() && now >= since + settings.grace_ms => Change::Lapsed,
            _ => Change::None,
        },
        DomainStatus::Lapsed if *result == CheckResult::Matched => Change::Verified,
        DomainStatus::Lapsed => Change::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::DAY_MS;
    use crate::domains::{DomainId, DomainName, record_text};
    use crate::ids::OrgId;

    const SETTINGS: DomainSettings = DomainSettings {
        recheck_ms: DAY_MS,
        grace_ms: 7 * DAY_MS,
        pending_ms: 30 * DAY_MS,
    };

    fn domain(status: DomainStatus, missing_since: Option<i64>) -> Domain {
        Domain {
            id: DomainId::new(),
            org_id: OrgId::new(),
            name: DomainName::parse("corp.test").unwrap(),
            status,
            token: "tok".into(),
            created_at: 0,
            token_issued_at: 0,
            verified_at: None,
            last_checked_at: None,
            last_check_result: None,
            last_check_message: None,
            record_missing_since: missing_since,
            next_check_at: 0,
            claimed_until: None,
        }
    }

    #[test]
    fn matching_is_exact_after_trimming() {
        let expected = record_text("abc");
        let found = |texts: &[&str]| {
            CheckResult::of(
                &TxtAnswer::Found(texts.iter().map(|t| t.to_string()).collect()),
                &expected,
            )
        };
        assert_eq!(
            found(&["  nulab-pass-verification=abc \t"]),
            CheckResult::Matched
        );
        assert_eq!(
            found(&["v=spf1 -all", "nulab-pass-verification=abc"]),
            CheckResult::Matched
        );
        assert_eq!(
            found(&["nulab-pass-verification=abcd"]),
            CheckResult::NoMatch { found: 1 }
        );
        assert_eq!(
            found(&["nulab-pass-verification=ABC"]),
            CheckResult::NoMatch { found: 1 }
        );
        assert_eq!(found(&["x", "y"]), CheckResult::NoMatch { found: 2 });
        assert_eq!(
            CheckResult::of(&TxtAnswer::NoRecords, &expected),
            CheckResult::NoRecords
        );
    }

    #[test]
    fn results_read_as_words() {
        assert_eq!(CheckResult::NoRecords.describe(), "no TXT records found");
        assert_eq!(
            CheckResult::NoMatch { found: 2 }.describe(),
            "found 2 TXT records, none matches"
        );
        assert_eq!(
            CheckResult::Failed(DnsFailure::TimedOut).describe(),
            "lookup timed out"
        );
        assert_eq!(
            CheckResult::Failed(DnsFailure::ServFail).describe(),
            "DNS server failure (SERVFAIL)"
        );
    }

    #[test]
    fn pending_domains_verify_fail_or_expire() {
        let d = domain(DomainStatus::Pending, None);
        let s = &SETTINGS;
        assert_eq!(
            decide(&d, &CheckResult::Matched, 1, s, false),
            Change::Verified
        );
        assert_eq!(
            decide(&d, &CheckResult::NoRecords, 1, s, false),
            Change::None
        );
        assert_eq!(
            decide(&d, &CheckResult::NoRecords, 1, s, true),
            Change::VerificationFailed
        );
        let late = 30 * DAY_MS;
        assert_eq!(
            decide(&d, &CheckResult::NoRecords, late, s, false),
            Change::Expired
        );
        assert_eq!(
            decide(
                &d,
                &CheckResult::Failed(DnsFailure::ServFail),
                late,
                s,
                false
            ),
            Change::Expired
        );
        assert_eq!(
            decide(&d, &CheckResult::Matched, late, s, false),
            Change::Verified
        );
    }

    #[test]
    fn verified_domains_lapse_only_after_grace_and_never_on_failure() {
        let s = &SETTINGS;
        let servfail = CheckResult::Failed(DnsFailure::ServFail);
        let fresh = domain(DomainStatus::Verified, None);
        assert_eq!(
            decide(&fresh, &CheckResult::Matched, 5, s, false),
            Change::None
        );
        assert_eq!(
            decide(&fresh, &CheckResult::NoRecords, 5, s, false),
            Change::RecordMissing
        );
        assert_eq!(
            decide(&fresh, &CheckResult::NoMatch { found: 1 }, 5, s, false),
            Change::RecordMissing
        );
        assert_eq!(decide(&fresh, &servfail, 5, s, false), Change::None);

        let missing = domain(DomainStatus::Verified, Some(DAY_MS));
        let in_grace = DAY_MS + 7 * DAY_MS - 1;
        let after = DAY_MS + 7 * DAY_MS;
        assert_eq!(
            decide(&missing, &CheckResult::NoRecords, in_grace, s, false),
            Change::None
        );
        assert_eq!(
            decide(&missing, &CheckResult::NoRecords, after, s, false),
            Change::Lapsed
        );
        assert_eq!(
            decide(&missing, &servfail, after * 2, s, false),
            Change::None
        );
        assert_eq!(
            decide(
                &missing,
                &CheckResult::Failed(DnsFailure::TimedOut),
                after,
                s,
                false
            ),
            Change::None
        );
        assert_eq!(
            decide(&missing, &CheckResult::Matched, after, s, false),
            Change::RecordRestored
        );
    }

    #[test]
    fn lapsed_domains_come_back_and_expired_ones_stay() {
        let s = &SETTINGS;
        let lapsed = domain(DomainStatus::Lapsed, None);
        assert_eq!(
            decide(&lapsed, &CheckResult::Matched, 1, s, false),
            Change::Verified
        );
        assert_eq!(
            decide(&lapsed, &CheckResult::NoRecords, 1, s, true),
            Change::None
        );
        let expired = domain(DomainStatus::Expired, None);
        assert_eq!(
            decide(&expired, &CheckResult::Matched, 1, s, true),
            Change::None
        );
    }
}
