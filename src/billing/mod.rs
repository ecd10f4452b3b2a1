//! Billing per managed account: each organization's subscription (status, period, seats, a
//! reduction or a change of period scheduled for the next period), plan changes with prorated charges, invoices
//! written at each period start, and the moves from organization-wide billing and from before
//! domain verification. Seats themselves are `orgs.seats`, claimed by `managed` and `migration`
//! through `orgs::seats` (rule 4 of the design); this room decides how many there are.

pub mod api;
pub mod chart;
pub mod cli;
pub mod invoices;
pub mod jobs;
pub mod legacy;
mod mails;
pub mod money;
pub mod pages;
pub mod pdf;
pub mod period;
pub mod plan;
pub mod store;
pub mod switch;
pub mod view;

use serde::{Deserialize, Serialize};

use crate::ids::OrgId;
use crate::web::error::AppError;

pub use money::Money;
pub use period::Period;

/// Seats can never exceed this (a typo guard, far above any real organization).
pub const MAX_SEATS: i64 = 1_000_000;

/// The state of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A new organization's free seats, until the trial ends or an admin starts the plan.
    Trial,
    Active,
    /// Invoiced but unpaid (set by the operator from the payment system).
    PastDue,
    /// No more invoices; seats stay as they are.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trial => "trial",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Cancelled => "cancelled",
        }
    }
    pub fn parse(raw: &str) -> Option<Status> {
        match raw {
            "trial" => Some(Status::Trial),
            "active" => Some(Status::Active),
            "past_due" => Some(Status::PastDue),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
    /// Whether periods of this status are invoiced.
    pub fn invoiced(self) -> bool {
        matches!(self, Status::Active | Status::PastDue)
    }
}

/// An organization's subscription as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub org_id: OrgId,
    pub status: Status,
    pub period: Period,
    pub anchor_day: i64,
    pub period_start: i64,
    pub trial_ends_at: Option<i64>,
    pub scheduled_seats: Option<i64>,
    /// A change of period asked for, applied when this period ends.
    pub scheduled_period: Option<Period>,
    pub invoiced_period_start: Option<i64>,
    pub legacy_org_wide: bool,
    pub legacy_seats: Option<i64>,
    pub updated_at: i64,
}

impl Subscription {
    /// The start of the next period (also the end of this one).
    pub fn period_end(&self) -> i64 {
        period::next_start(self.period, self.anchor_day, self.period_start)
    }

    /// The subscription of an organization that has none stored yet: its trial, from the day
    /// it was created.
    pub fn trial(org: &crate::orgs::Org, pricing: &crate::config::Pricing) -> Subscription {
        let start = period::day_start(org.created_at);
        Subscription {
            org_id: org.id,
            status: Status::Trial,
            period: Period::Monthly,
            anchor_day: period::anchor_of(start),
            period_start: start,
            trial_ends_at: Some(start + pricing.trial_days * crate::clock::DAY_MS),
            scheduled_seats: None,
            scheduled_period: None,
            invoiced_period_start: None,
            legacy_org_wide: false,
            legacy_seats: None,
            updated_at: org.created_at,
        }
    }
}

/// What can go wrong with billing, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("seats must be a whole number from 0 to 1,000,000; {0} is not")]
    InvalidSeats(String),
    #[error("a subscription has at least {minimum} seats; choose {minimum} or more")]
    BelowMinimum { minimum: i64 },
    #[error(
        "seats cannot go below {floor}: {managed} managed accounts use seats and {pending} pending migration requests reserve one each; delete managed accounts or cancel requests first"
    )]
    BelowUsage {
        floor: i64,
        managed: i64,
        pending: i64,
    },
    #[error("the period must be \"monthly\" or \"yearly\"; {0} is not")]
    InvalidPeriod(String),
    #[error("send \"seats\", \"period\" or both")]
    NothingAsked,
    #[error("the subscription is cancelled; ask the operator of this service to reactivate it")]
    Cancelled,
    #[error(
        "the Idempotency-Key header must be 1 to 255 visible ASCII characters (a UUID is a good key)"
    )]
    InvalidIdempotencyKey,
    #[error(
        "this Idempotency-Key was already used with a different request body; send a new key for a new change"
    )]
    IdempotencyKeyReused,
    #[error("no invoice with this number belongs to this organization")]
    InvoiceNotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How BillingError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<BillingError> for AppError {
    fn from(err: BillingError) -> AppError {
        use BillingError as E;
        use axum::http::StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Mail(inner) => return inner.into(),
            E::Db(inner) => return inner.into(),
            E::InvalidSeats(_) => (S::BAD_REQUEST, "invalid_seats"),
            E::InvalidPeriod(_) => (S::BAD_REQUEST, "invalid_period"),
            E::NothingAsked => (S::BAD_REQUEST, "nothing_to_change"),
            E::BelowMinimum { .. } => (S::BAD_REQUEST, "seats_below_minimum"),
            E::BelowUsage { .. } => (S::CONFLICT, "seats_below_usage"),
            E::Cancelled => (S::CONFLICT, "subscription_cancelled"),
            E::InvalidIdempotencyKey => (S::BAD_REQUEST, "invalid_idempotency_key"),
            E::IdempotencyKeyReused => (S::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            E::InvoiceNotFound => (S::NOT_FOUND, "invoice_not_found"),
            E::Invalid(_) => (S::BAD_REQUEST, "bad_request"),
        };
        AppError::client(status, code, message)
    }
}

/// Reads a seat count from JSON or a form: a whole number from 0 to [`MAX_SEATS`].
pub fn parse_seats(raw: &serde_json::Value) -> Result<i64, BillingError> {
    let shown = || raw.to_string().chars().take(40).collect::<String>();
    match raw {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(seats) if (0..=MAX_SEATS).contains(&seats) => Ok(seats),
            _ => Err(BillingError::InvalidSeats(shown())),
        },
        serde_json::Value::String(s) => match s.trim().parse::<i64>() {
            Ok(seats) if (0..=MAX_SEATS).contains(&seats) => Ok(seats),
            _ => Err(BillingError::InvalidSeats(shown())),
        },
        _ => Err(BillingError::InvalidSeats(shown())),
    }
}

/// The billing page of an organization, where every seat message points.
pub fn page_path(slug: &str) -> String {
    format!("/admin/{slug}/billing")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seats_are_whole_numbers_in_range() {
        assert_eq!(parse_seats(&json!(12)).unwrap(), 12);
        assert_eq!(parse_seats(&json!("7")).unwrap(), 7);
        assert_eq!(parse_seats(&json!(0)).unwrap(), 0);
        for bad in [
            json!(1.5),
            json!(-1),
            json!(1_000_001),
            json!(1e30),
            json!("ten"),
            json!(null),
            json!([3]),
            json!(u64::MAX),
        ] {
            assert!(
                matches!(parse_seats(&bad), Err(BillingError::InvalidSeats(_))),
                "{bad}"
            );
        }
    }
}
