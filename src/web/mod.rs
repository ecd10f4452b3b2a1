//! HTTP plumbing every capability shares: errors, CSRF, the session store, extractors that
//! prove nothing about who the caller is, and the layout data every page shares. The router
//! itself is assembled in `crate::app`.

pub mod csrf;
pub mod error;
pub mod extract;
pub mod form;
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
    /// The layout of a page that must leave the browser's session alone (no CSRF token is
    /// created, so no session cookie is set): the ACS's refusals, which any website can cause
    /// by posting to it.
    pub fn sessionless() -> Layout {
        Layout {
            signed_in: None,
            csrf: String::new(),
        }
    }

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

/// `target` when it is a path on this site, else `None`: every return target (`next=`, an SSO
/// `return_to`) passes here before it is followed. It must start with one `/` and hold no
/// backslash, no control character and no percent-encoded one of these (browsers drop tabs and
/// newlines and read `\` as `/`, so `/\t/evil.example` would become `//evil.example`), and
/// resolved against an origin it must stay on it.
pub fn local_path(target: &str) -> Option<String> {
    const BASE: &str = "http://local.invalid";
    let bad_char = |c: char| c == '\\' || c.is_control();
    let decoded =
        url::form_urlencoded::parse(format!("p={}", target.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
    let ok = target.len() <= 2048
        && target.starts_with('/')
        && [target, decoded.as_str()]
            .iter()
            .all(|t| !t.starts_with("//") && !t.starts_with("/\\") && !t.chars().any(bad_char));
    if !ok {
        return None;
    }
    let base = url::Url::parse(BASE).ok()?;
    let joined = base.join(target).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    let mut path = joined.path().to_string();
    if let Some(q) = joined.query() {
        path.push('?');
        path.push_str(q);
    }
    if let Some(f) = joined.fragment() {
        path.push('#');
        path.push_str(f);
    }
    Some(path)
}

const FLASH_KEY: &str = "notice";

/// A one-time notice shown at the top of the next page: what happened, and whether it asks the
/// reader to do something (a warning, drawn in amber) or only reports success.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub text: String,
    pub warning: bool,
}

impl Notice {
    /// A notice that asks for attention: an action that did not reach its goal.
    pub fn warning(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            warning: true,
        }
    }

    /// The CSS classes of its paragraph.
    pub fn class(&self) -> &'static str {
        if self.warning {
            "notice warning"
        } else {
            "notice"
        }
    }
}

impl From<String> for Notice {
    fn from(text: String) -> Self {
        Self {
            text,
            warning: false,
        }
    }
}

impl From<&str> for Notice {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Keeps a one-time notice for the next page this browser opens (after a redirect).
pub async fn flash(session: &Session, notice: impl Into<Notice>) -> Result<(), AppError> {
    session.insert(FLASH_KEY, notice.into()).await?;
    Ok(())
}

/// Takes the one-time notice, if any.
pub async fn take_flash(session: &Session) -> Result<Option<Notice>, AppError> {
    Ok(session.remove::<Notice>(FLASH_KEY).await?)
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

    use super::local_path;

    #[test]
    fn only_paths_of_this_site_are_followed() {
        assert_eq!(
            local_path("/admin/acme/members?x=1#top").as_deref(),
            Some("/admin/acme/members?x=1#top")
        );
        assert_eq!(local_path("/account").as_deref(), Some("/account"));
        for hostile in [
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "https:evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\t\t/evil.example",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D/evil.example",
            "/%5c/evil.example",
            "/%5C%5Cevil.example",
            "/%2f/evil.example",
            "/%2F%2Fevil.example",
            "/%00/evil.example",
            "/ok\u{0}",
        ] {
            assert_eq!(local_path(hostile), None, "{hostile:?}");
        }
        assert_eq!(local_path(&format!("/{}", "a".repeat(3000))), None);
    }
}
