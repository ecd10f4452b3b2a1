//! Background jobs that run inside the server process: SQLite's WAL checkpoints, the outbox
//! sender, domain re-verification, invitation expiry, billing periods and invoices, session
//! cleanup, audit retention and the audit webhook.
//! Each is safe with several server instances (claims and leases live in the database).

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::AppState;
use crate::mail::sender::{self, Smtp};
use crate::web::session;

/// Starts every job; abort the handles to stop them.
pub fn spawn_all(state: &AppState) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut jobs = vec![state.db.checkpoint_in_background()];
    match &state.config.smtp_url {
        Some(url) => {
            let id_domain = url::Url::parse(&state.base_url())
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "nulab-pass.localhost".to_string());
            let smtp = Smtp::new(url, &state.config.mail_from, &id_domain)?;
            let poll = Duration::from_millis(state.config.outbox_poll_ms.max(10));
            jobs.push(tokio::spawn(sender::run(
                state.db.clone(),
                state.clock.clone(),
                smtp,
                poll,
            )));
        }
        // In development mode (the demo) that is the point: /dev/mail shows the outbox. A
        // deployment without SMTP sends nothing, which deserves a warning.
        None if state.config.dev => tracing::info!(
            "NULAB_PASS_SMTP_URL is not set: email stays in the outbox, shown at /dev/mail"
        ),
        None => tracing::warn!(
            "NULAB_PASS_SMTP_URL is not set: email stays in the outbox and nobody receives it \
             (set it to an SMTP server's URL; with --dev, /dev/mail shows the outbox)"
        ),
    }
    jobs.push(crate::domains::spawn_recheck(state));
    jobs.push(crate::oidc::spawn_cleanup(state));
    jobs.push(crate::oidc::backchannel::spawn(state));
    jobs.push(tokio::spawn(crate::saml::jobs::run(state.clone())));
    jobs.push(crate::migration::jobs::spawn(state));
    jobs.push(tokio::spawn(crate::audit::webhook::run(state.clone())));
    jobs.push(tokio::spawn(crate::audit::retention::run(state.clone())));
    let (db, clock) = (state.db.clone(), state.clock.clone());
    jobs.push(tokio::spawn(async move {
        loop {
            match crate::orgs::invitations::expire_due(&db, clock.now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "invitations expired"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "invitation expiry failed"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }));
    jobs.push(crate::billing::jobs::spawn(state));
    let db = state.db.clone();
    let clock = state.clock.clone();
    jobs.push(tokio::spawn(async move {
        loop {
            match session::delete_expired(&db, clock.now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "session cleanup failed"),
            }
            match crate::limits::forget_stale(&db, clock.now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "spent rate-limit counts removed"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "rate-limit cleanup failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }));
    Ok(jobs)
}
