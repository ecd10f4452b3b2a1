//! The one error type at the web edge: capability errors convert into it, and it renders as a
//! page (`AppError`) or as JSON (`ApiError`). 5xx responses show only an error id, which is
//! also in the log next to the real cause.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::accounts::AccountError;
use crate::api_tokens::TokenError;
use crate::domains::DomainError;
use crate::mail::MailError;
use crate::orgs::OrgError;

/// An error on its way to the user.
#[derive(Debug)]
pub enum AppError {
    /// Something the user can fix: a status, a stable code and a sentence.
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// The page needs a signed-in user; pages redirect to the sign-in page.
    SignInRequired { next: String },
    /// The user must do something elsewhere first (e.g. change a temporary password).
    RedirectTo(String),
    /// Our fault. Logged with an id; the user sees only the id.
    Internal(anyhow::Error),
}

impl AppError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::client(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::SignInRequired { .. } => StatusCode::UNAUTHORIZED,
            AppError::RedirectTo(_) => StatusCode::SEE_OTHER,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown for a client error, `None` for the others.
    pub fn user_message(&self) -> Option<&str> {
        match self {
            AppError::Client { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Logs an internal error once and returns the id to show.
    fn log_internal(err: &anyhow::Error) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        tracing::error!(error_id = %id, error = ?err, "request failed");
        id
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    error_id: Option<&'a str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::SignInRequired { next } => {
                let target = format!(
                    "/signin?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Redirect::to(&target).into_response()
            }
            AppError::RedirectTo(to) => Redirect::to(&to).into_response(),
            AppError::Client {
                status, message, ..
            } => render_error(
                status,
                status.canonical_reason().unwrap_or("Error"),
                &message,
                None,
            ),
            AppError::Internal(err) => {
                let id = Self::log_internal(&err);
                render_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request. Try again; if it keeps failing, give this error id to your administrator.",
                    Some(&id),
                )
            }
        }
    }
}

fn render_error(
    status: StatusCode,
    title: &str,
    message: &str,
    error_id: Option<&str>,
) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        error_id,
    };
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// The same error rendered as `{"error": code, "message": text}` for the JSON API.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self.0 {
            AppError::Client {
                status,
                code,
                message,
            } => (status, code, message),
            AppError::SignInRequired { .. } => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API token: Authorization: Bearer <token>".to_string(),
            ),
            AppError::RedirectTo(to) => (StatusCode::SEE_OTHER, "redirect", to),
            AppError::Internal(err) => {
                let id = AppError::log_internal(&err);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error (error id {id})"),
                )
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": code, "message": message })),
        )
            .into_response()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err)
    }
}

impl From<MailError> for AppError {
    fn from(err: MailError) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<AccountError> for AppError {
    fn from(err: AccountError) -> Self {
        use StatusCode as S;
        let (status, code) = match &err {
            AccountError::InvalidEmail(_) => (S::BAD_REQUEST, "invalid_email"),
            AccountError::EmailTaken => (S::CONFLICT, "email_taken"),
            AccountError::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            AccountError::WeakPassword(_) => (S::BAD_REQUEST, "weak_password"),
            AccountError::PasswordSignInDisabled => (S::FORBIDDEN, "password_sign_in_disabled"),
            AccountError::WrongCurrentPassword => (S::FORBIDDEN, "wrong_password"),
            AccountError::ManagedByOrg(_) => (S::FORBIDDEN, "managed_by_org"),
            AccountError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            AccountError::Suspended => (S::FORBIDDEN, "account_suspended"),
            AccountError::SignInPaused(_) => (S::TOO_MANY_REQUESTS, "sign_in_paused"),
            AccountError::SecondFactorNotSetUp(_) => (S::FORBIDDEN, "second_factor_not_set_up"),
            AccountError::LinkInvalid => (S::BAD_REQUEST, "link_invalid"),
            AccountError::LinkExpired => (S::GONE, "link_expired"),
            AccountError::LinkUsed => (S::GONE, "link_used"),
            AccountError::Mail(_) | AccountError::Hash(_) | AccountError::Db(_) => {
                return AppError::Internal(err.into());
            }
        };
        AppError::client(status, code, err.to_string())
    }
}

impl From<OrgError> for AppError {
    fn from(err: OrgError) -> Self {
        use StatusCode as S;
        let err = match err {
            OrgError::Account(inner) => return inner.into(),
            OrgError::Db(e) => return AppError::Internal(e.into()),
            other => other,
        };
        let (status, code) = match &err {
            OrgError::InvalidSlug(_) => (S::BAD_REQUEST, "invalid_slug"),
            OrgError::SlugTaken(_) => (S::CONFLICT, "slug_taken"),
            OrgError::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            OrgError::NoSuchAccount(_) => (S::NOT_FOUND, "account_not_found"),
            OrgError::EmailNotVerified(_) => (S::CONFLICT, "email_not_verified"),
            OrgError::AlreadyMember(_) => (S::CONFLICT, "already_member"),
            OrgError::ManagedElsewhere(_) => (S::CONFLICT, "managed_elsewhere"),
            OrgError::AccountSuspended(_) => (S::CONFLICT, "account_suspended"),
            OrgError::NotAMember => (S::NOT_FOUND, "not_a_member"),
            OrgError::LastAdmin => (S::CONFLICT, "last_admin"),
            OrgError::ManagedCannotLeave => (S::CONFLICT, "managed_cannot_leave"),
            OrgError::CreatorNotVerified => (S::FORBIDDEN, "email_not_verified"),
            OrgError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            OrgError::Account(_) | OrgError::Db(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        };
        AppError::client(status, code, err.to_string())
    }
}

impl From<TokenError> for AppError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::InvalidName => {
                AppError::client(StatusCode::BAD_REQUEST, "invalid_name", err.to_string())
            }
            TokenError::NotFound => {
                AppError::client(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            TokenError::Db(e) => AppError::Internal(e.into()),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(err: DomainError) -> Self {
        use StatusCode as S;
        let (status, code) = match &err {
            DomainError::InvalidDomain(_) => (S::BAD_REQUEST, "invalid_domain"),
            DomainError::IpAddress(_) => (S::BAD_REQUEST, "ip_address"),
            DomainError::NotJustADomain(_) => (S::BAD_REQUEST, "not_a_domain"),
            DomainError::EmailNotDomain(_) => (S::BAD_REQUEST, "email_not_domain"),
            DomainError::PublicMailDomain(_) => (S::BAD_REQUEST, "public_mail_domain"),
            DomainError::AlreadyAdded(_) => (S::CONFLICT, "domain_exists"),
            DomainError::VerifiedElsewhere(_) => (S::CONFLICT, "domain_verified_elsewhere"),
            DomainError::NotFound => (S::NOT_FOUND, "domain_not_found"),
            DomainError::Expired(_) => (S::CONFLICT, "domain_expired"),
            DomainError::NotExpired(..) => (S::CONFLICT, "domain_not_expired"),
            DomainError::InUse { .. } => (S::CONFLICT, "domain_in_use"),
            DomainError::DnsSetup(_) | DomainError::Mail(_) | DomainError::Db(_) => {
                return AppError::Internal(err.into());
            }
        };
        AppError::client(status, code, err.to_string())
    }
}

/// Turns a page error into a redirect-free `Response` (for handlers that re-render a form).
pub fn redirect(to: &str) -> Response {
    Redirect::to(to).into_response()
}

impl From<crate::managed::ManagedError> for AppError {
    fn from(err: crate::managed::ManagedError) -> Self {
        use crate::managed::ManagedError as E;
        use StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Account(inner) => return inner.into(),
            E::Org(inner) => return inner.into(),
            E::Mail(inner) => return inner.into(),
            E::Db(inner) => return inner.into(),
            E::DomainNotVerified(_) => (S::CONFLICT, "domain_not_verified"),
            E::NoFreeSeats { .. } => (S::CONFLICT, "no_free_seats"),
            E::NotFound => (S::NOT_FOUND, "not_found"),
            E::InvalidPolicy(_) => (S::BAD_REQUEST, "invalid_policy"),
            E::LastAdmin => (S::CONFLICT, "last_admin"),
            E::SeatsBelowUsage { .. } => (S::CONFLICT, "seats_below_usage"),
            E::InvalidSeats => (S::BAD_REQUEST, "invalid_seats"),
            E::NotAllowedForManaged(_) => (S::FORBIDDEN, "managed_by_org"),
            E::InvalidRole => (S::BAD_REQUEST, "invalid_role"),
            E::NoBreakGlassAdmin => (S::CONFLICT, "no_break_glass_admin"),
        };
        AppError::client(status, code, message)
    }
}

impl From<crate::saml::SamlError> for AppError {
    fn from(err: crate::saml::SamlError) -> Self {
        use crate::saml::SamlError as E;
        use StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Db(inner) => return inner.into(),
            E::Mail(inner) => return inner.into(),
            E::Metadata(_) => (S::BAD_REQUEST, "invalid_metadata"),
            E::Fetch(_) => (S::BAD_GATEWAY, "metadata_fetch_failed"),
            E::InvalidSetting(_) => (S::BAD_REQUEST, "invalid_setting"),
            E::DomainNotVerified(_) => (S::BAD_REQUEST, "domain_not_verified"),
            E::NotFound => (S::NOT_FOUND, "not_found"),
            E::DuplicateEntity(_) => (S::CONFLICT, "duplicate_connection"),
        };
        AppError::client(status, code, message)
    }
}
