//! The expiry and reminder job: ends pending requests whose links expired (freeing their seats)
//! and reminds users 3 days before expiry. Several server instances may run it at once: rows
//! are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, and every change is conditional on
//! the request still being pending.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{MigrationStatus, REMINDER_LEAD_MS, mails, store};
use crate::AppState;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Db;
use crate::secrets;

const BATCH: i64 = 100;
const POLL: Duration = Duration::from_secs(60);
const JOB: &str = "migration.expiry";

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub expired: u32,
    pub reminded: u32,
}

/// Expires and reminds everything due at `now`. Tests call it with a moved clock.
pub async fn run_once(db: &Db, now: i64, base_url: &str) -> Result<Summary, super::MigrationError> {
    let mut summary = Summary::default();
    let actor = Actor::System(JOB);
    let meta = RequestMeta::default();
    loop {
        let mut tx = db.begin().await?;
        let mut due = store::due_expired(&mut tx, db.dialect(), now, BATCH).await?;
        if due.is_empty() {
            tx.rollback().await?;
            break;
        }
        // One transaction writes several organizations' chains: in chain order, as
        // `audit::take_chains` would, so it never waits in a circle with an acceptance.
        due.sort_by_key(|r| r.org_id);
        for request in due {
            if !store::decide(&mut tx, request.id, MigrationStatus::Expired, None, now).await? {
                continue;
            }
            let Some(org) = crate::orgs::store::by_id(&mut *tx, request.org_id).await? else {
                continue;
            };
            audit::record(&mut tx, now, audit::Event {
                org_id: Some(org.id),
                action: AuditAction::MigrationExpired,
                actor: &actor,
                target: Some(Target::account(request.account_id)),
                meta: &meta,
                details: serde_json::json!({ "request": request.id.to_string(), "email": request.email }),
            }).await?;
            mails::admins_outcome(&mut tx, now, &org, &request, MigrationStatus::Expired).await?;
            summary.expired += 1;
        }
        tx.commit().await?;
    }
    loop {
        let mut tx = db.begin().await?;
        let mut due =
            store::due_reminders(&mut tx, db.dialect(), now, REMINDER_LEAD_MS, BATCH).await?;
        if due.is_empty() {
            tx.rollback().await?;
            break;
        }
        due.sort_by_key(|r| r.org_id);
        for request in due {
            // The first link is not stored in clear, so the reminder carries its own link; both
            // work until the request is decided, resent or expires.
            let token = secrets::new_token("");
            if !store::set_reminded(&mut tx, request.id, &secrets::hash_token(&token), now).await? {
                continue;
            }
            let Some(org) = crate::orgs::store::by_id(&mut *tx, request.org_id).await? else {
                continue;
            };
            audit::record(&mut tx, now, audit::Event {
                org_id: Some(org.id),
                action: AuditAction::MigrationReminded,
                actor: &actor,
                target: Some(Target::account(request.account_id)),
                meta: &meta,
                details: serde_json::json!({ "request": request.id.to_string(), "email": request.email }),
            }).await?;
            mails::user_asked(
                &mut tx,
                now,
                &org,
                &request,
                &super::link(base_url, &token),
                true,
            )
            .await?;
            summary.reminded += 1;
        }
        tx.commit().await?;
    }
    Ok(summary)
}

/// Starts the job: every minute.
pub fn spawn(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let base_url = state.base_url();
        loop {
            match run_once(&state.db, state.clock.now_ms(), &base_url).await {
                Ok(summary) if summary != Summary::default() => {
                    tracing::info!(?summary, "migration requests expired or reminded");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "migration expiry job failed"),
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
