//! What an organization's sign-in policies ask of a Nulab-account admin before its admin area
//! opens. An organization's "SSO required" and session lifetime bind its managed accounts in
//! full (at sign-in and on every request, `accounts::session`); a Nulab account belongs to its
//! owner, so for it they gate only that organization: the account page, the other
//! organizations and the products stay open whatever one organization decides.

use tower_sessions::Session;

use super::Org;
use crate::AppState;
use crate::accounts::{self, Account, AccountKind};
use crate::audit::{self, AuditAction, RequestMeta, Target};
use crate::mail::{self, Mail, MailAction};
use crate::web::error::AppError;
use crate::web::session;

const HOUR_MS: i64 = 3_600_000;
/// The organizations whose admin area this session already entered as a break-glass admin
/// (`org@auth_at`, so each sign-in counts on its own).
const BREAK_GLASS_KEY: &str = "break_glass_orgs";

/// Admits a signed-in admin of `org` to its admin area, or says what the organization needs
/// first: a sign-in within its session lifetime, and for "SSO required" a second factor used
/// at this sign-in (break-glass: the first entry per sign-in is audited in the organization and
/// emailed to its other admins).
pub async fn admit_admin(
    state: &AppState,
    session: &Session,
    account: &Account,
    org: &Org,
    meta: &RequestMeta,
    next: &str,
) -> Result<(), AppError> {
    if account.kind == AccountKind::Managed {
        // Its own organization: the policies already apply to the whole session.
        return Ok(());
    }
    let now = state.clock.now_ms();
    let auth_at = session.get::<i64>(session::AUTH_AT_KEY).await?.unwrap_or(0);
    if let Some(hours) = accounts::store::lifetime_hours(state.db.pool(), org.id).await?
        && now >= auth_at + hours * HOUR_MS
    {
        return Err(AppError::SignInRequired {
            next: next.to_string(),
        });
    }
    let policy = accounts::store::policy(state.db.pool(), org.id).await?;
    if policy.password_sign_in {
        return Ok(());
    }
    if session
        .get::<String>(session::SECOND_FACTOR_KEY)
        .await?
        .is_none()
    {
        return Err(AppError::client(
            axum::http::StatusCode::FORBIDDEN,
            "second_factor_required",
            format!(
                "{} requires single sign-on. Its admins who sign in with a Nulab account need two-step verification for its admin area: set it up on your account page (Two-step verification), then sign in again with your password and code. Your own account and your other organizations are not affected.",
                org.name
            ),
        ));
    }
    let mut entered: Vec<String> = session.get(BREAK_GLASS_KEY).await?.unwrap_or_default();
    // Keyed by the sign-in's time too: a later sign-in in this browser is a new entry.
    let org_key = format!("{}@{auth_at}", org.id);
    if entered.contains(&org_key) {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    break_glass(&mut tx, now, account, org, meta, &state.base_url()).await?;
    tx.commit().await?;
    entered.push(org_key);
    session.insert(BREAK_GLASS_KEY, entered).await?;
    Ok(())
}

/// Records a break-glass entry in the organization and tells its other admins.
async fn break_glass(
    tx: &mut crate::db::Tx,
    now: i64,
    account: &Account,
    org: &Org,
    meta: &RequestMeta,
    base_url: &str,
) -> Result<(), AppError> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::AccountBreakGlassSignedIn,
            actor: &account.actor(),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({ "email": account.email, "org": org.slug, "ip": meta.ip }),
        },
    )
    .await?;
    for to in super::store::admin_emails(&mut **tx, org.id).await? {
        if to.eq_ignore_ascii_case(&account.email) {
            continue;
        }
        let mail = Mail {
            kind: mail::MailKind::AccountBreakGlassSignedIn,
            to,
            subject: format!(
                "{} opened {}'s admin area without single sign-on",
                account.email, org.name
            ),
            paragraphs: vec![
                format!(
                    "{} ({}), an admin of {}, signed in with a password and a second factor instead of single sign-on and opened the organization's admin area.",
                    account.name, account.email, org.name
                ),
                "This break-glass access exists so that the organization is never locked out when its IdP fails. If you did not expect it, review the audit log and the admin's account now.".to_string(),
            ],
            action: Some(MailAction {
                label: "Open the members page".to_string(),
                url: format!("{base_url}/admin/{}/members", org.slug),
            }),
            closing: vec![format!(
                "From {}",
                meta.ip.as_deref().unwrap_or("an unknown address")
            )],
        };
        mail::enqueue(tx, now, &mail)
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    Ok(())
}
