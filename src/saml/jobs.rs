//! Background work of SSO connections: metadata refresh from URLs (certificate changes are
//! audited and the admins told), certificate-expiry warnings 30 and 7 days ahead, and purging
//! expired requests and replay entries. Safe with several instances (claims with a lease).

use std::time::Duration;

use super::{Connection, SamlError, cert_hold, store};
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

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The certificates are the same (other metadata applied).
    Unchanged,
    /// The certificates changed, and the new metadata was signed by a key already trusted.
    Changed,
    /// The certificates changed without such a signature: held for an admin's decision.
    Held,
}

/// Fetches the connection's metadata URL and applies it, or holds a certificate change that
/// no trusted key signed (`cert_hold`). A failed fetch is recorded on the connection and keeps
/// the old metadata.
pub async fn refresh_one(
    state: &AppState,
    mut connection: Connection,
    now: i64,
) -> Result<Refreshed, SamlError> {
    let Some(url) = connection.metadata_url.clone() else {
        return Ok(Refreshed::Unchanged);
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
    let before = cert_hold::fingerprints(&connection.certificates);
    let meta = if cert_hold::fingerprints(&meta.certificates) == before {
        meta
    } else if let Some(signed) = cert_hold::signed_by_trusted(&xml, &connection) {
        signed
    } else {
        held(&mut tx, state, &mut connection, &meta, &xml, now).await?;
        tx.commit().await?;
        return Ok(Refreshed::Held);
    };
    super::apply_metadata(&mut connection, meta, xml, now);
    connection.updated_at = now;
    store::update(&mut tx, &connection).await?;
    let after = cert_hold::fingerprints(&connection.certificates);
    let changed = before != after;
    if changed {
        record(
            &mut tx,
            &connection,
            AuditAction::SamlCertificatesChanged,
            now,
            serde_json::json!({ "from": before, "to": after, "signed_by_trusted_key": true }),
        )
        .await?;
        notify(&mut tx, state, &connection, now, "The signing certificates of your SSO connection changed", vec![format!(
            "The metadata of {} ({}) now lists {} signing certificate(s); it was signed by a key the connection already trusted. Sign-in keeps working if your IdP signs with one of them.",
            connection.name, connection.idp_entity_id, after.len()
        )])
        .await?;
    }
    tx.commit().await?;
    Ok(if changed {
        Refreshed::Changed
    } else {
        Refreshed::Unchanged
    })
}

/// Keeps the connection as it is (but for the fetch time) and holds the new metadata; a
/// change not held or rejected before is audited and emailed to the admins.
async fn held(
    tx: &mut crate::db::Tx,
    state: &AppState,
    connection: &mut Connection,
    meta: &super::metadata::IdpMetadata,
    xml: &str,
    now: i64,
) -> Result<(), SamlError> {
    connection.metadata_fetched_at = Some(now);
    connection.metadata_error = None;
    connection.updated_at = now;
    store::update(tx, connection).await?;
    if !cert_hold::hold(tx, connection, xml, &meta.certificates, now).await? {
        return Ok(());
    }
    let from = cert_hold::fingerprints(&connection.certificates);
    let to = cert_hold::fingerprints(&meta.certificates);
    record(
        tx,
        connection,
        AuditAction::SamlCertificatesHeld,
        now,
        serde_json::json!({ "from": from, "to": to }),
    )
    .await?;
    let subjects: Vec<String> = meta
        .certificates
        .iter()
        .map(|c| format!("{} (SHA-256 {})", c.subject, &c.fingerprint[..16]))
        .collect();
    notify(tx, state, connection, now, "A certificate change of your SSO connection waits for your approval", vec![
        format!(
            "The metadata of {} ({}) now lists other signing certificates: {}. It was not signed by a key the connection already trusts, so the change is held: sign-in keeps using the current certificates.",
            connection.name, connection.idp_entity_id, subjects.join(", ")
        ),
        "If your IdP's administrators rolled its key, approve the change on the SSO page; if nobody did, reject it and check where the metadata URL leads.".to_string(),
    ])
    .await
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
