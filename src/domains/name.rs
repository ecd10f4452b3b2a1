//! Domain names as admins type them, normalised and validated, and the one list of public mail
//! domains that no organization can claim.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::Serialize;

use super::DomainError;

/// Mail domains anyone can get an address on: nobody can prove they own them for an
/// organization, so they are refused (DESIGN rule 2). Subdomains of these are refused too.
pub const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "outlook.jp",
    "hotmail.com",
    "hotmail.co.jp",
    "hotmail.co.uk",
    "hotmail.fr",
    "live.com",
    "live.jp",
    "msn.com",
    "yahoo.com",
    "yahoo.co.jp",
    "yahoo.co.uk",
    "yahoo.fr",
    "ymail.com",
    "rocketmail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "naver.com",
    "daum.net",
    "zoho.com",
    "tutanota.com",
    "fastmail.com",
    "hey.com",
    "docomo.ne.jp",
    "ezweb.ne.jp",
    "au.com",
    "softbank.ne.jp",
    "i.softbank.jp",
    "nifty.com",
    "excite.co.jp",
];

/// Whether `domain` (normalised) is a public mail domain or a subdomain of one.
pub fn is_public_mail_domain(domain: &str) -> bool {
    PUBLIC_MAIL_DOMAINS.iter().any(|public| {
        domain == *public
            || domain
                .strip_suffix(public)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

/// A validated domain name in its stored form: lowercase ASCII (IDNA labels as punycode), no
/// trailing dot, at least two labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises and validates what an admin typed. Refuses IP addresses, URLs (a scheme, a
    /// path, a port), email addresses, spaces and public mail domains, each with its own error.
    pub fn parse(raw: &str) -> Result<DomainName, DomainError> {
        let input = raw.trim();
        let shown = || input.chars().take(80).collect::<String>();
        if input.is_empty() {
            return Err(DomainError::InvalidDomain(shown()));
        }
        if input.contains("://")
            || input.contains('/')
            || input.contains('?')
            || input.contains('#')
        {
            return Err(DomainError::NotJustADomain(shown()));
        }
        if input.contains('@') {
            return Err(DomainError::EmailNotDomain(shown()));
        }
        if looks_like_ip(input) {
            return Err(DomainError::IpAddress(shown()));
        }
        if input.contains(':') {
            return Err(DomainError::NotJustADomain(shown()));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(DomainError::InvalidDomain(shown()));
        }
        let without_dot = input.strip_suffix('.').unwrap_or(input);
        // UTS #46 with the STD3 rules: maps case and width, turns Unicode labels into
        // punycode, and refuses characters a host name cannot hold.
        let ascii = idna::domain_to_ascii_strict(without_dot)
            .map_err(|_| DomainError::InvalidDomain(shown()))?;
        if !is_host_name(&ascii) {
            return Err(DomainError::InvalidDomain(shown()));
        }
        if is_public_mail_domain(&ascii) {
            return Err(DomainError::PublicMailDomain(ascii));
        }
        Ok(DomainName(ascii))
    }

    /// A name read back from the database, stored in normalised form.
    pub(super) fn from_stored(stored: String) -> DomainName {
        DomainName(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 address, an IPv6 address, or either in brackets (with or without a port).
fn looks_like_ip(input: &str) -> bool {
    let bare = input.strip_suffix('.').unwrap_or(input);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner.split(']').next().unwrap_or("");
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    // `192.0.2.1:8080`
    input
        .rsplit_once(':')
        .is_some_and(|(host, port)| host.parse::<IpAddr>().is_ok() && port.parse::<u16>().is_ok())
}

/// At least two labels of letters, digits and inner hyphens, each 1–63 long, 253 in all, and a
/// last label that is not all digits.
fn is_host_name(ascii: &str) -> bool {
    let labels: Vec<&str> = ascii.split('.').collect();
    labels.len() >= 2
        && ascii.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        DomainName::parse(raw)
            .unwrap_or_else(|e| panic!("{raw:?} should be valid: {e}"))
            .0
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(ok("Example.COM"), "example.com");
        assert_eq!(ok("  example.com.  "), "example.com");
        assert_eq!(ok("corp.test"), "corp.test");
        assert_eq!(ok("mail.corp.example.co.jp"), "mail.corp.example.co.jp");
        assert_eq!(ok("Bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("日本語.jp"), "xn--wgv71a119e.jp");
        assert_eq!(ok("ＥＸＡＭＰＬＥ.com"), "example.com");
        assert_eq!(ok("a-b.c1.io"), "a-b.c1.io");
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "   ",
            "localhost",
            "example",
            "exa mple.com",
            "-bad.com",
            "bad-.com",
            "a..b.com",
            ".example.com",
            "example..",
            "under_score.com",
            "example.123",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}.com", ["abcdefghij"; 25].join(".")),
            "ex!ample.com",
        ] {
            assert!(
                matches!(DomainName::parse(bad), Err(DomainError::InvalidDomain(_))),
                "{bad:?} should be malformed, got {:?}",
                DomainName::parse(bad)
            );
        }
    }

    #[test]
    fn ips_urls_and_emails_are_refused_by_name() {
        for ip in [
            "192.0.2.1",
            "192.0.2.1.",
            "2001:db8::1",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "192.0.2.1:8080",
            "::1",
        ] {
            assert!(
                matches!(DomainName::parse(ip), Err(DomainError::IpAddress(_))),
                "{ip:?}"
            );
        }
        for url in [
            "https://example.com",
            "http://example.com/",
            "example.com/path",
            "example.com:8080",
            "example.com?x=1",
            "example.com#top",
            "ftp://example.com",
        ] {
            assert!(
                matches!(DomainName::parse(url), Err(DomainError::NotJustADomain(_))),
                "{url:?}"
            );
        }
        assert!(matches!(
            DomainName::parse("ada@example.com"),
            Err(DomainError::EmailNotDomain(_))
        ));
    }

    #[test]
    fn public_mail_domains_are_refused_after_normalising() {
        for public in [
            "gmail.com",
            "GMAIL.COM.",
            "googlemail.com",
            "outlook.com",
            "hotmail.com",
            "yahoo.co.jp",
            "icloud.com",
            "proton.me",
            "sub.gmail.com",
        ] {
            assert!(
                matches!(
                    DomainName::parse(public),
                    Err(DomainError::PublicMailDomain(_))
                ),
                "{public:?}"
            );
        }
        assert!(is_public_mail_domain("qq.com"));
        assert!(!is_public_mail_domain("notgmail.com"));
        assert!(!is_public_mail_domain("gmail.com.example"));
        assert!(DomainName::parse("notgmail.com").is_ok());
    }

    #[test]
    fn the_public_list_is_normalised_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for public in PUBLIC_MAIL_DOMAINS {
            assert!(is_host_name(public), "{public}");
            assert!(seen.insert(*public), "{public} twice");
        }
    }
}
