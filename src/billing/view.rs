//! The subscription as the billing page and the API show it: seats and what uses them, the
//! period, a scheduled reduction, the next invoice, and a legacy organization's possible saving.

use serde::Serialize;

use super::legacy::Saving;
use super::money::{self, Money};
use super::plan::{self, Usage};
use super::{Period, Status, Subscription, store};
use crate::config::Pricing;
use crate::db::Db;
use crate::orgs::Org;

/// The next invoice, as it would be written today.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NextInvoice {
    /// When it is written (the next period's start, or the trial's end).
    pub date: i64,
    pub seats: i64,
    /// Seats × price for that period.
    pub seats_amount: Money,
    /// Prorated additions of this period, not yet invoiced.
    pub additions: Money,
    pub subtotal: Money,
    pub tax: Money,
    pub total: Money,
}

/// `GET /api/v1/orgs/{org}/subscription`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub status: Status,
    pub period: Period,
    /// Subscribed seats.
    pub seats: i64,
    /// Managed accounts, active and suspended (each takes a seat).
    pub managed_accounts: i64,
    /// Seats reserved by pending migration requests.
    pub reserved: i64,
    /// Seats neither used nor reserved.
    pub free: i64,
    /// More managed accounts than seats: new managed accounts and migration requests wait.
    pub over_seats: bool,
    pub minimum_seats: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub trial_ends_at: Option<i64>,
    /// A reduction that applies at `period_end`.
    pub scheduled_seats: Option<i64>,
    /// A change of period that applies at `period_end`.
    pub scheduled_period: Option<Period>,
    pub price_per_seat: Money,
    /// e.g. `10%`.
    pub tax_rate: String,
    pub next_invoice: Option<NextInvoice>,
    /// Only for an organization moved from organization-wide billing that could pay less.
    pub legacy_saving: Option<Saving>,
}

/// Builds the view from what was read.
pub fn build(
    sub: &Subscription,
    usage: Usage,
    open_additions: i64,
    pricing: &Pricing,
) -> SubscriptionView {
    let cur = pricing.currency.as_str();
    let unit = plan::unit_price(sub, pricing);
    let next = match sub.status {
        Status::Cancelled => None,
        _ => {
            let seats = sub.scheduled_seats.unwrap_or(usage.seats);
            let next_period = Subscription {
                period: sub.scheduled_period.unwrap_or(sub.period),
                ..sub.clone()
            };
            let unit = plan::unit_price(&next_period, pricing);
            let (date, additions) = if sub.status == Status::Trial {
                (sub.trial_ends_at.unwrap_or_else(|| sub.period_end()), 0)
            } else {
                (sub.period_end(), open_additions)
            };
            let subtotal = seats * unit + additions;
            let tax = money::tax(subtotal, pricing.tax_basis_points);
            Some(NextInvoice {
                date,
                seats,
                seats_amount: Money::new(seats * unit, cur),
                additions: Money::new(additions, cur),
                subtotal: Money::new(subtotal, cur),
                tax: Money::new(tax, cur),
                total: Money::new(subtotal + tax, cur),
            })
        }
    };
    SubscriptionView {
        status: sub.status,
        period: sub.period,
        seats: usage.seats,
        managed_accounts: usage.managed,
        reserved: usage.pending,
        free: (usage.seats - usage.managed - usage.pending).max(0),
        over_seats: usage.managed > usage.seats,
        minimum_seats: pricing.minimum_seats,
        period_start: sub.period_start,
        period_end: sub.period_end(),
        trial_ends_at: sub.trial_ends_at.filter(|_| sub.status == Status::Trial),
        scheduled_seats: sub.scheduled_seats,
        scheduled_period: sub.scheduled_period,
        price_per_seat: Money::new(unit, cur),
        tax_rate: money::rate(pricing.tax_basis_points),
        next_invoice: next,
        legacy_saving: super::legacy::saving(sub, usage, pricing),
    }
}

/// The current subscription of `org` with every due turn applied first (what the job would do
/// at this moment), and its view.
pub async fn current(
    db: &Db,
    now: i64,
    org: &Org,
    pricing: &Pricing,
    base_url: &str,
) -> Result<(Subscription, SubscriptionView), super::BillingError> {
    let mut tx = db.begin().await?;
    let sub = plan::load_locked(&mut tx, now, org, pricing, base_url).await?;
    let usage = plan::usage(&mut tx, org).await?;
    let additions: i64 = store::open_charges(&mut *tx, org.id, i64::MAX)
        .await?
        .iter()
        .map(|c| c.amount)
        .sum();
    tx.commit().await?;
    let view = build(&sub, usage, additions, pricing);
    Ok((sub, view))
}
