//! Changing the billing period, monthly or yearly. During the trial the change applies at once
//! (the first invoice is for the chosen period); otherwise it applies when the current period
//! ends, like a reduction of seats, so nothing already invoiced is recalculated and no credit is
//! needed: the next invoice is for the new period at its price. Asking for the current period
//! again withdraws a scheduled change.

use serde::Serialize;

use super::money::{self, Money};
use super::plan::{self, Requester};
use super::{BillingError, Period, Status, Subscription, store};
use crate::audit::{self, AuditAction, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::orgs::Org;

/// What a change of period does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodChangeKind {
    /// During the trial: at once.
    Now,
    /// From the start of the next period.
    NextPeriod,
    /// Back to the current period: a scheduled change is withdrawn.
    Withdrawn,
    Unchanged,
}

/// A change of billing period, shown before the admin confirms.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PeriodChange {
    pub period_from: Period,
    pub period_to: Period,
    pub change: PeriodChangeKind,
    /// When the new period applies (now, or the next period's start).
    pub effective_at: i64,
    /// The price of one seat for one period after the change.
    pub price_per_seat: Money,
    /// For people: what happens, when and for how much.
    pub message: String,
}

/// Reads a period from JSON or a form: `monthly` or `yearly`.
pub fn parse(raw: &serde_json::Value) -> Result<Period, BillingError> {
    let shown = || raw.to_string().chars().take(40).collect::<String>();
    match raw {
        serde_json::Value::String(s) => {
            Period::parse(s.trim()).ok_or_else(|| BillingError::InvalidPeriod(shown()))
        }
        _ => Err(BillingError::InvalidPeriod(shown())),
    }
}

fn price(period: Period, pricing: &Pricing) -> i64 {
    match period {
        Period::Monthly => pricing.seat_price_monthly,
        Period::Yearly => pricing.seat_price_yearly,
    }
}

/// Previews a change to `target` for `seats` seats (pure: the state is read by the caller).
pub fn preview(
    sub: &Subscription,
    seats: i64,
    target: Period,
    now: i64,
    pricing: &Pricing,
) -> Result<PeriodChange, BillingError> {
    if sub.status == Status::Cancelled {
        return Err(BillingError::Cancelled);
    }
    let cur = pricing.currency.as_str();
    let unit = price(target, pricing);
    let each = format!("{} a seat a {}", money::format(unit, cur), target.unit());
    let total = money::format(unit * seats, cur);
    let end = sub.period_end();
    let date = super::period::date_of(end);
    let (change, effective_at, message) = if target == sub.period {
        match sub.scheduled_period {
            Some(asked) => (
                PeriodChangeKind::Withdrawn,
                now,
                format!(
                    "The change to {} billing is withdrawn; the subscription stays {}.",
                    asked.as_str(),
                    target.as_str()
                ),
            ),
            None => (
                PeriodChangeKind::Unchanged,
                now,
                format!("The subscription is already billed {}.", target.as_str()),
            ),
        }
    } else if sub.status == Status::Trial {
        let message = format!(
            "During the trial the change to {} billing applies at once: the first invoice is for a {}, {each} ({seats} seats: {total}).",
            target.as_str(),
            target.unit()
        );
        (PeriodChangeKind::Now, now, message)
    } else {
        let message = format!(
            "Billed {} from the next period, starting {date}: {each} ({seats} seats: {total} a {}). Until then this {} period stays as invoiced.",
            target.as_str(),
            target.unit(),
            sub.period.unit()
        );
        (PeriodChangeKind::NextPeriod, end, message)
    };
    Ok(PeriodChange {
        period_from: sub.period,
        period_to: target,
        change,
        effective_at,
        price_per_seat: Money::new(unit, cur),
        message,
    })
}

/// Applies a change of period as an admin asked (page or API), returning its preview.
pub async fn change(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    target: Period,
    by: Requester<'_>,
    pricing: &Pricing,
    base_url: &str,
) -> Result<PeriodChange, BillingError> {
    let mut sub = plan::load_locked(tx, now, org, pricing, base_url).await?;
    let usage = plan::usage(tx, org).await?;
    let seats = sub.scheduled_seats.unwrap_or(usage.seats);
    let preview = preview(&sub, seats, target, now, pricing)?;
    let (from, asked) = (sub.period.as_str(), target.as_str());
    let (action, details) = match preview.change {
        PeriodChangeKind::Unchanged => return Ok(preview),
        PeriodChangeKind::Now => {
            sub.period = target;
            sub.scheduled_period = None;
            let details = serde_json::json!({ "from": from, "to": asked, "effective": "now" });
            (AuditAction::SubscriptionPeriodChanged, details)
        }
        PeriodChangeKind::NextPeriod => {
            let replaces = sub.scheduled_period.map(Period::as_str);
            sub.scheduled_period = Some(target);
            let details = serde_json::json!({
                "from": from, "to": asked, "effective_at": preview.effective_at,
                "replaces": replaces,
            });
            (AuditAction::SubscriptionPeriodChangeScheduled, details)
        }
        PeriodChangeKind::Withdrawn => {
            let withdrawn = sub.scheduled_period.take().map(Period::as_str);
            let details = serde_json::json!({ "period": from, "withdrawn": withdrawn });
            (AuditAction::SubscriptionScheduledChangeCancelled, details)
        }
    };
    let event = audit::Event {
        org_id: Some(org.id),
        action,
        actor: by.actor,
        target: Some(Target::org(org.id)),
        meta: by.meta,
        details,
    };
    audit::record(tx, now, event).await?;
    sub.updated_at = now;
    store::put(tx, &sub).await?;
    Ok(preview)
}

/// What an admin asks for: a number of seats, a period, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    pub seats: Option<i64>,
    pub period: Option<Period>,
}

impl Ask {
    /// Reads the request's `seats` and `period` (each absent, or a value to check).
    pub fn parse(
        seats: Option<&serde_json::Value>,
        period: Option<&serde_json::Value>,
    ) -> Result<Ask, BillingError> {
        let ask = Ask {
            seats: seats.map(super::parse_seats).transpose()?,
            period: period.map(parse).transpose()?,
        };
        if ask.seats.is_none() && ask.period.is_none() {
            return Err(BillingError::NothingAsked);
        }
        Ok(ask)
    }
}

/// What `ask` would do, read under the organization's lock; changes nothing but due turns.
pub async fn preview_ask(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    ask: Ask,
    pricing: &Pricing,
    base_url: &str,
) -> Result<plan::Preview, BillingError> {
    let sub = plan::load_locked(tx, now, org, pricing, base_url).await?;
    let usage = plan::usage(tx, org).await?;
    let mut done = match ask.seats {
        Some(seats) => plan::preview(&sub, usage, seats, now, pricing)?,
        None => plan::seats_kept(usage, now),
    };
    if let Some(period) = ask.period {
        let seats = ask
            .seats
            .unwrap_or(sub.scheduled_seats.unwrap_or(usage.seats));
        done.period_change = Some(preview(&sub, seats, period, now, pricing)?);
    }
    Ok(done)
}

/// Applies `ask`: the seats first, then the period, in the caller's transaction.
pub async fn apply(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    ask: Ask,
    by: Requester<'_>,
    pricing: &Pricing,
    base_url: &str,
) -> Result<plan::Preview, BillingError> {
    let mut done = match ask.seats {
        Some(seats) => plan::change(tx, now, org, seats, by, pricing, base_url).await?,
        None => {
            plan::load_locked(tx, now, org, pricing, base_url).await?;
            plan::seats_kept(plan::usage(tx, org).await?, now)
        }
    };
    if let Some(period) = ask.period {
        done.period_change = Some(change(tx, now, org, period, by, pricing, base_url).await?);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::period::{anchor_of, ms_of};
    use crate::ids::OrgId;
    use time::macros::date;

    fn sub(status: Status, period: Period, scheduled: Option<Period>) -> Subscription {
        let start = ms_of(date!(2026 - 03 - 31));
        Subscription {
            org_id: OrgId::parse("00000000-0000-4000-8000-000000000001").expect("an org id"),
            status,
            period,
            anchor_day: anchor_of(start),
            period_start: start,
            trial_ends_at: None,
            scheduled_seats: None,
            scheduled_period: scheduled,
            invoiced_period_start: Some(start),
            legacy_org_wide: false,
            legacy_seats: None,
            updated_at: start,
        }
    }

    #[test]
    fn a_paid_period_changes_when_it_ends() {
        let pricing = crate::config::Config::with_database("sqlite::memory:").billing;
        let now = ms_of(date!(2026 - 04 - 10));
        let monthly = sub(Status::Active, Period::Monthly, None);
        let p = preview(&monthly, 12, Period::Yearly, now, &pricing).expect("a preview");
        assert_eq!(p.change, PeriodChangeKind::NextPeriod);
        // Anchored on the 31st: the next period starts on 30 April.
        assert_eq!(p.effective_at, ms_of(date!(2026 - 04 - 30)));
        assert_eq!(p.price_per_seat.amount, pricing.seat_price_yearly);
        assert!(p.message.contains("starting 2026-04-30"), "{}", p.message);
        let scheduled = sub(Status::PastDue, Period::Monthly, Some(Period::Yearly));
        let back = preview(&scheduled, 12, Period::Monthly, now, &pricing).expect("a preview");
        assert_eq!(back.change, PeriodChangeKind::Withdrawn);
        let same = preview(&monthly, 12, Period::Monthly, now, &pricing).expect("a preview");
        assert_eq!(same.change, PeriodChangeKind::Unchanged);
    }

    #[test]
    fn a_trial_changes_at_once_and_a_cancelled_plan_not_at_all() {
        let pricing = crate::config::Config::with_database("sqlite::memory:").billing;
        let now = ms_of(date!(2026 - 04 - 10));
        let trial = sub(Status::Trial, Period::Monthly, None);
        let p = preview(&trial, 5, Period::Yearly, now, &pricing).expect("a preview");
        assert_eq!((p.change, p.effective_at), (PeriodChangeKind::Now, now));
        let cancelled = sub(Status::Cancelled, Period::Monthly, None);
        assert!(matches!(
            preview(&cancelled, 5, Period::Yearly, now, &pricing),
            Err(BillingError::Cancelled)
        ));
    }

    #[test]
    fn periods_are_words() {
        assert_eq!(
            parse(&serde_json::json!(" yearly ")).ok(),
            Some(Period::Yearly)
        );
        for bad in [
            serde_json::json!("annual"),
            serde_json::json!(12),
            serde_json::json!(null),
        ] {
            assert!(
                matches!(parse(&bad), Err(BillingError::InvalidPeriod(_))),
                "{bad}"
            );
        }
    }
}
