//! The assertion consumer service's checks. [`verify`] runs before any transaction, one per
//! core at a time ([`super::cpu`]): the outline ([`super::outline`]) refuses DTDs, wrapped or
//! split documents, transforms and algorithms outside the allow-lists and unknown keys; then
//! xmlsec (through samael's reduction) verifies every signature against the connection's
//! certificates and keeps only signed content, which [`super::assertion`] reads with libxml2 to
//! check audience, destination, recipient, issuer, time window and InResponseTo and to take the
//! identity values. The caller then applies the account rules.

use std::sync::Arc;

use libxml::tree::Document;
use openssl::pkey::{PKey, Private};
use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode, VerificationKey, XmlSec};

use super::metadata;
use super::outline::Scan;
use super::{Connection, SpUrls, assertion, decrypt, dsig_policy, idp_keys};

/// Largest SAMLResponse POST accepted.
pub const MAX_BODY: usize = 256 * 1024;

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// Why a sign-in was refused; `code()` goes on the error page and into the audit event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    Malformed,
    DtdForbidden,
    UnknownConnection,
    MissingSignature,
    BadSignature,
    UnknownSigningKey,
    WeakAlgorithm,
    TransformNotAllowed,
    AssertionNotSigned,
    Wrapped,
    DecryptionFailed,
    NotEncrypted,
    NameIdSplit,
    WrongAudience,
    WrongDestination,
    WrongRecipient,
    WrongIssuer,
    Expired,
    NotYetValid,
    StatusNotSuccess,
    UnknownRequest,
    ExpiredRequest,
    OtherBrowser,
    Unsolicited,
    Replayed,
    NoEmail,
    UnknownAccount,
    AccountSuspended,
    DomainNotVerified,
    DomainNotRouted,
    NotManaged,
}

impl Reason {
    /// Every reason.
    pub const ALL: &'static [Reason] = &[
        Reason::TooLarge,
        Reason::Malformed,
        Reason::DtdForbidden,
        Reason::UnknownConnection,
        Reason::MissingSignature,
        Reason::BadSignature,
        Reason::UnknownSigningKey,
        Reason::WeakAlgorithm,
        Reason::TransformNotAllowed,
        Reason::AssertionNotSigned,
        Reason::Wrapped,
        Reason::DecryptionFailed,
        Reason::NotEncrypted,
        Reason::NameIdSplit,
        Reason::WrongAudience,
        Reason::WrongDestination,
        Reason::WrongRecipient,
        Reason::WrongIssuer,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::StatusNotSuccess,
        Reason::UnknownRequest,
        Reason::ExpiredRequest,
        Reason::OtherBrowser,
        Reason::Unsolicited,
        Reason::Replayed,
        Reason::NoEmail,
        Reason::UnknownAccount,
        Reason::AccountSuspended,
        Reason::DomainNotVerified,
        Reason::DomainNotRouted,
        Reason::NotManaged,
    ];

    /// The reason with the stable code `code` (for the audit log's viewer).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// The stable reason code.
    pub fn code(self) -> &'static str {
        use Reason::*;
        match self {
            TooLarge => "response_too_large",
            Malformed => "malformed_response",
            DtdForbidden => "dtd_forbidden",
            UnknownConnection => "unknown_connection",
            MissingSignature => "missing_signature",
            BadSignature => "bad_signature",
            UnknownSigningKey => "unknown_signing_key",
            WeakAlgorithm => "weak_signature_algorithm",
            TransformNotAllowed => "transform_not_allowed",
            AssertionNotSigned => "assertion_not_signed",
            Wrapped => "signature_wrapping",
            DecryptionFailed => "decryption_failed",
            NotEncrypted => "assertion_not_encrypted",
            NameIdSplit => "nameid_split",
            WrongAudience => "wrong_audience",
            WrongDestination => "wrong_destination",
            WrongRecipient => "wrong_recipient",
            WrongIssuer => "wrong_issuer",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            StatusNotSuccess => "status_not_success",
            UnknownRequest => "unknown_request",
            ExpiredRequest => "expired_request",
            OtherBrowser => "other_browser",
            Unsolicited => "unsolicited_response",
            Replayed => "replayed",
            NoEmail => "no_email",
            UnknownAccount => "unknown_account",
            AccountSuspended => "account_suspended",
            DomainNotVerified => "domain_not_verified",
            DomainNotRouted => "domain_not_routed",
            NotManaged => "not_managed_account",
        }
    }

    /// Which rule failed, for the person signing in (no secrets, no raw values).
    pub fn message(self) -> &'static str {
        use Reason::*;
        match self {
            TooLarge => "The sign-in response from your identity provider is larger than 256 KiB.",
            Malformed => "The sign-in response from your identity provider could not be read.",
            DtdForbidden => {
                "The sign-in response contains a DTD or entity declaration, which is never accepted."
            }
            UnknownConnection => {
                "This single sign-on connection does not exist (any more). Start again from the sign-in page."
            }
            MissingSignature => "The sign-in response is not signed.",
            BadSignature => "The signature of the sign-in response is not valid.",
            UnknownSigningKey => {
                "The sign-in response was signed with a key that is not configured for your organization's connection."
            }
            WeakAlgorithm => {
                "The sign-in response uses a signature or digest algorithm that is not allowed (RSA-SHA256 or stronger; never HMAC)."
            }
            TransformNotAllowed => {
                "The signature of the sign-in response asks for a transform that is never run (only canonicalization and the enveloped-signature transform are)."
            }
            AssertionNotSigned => {
                "Your organization requires the assertion itself to be signed, and it is not."
            }
            Wrapped => {
                "The sign-in response holds more than one assertion (a signature-wrapping pattern) and was refused."
            }
            DecryptionFailed => {
                "The encrypted assertion could not be decrypted with this service's encryption key. Ask your admin to check the encryption certificate configured at the identity provider."
            }
            NotEncrypted => {
                "Your organization requires the assertion to be encrypted, and it is not."
            }
            NameIdSplit => {
                "The user name in the sign-in response contains comments or markup and was refused."
            }
            WrongAudience => "The sign-in response was meant for another service (audience).",
            WrongDestination => "The sign-in response was sent to another address (destination).",
            WrongRecipient => "The sign-in response names another recipient.",
            WrongIssuer => {
                "The sign-in response comes from another identity provider than the one configured."
            }
            Expired => {
                "The sign-in response has expired. Check the clocks of the identity provider and try again."
            }
            NotYetValid => {
                "The sign-in response is not valid yet. Check the clocks of the identity provider."
            }
            StatusNotSuccess => "Your identity provider reported that the sign-in did not succeed.",
            UnknownRequest => "The sign-in response answers a request this service did not send.",
            ExpiredRequest => "The sign-in took longer than 10 minutes. Start again.",
            OtherBrowser => "The sign-in was started in another browser. Start again in this one.",
            Unsolicited => {
                "Your organization does not allow sign-in started at the identity provider. Start from this service's sign-in page."
            }
            Replayed => "This sign-in response was already used.",
            NoEmail => "The sign-in response carries no usable email address.",
            UnknownAccount => {
                "There is no managed account with this email in your organization. Ask your admin."
            }
            AccountSuspended => "Your account is suspended. Ask your organization's admin.",
            DomainNotVerified => {
                "Your email's domain is not verified for your organization, so single sign-on is not allowed for it."
            }
            DomainNotRouted => "Your email's domain does not sign in through this connection.",
            NotManaged => {
                "Your account is a Nulab account, not a managed account of this organization, so it cannot sign in through its identity provider. Sign in with your password; your organization's admin can migrate your account."
            }
        }
    }
}

/// A refused response: the reason, and for admins and the audit log what was expected and what came.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// What the signed content of an accepted response says.
#[derive(Clone, Debug)]
pub struct Verified {
    pub issuer: String,
    pub assertion_id: String,
    pub response_id: Option<String>,
    pub in_response_to: Option<String>,
    pub name_id: Option<String>,
    pub name_id_format: Option<String>,
    /// The NameID's NameQualifier and SPNameQualifier, which a LogoutRequest repeats.
    pub name_qualifiers: (Option<String>, Option<String>),
    /// The AuthnStatement's SessionIndex, which a LogoutRequest may name.
    pub session_index: Option<String>,
    /// The AuthnStatement's SessionNotOnOrAfter (Unix ms), when the IdP sets one.
    pub session_not_on_or_after: Option<i64>,
    pub attributes: Vec<(String, Vec<String>)>,
    /// When the assertion stops being valid (Unix ms, skew included): the replay cache keeps
    /// its ID until then.
    pub valid_until: i64,
    pub assertion_signed: bool,
}

/// Checks a decoded response for `connection`, given its `outline` from
/// [`super::outline::scan`] of the same `xml`. `request_ids` are the requests this browser may
/// be answering (`None`: an unsolicited response the connection allows); `decryption` are the
/// SP's encryption keys, for an `EncryptedAssertion`.
pub fn verify(
    xml: &str,
    outline: Scan,
    connection: &Connection,
    sp: &SpUrls,
    request_ids: Option<&[&str]>,
    decryption: &[&PKey<Private>],
) -> Result<Verified, Rejection> {
    preflight(&outline, connection, sp)?;
    let encrypted = outline.encrypted_assertions > 0;
    let signatures = Signatures::of(connection)?;
    let skew = chrono::Duration::seconds(connection.settings.clock_skew_seconds);
    let expected = assertion::Expected {
        idp_entity_id: &connection.idp_entity_id,
        sp_entity_id: &sp.sp_entity_id,
        acs_url: &sp.acs_url,
        request_ids,
        skew,
        max_issue_delay: chrono::Duration::seconds(90) + skew,
        now: chrono::Utc::now(),
    };
    let (mut verified, references) = if encrypted {
        verify_encrypted(xml, outline, connection, &signatures, &expected, decryption)?
    } else {
        let reduced = signatures.reduce(xml)?;
        let verified = assertion::read(
            &reduced,
            &expected,
            outline.response_id,
            outline.in_response_to,
        )?;
        (verified, outline.references)
    };
    verified.assertion_signed = references
        .iter()
        .any(|r| r.strip_prefix('#') == Some(verified.assertion_id.as_str()));
    if connection.settings.require_signed_assertions && !verified.assertion_signed {
        return Err(Rejection::new(
            Reason::AssertionNotSigned,
            "only the Response is signed; the connection requires a signed Assertion",
        ));
    }
    Ok(verified)
}

/// The checks of the outline that come before any signature is verified.
fn preflight(outline: &Scan, connection: &Connection, sp: &SpUrls) -> Result<(), Rejection> {
    if !outline.root_is_response {
        return Err(Rejection::new(
            Reason::Malformed,
            "the document is not a SAML protocol Response",
        ));
    }
    let encrypted = outline.encrypted_assertions > 0;
    if outline.assertions + outline.encrypted_assertions != 1 {
        return Err(Rejection::new(
            Reason::Wrapped,
            format!(
                "expected exactly one Assertion or EncryptedAssertion, {} came",
                outline.assertions + outline.encrypted_assertions
            ),
        ));
    }
    if !encrypted && connection.settings.require_encrypted_assertions {
        return Err(Rejection::new(
            Reason::NotEncrypted,
            "the assertion came in clear; the connection requires it encrypted",
        ));
    }
    gates(outline, connection)?;
    if !encrypted && outline.signatures == 0 {
        return Err(Rejection::new(
            Reason::MissingSignature,
            "neither the Response nor the Assertion is signed",
        ));
    }
    if let Some(status) = outline.status.as_deref().filter(|s| *s != SUCCESS) {
        return Err(Rejection::new(
            Reason::StatusNotSuccess,
            format!("expected {SUCCESS}, {status} came"),
        ));
    }
    if let Some(dest) = outline.destination.as_deref().filter(|d| *d != sp.acs_url) {
        return Err(Rejection::new(
            Reason::WrongDestination,
            format!("expected {}, {dest} came", sp.acs_url),
        ));
    }
    Ok(())
}

/// The EncryptedAssertion case of [`verify`]: returns the reading and the Reference URIs of the
/// decrypted assertion's own signature.
fn verify_encrypted(
    xml: &str,
    outline: Scan,
    connection: &Connection,
    signatures: &Signatures,
    expected: &assertion::Expected,
    decryption: &[&PKey<Private>],
) -> Result<(Verified, Vec<String>), Rejection> {
    // The Response's signature, when there is one, covers the EncryptedAssertion: decrypt
    // what it signed. Otherwise the decrypted assertion must carry its own signature.
    let outer = (outline.signatures > 0)
        .then(|| signatures.reduce_to_text(xml))
        .transpose()?;
    let plaintext = decrypt::assertion(outer.as_deref().unwrap_or(xml), decryption)?;
    let inner = super::outline::scan(&plaintext)?;
    if inner.assertions != 1 || inner.encrypted_assertions != 0 {
        return Err(Rejection::new(
            Reason::Wrapped,
            "the decrypted content is not exactly one Assertion",
        ));
    }
    gates(&inner, connection)?;
    let signed = (inner.signatures > 0)
        .then(|| signatures.reduce_to_text(&plaintext))
        .transpose()?;
    if outer.is_none() && signed.is_none() {
        return Err(Rejection::new(
            Reason::MissingSignature,
            "neither the Response nor the decrypted Assertion is signed",
        ));
    }
    let verified = assertion::read_decrypted(
        outer.as_deref(),
        signed.as_deref().unwrap_or(&plaintext),
        expected,
        outline.response_id,
        outline.in_response_to,
    )?;
    Ok((verified, inner.references))
}

/// The outline checks that hold for a response and for a decrypted assertion alike: whole
/// values, allowed algorithms, and only certificates of the connection.
fn gates(outline: &Scan, connection: &Connection) -> Result<(), Rejection> {
    if outline.split_values {
        return Err(Rejection::new(
            Reason::NameIdSplit,
            "a NameID or AttributeValue contains a comment, processing instruction, CDATA or element",
        ));
    }
    if let Some(weak) = outline
        .algorithms
        .iter()
        .find(|a| !dsig_policy::algorithm_allowed(a, connection.settings.allow_sha1))
    {
        return Err(Rejection::new(
            Reason::WeakAlgorithm,
            format!("expected RSA-SHA256 or stronger, {weak:?} came"),
        ));
    }
    if let Some(unknown) = outline
        .embedded_certs
        .iter()
        .find(|c| !metadata::known(c, &connection.certificates))
    {
        let came = metadata::certificate(unknown)
            .map(|c| format!("{} (SHA-256 {})", c.subject, &c.fingerprint[..16]))
            .unwrap_or_else(|_| "an unreadable certificate".into());
        return Err(Rejection::new(
            Reason::UnknownSigningKey,
            format!(
                "signed by {came}, which is not among the connection's {} certificate(s)",
                connection.certificates.len()
            ),
        ));
    }
    Ok(())
}

/// A signed protocol message that is not a Response (a LogoutRequest or LogoutResponse by
/// HTTP-POST): the outline's gates, no assertion inside, at least one signature, and every
/// signature verified with the connection's certificates. Returns only what they sign.
pub fn verify_signed_message(
    xml: &str,
    outline: &Scan,
    connection: &Connection,
) -> Result<String, Rejection> {
    gates(outline, connection)?;
    if outline.assertions + outline.encrypted_assertions > 0 {
        return Err(Rejection::new(
            Reason::Wrapped,
            "a logout message carries an assertion",
        ));
    }
    if outline.signatures == 0 {
        return Err(Rejection::new(
            Reason::MissingSignature,
            "the message is not signed",
        ));
    }
    Signatures::of(connection)?.reduce_to_text(xml)
}

/// IdP metadata found by a refresh: the outline's structure and algorithm gates, no assertion
/// inside, at least one signature, and every signature verified with the connection's current
/// certificates (the certificates the metadata lists are what it changes, so they are not
/// required to be known). Returns only what the signatures sign.
pub fn verify_signed_metadata(xml: &str, connection: &Connection) -> Result<String, Rejection> {
    let outline = super::outline::scan(xml)?;
    if let Some(weak) = outline
        .algorithms
        .iter()
        .find(|a| !dsig_policy::algorithm_allowed(a, connection.settings.allow_sha1))
    {
        return Err(Rejection::new(
            Reason::WeakAlgorithm,
            format!("expected RSA-SHA256 or stronger, {weak:?} came"),
        ));
    }
    if outline.assertions + outline.encrypted_assertions > 0 || outline.signatures == 0 {
        return Err(Rejection::new(
            Reason::MissingSignature,
            "the metadata is not signed (or carries an assertion)",
        ));
    }
    Signatures::of(connection)?.reduce_to_text(xml)
}

/// Signature verification with a connection's certificates.
struct Signatures {
    keys: Vec<Arc<VerificationKey>>,
    allow_sha1: bool,
}

impl Signatures {
    fn of(connection: &Connection) -> Result<Signatures, Rejection> {
        // Never verify without a certificate: there would be nothing to check signatures by.
        if connection.certificates.is_empty() {
            return Err(Rejection::new(
                Reason::UnknownSigningKey,
                "the connection has no signing certificate",
            ));
        }
        let keys = connection
            .certificates
            .iter()
            .map(|c| {
                idp_keys::key_of(c).ok_or_else(|| {
                    Rejection::new(
                        Reason::Malformed,
                        "the connection's certificates could not be loaded",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // xmlsec may run only the allow-listed transforms; never verify with an unrestricted one.
        dsig_policy::harden().map_err(|e| Rejection::new(Reason::BadSignature, e.to_string()))?;
        Ok(Signatures {
            keys,
            allow_sha1: connection.settings.allow_sha1,
        })
    }

    /// Every signature of `doc` must verify against a certificate of the connection; only what
    /// they sign is returned. With SHA-1 allowed there is no samael allow-list (it has no SHA-1
    /// entry): the outline gates already refused anything else.
    fn reduce(&self, doc: &str) -> Result<Document, Rejection> {
        let allowed = [
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
        ];
        let keys: Vec<&VerificationKey> = self.keys.iter().map(Arc::as_ref).collect();
        XmlSec::reduce_xml_to_signed_document_with_keys(
            doc,
            &keys,
            ReduceMode::ValidateAndMarkNoAncestors,
            (!self.allow_sha1).then_some(&allowed[..]),
        )
        .map_err(|_| {
            Rejection::new(
                Reason::BadSignature,
                "a signature does not verify with the connection's certificates",
            )
        })
    }

    /// [`Self::reduce`], written out as text: for a caller that hands it on as text (decryption,
    /// a logout message's reading, metadata).
    fn reduce_to_text(&self, doc: &str) -> Result<String, Rejection> {
        self.reduce(doc).map(|reduced| reduced.to_string())
    }
}

/// The email the connection reads: the NameID (whatever its format, if it is an email), or
/// the first value of the configured attribute (by Name or FriendlyName).
pub fn email_of(
    verified: &Verified,
    connection: &Connection,
) -> Result<crate::accounts::Email, Rejection> {
    let raw = match &connection.settings.email_attribute {
        None => verified.name_id.clone(),
        Some(attr) => verified
            .attributes
            .iter()
            .find(|(name, _)| name == attr)
            .and_then(|(_, values)| values.first().cloned()),
    };
    let raw = raw.ok_or_else(|| {
        let from = connection
            .settings
            .email_attribute
            .as_deref()
            .map(|a| format!("attribute {a}"))
            .unwrap_or_else(|| "the NameID".into());
        Rejection::new(
            Reason::NoEmail,
            format!("expected an email in {from}; nothing came"),
        )
    })?;
    crate::accounts::Email::parse(&raw).map_err(|_| {
        Rejection::new(
            Reason::NoEmail,
            "the value where the email is expected is not an email address",
        )
    })
}
