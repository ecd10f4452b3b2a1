//! IdP metadata: picks the IdP's `EntityDescriptor` (also inside an `EntitiesDescriptor`),
//! its SSO endpoints and every certificate it may sign with (`use="signing"` or no `use`), and
//! refuses metadata without one. The ACS verifies every signature against exactly those
//! certificates, so it never falls back to accepting unsigned responses.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::x509::X509;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use serde::{Deserialize, Serialize};

const MD: &[u8] = b"urn:oasis:names:tc:SAML:2.0:metadata";
const DS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";
/// The HTTP-Redirect binding.
pub const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub const POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// What the SP needs from an IdP's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_redirect: Option<String>,
    pub sso_post: Option<String>,
    /// SingleLogoutService (HTTP-Redirect): where LogoutRequests go.
    pub slo_redirect: Option<String>,
    /// Its ResponseLocation, when the IdP names one for LogoutResponses.
    pub slo_response: Option<String>,
    pub certificates: Vec<Certificate>,
    pub want_authn_requests_signed: bool,
}

/// One signing certificate, with what admins are shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Certificate {
    /// Base64 DER.
    pub der_base64: String,
    pub subject: String,
    /// Expiry, Unix milliseconds.
    pub not_after: i64,
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
}

/// Why metadata was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("the metadata is not well-formed XML: {0}")]
    Malformed(String),
    #[error("the metadata contains a DTD or entity declaration, which is not accepted")]
    Dtd,
    #[error("the metadata describes no identity provider (no IDPSSODescriptor)")]
    NoIdp,
    #[error("the metadata describes {0} identity providers; give the entity ID of the one to use")]
    SeveralIdps(usize),
    #[error("the metadata has no identity provider with entity ID {0}")]
    EntityNotFound(String),
    #[error(
        "the metadata has no signing certificate: without one, responses could not be verified"
    )]
    NoSigningCertificate,
    #[error("a certificate in the metadata is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("the metadata has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding")]
    NoSsoEndpoint,
}

#[derive(Default)]
struct Candidate {
    entity_id: String,
    is_idp: bool,
    redirect: Option<String>,
    post: Option<String>,
    slo: Option<(String, Option<String>)>,
    want_signed: bool,
    certs: Vec<String>,
}

fn attr(e: &BytesStart, name: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Whether `xml` declares a DTD or entities (refused everywhere: no entity expansion).
pub fn has_dtd(xml: &str) -> bool {
    let upper = xml.to_ascii_uppercase();
    upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY")
}

/// Parses IdP metadata; `entity_id` picks one IdP out of several.
pub fn parse(xml: &str, entity_id: Option<&str>) -> Result<IdpMetadata, MetadataError> {
    if has_dtd(xml) {
        return Err(MetadataError::Dtd);
    }
    let chosen = choose(scan(xml)?, entity_id)?;
    if chosen.entity_id.is_empty() {
        return Err(MetadataError::Malformed(
            "the EntityDescriptor has no entityID".into(),
        ));
    }
    let mut certificates = Vec::new();
    for b64 in &chosen.certs {
        let cert = certificate(b64)?;
        if !certificates
            .iter()
            .any(|c: &Certificate| c.fingerprint == cert.fingerprint)
        {
            certificates.push(cert);
        }
    }
    if certificates.is_empty() {
        return Err(MetadataError::NoSigningCertificate);
    }
    if chosen.redirect.is_none() && chosen.post.is_none() {
        return Err(MetadataError::NoSsoEndpoint);
    }
    Ok(IdpMetadata {
        entity_id: chosen.entity_id,
        sso_redirect: chosen.redirect,
        sso_post: chosen.post,
        slo_redirect: chosen.slo.as_ref().map(|(location, _)| location.clone()),
        slo_response: chosen.slo.and_then(|(_, response)| response),
        certificates,
        want_authn_requests_signed: chosen.want_signed,
    })
}

/// The IdP that `entity_id` names, or the only IdP of the document.
fn choose(candidates: Vec<Candidate>, entity_id: Option<&str>) -> Result<Candidate, MetadataError> {
    let idps: Vec<Candidate> = candidates.into_iter().filter(|c| c.is_idp).collect();
    match entity_id.filter(|e| !e.trim().is_empty()) {
        Some(wanted) => idps
            .into_iter()
            .find(|c| c.entity_id == wanted.trim())
            .ok_or_else(|| MetadataError::EntityNotFound(wanted.to_string())),
        None => match idps.len() {
            0 => Err(MetadataError::NoIdp),
            1 => idps.into_iter().next().ok_or(MetadataError::NoIdp),
            n => Err(MetadataError::SeveralIdps(n)),
        },
    }
}

/// Every EntityDescriptor of the document, with what an SP needs of its IdP role.
fn scan(xml: &str) -> Result<Vec<Candidate>, MetadataError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut scanner = Scanner::default();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| MetadataError::Malformed(e.to_string()))?;
        let ns_is = |uri: &[u8]| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == uri);
        let (md, ds) = (ns_is(MD), ns_is(DS));
        match event {
            Event::Start(ref e) => scanner.start(e, false, md, ds),
            Event::Empty(ref e) => scanner.start(e, true, md, ds),
            Event::Text(ref t) if scanner.in_cert => {
                scanner.cert_text.push_str(
                    &t.decode()
                        .map_err(|e| MetadataError::Malformed(e.to_string()))?,
                );
            }
            Event::End(ref e) => scanner.end(e.local_name().as_ref(), md, ds),
            Event::DocType(_) => return Err(MetadataError::Dtd),
            Event::Eof => return Ok(scanner.candidates),
            _ => {}
        }
    }
}

/// Where the metadata reader is: the entity being read and inside which elements.
#[derive(Default)]
struct Scanner {
    candidates: Vec<Candidate>,
    current: Option<Candidate>,
    in_idp: bool,
    /// Inside a KeyDescriptor: its `use` attribute, if any.
    key_use: Option<Option<String>>,
    in_cert: bool,
    cert_text: String,
}

impl Scanner {
    fn start(&mut self, e: &BytesStart, empty: bool, md: bool, ds: bool) {
        let local = e.local_name();
        match (local.as_ref(), md, ds) {
            (b"EntityDescriptor", true, _) => {
                self.current = Some(Candidate {
                    entity_id: attr(e, b"entityID").unwrap_or_default(),
                    ..Candidate::default()
                });
            }
            (b"IDPSSODescriptor", true, _) => {
                if let Some(c) = self.current.as_mut() {
                    c.is_idp = true;
                    c.want_signed = attr(e, b"WantAuthnRequestsSigned")
                        .is_some_and(|v| v == "true" || v == "1");
                }
                self.in_idp = !empty;
            }
            (b"KeyDescriptor", true, _) if self.in_idp => self.key_use = Some(attr(e, b"use")),
            (b"X509Certificate", _, true) if self.in_idp && self.key_use.is_some() && !empty => {
                self.in_cert = true;
                self.cert_text.clear();
            }
            (b"SingleSignOnService", true, _) if self.in_idp => {
                if let (Some(c), Some(binding), Some(location)) = (
                    self.current.as_mut(),
                    attr(e, b"Binding"),
                    attr(e, b"Location"),
                ) {
                    if binding == REDIRECT_BINDING && c.redirect.is_none() {
                        c.redirect = Some(location);
                    } else if binding == POST_BINDING && c.post.is_none() {
                        c.post = Some(location);
                    }
                }
            }
            (b"SingleLogoutService", true, _) if self.in_idp => {
                if let (Some(c), Some(binding), Some(location)) = (
                    self.current.as_mut(),
                    attr(e, b"Binding"),
                    attr(e, b"Location"),
                ) && binding == REDIRECT_BINDING
                    && c.slo.is_none()
                {
                    c.slo = Some((location, attr(e, b"ResponseLocation")));
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, local: &[u8], md: bool, ds: bool) {
        match (local, md, ds) {
            (b"X509Certificate", _, true) if self.in_cert => {
                self.in_cert = false;
                // Keys for signing: use="signing", or no use (signing and encryption).
                let signing = matches!(&self.key_use, Some(None))
                    || matches!(&self.key_use, Some(Some(u)) if u == "signing" || u.is_empty());
                if signing && let Some(c) = self.current.as_mut() {
                    c.certs.push(self.cert_text.split_whitespace().collect());
                }
            }
            (b"KeyDescriptor", true, _) => self.key_use = None,
            (b"IDPSSODescriptor", true, _) => self.in_idp = false,
            (b"EntityDescriptor", true, _) => {
                if let Some(c) = self.current.take() {
                    self.candidates.push(c);
                }
            }
            _ => {}
        }
    }
}

/// Reads one base64 DER certificate.
pub fn certificate(b64: &str) -> Result<Certificate, MetadataError> {
    let der = STANDARD
        .decode(b64.trim())
        .map_err(|e| MetadataError::BadCertificate(e.to_string()))?;
    let x509 = X509::from_der(&der).map_err(|e| MetadataError::BadCertificate(e.to_string()))?;
    let subject = x509
        .subject_name()
        .entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                String::from_utf8_lossy(e.data().as_slice())
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let epoch = openssl::asn1::Asn1Time::from_unix(0)
        .map_err(|e| MetadataError::BadCertificate(e.to_string()))?;
    let diff = epoch
        .diff(x509.not_after())
        .map_err(|e| MetadataError::BadCertificate(e.to_string()))?;
    let not_after = (i64::from(diff.days) * 86_400 + i64::from(diff.secs)) * 1000;
    Ok(Certificate {
        der_base64: STANDARD.encode(&der),
        subject,
        not_after,
        fingerprint: fingerprint(&der),
    })
}

/// A certificate's SHA-256 fingerprint, in lowercase hex, from its DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    crate::secrets::hex(&openssl::sha::sha256(der))
}

/// Whether `b64`, a certificate embedded in a signed message (whitespace taken out), is one of
/// `certs`, the connection's.
pub fn known(b64: &str, certs: &[Certificate]) -> bool {
    // The same bytes as a configured certificate, which was read whole when it was configured:
    // comparing the digest of the DER is enough, and costs a fraction of reading it as X.509
    // again (OpenSSL 3 decodes its key each time: 12% of the server's CPU under load). The
    // usual case, the configured certificate's own base64 (the outline took the whitespace
    // out), is known by its text alone; any other text is decoded and its digest compared.
    if certs.iter().any(|c| c.der_base64 == b64) {
        return true;
    }
    let Ok(der) = STANDARD.decode(b64.trim()) else {
        return false;
    };
    let digest = fingerprint(&der);
    certs.iter().any(|c| c.fingerprint == digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::keys::self_signed;

    /// An embedded certificate is known when it is the DER of a configured one: by its text
    /// where that is the configured certificate's, by its digest where the configured text is
    /// written otherwise (in lines, as a row edited by hand may hold it). Another certificate,
    /// and text that is not base64, are not known.
    #[test]
    fn a_certificate_is_known_by_its_der() {
        let ours = self_signed("idp.corp.test", 1, 30).unwrap();
        let text = ours.cert_base64().unwrap();
        let configured = [certificate(&text).unwrap()];
        assert!(known(&text, &configured));

        let mut in_lines = configured[0].clone();
        in_lines.der_base64 = text
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(in_lines.der_base64, text);
        assert!(known(&text, &[in_lines]));

        let other = self_signed("other.corp.test", 1, 30).unwrap();
        assert!(!known(&other.cert_base64().unwrap(), &configured));
        assert!(!known("not base64!", &configured));
        assert!(!known("", &configured));
    }
}
