//! The settings of an IdP connection that its organization's admins control, and how a create
//! or an update changes them.

use serde::{Deserialize, Serialize};

use super::{SamlError, mapping};
use crate::db::Tx;
use crate::ids::OrgId;

/// Default allowed clock skew.
pub const DEFAULT_SKEW_SECONDS: i64 = 120;
/// Largest allowed clock skew.
pub const MAX_SKEW_SECONDS: i64 = 600;

/// Per-connection settings an admin controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionSettings {
    /// Attribute holding the email; `null` = the NameID (any format, if it is an email).
    pub email_attribute: Option<String>,
    /// Accept unsolicited (IdP-initiated) responses.
    pub allow_idp_initiated: bool,
    /// Sign AuthnRequests (RSA-SHA256, HTTP-Redirect).
    pub sign_authn_requests: bool,
    /// Require the Assertion itself to be signed (not only the Response).
    pub require_signed_assertions: bool,
    /// Accept RSA-SHA1 signatures (off by default; only for IdPs that cannot do better).
    pub allow_sha1: bool,
    /// Allowed clock difference, 0–600 seconds.
    pub clock_skew_seconds: i64,
    /// Verified domains of the org routed to this connection; `null` = all of them.
    pub domains: Option<Vec<String>>,
    /// Attribute holding the display name (`null`: given and family name, or none).
    pub name_attribute: Option<String>,
    /// Attribute holding the given name.
    pub given_name_attribute: Option<String>,
    /// Attribute holding the family name.
    pub family_name_attribute: Option<String>,
    /// Refuse assertions that are not encrypted (for this SP's encryption key).
    pub require_encrypted_assertions: bool,
}

impl ConnectionSettings {
    /// A new connection's settings; AuthnRequests are signed when the IdP's metadata asks.
    pub fn defaults(sign_authn_requests: bool) -> ConnectionSettings {
        ConnectionSettings {
            email_attribute: None,
            allow_idp_initiated: false,
            sign_authn_requests,
            require_signed_assertions: false,
            allow_sha1: false,
            clock_skew_seconds: DEFAULT_SKEW_SECONDS,
            domains: None,
            name_attribute: None,
            given_name_attribute: None,
            family_name_attribute: None,
            require_encrypted_assertions: false,
        }
    }
}

/// Settings a create or update may give; absent fields keep their value (or the default).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SettingsChange {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email_attribute: Option<Option<String>>,
    pub allow_idp_initiated: Option<bool>,
    pub sign_authn_requests: Option<bool>,
    pub require_signed_assertions: Option<bool>,
    pub require_encrypted_assertions: Option<bool>,
    pub allow_sha1: Option<bool>,
    pub clock_skew_seconds: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub domains: Option<Option<Vec<String>>>,
    /// Sets the email and name attributes at once: `entra`, `adfs`, `okta`, `google`,
    /// `keycloak` or `shibboleth` (fields given beside it win).
    pub attribute_preset: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name_attribute: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub given_name_attribute: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub family_name_attribute: Option<Option<String>>,
}

/// An attribute name as stored: trimmed, `None` when empty, at most 256 characters.
fn attribute_name(raw: &Option<String>, what: &str) -> Result<Option<String>, SamlError> {
    let name = raw
        .as_ref()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    if name.as_ref().is_some_and(|a| a.chars().count() > 256) {
        return Err(SamlError::InvalidSetting(format!(
            "the {what} attribute name is too long (256 characters at most)"
        )));
    }
    Ok(name)
}

/// Tells an explicit `null` (Some(None)) from an absent field (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl SettingsChange {
    /// Applies the change to `base` and checks the result against the org's verified domains.
    pub(super) async fn apply(
        &self,
        tx: &mut Tx,
        org: OrgId,
        mut base: ConnectionSettings,
    ) -> Result<ConnectionSettings, SamlError> {
        if let Some(key) = &self.attribute_preset {
            let preset = mapping::preset(key.trim()).ok_or_else(|| {
                SamlError::InvalidSetting(format!(
                    "unknown attribute preset {key:?}; use one of: {}",
                    mapping::PRESETS
                        .iter()
                        .map(|p| p.key)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            preset.apply(&mut base);
        }
        for (change, field, what) in [
            (&self.email_attribute, &mut base.email_attribute, "email"),
            (&self.name_attribute, &mut base.name_attribute, "name"),
            (
                &self.given_name_attribute,
                &mut base.given_name_attribute,
                "given name",
            ),
            (
                &self.family_name_attribute,
                &mut base.family_name_attribute,
                "family name",
            ),
        ] {
            if let Some(raw) = change {
                *field = attribute_name(raw, what)?;
            }
        }
        base.allow_idp_initiated = self.allow_idp_initiated.unwrap_or(base.allow_idp_initiated);
        base.sign_authn_requests = self.sign_authn_requests.unwrap_or(base.sign_authn_requests);
        base.require_signed_assertions = self
            .require_signed_assertions
            .unwrap_or(base.require_signed_assertions);
        base.require_encrypted_assertions = self
            .require_encrypted_assertions
            .unwrap_or(base.require_encrypted_assertions);
        base.allow_sha1 = self.allow_sha1.unwrap_or(base.allow_sha1);
        if let Some(skew) = self.clock_skew_seconds {
            if !(0..=MAX_SKEW_SECONDS).contains(&skew) {
                return Err(SamlError::InvalidSetting(format!(
                    "the clock skew must be between 0 and {MAX_SKEW_SECONDS} seconds"
                )));
            }
            base.clock_skew_seconds = skew;
        }
        if let Some(domains) = &self.domains {
            base.domains = match domains {
                None => None,
                Some(list) => {
                    let verified = crate::domains::verified_domains(&mut **tx, org).await?;
                    let mut chosen = Vec::new();
                    for d in list {
                        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                        if !verified.contains(&d) {
                            return Err(SamlError::DomainNotVerified(d));
                        }
                        if !chosen.contains(&d) {
                            chosen.push(d);
                        }
                    }
                    Some(chosen)
                }
            };
        }
        Ok(base)
    }
}
