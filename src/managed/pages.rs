//! Admin pages of managed accounts: creation (one or from a CSV file), the account page with
//! its actions, and the password policy.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::csv::BulkReport;
use super::{ManagedChanges, NewManaged};
use crate::AppState;
use crate::accounts::policy::PasswordPolicy;
use crate::accounts::{self, Account, AccountKind};
use crate::ids::AccountId;
use crate::orgs::extract::OrgAdmin;
use crate::orgs::pages::{MemberForms, MembersQuery, render_members};
use crate::orgs::{Member, Org, Role};
use crate::web::error::AppError;
use crate::web::extract::{PageForm, UploadedText};
use crate::web::form::FormState;
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/managed-accounts", post(create))
        .route("/admin/{org}/managed-accounts/import", post(import))
        .route("/admin/{org}/members/{account_id}", get(account_page))
        .route(
            "/admin/{org}/managed-accounts/{account_id}/{action}",
            post(action),
        )
        .route(
            "/admin/{org}/password-policy",
            get(policy_page).post(save_policy),
        )
}

fn members_url(org: &Org) -> String {
    format!("/admin/{}/members", org.slug)
}

#[derive(Deserialize)]
struct CreateForm {
    email: String,
    name: String,
    role: String,
    #[serde(default)]
    password: String,
}

async fn create(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<CreateForm>,
) -> Result<Response, AppError> {
    let org = admin.scope.org().clone();
    let result = async {
        let role = Role::parse(&form.role).ok_or(super::ManagedError::InvalidRole)?;
        let new = NewManaged {
            email: form.email.clone(),
            name: form.name.clone(),
            role: Some(role),
            password: Some(form.password.clone()),
        };
        let hash =
            super::prepare_password(state.db.pool(), org.id, new.password.as_deref()).await?;
        let mut tx = state.db.begin().await?;
        let account = super::create(
            &mut tx,
            state.clock.now_ms(),
            &admin.scope,
            &new,
            hash.as_deref(),
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, super::ManagedError>((account, hash.is_some()))
    }
    .await;
    match result {
        Ok((account, with_password)) => {
            let how = if with_password {
                "they must change the initial password at first sign-in"
            } else {
                "an activation link was emailed"
            };
            flash(
                &admin.session,
                format!("Managed account {} created; {how}.", account.email),
            )
            .await?;
            Ok(Redirect::to(&members_url(&org)).into_response())
        }
        Err(err) => {
            let err = AppError::from(err);
            let status = err.status();
            // What was typed comes back (never the password), the error beside its field.
            let create = FormState::typed(&[
                ("email", &form.email),
                ("name", &form.name),
                ("role", &form.role),
            ])
            .with_error(err, create_field)?;
            let forms = MemberForms {
                create,
                ..MemberForms::default()
            };
            let mut response =
                render_members(&state, &admin, &MembersQuery::default(), forms, None).await?;
            *response.status_mut() = status;
            Ok(response)
        }
    }
}

/// The field of the "create a managed account" form an error code concerns.
fn create_field(code: &str) -> Option<&'static str> {
    match code {
        "invalid_email" | "email_taken" | "domain_not_verified" | "public_domain" => Some("email"),
        "invalid_name" => Some("name"),
        "weak_password" => Some("password"),
        "invalid_role" => Some("role"),
        _ => None,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/import_report.html")]
struct ImportPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    report: BulkReport,
}

async fn import(
    State(state): State<AppState>,
    admin: OrgAdmin,
    UploadedText(text): UploadedText,
) -> Result<ImportPage, AppError> {
    let clock = state.clock.clone();
    let report = super::csv::import(
        &state.db,
        || clock.now_ms(),
        &admin.scope,
        &text,
        &state.base_url(),
    )
    .await?;
    Ok(ImportPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "members",
        notice: Some(crate::web::Notice {
            text: format!("{} created, {} failed.", report.created, report.failed),
            warning: report.failed > 0,
        }),
        error: None,
        report,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/account.html")]
struct AccountPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    member: Member,
    account: Account,
    password_set: bool,
}

async fn account_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<AccountPage, AppError> {
    let org = admin.scope.org().clone();
    let not_found = || AppError::not_found("that account is not a member of this organization");
    let id = AccountId::parse(&id).ok_or_else(not_found)?;
    let member = crate::orgs::store::member(state.db.pool(), org.id, id)
        .await?
        .ok_or_else(not_found)?;
    let account = accounts::store::by_id(state.db.pool(), id)
        .await?
        .ok_or_else(not_found)?;
    let password_set = accounts::store::password_hash(state.db.pool(), id)
        .await?
        .is_some();
    Ok(AccountPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org,
        section: "members",
        notice: take_flash(&admin.session).await?,
        error: None,
        member,
        account,
        password_set,
    })
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    force_change: Option<String>,
    name: Option<String>,
    email: Option<String>,
    role: Option<String>,
}

async fn action(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id, action)): Path<(String, String, String)>,
    PageForm(form): PageForm<ActionForm>,
) -> Result<Response, AppError> {
    let org = admin.scope.org().clone();
    let id = AccountId::parse(&id).ok_or_else(|| {
        AppError::not_found("no managed account with this id belongs to this organization")
    })?;
    let now = state.clock.now_ms();
    if action == "reset-password" {
        reset_allowed(&state, now, id).await?;
    }
    let mut tx = state.db.begin().await?;
    let notice = match action.as_str() {
        "suspend" => format!(
            "{} is suspended and signed out everywhere.",
            super::suspend(&mut tx, now, &admin.scope, id).await?.email
        ),
        "reactivate" => format!(
            "{} can sign in again.",
            super::reactivate(&mut tx, now, &admin.scope, id)
                .await?
                .email
        ),
        "sign-out" => format!(
            "{} sessions ended.",
            super::sign_out_everywhere(&mut tx, now, &admin.scope, id).await?
        ),
        "reset-password" => {
            let force = form.force_change.is_some();
            super::reset_password(&mut tx, now, &admin.scope, id, force, &state.base_url()).await?;
            "A password-reset link was emailed.".to_string()
        }
        "delete" => {
            super::delete(&mut tx, now, &admin.scope, id).await?;
            tx.commit().await?;
            flash(&admin.session, "The managed account was deleted.").await?;
            return Ok(Redirect::to(&members_url(&org)).into_response());
        }
        "update" => {
            let role = match form.role.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => Some(Role::parse(r).ok_or(super::ManagedError::InvalidRole)?),
                None => None,
            };
            let changes = ManagedChanges {
                name: form.name.clone(),
                email: form.email.clone(),
                role,
            };
            super::update(&mut tx, now, &admin.scope, id, &changes).await?;
            "The account was updated.".to_string()
        }
        _ => return Err(AppError::not_found("There is no page at this address.")),
    };
    tx.commit().await?;
    if action == "reset-password" {
        reset_sent(&state, now, id).await?;
    }
    flash(&admin.session, notice).await?;
    Ok(Redirect::to(&format!("/admin/{}/members/{id}", org.slug)).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/password_policy.html")]
struct PolicyPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    policy: PasswordPolicy,
    /// Admins who could still sign in if the IdP failed ("SSO required" needs one).
    break_glass_admins: Vec<String>,
}

async fn policy_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<PolicyPage, AppError> {
    Ok(PolicyPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        section: "password-policy",
        notice: take_flash(&admin.session).await?,
        error: None,
        policy: crate::accounts::store::policy(state.db.pool(), admin.scope.org().id).await?,
        break_glass_admins: crate::sign_in::break_glass_admins(
            state.db.pool(),
            admin.scope.org().id,
        )
        .await?,
    })
}

#[derive(Deserialize)]
struct PolicyForm {
    min_length: String,
    max_age_days: String,
    require_three_classes: Option<String>,
    reject_common: Option<String>,
    password_sign_in: Option<String>,
}

async fn save_policy(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<PolicyForm>,
) -> Result<Response, AppError> {
    let number = |raw: &str, what: &str| {
        raw.trim()
            .parse::<i64>()
            .map_err(|_| AppError::bad_request(format!("the {what} must be a whole number")))
    };
    let policy = PasswordPolicy {
        min_length: number(&form.min_length, "minimum length")?,
        max_age_days: match form.max_age_days.trim() {
            "" => None,
            raw => Some(number(raw, "maximum password age")?),
        },
        require_three_classes: form.require_three_classes.is_some(),
        reject_common: form.reject_common.is_some(),
        password_sign_in: form.password_sign_in.is_some(),
    };
    let mut tx = state.db.begin().await?;
    let result = super::set_policy(&mut tx, state.clock.now_ms(), &admin.scope, &policy).await;
    match result {
        Ok(()) => {
            tx.commit().await?;
            flash(&admin.session, "The password policy was saved. It applies from each account's next password change.").await?;
            Ok(Redirect::to(&format!(
                "/admin/{}/password-policy",
                admin.scope.org().slug
            ))
            .into_response())
        }
        Err(err) => {
            tx.rollback().await?;
            let err = AppError::from(err);
            let status = err.status();
            let Some(message) = err.user_message().map(str::to_string) else {
                return Err(err);
            };
            let mut page = PolicyPage {
                layout: Layout::new(&admin.session, Some(&admin.account)).await?,
                org: admin.scope.org().clone(),
                section: "password-policy",
                notice: None,
                error: Some(message),
                policy,
                break_glass_admins: crate::sign_in::break_glass_admins(
                    state.db.pool(),
                    admin.scope.org().id,
                )
                .await?,
            }
            .into_response();
            *page.status_mut() = status;
            Ok(page)
        }
    }
}

/// Whether a member row is a managed account (for templates).
pub fn is_managed(member: &Member) -> bool {
    member.kind == AccountKind::Managed
}

/// Password-reset emails to one managed account are limited like every email sent on request
/// (`--limit-email-per-recipient`); past it the reset is refused (429) and nothing is sent.
pub(super) async fn reset_allowed(
    state: &AppState,
    now: i64,
    id: AccountId,
) -> Result<(), AppError> {
    let recipient = [crate::limits::resent("password_reset", id)];
    let meta = crate::audit::RequestMeta::default();
    match crate::limits::email_blocked(&state.db, now, &meta, &recipient).await? {
        Some(block) => Err(block.to_error(now)),
        None => Ok(()),
    }
}

/// Counts a password-reset email that was sent.
pub(super) async fn reset_sent(
    state: &AppState,
    now: i64,
    id: AccountId,
) -> Result<(), sqlx::Error> {
    let recipient = [crate::limits::resent("password_reset", id)];
    let meta = crate::audit::RequestMeta::default();
    crate::limits::email_sent(&state.db, &state.config.limits, now, &meta, &recipient).await
}
