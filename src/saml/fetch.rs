//! Fetching IdP metadata from a URL an admin gave, without becoming a way into the network
//! behind the server: outside development mode the URL must be https, every address its host
//! resolves to must be public (no loopback, private, link-local, shared, multicast or
//! unspecified address), the connection goes to exactly the addresses checked, and each
//! redirect (at most 3) is checked the same way. Size and time are bounded, and a failure says
//! what was refused, never what the target answered.

use std::net::{IpAddr, SocketAddr};
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

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Checks `url` and resolves its host; returns the addresses the fetch may connect to.
async fn check(url: &url::Url, dev: bool) -> Result<Vec<SocketAddr>, SamlError> {
    match url.scheme() {
        "https" => {}
        "http" if dev => {}
        _ => return Err(refused("it must start with https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refused("it must not carry credentials"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| refused("it names no host"))?
        .trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| refused("its host name did not resolve in time"))?
            .map_err(|_| refused("its host name does not resolve"))?
            .collect();
    if addrs.is_empty() {
        return Err(refused("its host name does not resolve"));
    }
    if !dev && let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(refused(format!(
            "its host resolves to {}, which is not a public address",
            private.ip()
        )));
    }
    Ok(addrs)
}

/// Downloads metadata from `url`; `dev` (development mode) also allows http and private or
/// loopback addresses.
pub async fn metadata(url: &str, dev: bool) -> Result<String, SamlError> {
    let mut url = url::Url::parse(url.trim()).map_err(|_| refused("it is not a valid URL"))?;
    for _ in 0..=MAX_REDIRECTS {
        let addrs = check(&url, dev).await?;
        let host = url.host_str().unwrap_or_default().to_string();
        // Connect to exactly the addresses checked: a second resolution could answer otherwise.
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .build()
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

    #[test]
    fn only_public_addresses_are_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

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
