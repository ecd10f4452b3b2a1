//! What an API token may do: its scopes. Every endpoint of the JSON API needs exactly one scope
//! (declared by the type of its [`ApiAdmin`](super::extract::ApiAdmin) extractor and in its
//! OpenAPI `security` entry); a token without it gets 403 `missing_scope`.

use serde::{Serialize, Serializer};

/// One scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read the organization, its members, managed accounts, domains, SSO connections,
    /// migrations and settings (every `GET` but billing and audit).
    Read,
    /// Add, change and remove members and managed accounts; request and manage migrations.
    Members,
    /// Add, verify, retry and remove domains.
    Domains,
    /// Change SSO connections, the password policy ("SSO required") and the session lifetime.
    Sso,
    /// Read and change seats, the subscription and invoices.
    Billing,
    /// Read the audit log.
    Audit,
}

impl Scope {
    /// Every scope, in the order pages and documents list them.
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Members,
        Scope::Domains,
        Scope::Sso,
        Scope::Billing,
        Scope::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Members => "members",
            Scope::Domains => "domains",
            Scope::Sso => "sso",
            Scope::Billing => "billing",
            Scope::Audit => "audit",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// What the scope allows, in words for the tokens page.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Read => "read the organization, members, domains, SSO and settings",
            Scope::Members => "change members and managed accounts, run migrations",
            Scope::Domains => "add, verify and remove domains",
            Scope::Sso => "change SSO connections, the password policy and session lifetime",
            Scope::Billing => "read and change seats and billing",
            Scope::Audit => "read the audit log",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's set of scopes, never empty, kept in [`Scope::ALL`] order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Every scope (operator tokens, unless narrowed).
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.to_vec())
    }

    /// The scopes named in `raw`, separated by spaces or commas; `Err` names the first unknown
    /// word, or is empty when none is named.
    pub fn parse(raw: &str) -> Result<Scopes, String> {
        let mut found = Vec::new();
        for word in raw.split([' ', ',']).filter(|w| !w.is_empty()) {
            found.push(Scope::parse(word.trim()).ok_or_else(|| word.trim().to_string())?);
        }
        Scopes::from_list(found).ok_or_else(String::new)
    }

    /// The given scopes, deduplicated and ordered; `None` when empty.
    pub fn from_list(list: impl IntoIterator<Item = Scope>) -> Option<Scopes> {
        let mut list: Vec<Scope> = list.into_iter().collect();
        list.sort();
        list.dedup();
        (!list.is_empty()).then_some(Scopes(list))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// The stored form: the names separated by single spaces.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|s| s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_order_and_refuse_unknown_words() {
        let scopes = Scopes::parse("sso, read read").unwrap();
        assert_eq!(scopes.to_text(), "read sso");
        assert!(scopes.contains(Scope::Sso) && !scopes.contains(Scope::Members));
        assert_eq!(Scopes::parse("read admin"), Err("admin".to_string()));
        assert_eq!(Scopes::parse(" , "), Err(String::new()));
        assert_eq!(
            Scopes::all().to_text(),
            "read members domains sso billing audit"
        );
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }
}
