//! Outgoing requests to URLs that admins give (IdP metadata, audit webhooks) must not become a
//! way into the network behind the server: outside development mode the URL is https, carries
//! no credentials, and every address its host resolves to is public (no loopback, private,
//! link-local, shared, multicast, documentation or unspecified address). Callers connect to
//! exactly the addresses checked ([`pinned_client`]), so a second resolution cannot answer
//! otherwise.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
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

/// Why a URL may not be requested, in words for the admin who gave it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks `url` and resolves its host within `timeout`; returns the addresses a request may
/// connect to. `dev` (development mode) also allows http and non-public addresses.
pub async fn check_url(
    url: &url::Url,
    dev: bool,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, Refused> {
    let refused = |why: &str| Refused(why.to_string());
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
        tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| refused("its host name did not resolve in time"))?
            .map_err(|_| refused("its host name does not resolve"))?
            .collect();
    if addrs.is_empty() {
        return Err(refused("its host name does not resolve"));
    }
    if !dev && let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(Refused(format!(
            "its host resolves to {}, which is not a public address",
            private.ip()
        )));
    }
    Ok(addrs)
}

/// An HTTP client for one request to `url` that connects only to `addrs` (from [`check_url`])
/// and follows no redirect.
pub fn pinned_client(
    url: &url::Url,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(url.host_str().unwrap_or_default(), addrs)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_allowed() {
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
        let t = Duration::from_secs(5);
        for (url, why) in [
            ("http://hooks.example.com/x", "https://"),
            ("https://127.0.0.1/x", "not a public address"),
            ("https://[::1]:8443/x", "not a public address"),
            ("https://localhost/x", "not a public address"),
            ("https://user:pw@hooks.example.com/x", "credentials"),
        ] {
            let err = check_url(&url.parse().unwrap(), false, t)
                .await
                .unwrap_err();
            assert!(err.0.contains(why), "{url}: {err}");
        }
        let dev = check_url(&"http://127.0.0.1:9/x".parse().unwrap(), true, t).await;
        assert_eq!(dev.unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
    }
}
