//! The service-provider side of a connection: AuthnRequests (HTTP-Redirect, signed with
//! RSA-SHA256 when the connection asks), and the SP metadata document an IdP admin imports.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;
use url::form_urlencoded::byte_serialize;

use super::Connection;
use super::keys::{KeyPair, SpKeys};
use super::metadata::{POST_BINDING, REDIRECT_BINDING};

/// SigAlg of signed redirect-binding requests.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

pub(super) fn esc(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fresh AuthnRequest ID: 128 random bits (samael's own has only 32).
pub fn new_request_id() -> String {
    format!("_{}", uuid::Uuid::new_v4().simple())
}

/// The AuthnRequest XML for `connection`.
pub fn authn_request_xml(
    connection: &Connection,
    base_url: &str,
    id: &str,
    destination: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let urls = connection.sp_urls(base_url);
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
         ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" AssertionConsumerServiceURL=\"{}\" ProtocolBinding=\"{POST_BINDING}\">\
         <saml:Issuer>{}</saml:Issuer><samlp:NameIDPolicy AllowCreate=\"true\"/></samlp:AuthnRequest>",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        esc(destination),
        esc(&urls.acs_url),
        esc(&urls.sp_entity_id),
    )
}

/// The IdP URL that carries `xml` by the HTTP-Redirect binding, signed when `signing` is given.
/// An SSO URL that already has a query (Google's `?idpid=`) keeps it.
pub fn redirect_url(
    sso_url: &str,
    xml: &str,
    relay_state: &str,
    signing: Option<&KeyPair>,
) -> anyhow::Result<String> {
    redirect_message(sso_url, "SAMLRequest", xml, Some(relay_state), signing)
}

/// The URL that carries the protocol message `xml` as `parameter` (`SAMLRequest` or
/// `SAMLResponse`) by the HTTP-Redirect binding: DEFLATE, base64, the RelayState when there is
/// one, and the signature over the query exactly as sent when `signing` is given.
pub fn redirect_message(
    url: &str,
    parameter: &str,
    xml: &str,
    relay_state: Option<&str>,
    signing: Option<&KeyPair>,
) -> anyhow::Result<String> {
    let mut deflater = DeflateEncoder::new(Vec::new(), Compression::default());
    deflater.write_all(xml.as_bytes())?;
    let encoded = STANDARD.encode(deflater.finish()?);
    let mut query = format!(
        "{parameter}={}",
        byte_serialize(encoded.as_bytes()).collect::<String>()
    );
    if let Some(relay) = relay_state.filter(|r| !r.is_empty()) {
        query.push_str(&format!(
            "&RelayState={}",
            byte_serialize(relay.as_bytes()).collect::<String>()
        ));
    }
    if let Some(keys) = signing {
        query.push_str(&format!(
            "&SigAlg={}",
            byte_serialize(RSA_SHA256.as_bytes()).collect::<String>()
        ));
        // The signature covers the query exactly as sent (SAML bindings, section 3.4.4.1).
        let mut signer = Signer::new(MessageDigest::sha256(), &keys.key)?;
        signer.update(query.as_bytes())?;
        let signature = STANDARD.encode(signer.sign_to_vec()?);
        query.push_str(&format!(
            "&Signature={}",
            byte_serialize(signature.as_bytes()).collect::<String>()
        ));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}{query}"))
}

/// The SP metadata of `connection`: entity ID, ACS (HTTP-POST), signing certificate,
/// `AuthnRequestsSigned` and `WantAssertionsSigned` as configured, NameID formats.
pub fn metadata_xml(
    connection: &Connection,
    base_url: &str,
    keys: &SpKeys,
) -> anyhow::Result<String> {
    let urls = connection.sp_urls(base_url);
    let methods: String = super::decrypt::CONTENT_ALGORITHMS
        .iter()
        .chain(super::decrypt::KEY_ALGORITHMS)
        .map(|a| format!("<md:EncryptionMethod Algorithm=\"{a}\"/>"))
        .collect();
    let mut encryption_keys = String::new();
    for pair in &keys.encryption {
        encryption_keys.push_str(&format!(
            "<md:KeyDescriptor use=\"encryption\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}</md:KeyDescriptor>\n",
            pair.cert_base64()?
        ));
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{entity}\">\n\
         <md:SPSSODescriptor AuthnRequestsSigned=\"{signed}\" WantAssertionsSigned=\"{want}\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n\
         <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n\
         {encryption_keys}<md:SingleLogoutService Binding=\"{REDIRECT_BINDING}\" Location=\"{slo}\"/>\n\
         <md:SingleLogoutService Binding=\"{POST_BINDING}\" Location=\"{slo}\"/>\n\
         <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>\n\
         <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>\n\
         <md:AssertionConsumerService Binding=\"{POST_BINDING}\" Location=\"{acs}\" index=\"0\" isDefault=\"true\"/>\n\
         </md:SPSSODescriptor>\n</md:EntityDescriptor>\n",
        entity = esc(&urls.sp_entity_id),
        signed = connection.settings.sign_authn_requests,
        want = connection.settings.require_signed_assertions,
        cert = keys.signing.cert_base64()?,
        acs = esc(&urls.acs_url),
        slo = esc(&urls.sp_slo_url),
    ))
}

/// Which binding AuthnRequests use (always Redirect; the POST endpoint is a fallback target).
pub fn request_binding() -> &'static str {
    REDIRECT_BINDING
}
