//! The one error type at the web edge: capability errors convert into it, and it renders as a
//! page (`AppError`) or as JSON (`ApiError`). 5xx responses show only an error id, which is
//! also in the log next to the real cause.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

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
    /// Too many requests: 429 with `Retry-After` (seconds), a stable code and a sentence.
    Throttled {
        code: &'static str,
        message: String,
        retry_after_secs: i64,
    },
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
            AppError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown for a client error, `None` for the others.
    pub fn user_message(&self) -> Option<&str> {
        match self {
            AppError::Client { message, .. } | AppError::Throttled { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The seconds to wait of a 429, `None` for the others.
    pub fn retry_after_secs(&self) -> Option<i64> {
        match self {
            AppError::Throttled {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
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
            AppError::Throttled {
                message,
                retry_after_secs,
                ..
            } => {
                let status = StatusCode::TOO_MANY_REQUESTS;
                let page = render_error(status, "Too many attempts", &message, None);
                with_retry_after(page, retry_after_secs)
            }
            AppError::Client {
                status, message, ..
            } => render_error(
                status,
                title_of(status),
                &super::form::sentence(&message),
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

/// The error page's heading for a status, in words rather than the HTTP reason phrase.
fn title_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "This cannot be done now",
        410 => "This link can no longer be used",
        413 => "Too large",
        429 => "Too many attempts",
        _ => "This did not work",
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

/// Adds `Retry-After` in whole seconds (at least one).
fn with_retry_after(mut res: Response, secs: i64) -> Response {
    res.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs.max(1)),
    );
    res
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
            AppError::Throttled {
                code,
                message,
                retry_after_secs,
            } => {
                let body = Json(serde_json::json!({ "error": code, "message": message }));
                let res = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
                return with_retry_after(res, retry_after_secs);
            }
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

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        AppError::Internal(err.into())
    }
}

/// Turns a page error into a redirect-free `Response` (for handlers that re-render a form).
pub fn redirect(to: &str) -> Response {
    Redirect::to(to).into_response()
}
