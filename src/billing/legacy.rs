//! The moves from before billing per managed account: an organization billed for every user
//! (`billing import-legacy`: its seats stay, its page shows what it could save), and an
//! organization whose managed accounts predate domain verification (`org import-legacy`: they
//! keep working through a transition period while the admins are reminded to verify).

use serde::Serialize;

use super::money::Money;
use super::{BillingError, store};
use crate::AppState;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::domains::transition::{self, Transition};
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

/// `org import-legacy`: an organization whose managed accounts predate domain verification. They
/// keep working on unverified domains for `--billing-legacy-transition-days`; the admins are
/// emailed now and reminded weekly; then rule 1 applies to them as to everyone.
pub async fn import_domains(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    pricing: &Pricing,
    base_url: &str,
) -> Result<Transition, BillingError> {
    crate::orgs::store::lock(tx, org.id).await?;
    let until = now + pricing.legacy_transition_days * crate::clock::DAY_MS;
    transition::start(tx, org.id, now, until).await?;
    let t = transition::of(&mut *tx, org.id, now)
        .await?
        .ok_or_else(|| BillingError::Invalid("the transition did not start".to_string()))?;
    let domains: std::collections::BTreeSet<&str> =
        t.accounts.iter().map(|a| a.domain.as_str()).collect();
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::OrgLegacyImported,
            actor: &Actor::Operator,
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({
                "until": until, "accounts": t.accounts.len(), "domains": domains,
            }),
        },
    )
    .await?;
    if !t.accounts.is_empty() {
        super::mails::legacy_domains(tx, now, org, &t, base_url, false).await?;
    }
    Ok(t)
}

/// Reminds, once a week, the admins of every organization whose transition still has accounts
/// on unverified domains.
pub async fn remind_all(state: &AppState, now: i64) -> Result<(), BillingError> {
    let week = 7 * crate::clock::DAY_MS;
    for org_id in transition::due_reminders(state.db.pool(), now, now - week).await? {
        let mut tx = state.db.begin().await?;
        let Some(org) = crate::orgs::store::by_id(&mut *tx, org_id).await? else {
            continue;
        };
        crate::orgs::store::lock(&mut tx, org.id).await?;
        // Another instance may have reminded meanwhile: only the first one emails.
        if !transition::due_reminders(state.db.pool(), now, now - week)
            .await?
            .contains(&org.id)
        {
            continue;
        }
        transition::reminded(&mut tx, org.id, now).await?;
        let Some(t) = transition::of(&mut tx, org.id, now).await? else {
            continue;
        };
        if !t.accounts.is_empty() {
            super::mails::legacy_domains(&mut tx, now, &org, &t, &state.base_url(), true).await?;
            audit::record(
                &mut tx,
                now,
                audit::Event {
                    org_id: Some(org.id),
                    action: AuditAction::OrgLegacyDomainsReminded,
                    actor: &Actor::System("billing"),
                    target: Some(Target::org(org.id)),
                    meta: &RequestMeta::default(),
                    details: serde_json::json!({
                        "until": t.until, "days_left": t.days_left, "accounts": t.accounts.len(),
                    }),
                },
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
