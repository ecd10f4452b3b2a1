//! Single Logout (SAML 2.0 Profiles §4.4) on the wire: the LogoutRequest and LogoutResponse this
//! SP sends (HTTP-Redirect, always signed), and reading the ones an IdP sends by HTTP-Redirect
//! (the signature checked over the query octets exactly as received, never re-encoded ones) or
//! HTTP-POST (an enveloped XML signature, checked by xmlsec like the ACS checks a Response).
//! Every message must be signed by a certificate of its connection, name that connection's IdP
//! as its issuer and this SP's SLO URL as its destination, and be fresh.

use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use flate2::read::DeflateDecoder;
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use openssl::x509::X509;

use super::acs::{Reason, Rejection};
use super::keys::KeyPair;
use super::sp::{esc, new_request_id, redirect_message};
use super::xml::{ASSERTION, NoNsProperty, PROTOCOL, child, children, is, text};
use super::{Connection, SpUrls, outline};

/// The status of a logout that ended everything it was asked to.
pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// The status of a request this SP could not act on.
pub const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
/// The largest inflated message accepted by HTTP-Redirect (a DEFLATE bomb stops here).
const MAX_INFLATED: u64 = 256 * 1024;

/// The subject of a sign-in, as a LogoutRequest names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    pub name_id: String,
    pub format: Option<String>,
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
}

/// A LogoutRequest from the IdP.
#[derive(Clone, Debug)]
pub struct LogoutRequest {
    pub id: String,
    pub subject: Subject,
    /// The sessions it ends; empty: every session of the subject.
    pub session_indexes: Vec<String>,
    /// Until when it may be acted on (Unix ms): the replay cache keeps its ID until then.
    pub valid_until: i64,
}

/// A LogoutResponse from the IdP, answering a request of this SP.
#[derive(Clone, Debug)]
pub struct LogoutResponse {
    pub in_response_to: String,
    pub status: String,
}

/// A message the SLO endpoint received, verified.
#[derive(Clone, Debug)]
pub enum Message {
    Request(LogoutRequest),
    Response(LogoutResponse),
}

/// What a message must match besides its signature.
pub struct Expected<'a> {
    pub connection: &'a Connection,
    pub sp: &'a SpUrls,
    pub now: DateTime<Utc>,
}

fn refused(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

/// The SigAlg URIs a redirect-bound message may be signed with, and their digests.
fn digest_of(sig_alg: &str, allow_sha1: bool) -> Option<MessageDigest> {
    match sig_alg {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Some(MessageDigest::sha256()),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => Some(MessageDigest::sha384()),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => Some(MessageDigest::sha512()),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1" if allow_sha1 => Some(MessageDigest::sha1()),
        _ => None,
    }
}

/// One query component decoded as `application/x-www-form-urlencoded` (`+` is a space).
fn percent_decode(raw: &str) -> Result<String, Rejection> {
    let pair = format!("v={raw}");
    let decoded = url::form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // The decoder replaces invalid UTF-8; a replacement character means the octets were not text.
    if decoded.contains('\u{fffd}') {
        return Err(refused(Reason::Malformed, "a query parameter is not UTF-8"));
    }
    Ok(decoded)
}

/// The query's parameters as (name, value exactly as received); a parameter of the binding
/// given twice is refused (two readers could pick different ones).
fn raw_parameters(query: &str) -> Result<Vec<(String, &str)>, Rejection> {
    let mut out: Vec<(String, &str)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let known = [
            "SAMLRequest",
            "SAMLResponse",
            "RelayState",
            "SigAlg",
            "Signature",
        ];
        if known.contains(&name.as_str()) && out.iter().any(|(n, _)| *n == name) {
            return Err(refused(
                Reason::Malformed,
                format!("the query carries {name} twice"),
            ));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// Reads a message received by HTTP-Redirect: the signature over the octets as received, then
/// the inflated XML. Returns the message and its RelayState.
pub fn receive_redirect(
    raw_query: &str,
    expected: &Expected,
) -> Result<(Message, Option<String>), Rejection> {
    let params = raw_parameters(raw_query)?;
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let (parameter, message) = match (get("SAMLRequest"), get("SAMLResponse")) {
        (Some(m), None) => ("SAMLRequest", m),
        (None, Some(m)) => ("SAMLResponse", m),
        _ => {
            return Err(refused(
                Reason::Malformed,
                "expected exactly one of SAMLRequest and SAMLResponse",
            ));
        }
    };
    let (Some(sig_alg), Some(signature)) = (get("SigAlg"), get("Signature")) else {
        return Err(refused(
            Reason::MissingSignature,
            "the message carries no SigAlg and Signature",
        ));
    };
    // SAML bindings §3.4.4.1: the signed octets are the parameters in this order, as sent.
    let mut signed = format!("{parameter}={message}");
    if let Some(relay) = get("RelayState") {
        signed.push_str(&format!("&RelayState={relay}"));
    }
    signed.push_str(&format!("&SigAlg={sig_alg}"));
    let settings = &expected.connection.settings;
    let sig_alg = percent_decode(sig_alg)?;
    let digest = digest_of(&sig_alg, settings.allow_sha1).ok_or_else(|| {
        refused(
            Reason::WeakAlgorithm,
            format!("expected RSA-SHA256 or stronger, {sig_alg:?} came"),
        )
    })?;
    let signature = STANDARD
        .decode(percent_decode(signature)?.replace([' ', '\n', '\r'], ""))
        .map_err(|_| refused(Reason::Malformed, "the Signature is not base64"))?;
    if !signed_by_connection(expected.connection, digest, signed.as_bytes(), &signature) {
        return Err(refused(
            Reason::BadSignature,
            "the signature does not verify with the connection's certificates",
        ));
    }
    let xml = inflate(&percent_decode(message)?)?;
    let relay = get("RelayState").map(percent_decode).transpose()?;
    Ok((read(&xml, expected)?, relay))
}

/// Whether any certificate of the connection verifies `signature` over `data`.
fn signed_by_connection(
    connection: &Connection,
    digest: MessageDigest,
    data: &[u8],
    signature: &[u8],
) -> bool {
    connection.certificates.iter().any(|cert| {
        let verified = || -> Result<bool, openssl::error::ErrorStack> {
            let der = STANDARD.decode(&cert.der_base64).unwrap_or_default();
            let key = X509::from_der(&der)?.public_key()?;
            let mut verifier = Verifier::new(digest, &key)?;
            verifier.update(data)?;
            verifier.verify(signature)
        };
        verified().unwrap_or(false)
    })
}

/// base64, then raw DEFLATE, at most [`MAX_INFLATED`] bytes of UTF-8.
fn inflate(encoded: &str) -> Result<String, Rejection> {
    let compressed = STANDARD
        .decode(encoded.replace([' ', '\n', '\r'], ""))
        .map_err(|_| refused(Reason::Malformed, "the message is not base64"))?;
    let mut xml = Vec::new();
    DeflateDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut xml)
        .map_err(|_| refused(Reason::Malformed, "the message is not DEFLATE-compressed"))?;
    if xml.len() as u64 > MAX_INFLATED {
        return Err(refused(
            Reason::TooLarge,
            "the message inflates to more than 256 KiB",
        ));
    }
    String::from_utf8(xml).map_err(|_| refused(Reason::Malformed, "the message is not UTF-8"))
}

/// Reads a message received by HTTP-POST (base64 XML with an enveloped signature): every
/// signature verified by xmlsec with the connection's certificates, read from what they sign.
pub fn receive_post(encoded: &str, expected: &Expected) -> Result<Message, Rejection> {
    // Whitespace is taken out as the ACS takes it out of a response: IdPs wrap base64 in lines.
    let bytes = STANDARD
        .decode(encoded.split_whitespace().collect::<String>())
        .map_err(|_| refused(Reason::Malformed, "the message is not base64"))?;
    let xml = String::from_utf8(bytes)
        .map_err(|_| refused(Reason::Malformed, "the message is not UTF-8"))?;
    let scan = outline::scan(&xml)?;
    let signed = super::acs::verify_signed_message(&xml, &scan, expected.connection)?;
    read(&signed, expected)
}

/// Reads a LogoutRequest or LogoutResponse and checks issuer, destination and freshness.
fn read(xml: &str, expected: &Expected) -> Result<Message, Rejection> {
    // The same strict outline as for responses: no DTD, UTF-8 only, no comments or processing
    // instructions, no wrapped signatures.
    outline::scan(xml)?;
    let malformed = || refused(Reason::Malformed, "not well-formed XML");
    let doc = super::xml::parse_strict(xml).ok_or_else(malformed)?;
    let root = doc.get_root_readonly().ok_or_else(malformed)?;
    let issuer = child(root, ASSERTION, "Issuer").map(text);
    if issuer.as_deref() != Some(expected.connection.idp_entity_id.as_str()) {
        return Err(refused(
            Reason::WrongIssuer,
            format!(
                "expected {}, {issuer:?} came",
                expected.connection.idp_entity_id
            ),
        ));
    }
    // Bindings §3.4.5.2 / §3.5.5.2: a signed message names where it was sent.
    let destination = root.get_property_no_ns("Destination");
    if destination.as_deref() != Some(expected.sp.sp_slo_url.as_str()) {
        return Err(refused(
            Reason::WrongDestination,
            format!("expected {}, {destination:?} came", expected.sp.sp_slo_url),
        ));
    }
    let skew = chrono::Duration::seconds(expected.connection.settings.clock_skew_seconds);
    let issued = time(root.get_property_no_ns("IssueInstant"))?
        .ok_or_else(|| refused(Reason::Malformed, "the message has no IssueInstant"))?;
    if issued > expected.now + skew {
        return Err(refused(Reason::NotYetValid, "issued in the future"));
    }
    let mut valid_until = issued + skew + chrono::Duration::minutes(5);
    if valid_until < expected.now {
        return Err(refused(
            Reason::Expired,
            "issued more than five minutes ago",
        ));
    }
    if is(root, PROTOCOL, "LogoutRequest") {
        if let Some(until) = time(root.get_property_no_ns("NotOnOrAfter"))? {
            if until + skew <= expected.now {
                return Err(refused(Reason::Expired, "NotOnOrAfter has passed"));
            }
            valid_until = valid_until.min(until + skew);
        }
        return logout_request(root, valid_until.timestamp_millis()).map(Message::Request);
    }
    if is(root, PROTOCOL, "LogoutResponse") {
        let in_response_to = root
            .get_property_no_ns("InResponseTo")
            .ok_or_else(|| refused(Reason::UnknownRequest, "the response has no InResponseTo"))?;
        let status = child(root, PROTOCOL, "Status")
            .and_then(|s| child(s, PROTOCOL, "StatusCode"))
            .and_then(|c| c.get_property_no_ns("Value"))
            .ok_or_else(|| refused(Reason::Malformed, "the response has no StatusCode"))?;
        return Ok(Message::Response(LogoutResponse {
            in_response_to,
            status,
        }));
    }
    Err(refused(
        Reason::Malformed,
        "the message is neither a LogoutRequest nor a LogoutResponse",
    ))
}

fn logout_request(
    root: libxml::readonly::RoNode,
    valid_until: i64,
) -> Result<LogoutRequest, Rejection> {
    let id = root
        .get_property_no_ns("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refused(Reason::Malformed, "the LogoutRequest has no ID"))?;
    if child(root, ASSERTION, "EncryptedID").is_some() {
        return Err(refused(
            Reason::Malformed,
            "an encrypted NameID in a LogoutRequest is not supported",
        ));
    }
    let name_id = child(root, ASSERTION, "NameID")
        .ok_or_else(|| refused(Reason::Malformed, "the LogoutRequest names no NameID"))?;
    let subject = Subject {
        name_id: text(name_id),
        format: name_id.get_property_no_ns("Format"),
        name_qualifier: name_id.get_property_no_ns("NameQualifier"),
        sp_name_qualifier: name_id.get_property_no_ns("SPNameQualifier"),
    };
    if subject.name_id.is_empty() {
        return Err(refused(Reason::Malformed, "the NameID is empty"));
    }
    Ok(LogoutRequest {
        id,
        subject,
        session_indexes: children(root, PROTOCOL, "SessionIndex")
            .into_iter()
            .map(text)
            .collect(),
        valid_until,
    })
}

fn time(raw: Option<String>) -> Result<Option<DateTime<Utc>>, Rejection> {
    raw.map(|v| {
        DateTime::parse_from_rfc3339(v.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| refused(Reason::Malformed, format!("{v:?} is not a time")))
    })
    .transpose()
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn name_id_xml(subject: &Subject) -> String {
    let mut attrs = String::new();
    for (name, value) in [
        ("Format", &subject.format),
        ("NameQualifier", &subject.name_qualifier),
        ("SPNameQualifier", &subject.sp_name_qualifier),
    ] {
        if let Some(v) = value {
            attrs.push_str(&format!(" {name}=\"{}\"", esc(v)));
        }
    }
    format!(
        "<saml:NameID{attrs}>{}</saml:NameID>",
        esc(&subject.name_id)
    )
}

/// A signed LogoutRequest for `subject` by HTTP-Redirect to the IdP's SLO URL; returns the
/// request's ID and the URL.
pub fn logout_request_url(
    connection: &Connection,
    sp: &SpUrls,
    subject: &Subject,
    session_index: Option<&str>,
    signing: &KeyPair,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<(String, String)>> {
    let Some(slo_url) = connection.slo_url.as_deref() else {
        return Ok(None);
    };
    let id = new_request_id();
    let index = session_index
        .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(i)))
        .unwrap_or_default();
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" \
         Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" NotOnOrAfter=\"{}\">\
         <saml:Issuer>{}</saml:Issuer>{}{index}</samlp:LogoutRequest>",
        stamp(now),
        esc(slo_url),
        stamp(now + chrono::Duration::minutes(5)),
        esc(&sp.sp_entity_id),
        name_id_xml(subject),
    );
    let url = redirect_message(slo_url, "SAMLRequest", &xml, None, Some(signing))?;
    Ok(Some((id, url)))
}

/// A signed LogoutResponse to `in_response_to` by HTTP-Redirect, with the RelayState echoed;
/// `None` when the IdP published no SLO URL to answer at.
pub fn logout_response_url(
    connection: &Connection,
    sp: &SpUrls,
    in_response_to: &str,
    status: &str,
    relay_state: Option<&str>,
    signing: &KeyPair,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<String>> {
    let Some(to) = connection
        .slo_response_url
        .as_deref()
        .or(connection.slo_url.as_deref())
    else {
        return Ok(None);
    };
    let xml = format!(
        "<samlp:LogoutResponse xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{}\" \
         Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" InResponseTo=\"{}\">\
         <saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{}\"/></samlp:Status>\
         </samlp:LogoutResponse>",
        new_request_id(),
        stamp(now),
        esc(to),
        esc(in_response_to),
        esc(&sp.sp_entity_id),
        esc(status),
    );
    redirect_message(to, "SAMLResponse", &xml, relay_state, Some(signing)).map(Some)
}
