//! Attribute mapping: where a connection reads the email and the display name (or the given and
//! family names) in a verified assertion, with presets for the IdPs customers use, and how the
//! "test connection" page shows what came (values redacted beyond their first characters).

use super::ConnectionSettings;
use super::acs::Verified;

/// A preset: the attribute names an IdP sends by default (`None`: the NameID holds the email).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub key: &'static str,
    pub label: &'static str,
    pub email: Option<&'static str>,
    pub name: Option<&'static str>,
    pub given_name: Option<&'static str>,
    pub family_name: Option<&'static str>,
}

/// Presets, by the attribute names each IdP's documentation gives for its default SAML app.
pub const PRESETS: &[Preset] = &[
    Preset {
        key: "entra",
        label: "Microsoft Entra ID",
        email: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"),
        name: Some("http://schemas.microsoft.com/identity/claims/displayname"),
        given_name: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"),
        family_name: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"),
    },
    Preset {
        key: "adfs",
        label: "AD FS",
        email: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"),
        name: None,
        given_name: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"),
        family_name: Some("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"),
    },
    Preset {
        key: "okta",
        label: "Okta",
        email: None,
        name: None,
        given_name: Some("firstName"),
        family_name: Some("lastName"),
    },
    Preset {
        key: "google",
        label: "Google Workspace",
        email: None,
        name: None,
        given_name: None,
        family_name: None,
    },
    Preset {
        key: "keycloak",
        label: "Keycloak",
        email: Some("email"),
        name: None,
        given_name: Some("firstName"),
        family_name: Some("lastName"),
    },
    Preset {
        key: "shibboleth",
        label: "Shibboleth IdP",
        email: Some("urn:oid:0.9.2342.19200300.100.1.3"),
        name: Some("urn:oid:2.16.840.1.113730.3.1.241"),
        given_name: Some("urn:oid:2.5.4.42"),
        family_name: Some("urn:oid:2.5.4.4"),
    },
];

/// The preset called `key`.
pub fn preset(key: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.key == key)
}

impl Preset {
    /// Writes the preset's attribute names into `settings`.
    pub fn apply(&self, settings: &mut ConnectionSettings) {
        settings.email_attribute = self.email.map(str::to_string);
        settings.name_attribute = self.name.map(str::to_string);
        settings.given_name_attribute = self.given_name.map(str::to_string);
        settings.family_name_attribute = self.family_name.map(str::to_string);
    }
}

/// The first non-empty value of attribute `name`.
pub fn value<'a>(verified: &'a Verified, name: &str) -> Option<&'a str> {
    verified
        .attributes
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, values)| values.iter())
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
}

/// The display name the assertion gives: the name attribute, else given and family names
/// joined; `None` when the connection maps none or none came.
pub fn display_name(verified: &Verified, settings: &ConnectionSettings) -> Option<String> {
    let of = |attr: &Option<String>| attr.as_deref().and_then(|a| value(verified, a));
    if let Some(name) = of(&settings.name_attribute) {
        return Some(name.to_string());
    }
    let parts: Vec<&str> = [
        of(&settings.given_name_attribute),
        of(&settings.family_name_attribute),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A value as the test page shows it: its first three characters and its length.
pub fn redact(value: &str) -> String {
    let count = value.chars().count();
    if count <= 3 {
        return "•".repeat(count);
    }
    format!(
        "{}… ({count} characters)",
        value.chars().take(3).collect::<String>()
    )
}

/// What each attribute is used for under `settings` ("email", "name", ...), for the test page.
pub fn uses(attribute: &str, settings: &ConnectionSettings) -> Vec<&'static str> {
    [
        (&settings.email_attribute, "email"),
        (&settings.name_attribute, "display name"),
        (&settings.given_name_attribute, "given name"),
        (&settings.family_name_attribute, "family name"),
    ]
    .into_iter()
    .filter(|(a, _)| a.as_deref() == Some(attribute))
    .map(|(_, use_)| use_)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";

    fn verified(attributes: &[(&str, &[&str])]) -> Verified {
        Verified {
            issuer: String::new(),
            assertion_id: String::new(),
            response_id: None,
            in_response_to: None,
            name_id: None,
            name_id_format: None,
            name_qualifiers: (None, None),
            session_index: None,
            session_not_on_or_after: None,
            attributes: attributes
                .iter()
                .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            valid_until: 0,
            assertion_signed: true,
        }
    }

    fn settings() -> ConnectionSettings {
        ConnectionSettings::defaults(false)
    }

    #[test]
    fn presets_set_every_field_and_names_join() {
        let mut s = settings();
        preset("entra").unwrap().apply(&mut s);
        assert_eq!(
            s.email_attribute.as_deref(),
            Some(format!("{CLAIMS}/emailaddress").as_str())
        );
        let v = verified(&[
            (&format!("{CLAIMS}/givenname"), &["Mia"]),
            (&format!("{CLAIMS}/surname"), &["Rossi"]),
        ]);
        assert_eq!(display_name(&v, &s).as_deref(), Some("Mia Rossi"));
        let v = verified(&[
            (
                "http://schemas.microsoft.com/identity/claims/displayname",
                &["Mia R."],
            ),
            (&format!("{CLAIMS}/givenname"), &["Mia"]),
        ]);
        assert_eq!(display_name(&v, &s).as_deref(), Some("Mia R."));
        preset("google").unwrap().apply(&mut s);
        assert_eq!(s.email_attribute, None);
        assert_eq!(display_name(&v, &s), None);
        assert!(preset("nope").is_none());
    }

    #[test]
    fn redaction_keeps_three_characters() {
        assert_eq!(redact("mia@corp.test"), "mia… (13 characters)");
        assert_eq!(redact("ab"), "••");
        assert_eq!(
            uses("email", &{
                let mut s = settings();
                s.email_attribute = Some("email".into());
                s
            }),
            vec!["email"]
        );
    }
}
