//! The move from organization-wide billing (`billing import-legacy`): an organization billed for
//! every user keeps its seats, and its billing page shows what it could save.

use serde::Serialize;

use super::money::Money;
use super::{BillingError, store};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::orgs::Org;

/// `billing import-legacy`: marks an organization that was billed for every user with `seats`
/// seats. The subscription becomes active now (its first invoice is written at once); seats are
/// set as they were billed, never reduced automatically.
pub async fn import_org_wide(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    seats: i64,
    pricing: &Pricing,
    base_url: &str,
) -> Result<super::plan::Usage, BillingError> {
    if !(0..=super::MAX_SEATS).contains(&seats) {
        return Err(BillingError::InvalidSeats(seats.to_string()));
    }
    let mut sub = super::plan::load_locked(tx, now, org, pricing, base_url).await?;
    let usage = super::plan::usage(tx, org).await?;
    crate::orgs::seats::set_subscribed(tx, org.id, seats).await?;
    let was_trial = sub.status == super::Status::Trial;
    sub.legacy_org_wide = true;
    sub.legacy_seats = Some(seats);
    sub.scheduled_seats = None;
    if was_trial {
        sub.status = super::Status::Active;
        sub.period_start = super::period::day_start(now);
        sub.anchor_day = super::period::anchor_of(sub.period_start);
        sub.trial_ends_at = None;
    }
    sub.updated_at = now;
    store::put(tx, &sub).await?;
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::SubscriptionLegacyImported,
            actor: &Actor::Operator,
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({
                "from": usage.seats, "to": seats, "managed": usage.managed,
                "pending": usage.pending, "billing": "organization_wide",
            }),
        },
    )
    .await?;
    let sub = super::jobs::catch_up(tx, now, org, sub, pricing, base_url).await?;
    store::record_usage(&mut **tx, Some(org.id), super::period::day_start(now)).await?;
    let _ = sub;
    Ok(super::plan::Usage { seats, ..usage })
}

/// What an organization moved from organization-wide billing could save.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Saving {
    /// Seats billed before the move.
    pub billed_seats: i64,
    /// Seats in use now: managed accounts plus pending migration requests.
    pub in_use: i64,
    /// The seats it could reduce to from the next period (never below the minimum).
    pub could_reduce_to: i64,
    /// From when.
    pub from: i64,
    /// Less each period, before tax.
    pub per_period: Money,
}

/// The saving of a legacy organization-wide subscription, if there is one to make.
pub fn saving(
    sub: &super::Subscription,
    usage: super::plan::Usage,
    pricing: &Pricing,
) -> Option<Saving> {
    if !sub.legacy_org_wide {
        return None;
    }
    let target = usage.floor().max(pricing.minimum_seats);
    let seats_next = sub.scheduled_seats.unwrap_or(usage.seats);
    if target >= seats_next {
        return None;
    }
    let unit = super::plan::unit_price(sub, pricing);
    Some(Saving {
        billed_seats: sub.legacy_seats.unwrap_or(usage.seats),
        in_use: usage.floor(),
        could_reduce_to: target,
        from: sub.period_end(),
        per_period: Money::new((seats_next - target) * unit, &pricing.currency),
    })
}
