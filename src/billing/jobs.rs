//! The billing job: turns trials and periods when they end (a scheduled reduction applies, never
//! below the seats in use, and so does a scheduled change of period), writes each period's
//! invoice, records the daily usage for the chart, and reminds the admins of organizations in a
//! domain transition (weekly). Every turn runs under the organization's lock and re-reads the
//! subscription, so several instances turn it once.

use std::time::Duration;

use super::period::{self, day_start};
use super::{BillingError, Status, Subscription, store};
use crate::AppState;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::orgs::Org;

/// Applies every turn due at `now` to `sub` (already locked) and returns it as stored.
pub async fn catch_up(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    mut sub: Subscription,
    pricing: &Pricing,
    base_url: &str,
) -> Result<Subscription, BillingError> {
    let before = sub.clone();
    loop {
        if sub.status == Status::Trial {
            match sub.trial_ends_at {
                Some(end) if end <= now => {
                    sub.status = Status::Active;
                    sub.period_start = day_start(end);
                    sub.anchor_day = period::anchor_of(sub.period_start);
                    event(
                        tx,
                        now,
                        org,
                        AuditAction::SubscriptionActivated,
                        serde_json::json!({
                            "reason": "trial_ended", "period": sub.period.as_str(),
                            "period_start": sub.period_start,
                        }),
                    )
                    .await?;
                    continue;
                }
                _ => break,
            }
        }
        if sub.status.invoiced() && sub.invoiced_period_start != Some(sub.period_start) {
            super::invoices::issue(tx, now, org, &sub, pricing).await?;
            sub.invoiced_period_start = Some(sub.period_start);
            continue;
        }
        if sub.period_end() <= now {
            sub.period_start = sub.period_end();
            if let Some(asked) = sub.scheduled_seats.take() {
                reduce(tx, now, org, asked, pricing, base_url).await?;
            }
            if let Some(period) = sub.scheduled_period.take() {
                let from = std::mem::replace(&mut sub.period, period);
                let details = serde_json::json!({
                    "from": from.as_str(), "to": period.as_str(), "effective": "period_start",
                    "period_start": sub.period_start,
                });
                event(
                    tx,
                    now,
                    org,
                    AuditAction::SubscriptionPeriodChanged,
                    details,
                )
                .await?;
            }
            continue;
        }
        break;
    }
    if sub != before {
        sub.updated_at = now;
        store::put(tx, &sub).await?;
    }
    Ok(sub)
}

/// Applies a scheduled reduction at a period's start, stopping at the seats in use.
async fn reduce(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    asked: i64,
    pricing: &Pricing,
    base_url: &str,
) -> Result<(), BillingError> {
    let usage = super::plan::usage(tx, org).await?;
    let floor = usage.floor().max(pricing.minimum_seats);
    let applied = asked.max(floor).min(usage.seats);
    if applied != usage.seats {
        crate::orgs::seats::set_subscribed(tx, org.id, applied).await?;
    }
    event(
        tx,
        now,
        org,
        AuditAction::SubscriptionSeatsChanged,
        serde_json::json!({
            "from": usage.seats, "to": applied, "scheduled": asked, "effective": "period_start",
            "stopped_at_usage": applied > asked, "managed": usage.managed, "pending": usage.pending,
        }),
    )
    .await?;
    if applied > asked {
        super::mails::reduction_stopped(tx, now, org, (asked, applied, floor), base_url).await?;
    }
    Ok(())
}

async fn event(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    action: AuditAction,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action,
            actor: &Actor::System("billing"),
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details,
        },
    )
    .await
}

/// One pass: every organization whose subscription may have a turn due, each in its own
/// transaction; then today's usage of every organization.
pub async fn run_once(state: &AppState) -> Result<usize, BillingError> {
    let now = state.clock.now_ms();
    let pricing = &state.config.billing;
    let mut turned = 0;
    for org_id in store::orgs_due(state.db.pool(), now).await? {
        let mut tx = state.db.begin().await?;
        let Some(org) = crate::orgs::store::by_id(&mut *tx, org_id).await? else {
            continue;
        };
        let before = store::get(&mut *tx, org.id).await?;
        let after =
            super::plan::load_locked(&mut tx, now, &org, pricing, &state.base_url()).await?;
        tx.commit().await?;
        if before.as_ref() != Some(&after) {
            turned += 1;
        }
    }
    super::legacy::remind_all(state, now).await?;
    store::record_usage(state.db.pool(), None, day_start(now)).await?;
    store::forget_keys(state.db.pool(), now - 7 * crate::clock::DAY_MS).await?;
    Ok(turned)
}

/// Starts the job: one pass every `--billing-poll-ms`.
pub fn spawn(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let poll = Duration::from_millis(state.config.billing.poll_ms.max(10));
        loop {
            match run_once(&state).await {
                Ok(n) if n > 0 => tracing::info!(subscriptions = n, "billing periods turned"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "billing job failed"),
            }
            tokio::time::sleep(poll).await;
        }
    })
}
