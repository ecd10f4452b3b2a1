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

/// The value of the request cookie `name`, parsed by the `cookie` crate (every `Cookie` header,
/// `;`-separated pairs); `None` when it is absent.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(tower_sessions::cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn cookie_value_reads_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=two"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("nulab_pass_sso=xyz"),
        );
        assert_eq!(super::cookie_value(&headers, "b").as_deref(), Some("two"));
        assert_eq!(
            super::cookie_value(&headers, "nulab_pass_sso").as_deref(),
            Some("xyz")
        );
        assert_eq!(super::cookie_value(&headers, "c"), None);
    }
}
