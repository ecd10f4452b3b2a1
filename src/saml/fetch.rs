//! Fetching IdP metadata from a URL: http(s) only, with a timeout and a size limit.

use std::time::Duration;

use super::SamlError;

/// How often metadata URLs are fetched again.
pub const REFRESH_MS: i64 = 24 * 3600 * 1000;
/// Largest metadata document accepted.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Time a whole fetch may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Downloads metadata from `url`.
pub async fn metadata(url: &str) -> Result<String, SamlError> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|_| SamlError::Fetch("the metadata URL is not a valid URL".into()))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(SamlError::Fetch(
            "the metadata URL must start with https:// (or http://)".into(),
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| SamlError::Fetch(e.to_string()))?;
    let mut response = client.get(parsed).send().await.map_err(|e| {
        SamlError::Fetch(if e.is_timeout() {
            "the request timed out".into()
        } else {
            "the server could not be reached".into()
        })
    })?;
    if !response.status().is_success() {
        return Err(SamlError::Fetch(format!(
            "the server answered HTTP {}",
            response.status().as_u16()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_BYTES)
    {
        return Err(SamlError::Fetch(format!(
            "the document is larger than {} KiB",
            MAX_BYTES / 1024
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| SamlError::Fetch("the download was interrupted".into()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(SamlError::Fetch(format!(
                "the document is larger than {} KiB",
                MAX_BYTES / 1024
            )));
        }
    }
    String::from_utf8(body).map_err(|_| SamlError::Fetch("the document is not UTF-8 text".into()))
}
