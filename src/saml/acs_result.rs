//! How the ACS answers: the error page that names the failed rule, the "test connection" page
//! with what the assertion said (attribute values redacted), and the audit events of both.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::acs::{Reason, Rejection, Verified};
use super::{Connection, mapping};
use crate::AppState;
use crate::accounts::Account;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::limits;
use crate::web::Layout;
use crate::web::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "sso_error.html")]
struct SsoErrorPage {
    layout: Layout,
    code: &'static str,
    message: &'static str,
    not_managed: bool,
    /// Where the sign-in was going (a product's authorization request, an invitation): the
    /// links back to sign-in keep it.
    next: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "sso_test.html")]
struct SsoTestPage {
    layout: Layout,
    connection_name: String,
    org_slug: String,
    outcome: String,
    code: Option<&'static str>,
    detail: String,
    facts: Vec<(String, String)>,
}

/// What a test sign-in shows the admin: the assertion's facts, every attribute with its values
/// redacted beyond their first characters and what the connection uses it for, and the account.
pub(super) fn facts(
    verified: &Verified,
    account: Option<&Account>,
    connection: &Connection,
) -> Vec<(String, String)> {
    let mut facts = vec![
        ("Issuer".to_string(), verified.issuer.clone()),
        (
            "NameID".to_string(),
            verified.name_id.clone().unwrap_or_else(|| "(none)".into()),
        ),
        (
            "NameID format".to_string(),
            verified
                .name_id_format
                .clone()
                .unwrap_or_else(|| "(none)".into()),
        ),
        (
            "Assertion signed".to_string(),
            if verified.assertion_signed {
                "yes".into()
            } else {
                "no (the Response is)".into()
            },
        ),
    ];
    let settings = &connection.settings;
    facts.push((
        "Email read from".to_string(),
        settings
            .email_attribute
            .as_deref()
            .map(|a| format!("attribute {a}"))
            .unwrap_or_else(|| "the NameID".into()),
    ));
    facts.extend(verified.attributes.iter().map(|(name, values)| {
        let shown: Vec<String> = values.iter().map(|v| mapping::redact(v)).collect();
        let uses = mapping::uses(name, settings);
        let used = if uses.is_empty() {
            String::new()
        } else {
            format!(" (used for the {})", uses.join(" and "))
        };
        (
            format!("Attribute {name}"),
            format!("{}{used}", shown.join(", ")),
        )
    }));
    facts.push((
        "Display name".to_string(),
        mapping::display_name(verified, settings)
            .map(|n| mapping::redact(&n))
            .unwrap_or_else(|| "(not mapped, or no value came)".into()),
    ));
    if let Some(account) = account {
        facts.push((
            "Account".to_string(),
            format!("{} ({})", account.email, account.kind.label()),
        ));
    }
    facts
}

pub async fn audit_connection(
    tx: &mut crate::db::Tx,
    connection: &Connection,
    action: AuditAction,
    actor: &Actor,
    meta: &RequestMeta,
    now: i64,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let event = connection_event(connection, action, actor, meta, details);
    audit::record(tx, now, event).await
}

/// An event of `connection` (its organization, the connection as the target and in the
/// details).
pub fn connection_event<'a>(
    connection: &Connection,
    action: AuditAction,
    actor: &'a Actor,
    meta: &'a RequestMeta,
    mut details: serde_json::Value,
) -> audit::Event<'a> {
    details["connection_id"] = serde_json::json!(connection.id.to_string());
    audit::Event {
        org_id: Some(connection.org_id),
        action,
        actor,
        target: Some(Target {
            kind: "saml_connection",
            id: connection.id.to_string(),
        }),
        meta,
        details,
    }
}

/// Audits a refused response in its own transaction (the sign-in's was rolled back).
pub(super) async fn record_failure(
    state: &AppState,
    connection: Option<&Connection>,
    rejection: &Rejection,
    meta: &RequestMeta,
    now: i64,
) -> Result<(), AppError> {
    tracing::warn!(reason = rejection.reason.code(), "SSO sign-in refused");
    let mut tx = state.db.begin().await?;
    // Counted towards the client address's limit of failed ACS posts.
    let buckets: Vec<_> = limits::Bucket::address(limits::Limit::AcsFailuresPerAddress, meta)
        .map(|b| b.about(connection.map(|c| c.org_id), None))
        .into_iter()
        .collect();
    limits::count(&mut tx, &state.config.limits, now, &buckets, meta).await?;
    let details =
        serde_json::json!({ "reason": rejection.reason.code(), "detail": rejection.detail });
    let actor = Actor::Anonymous;
    match connection {
        Some(c) => {
            audit_connection(
                &mut tx,
                c,
                AuditAction::SsoSigninFailed,
                &actor,
                meta,
                now,
                details,
            )
            .await?
        }
        None => {
            audit::record(
                &mut tx,
                now,
                audit::Event {
                    org_id: None,
                    action: AuditAction::SsoSigninFailed,
                    actor: &actor,
                    target: None,
                    meta,
                    details,
                },
            )
            .await?
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The page that names the failed rule. It leaves the browser's session alone: any website can
/// post to the ACS, and a refusal must never replace or end the session of the person it lands on.
/// `return_to` is where this browser's own request was going (its links back to sign-in go on
/// there); an unsolicited response has none.
pub(super) async fn refuse(reason: Reason, return_to: Option<&str>) -> Result<Response, AppError> {
    let status = match reason {
        Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::Malformed | Reason::DtdForbidden => StatusCode::BAD_REQUEST,
        Reason::UnknownConnection => StatusCode::NOT_FOUND,
        _ => StatusCode::FORBIDDEN,
    };
    let page = SsoErrorPage {
        layout: Layout::sessionless(),
        code: reason.code(),
        message: reason.message(),
        not_managed: reason == Reason::NotManaged,
        next: crate::accounts::pages::local_path(return_to),
    };
    Ok((status, page).into_response())
}

/// What a test run found.
pub(super) struct TestOutcome {
    pub outcome: &'static str,
    pub code: Option<&'static str>,
    pub detail: String,
    pub facts: Vec<(String, String)>,
}

pub(super) async fn test_page(
    state: &AppState,
    session: &Session,
    connection: &Connection,
    found: TestOutcome,
) -> Result<Response, AppError> {
    let org = crate::orgs::store::by_id(state.db.pool(), connection.org_id).await?;
    Ok(SsoTestPage {
        layout: Layout::new(session, None).await?,
        connection_name: connection.name.clone(),
        org_slug: org.map(|o| o.slug).unwrap_or_default(),
        outcome: found.outcome.to_string(),
        code: found.code,
        detail: found.detail,
        facts: found.facts,
    }
    .into_response())
}
