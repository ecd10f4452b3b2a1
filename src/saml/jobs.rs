//! Background work of SSO connections: metadata refresh from URLs (certificate changes are
//! audited and the admins told), certificate-expiry warnings 30 and 7 days ahead, and purging
//! expired requests and replay entries. Safe with several instances (claims with a lease).

use std::time::Duration;

use super::{Connection, SamlError, store};
use crate::AppState;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::clock::DAY_MS;
use crate::mail::{self, Mail, MailAction};

const JOB: Actor = Actor::System("saml.metadata");

/// Runs forever: every minute, refresh what is due, warn about expiring certificates, purge.
pub async fn run(state: AppState) {
    loop {
        if let Err(err) = pass(&state).await {
            tracing::warn!(error = %err, "SSO maintenance pass failed");
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// One maintenance pass (tests call it with a moved clock).
pub async fn pass(state: &AppState) -> Result<(), SamlError> {
    let now = state.clock.now_ms();
    for connection in
        store::claim_refresh(state.db.pool(), state.db.dialect(), now, 5 * 60 * 1000).await?
    {
        let id = connection.id;
        if let Err(err) = refresh_one(state, connection, now).await {
            tracing::warn!(connection = %id, error = %err, "metadata refresh failed");
        }
    }
    warn_expiring(state, now).await?;
    store::purge(state.db.pool(), now).await?;
    super::slo_store::purge(state.db.pool(), now).await?;
    super::acs_grant::purge(state.db.pool(), now).await?;
    Ok(())
}

/// Fetches the connection's metadata URL and applies it; returns whether the certificates
/// changed. A failed fetch is recorded on the connection and keeps the old metadata.
pub async fn refresh_one(
    state: &AppState,
    mut connection: Connection,
    now: i64,
) -> Result<bool, SamlError> {
    let Some(url) = connection.metadata_url.clone() else {
        return Ok(false);
    };
    let loaded = super::load_metadata(
        None,
        Some(&url),
        Some(&connection.idp_entity_id),
        state.config.dev,
    )
    .await;
    let mut tx = state.db.begin().await?;
    store::set_next_refresh(&mut tx, connection.id, now + super::fetch::REFRESH_MS).await?;
    let (meta, xml) = match loaded {
        Ok(ok) => ok,
        Err(err) => {
            connection.metadata_error = Some(err.to_string());
            connection.updated_at = now;
            store::update(&mut tx, &connection).await?;
            record(
                &mut tx,
                &connection,
                AuditAction::SamlMetadataRefreshFailed,
                now,
                serde_json::json!({ "error": err.to_string() }),
            )
            .await?;
            tx.commit().await?;
            return Err(err);
        }
    };
    let before: Vec<String> = connection
        .certificates
        .iter()
        .map(|c| c.fingerprint.clone())
        .collect();
    super::apply_metadata(&mut connection, meta, xml, now);
    connection.updated_at = now;
    let after: Vec<String> = connection
        .certificates
        .iter()
        .map(|c| c.fingerprint.clone())
        .collect();
    store::update(&mut tx, &connection).await?;
    let changed = before != after;
    if changed {
        record(
            &mut tx,
            &connection,
            AuditAction::SamlCertificatesChanged,
            now,
            serde_json::json!({ "from": before, "to": after }),
        )
        .await?;
        notify(&mut tx, state, &connection, now, "The signing certificates of your SSO connection changed", vec![format!(
            "The metadata of {} ({}) now lists {} signing certificate(s). Sign-in keeps working if your IdP signs with one of them.",
            connection.name, connection.idp_entity_id, after.len()
        )])
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Emails the admins once per certificate and threshold (30 and 7 days before expiry).
async fn warn_expiring(state: &AppState, now: i64) -> Result<(), SamlError> {
    for id in store::all_ids(state.db.pool()).await? {
        let mut tx = state.db.begin().await?;
        let Some(mut connection) = store::by_id(&mut *tx, id).await? else {
            continue;
        };
        let mut sent = false;
        for cert in connection.certificates.clone() {
            let days_left = (cert.not_after - now) / DAY_MS;
            for threshold in [30i64, 7] {
                let warned = connection
                    .expiry_warnings
                    .entry(cert.fingerprint.clone())
                    .or_default();
                if days_left <= threshold
                    && !warned.contains(&threshold)
                    && cert.not_after > now - DAY_MS
                {
                    warned.push(threshold);
                    sent = true;
                    notify(&mut tx, state, &connection, now, "An SSO signing certificate expires soon", vec![format!(
                        "The certificate \u{201c}{}\u{201d} of {} expires in {} day(s). Add the new certificate at your IdP and here before then, or sign-in will stop.",
                        cert.subject, connection.name, days_left.max(0)
                    )])
                    .await?;
                }
            }
        }
        if sent {
            store::update(&mut tx, &connection).await?;
            record(
                &mut tx,
                &connection,
                AuditAction::SamlCertificateExpiryWarned,
                now,
                serde_json::json!({ "warnings": connection.expiry_warnings }),
            )
            .await?;
            connection.updated_at = now;
        }
        tx.commit().await?;
    }
    Ok(())
}

async fn record(
    tx: &mut crate::db::Tx,
    connection: &Connection,
    action: AuditAction,
    now: i64,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(connection.org_id),
            action,
            actor: &JOB,
            target: Some(Target {
                kind: "saml_connection",
                id: connection.id.to_string(),
            }),
            meta: &RequestMeta::default(),
            details,
        },
    )
    .await
}

async fn notify(
    tx: &mut crate::db::Tx,
    state: &AppState,
    connection: &Connection,
    now: i64,
    subject: &str,
    paragraphs: Vec<String>,
) -> Result<(), SamlError> {
    let org = crate::orgs::store::by_id(&mut **tx, connection.org_id).await?;
    let slug = org.map(|o| o.slug).unwrap_or_default();
    for to in crate::orgs::store::admin_emails(&mut **tx, connection.org_id).await? {
        let mail = Mail {
            kind: crate::mail::MailKind::SamlConnectionNotice,
            to,
            subject: subject.to_string(),
            paragraphs: paragraphs.clone(),
            action: Some(MailAction {
                label: "Open the SSO settings".to_string(),
                url: format!("{}/admin/{slug}/sso", state.base_url()),
            }),
            closing: vec![],
        };
        mail::enqueue(tx, now, &mail).await?;
    }
    Ok(())
}
