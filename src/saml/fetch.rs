//! Fetching IdP metadata from a URL an admin gave, without becoming a way into the network
//! behind the server (the address checks are `crate::net`'s, shared with the audit webhook): outside development mode the URL must be https, every address its host
//! resolves to must be public (no loopback, private, link-local, shared, multicast or
//! unspecified address), the connection goes to exactly the addresses checked, and each
//! redirect (at most 3) is checked the same way. Size and time are bounded, and a failure says
//! what was refused, never what the target answered.

use std::net::SocketAddr;
use std::time::Duration;

use super::SamlError;

/// How often metadata URLs are fetched again.
pub const REFRESH_MS: i64 = 24 * 3600 * 1000;
/// Largest metadata document accepted.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Time a whole fetch may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// The URL itself is not allowed (the admin's to fix: 400).
fn refused(why: impl std::fmt::Display) -> SamlError {
    SamlError::UrlRefused(why.to_string())
}

/// The fetch failed (502); the message never repeats what the target answered.
fn failed(why: &str) -> SamlError {
    SamlError::Fetch(why.to_string())
}

/// Checks `url` and resolves its host (`net::check_url`); a refusal is the admin's to fix.
async fn check(url: &url::Url, dev: bool) -> Result<Vec<SocketAddr>, SamlError> {
    crate::net::check_url(url, dev, TIMEOUT)
        .await
        .map_err(|r| refused(r.0))
}

/// Downloads metadata from `url`; `dev` (development mode) also allows http and private or
/// loopback addresses.
pub async fn metadata(url: &str, dev: bool) -> Result<String, SamlError> {
    let mut url = url::Url::parse(url.trim()).map_err(|_| refused("it is not a valid URL"))?;
    for _ in 0..=MAX_REDIRECTS {
        let addrs = check(&url, dev).await?;
        // Connect to exactly the addresses checked: a second resolution could answer otherwise.
        let client = crate::net::pinned_client(&url, &addrs, TIMEOUT)
            .map_err(|_| failed("no HTTP client could be built"))?;
        let response = client.get(url.clone()).send().await.map_err(|e| {
            failed(if e.is_timeout() {
                "the request timed out"
            } else {
                "the server could not be reached"
            })
        })?;
        if response.status().is_redirection() {
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| failed("a redirect leads nowhere"))?;
            url = next;
            continue;
        }
        if !response.status().is_success() {
            return Err(failed("the server did not answer with a document"));
        }
        return read(response).await;
    }
    Err(failed(&format!("more than {MAX_REDIRECTS} redirects")))
}

async fn read(mut response: reqwest::Response) -> Result<String, SamlError> {
    let too_large = || {
        failed(&format!(
            "the document is larger than {} KiB",
            MAX_BYTES / 1024
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_BYTES)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| failed("the download was interrupted"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BYTES {
            return Err(too_large());
        }
    }
    String::from_utf8(body).map_err(|_| failed("the document is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_checked_before_any_connection() {
        for (url, why) in [
            ("http://idp.example.com/metadata", "https://"),
            ("ftp://idp.example.com/metadata", "https://"),
            ("https://127.0.0.1/metadata", "not a public address"),
            ("https://[::1]:8443/metadata", "not a public address"),
            ("https://localhost/metadata", "not a public address"),
            ("https://10.0.0.7/metadata", "not a public address"),
            (
                "https://169.254.169.254/latest/meta-data",
                "not a public address",
            ),
            ("https://user:pw@idp.example.com/metadata", "credentials"),
        ] {
            let err = metadata(url, false).await.unwrap_err().to_string();
            assert!(
                err.contains("was refused") && err.contains(why),
                "{url}: {err}"
            );
        }
    }
}
