//! A mock identity provider for tests and integrators: it publishes metadata and mints SAML
//! responses signed (RSA-SHA256 by default) with its own test key — valid ones, and, on
//! request, deliberately broken ones (unsigned, wrong audience, expired, wrapped, ...).
//! `nulab-pass mock-idp` serves it over HTTP (see `mock_idp_server`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{Crypto, CryptoProvider};

use super::keys::{self, KeyPair};

/// Which elements carry a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    Response,
    Assertion,
    Both,
    None,
}

/// Signature algorithm of the mock's signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    RsaSha1,
}

/// Email claim URI used by Microsoft Entra ID and ADFS.
pub const EMAIL_CLAIM: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
/// NameID format of email addresses.
pub const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Everything a response says; [`ResponseSpec::new`] gives a valid one.
#[derive(Clone, Debug)]
pub struct ResponseSpec {
    pub destination: Option<String>,
    pub recipient: String,
    pub audience: Option<String>,
    pub in_response_to: Option<String>,
    /// Issuer of the Response and the Assertion (default: the mock's entity ID).
    pub issuer: Option<String>,
    pub name_id: Option<String>,
    pub name_id_format: String,
    /// Raw XML placed inside the NameID instead of the escaped `name_id` (for hostile tests).
    pub name_id_raw: Option<String>,
    pub attributes: Vec<(String, Vec<String>)>,
    /// Seconds added to "now" for IssueInstant (negative: in the past).
    pub issued_offset_secs: i64,
    /// Conditions window relative to IssueInstant.
    pub not_before_secs: i64,
    pub not_on_or_after_secs: i64,
    pub status: String,
    pub signing: Signing,
    pub algorithm: Algorithm,
    pub response_id: String,
    pub assertion_id: String,
    /// The IdP's own layout: `NameQualifier` and `SPNameQualifier` on the NameID, as Shibboleth
    /// writes them for transient and persistent IDs.
    pub name_id_qualifiers: Option<(String, String)>,
    /// Raw XML appended to the AttributeStatement (e.g. an attribute whose value is an element).
    pub raw_attributes: Option<String>,
    /// `PrefixList` of an `InclusiveNamespaces` in the exclusive-C14N transform (Shibboleth: `xsd`).
    pub inclusive_prefixes: Option<String>,
    /// The namespace prefixes of the assertion and protocol elements (default `saml`, `samlp`;
    /// Shibboleth writes `saml2`, `saml2p`; an empty one is the default namespace, as Microsoft
    /// Entra ID and AD FS write their assertions).
    pub prefixes: (String, String),
    /// Encrypt the (signed, if asked) assertion for this SP certificate.
    pub encrypt_for: Option<Encryption>,
    /// The prefix of the signature's elements (default `ds`; Keycloak writes `dsig`; an empty
    /// one is the default namespace, `<Signature xmlns="...xmldsig#">`, as Microsoft Entra ID
    /// writes it).
    pub dsig_prefix: String,
    /// Indented, one element a line (as Shibboleth and AD FS write), instead of on one line.
    pub pretty: bool,
}

/// How the mock encrypts an assertion: RSA-OAEP for `recipient`, AES-256-GCM or AES-128-CBC.
#[derive(Clone, Debug)]
pub struct Encryption {
    pub recipient: openssl::x509::X509,
    pub gcm: bool,
}

impl ResponseSpec {
    /// A valid response for `email` (in the NameID) to `acs_url`, for the SP `audience`.
    pub fn new(email: &str, acs_url: &str, audience: &str, in_response_to: Option<&str>) -> Self {
        ResponseSpec {
            destination: Some(acs_url.to_string()),
            recipient: acs_url.to_string(),
            audience: Some(audience.to_string()),
            in_response_to: in_response_to.map(str::to_string),
            issuer: None,
            name_id: Some(email.to_string()),
            name_id_format: EMAIL_FORMAT.to_string(),
            name_id_raw: None,
            attributes: vec![("email".to_string(), vec![email.to_string()])],
            issued_offset_secs: 0,
            not_before_secs: -30,
            not_on_or_after_secs: 300,
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".to_string(),
            signing: Signing::Both,
            algorithm: Algorithm::RsaSha256,
            response_id: new_id(),
            assertion_id: new_id(),
            name_id_qualifiers: None,
            raw_attributes: None,
            inclusive_prefixes: None,
            prefixes: ("saml".to_string(), "samlp".to_string()),
            dsig_prefix: "ds".to_string(),
            pretty: false,
            encrypt_for: None,
        }
    }
}

/// A fresh XML ID (starts with a letter, 128 random bits).
pub fn new_id() -> String {
    format!("_{}", uuid::Uuid::new_v4().simple())
}

/// The mock IdP: an entity ID, an SSO URL and a signing key.
#[derive(Clone)]
pub struct MockIdp {
    pub entity_id: String,
    pub sso_url: String,
    pub keys: KeyPair,
    /// Its SingleLogoutService (HTTP-Redirect), when it does Single Logout.
    pub slo_url: Option<String>,
}

pub(super) fn esc(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn time(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl MockIdp {
    /// A mock with a fresh key.
    pub fn generate(entity_id: &str, sso_url: &str) -> anyhow::Result<MockIdp> {
        Ok(MockIdp {
            entity_id: entity_id.to_string(),
            sso_url: sso_url.to_string(),
            keys: keys::self_signed("nulab-pass mock IdP", 1, 365)?,
            slo_url: None,
        })
    }

    /// A mock with a given key pair (rollover tests, a persistent key).
    pub fn with_keys(entity_id: &str, sso_url: &str, keys: KeyPair) -> MockIdp {
        MockIdp {
            entity_id: entity_id.to_string(),
            sso_url: sso_url.to_string(),
            keys,
            slo_url: None,
        }
    }

    /// The certificate as base64 DER.
    pub fn cert_base64(&self) -> String {
        self.keys.cert_base64().unwrap_or_default()
    }

    /// Metadata with this key (`use="signing"`) and the SSO endpoint on both bindings.
    pub fn metadata_xml(&self) -> String {
        let xml = metadata_with_certs(&self.entity_id, &self.sso_url, &[self.cert_base64()], false);
        match &self.slo_url {
            // SingleLogoutService comes before NameIDFormat in an IDPSSODescriptor.
            Some(slo) => xml.replacen(
                "<md:NameIDFormat>",
                &format!(
                    "<md:SingleLogoutService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{}\"/><md:NameIDFormat>",
                    esc(slo)
                ),
                1,
            ),
            None => xml,
        }
    }

    /// The response XML for `spec`, signed as it asks.
    pub fn response_xml(&self, spec: &ResponseSpec) -> anyhow::Result<String> {
        let assertion = self.assertion_xml(spec)?;
        let issuer = esc(spec.issuer.as_deref().unwrap_or(&self.entity_id));
        let issued = time(spec.issued_offset_secs);
        let in_response_to = spec
            .in_response_to
            .as_deref()
            .map(|id| format!(" InResponseTo=\"{}\"", esc(id)))
            .unwrap_or_default();
        let sign_response = matches!(spec.signing, Signing::Response | Signing::Both);
        let destination = spec
            .destination
            .as_deref()
            .map(|d| format!(" Destination=\"{}\"", esc(d)))
            .unwrap_or_default();
        let response = format!(
            "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{issued}\"{destination}{in_response_to}>\
             <saml:Issuer>{issuer}</saml:Issuer>{sig}<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = spec.response_id,
            sig = if sign_response {
                self.template_for(&spec.response_id, spec)
            } else {
                String::new()
            },
            status = esc(&spec.status),
        );
        // Both namespaces the default one (AD FS): the root declares the protocol's, and the
        // Response's Issuer its own.
        let response = if spec.prefixes.0.is_empty() && spec.prefixes.1.is_empty() {
            response
                .replacen(
                    " xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"",
                    "",
                    1,
                )
                .replacen(
                    "<saml:Issuer>",
                    "<saml:Issuer xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">",
                    1,
                )
        } else {
            response
        };
        // The assertion inside already has its prefixes: only the Response's own are renamed.
        let (head, rest) = response.split_at(response.find(&assertion).unwrap_or(response.len()));
        let (inner, tail) = rest.split_at(assertion.len().min(rest.len()));
        let response = format!(
            "{}{inner}{}",
            laid_out(&with_prefixes(head, spec), spec),
            laid_out(&with_prefixes(tail, spec), spec)
        );
        if sign_response {
            self.sign(&response)
        } else {
            Ok(response)
        }
    }

    /// The assertion for `spec`: signed, then encrypted, as it asks.
    fn assertion_xml(&self, spec: &ResponseSpec) -> anyhow::Result<String> {
        let issuer = esc(spec.issuer.as_deref().unwrap_or(&self.entity_id));
        let issued = time(spec.issued_offset_secs);
        let in_response_to = spec
            .in_response_to
            .as_deref()
            .map(|id| format!(" InResponseTo=\"{}\"", esc(id)))
            .unwrap_or_default();
        let name_id = name_id_xml(spec);
        let audience = spec
            .audience
            .as_deref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>", esc(a)))
            .unwrap_or_default();
        let attributes: String = spec
            .attributes
            .iter()
            .map(|(name, values)| {
                let values: String = values.iter().map(|v| format!("<saml:AttributeValue xsi:type=\"xs:string\">{}</saml:AttributeValue>", esc(v))).collect();
                format!("<saml:Attribute Name=\"{}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">{values}</saml:Attribute>", esc(name))
            })
            .collect::<String>()
            + spec.raw_attributes.as_deref().unwrap_or_default();
        let statement = if attributes.is_empty() {
            String::new()
        } else {
            format!("<saml:AttributeStatement>{attributes}</saml:AttributeStatement>")
        };
        let sign_assertion = matches!(spec.signing, Signing::Assertion | Signing::Both);
        let assertion = format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ID=\"{aid}\" IssueInstant=\"{issued}\" Version=\"2.0\">\
             <saml:Issuer>{issuer}</saml:Issuer>{sig}\
             <saml:Subject>{name_id}<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
             <saml:SubjectConfirmationData{in_response_to} NotOnOrAfter=\"{confirm_until}\" Recipient=\"{recipient}\"/></saml:SubjectConfirmation></saml:Subject>\
             <saml:Conditions NotBefore=\"{not_before}\" NotOnOrAfter=\"{not_after}\">{audience}</saml:Conditions>\
             <saml:AuthnStatement AuthnInstant=\"{issued}\" SessionIndex=\"{aid}\"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
             {statement}</saml:Assertion>",
            aid = spec.assertion_id,
            sig = if sign_assertion {
                self.template_for(&spec.assertion_id, spec)
            } else {
                String::new()
            },
            confirm_until = time(spec.issued_offset_secs + spec.not_on_or_after_secs),
            recipient = esc(&spec.recipient),
            not_before = time(spec.issued_offset_secs + spec.not_before_secs),
            not_after = time(spec.issued_offset_secs + spec.not_on_or_after_secs),
        );
        let assertion = laid_out(&with_prefixes(&assertion, spec), spec);
        let assertion = if sign_assertion {
            self.sign(&assertion)?
        } else {
            assertion
        };
        Ok(match &spec.encrypt_for {
            Some(e) => super::decrypt::encrypt(&assertion, &e.recipient, e.gcm)?,
            None => assertion,
        })
    }

    /// The response for the HTTP-POST binding (base64 of the XML).
    pub fn response_b64(&self, spec: &ResponseSpec) -> anyhow::Result<String> {
        Ok(STANDARD.encode(self.response_xml(spec)?))
    }

    fn template_for(&self, id: &str, spec: &ResponseSpec) -> String {
        let template = self.signature_template(id, spec.algorithm);
        let template = match &spec.inclusive_prefixes {
            None => template,
            Some(list) => template.replacen(
                "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
                &format!(
                    "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{}\"/></ds:Transform>",
                    esc(list)
                ),
                1,
            ),
        };
        match spec.dsig_prefix.as_str() {
            "ds" => template,
            "" => template
                .replace("<ds:", "<")
                .replace("</ds:", "</")
                .replace("xmlns:ds=", "xmlns="),
            prefix => template
                .replace("<ds:", &format!("<{prefix}:"))
                .replace("</ds:", &format!("</{prefix}:"))
                .replace("xmlns:ds=", &format!("xmlns:{prefix}=")),
        }
    }

    /// An empty enveloped-signature template that xmlsec fills in.
    pub fn signature_template(&self, id: &str, algorithm: Algorithm) -> String {
        let (method, digest) = match algorithm {
            Algorithm::RsaSha256 => (
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmlenc#sha256",
            ),
            Algorithm::RsaSha1 => (
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            ),
        };
        format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
             <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
             <ds:SignatureMethod Algorithm=\"{method}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
             <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
             <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{digest}\"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
             <ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>",
            self.cert_base64()
        )
    }

    /// Signs the first signature template of `xml` with the mock's key.
    pub fn sign(&self, xml: &str) -> anyhow::Result<String> {
        let der = self.keys.key.private_key_to_der()?;
        let signed =
            Crypto::sign_xml(xml, &der).map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
        Ok(strip_declaration(&signed))
    }
}

/// The NameID element of `spec` (raw content for hostile tests, qualifiers when given).
fn name_id_xml(spec: &ResponseSpec) -> String {
    let qualifiers = spec
        .name_id_qualifiers
        .as_ref()
        .map(|(idp, sp)| {
            format!(
                " NameQualifier=\"{}\" SPNameQualifier=\"{}\"",
                esc(idp),
                esc(sp)
            )
        })
        .unwrap_or_default();
    match (&spec.name_id_raw, &spec.name_id) {
        (Some(raw), _) => format!(
            "<saml:NameID Format=\"{}\"{qualifiers}>{raw}</saml:NameID>",
            esc(&spec.name_id_format)
        ),
        (None, Some(v)) => format!(
            "<saml:NameID Format=\"{}\"{qualifiers}>{}</saml:NameID>",
            esc(&spec.name_id_format),
            esc(v)
        ),
        (None, None) => String::new(),
    }
}

/// Renames the `saml`/`samlp` prefixes of `xml` to the spec's.
fn with_prefixes(xml: &str, spec: &ResponseSpec) -> String {
    let (assertion, protocol) = (&spec.prefixes.0, &spec.prefixes.1);
    if assertion == "saml" && protocol == "samlp" {
        return xml.to_string();
    }
    // An empty prefix is the default namespace: `<Assertion xmlns="...">`.
    let open = |p: &str| {
        if p.is_empty() {
            "<".to_string()
        } else {
            format!("<{p}:")
        }
    };
    let close = |p: &str| {
        if p.is_empty() {
            "</".to_string()
        } else {
            format!("</{p}:")
        }
    };
    let declare = |p: &str| {
        if p.is_empty() {
            "xmlns=".to_string()
        } else {
            format!("xmlns:{p}=")
        }
    };
    xml.replace("<samlp:", &open(protocol))
        .replace("</samlp:", &close(protocol))
        .replace("xmlns:samlp=", &declare(protocol))
        .replace("<saml:", &open(assertion))
        .replace("</saml:", &close(assertion))
        .replace("xmlns:saml=", &declare(assertion))
}

/// `xml` with a line break and indentation between adjacent tags when the spec asks for it.
fn laid_out(xml: &str, spec: &ResponseSpec) -> String {
    if spec.pretty {
        xml.replace("><", ">\n    <")
    } else {
        xml.to_string()
    }
}

/// Removes a leading `<?xml ...?>` declaration (so a signed element can be embedded).
pub fn strip_declaration(xml: &str) -> String {
    let trimmed = xml.trim_start();
    match trimmed
        .strip_prefix("<?xml")
        .and_then(|rest| rest.find("?>").map(|end| &rest[end + 2..]))
    {
        Some(rest) => rest.trim_start().to_string(),
        None => trimmed.to_string(),
    }
}

/// IdP metadata listing `certs` (base64 DER) as signing keys.
pub fn metadata_with_certs(
    entity_id: &str,
    sso_url: &str,
    certs: &[String],
    want_signed: bool,
) -> String {
    let keys: String = certs
        .iter()
        .map(|c| format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{}\">\
         <md:IDPSSODescriptor WantAuthnRequestsSigned=\"{want_signed}\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}\
         <md:NameIDFormat>{EMAIL_FORMAT}</md:NameIDFormat>\
         <md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" Location=\"{sso}\"/>\
         <md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{sso}\"/>\
         </md:IDPSSODescriptor></md:EntityDescriptor>\n",
        esc(entity_id),
        sso = esc(sso_url)
    )
}
