//! Changing the plan: the preview of a seat change (what changes, when, and the prorated
//! charge), applying it under the organization's lock, and the operator's direct setting.
//! Additions apply at once with a charge for the rest of the period, to the day; reductions
//! wait for the next period and never go below the managed accounts plus pending migration
//! requests; during a trial every change applies at once without a charge.

use serde::Serialize;

use super::money::{self, Money};
use super::period::{day_start, days_between};
use super::store::{self, Charge};
use super::{BillingError, Status, Subscription};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::orgs::{self, Org};

/// Seats and what uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub seats: i64,
    pub managed: i64,
    pub pending: i64,
}

impl Usage {
    /// The fewest seats a reduction may leave.
    pub fn floor(&self) -> i64 {
        self.managed + self.pending
    }
}

/// Seats, managed accounts and pending migration requests, read in `tx`.
pub async fn usage(tx: &mut Tx, org: &Org) -> Result<Usage, sqlx::Error> {
    let seats = orgs::seats::of(&mut **tx, org.id).await?;
    Ok(Usage {
        seats: seats.subscribed,
        managed: seats.used,
        pending: crate::migration::store::pending_count(&mut **tx, org.id).await?,
    })
}

/// What a seat change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// More seats, at once, with a prorated charge.
    Increase,
    /// Fewer seats from the start of the next period.
    Decrease,
    /// During the trial: at once, without a charge.
    TrialChange,
    /// Back to the current seats: a scheduled reduction is withdrawn.
    CancelScheduled,
    Unchanged,
}

/// The prorated charge of an addition.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ChargePreview {
    pub seats_added: i64,
    /// Days charged, counting today, and the days of the period.
    pub days: i64,
    pub period_days: i64,
    pub unit_price: Money,
    pub amount: Money,
    pub tax: Money,
    pub total: Money,
}

/// What a change to `seats_to` would do, shown before the admin confirms.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub seats_from: i64,
    pub seats_to: i64,
    pub change: ChangeKind,
    /// When the new number applies (now, or the next period's start).
    pub effective_at: i64,
    pub charge: Option<ChargePreview>,
    /// For people: what happens, when and for how much.
    pub message: String,
    /// A change of billing period asked for with the seats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_change: Option<super::switch::PeriodChange>,
}

/// Previews `target` seats (pure: the state is read by the caller).
pub fn preview(
    sub: &Subscription,
    usage: Usage,
    target: i64,
    now: i64,
    pricing: &Pricing,
) -> Result<Preview, BillingError> {
    if target < pricing.minimum_seats {
        return Err(BillingError::BelowMinimum {
            minimum: pricing.minimum_seats,
        });
    }
    if sub.status == Status::Cancelled {
        return Err(BillingError::Cancelled);
    }
    let from = usage.seats;
    if target < from && target < usage.floor() {
        return Err(BillingError::BelowUsage {
            floor: usage.floor(),
            managed: usage.managed,
            pending: usage.pending,
        });
    }
    let end = sub.period_end();
    let date = |ms: i64| super::period::date_of(ms).to_string();
    let cur = pricing.currency.as_str();
    let mut charge = None;
    let (change, effective_at, message) = if sub.status == Status::Trial {
        let first = sub.trial_ends_at.unwrap_or(end);
        let kind = if target == from {
            ChangeKind::Unchanged
        } else {
            ChangeKind::TrialChange
        };
        let message = format!(
            "During the trial the change to {target} seats applies at once, without a charge. The first invoice, on {}, is for the seats you have then ({} a seat a {}).",
            date(first),
            money::format(unit_price(sub, pricing), cur),
            sub.period.unit()
        );
        (kind, now, message)
    } else if target > from {
        let (c, message) = addition(sub, target - from, now, pricing);
        charge = Some(c);
        (ChangeKind::Increase, now, message)
    } else if target < from {
        let saving = (from - target) * unit_price(sub, pricing);
        let message = format!(
            "{target} seats from the next period, starting {}: {} less each period. Until then you keep {from} seats. It cannot go below the managed accounts plus pending migration requests at that time.",
            date(end),
            money::format(saving, cur)
        );
        (ChangeKind::Decrease, end, message)
    } else if sub.scheduled_seats.is_some() {
        let message = format!("The scheduled reduction is withdrawn; you keep {from} seats.");
        (ChangeKind::CancelScheduled, now, message)
    } else {
        let message = format!("You already have {from} seats; nothing changes.");
        (ChangeKind::Unchanged, now, message)
    };
    Ok(Preview {
        seats_from: from,
        seats_to: target,
        change,
        effective_at,
        charge,
        message,
        period_change: None,
    })
}

/// The preview of a request that leaves the seats as they are (only the period changes).
pub fn seats_kept(usage: Usage, now: i64) -> Preview {
    Preview {
        seats_from: usage.seats,
        seats_to: usage.seats,
        change: ChangeKind::Unchanged,
        effective_at: now,
        charge: None,
        message: format!("Seats stay at {}.", usage.seats),
        period_change: None,
    }
}

/// The prorated charge of `added` seats from today to the end of the period, and its words.
fn addition(
    sub: &Subscription,
    added: i64,
    now: i64,
    pricing: &Pricing,
) -> (ChargePreview, String) {
    let end = sub.period_end();
    let cur = pricing.currency.as_str();
    let unit = unit_price(sub, pricing);
    let (days, period_days) = (days_between(now, end), days_between(sub.period_start, end));
    let amount = money::prorate(unit, added, days, period_days);
    let tax = money::tax(amount, pricing.tax_basis_points);
    let end_date = super::period::date_of(end);
    let message = format!(
        "{added} more seats from today: {} for the {days} of {period_days} days left in this period (until {end_date}), plus {} tax, on the invoice of {end_date}.",
        money::format(amount, cur),
        money::format(tax, cur),
    );
    let charge = ChargePreview {
        seats_added: added,
        days,
        period_days,
        unit_price: Money::new(unit, cur),
        amount: Money::new(amount, cur),
        tax: Money::new(tax, cur),
        total: Money::new(amount + tax, cur),
    };
    (charge, message)
}

/// The price of one seat for one period of this subscription.
pub fn unit_price(sub: &Subscription, pricing: &Pricing) -> i64 {
    match sub.period {
        super::Period::Monthly => pricing.seat_price_monthly,
        super::Period::Yearly => pricing.seat_price_yearly,
    }
}

/// The organization's subscription inside `tx`, under its lock, with every turn that is due
/// applied first (trial end, period starts, invoices).
pub async fn load_locked(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    pricing: &Pricing,
    base_url: &str,
) -> Result<Subscription, BillingError> {
    orgs::store::lock(tx, org.id).await?;
    let sub = match store::get(&mut **tx, org.id).await? {
        Some(sub) => sub,
        None => {
            let sub = Subscription::trial(org, pricing);
            store::put(tx, &sub).await?;
            sub
        }
    };
    super::jobs::catch_up(tx, now, org, sub, pricing, base_url).await
}

/// Who asks for a change, for the audit log.
#[derive(Clone, Copy)]
pub struct Requester<'a> {
    pub actor: &'a Actor,
    pub meta: &'a RequestMeta,
}

/// Applies a change to `target` seats as an admin asked (page or API), returning its preview.
pub async fn change(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    target: i64,
    by: Requester<'_>,
    pricing: &Pricing,
    base_url: &str,
) -> Result<Preview, BillingError> {
    let mut sub = load_locked(tx, now, org, pricing, base_url).await?;
    let usage = usage(tx, org).await?;
    let preview = preview(&sub, usage, target, now, pricing)?;
    let event = |action, details| audit::Event {
        org_id: Some(org.id),
        action,
        actor: by.actor,
        target: Some(Target::org(org.id)),
        meta: by.meta,
        details,
    };
    let scheduled_before = sub.scheduled_seats;
    match preview.change {
        ChangeKind::Unchanged => return Ok(preview),
        ChangeKind::Increase | ChangeKind::TrialChange => {
            orgs::seats::set_subscribed(tx, org.id, target).await?;
            let mut details = serde_json::json!({
                "from": usage.seats, "to": target, "effective": "now",
                "scheduled_reduction_withdrawn": scheduled_before,
            });
            if let Some(c) = &preview.charge {
                let charge = Charge {
                    id: uuid::Uuid::new_v4().to_string(),
                    seats_from: usage.seats,
                    seats_to: target,
                    period_start: sub.period_start,
                    period_end: sub.period_end(),
                    days_charged: c.days,
                    period_days: c.period_days,
                    unit_price: c.unit_price.amount,
                    amount: c.amount.amount,
                    currency: pricing.currency.clone(),
                    created_at: now,
                };
                store::insert_charge(tx, org.id, &charge).await?;
                details["charge_id"] = charge.id.clone().into();
                details["charge"] = charge.amount.into();
                details["currency"] = charge.currency.clone().into();
                details["days"] = c.days.into();
                details["period_days"] = c.period_days.into();
            }
            sub.scheduled_seats = None;
            audit::record(
                tx,
                now,
                event(AuditAction::SubscriptionSeatsChanged, details),
            )
            .await?;
        }
        ChangeKind::Decrease => {
            sub.scheduled_seats = Some(target);
            let details = serde_json::json!({
                "from": usage.seats, "to": target, "effective_at": preview.effective_at,
                "replaces": scheduled_before,
            });
            let action = AuditAction::SubscriptionSeatsChangeScheduled;
            audit::record(tx, now, event(action, details)).await?;
        }
        ChangeKind::CancelScheduled => {
            sub.scheduled_seats = None;
            let details =
                serde_json::json!({ "seats": usage.seats, "withdrawn": scheduled_before });
            let action = AuditAction::SubscriptionScheduledChangeCancelled;
            audit::record(tx, now, event(action, details)).await?;
        }
    }
    sub.updated_at = now;
    store::put(tx, &sub).await?;
    store::record_usage(&mut **tx, Some(org.id), day_start(now)).await?;
    Ok(preview)
}

/// The operator's command: sets the seats at once, up or down, without a charge, under the same
/// rules (minimum, never below managed accounts plus pending requests) and audit.
pub async fn operator_set(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    target: i64,
    pricing: &Pricing,
    base_url: &str,
) -> Result<Usage, BillingError> {
    if !(0..=super::MAX_SEATS).contains(&target) {
        return Err(BillingError::InvalidSeats(target.to_string()));
    }
    let mut sub = load_locked(tx, now, org, pricing, base_url).await?;
    let usage = usage(tx, org).await?;
    if target < pricing.minimum_seats {
        return Err(BillingError::BelowMinimum {
            minimum: pricing.minimum_seats,
        });
    }
    if target < usage.seats && target < usage.floor() {
        return Err(BillingError::BelowUsage {
            floor: usage.floor(),
            managed: usage.managed,
            pending: usage.pending,
        });
    }
    orgs::seats::set_subscribed(tx, org.id, target).await?;
    let details = serde_json::json!({
        "from": usage.seats, "to": target, "effective": "now", "charge": null,
        "scheduled_reduction_withdrawn": sub.scheduled_seats,
    });
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::SubscriptionSeatsChanged,
            actor: &Actor::Operator,
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details,
        },
    )
    .await?;
    sub.scheduled_seats = None;
    sub.updated_at = now;
    store::put(tx, &sub).await?;
    store::record_usage(&mut **tx, Some(org.id), day_start(now)).await?;
    Ok(Usage {
        seats: target,
        ..usage
    })
}

/// Sets the status the payment system reports (operator). Leaving `cancelled` starts a new
/// period today; seats never change here.
pub async fn set_status(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    status: Status,
    pricing: &Pricing,
    base_url: &str,
) -> Result<(), BillingError> {
    let mut sub = load_locked(tx, now, org, pricing, base_url).await?;
    if sub.status == status {
        return Ok(());
    }
    let from = sub.status;
    if from == Status::Trial || from == Status::Cancelled {
        sub.period_start = day_start(now);
        sub.anchor_day = super::period::anchor_of(sub.period_start);
    }
    sub.status = status;
    sub.updated_at = now;
    store::put(tx, &sub).await?;
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::SubscriptionStatusChanged,
            actor: &Actor::Operator,
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({ "from": from.as_str(), "to": status.as_str() }),
        },
    )
    .await?;
    super::jobs::catch_up(tx, now, org, sub, pricing, base_url).await?;
    Ok(())
}
