//! HTTP plumbing every capability shares: errors, CSRF, the session store, extractors that
//! prove nothing about who the caller is, and the layout data every page shares. The router
//! itself is assembled in `crate::app`.

pub mod csrf;
pub mod error;
pub mod extract;
pub mod session;

use tower_sessions::Session;

use error::AppError;

/// Data the page layout needs: who is signed in and the form token.
#[derive(Clone, Debug)]
pub struct Layout {
    pub signed_in: Option<String>,
    pub csrf: String,
}

impl Layout {
    pub async fn new(
        session: &Session,
        account: Option<&dyn session::SessionAccount>,
    ) -> Result<Layout, AppError> {
        Ok(Layout {
            signed_in: account.map(|a| a.email().to_string()),
            csrf: csrf::token(session).await?,
        })
    }
}

/// Every API error: `{"error": code, "message": text}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `last_admin`.
    pub error: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

const FLASH_KEY: &str = "flash";

/// Keeps a one-time notice for the next page this browser opens (after a redirect).
pub async fn flash(session: &Session, message: impl Into<String>) -> Result<(), AppError> {
    session.insert(FLASH_KEY, message.into()).await?;
    Ok(())
}

/// Takes the one-time notice, if any.
pub async fn take_flash(session: &Session) -> Result<Option<String>, AppError> {
    Ok(session.remove::<String>(FLASH_KEY).await?)
}
