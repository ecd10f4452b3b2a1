//! Hostile XML at the running server's ACS, each built from a response the mock IdP signs
//! correctly: signature transforms outside the allow-list (XSLT, XPath, an unknown URI), an
//! HMAC signature method, parser differentials (a second assertion or a split NameID behind a
//! namespace written with character references, a polluted ID attribute, an XPointer
//! reference, another encoding, a comment or processing instruction in a signed value, a
//! relative namespace URI) and an oversized body. Each is refused with its reason code,
//! no session and an audit event, and leaves the browser's sign-in request usable. A failure
//! of the database after verification is this service's 5xx, never blamed on the response.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nulab_pass::mock_idp::{ResponseSpec, Signing};
use nulab_pass::saml::dsig_policy;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::{Sso, sso};
use crate::both;
use crate::common::Backend;

const XSLT: &str = "http://www.w3.org/TR/1999/REC-xslt-19991116";
const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// A stylesheet whose output is the fixed text `nulab`, whatever it is given.
const STYLESHEET: &str = "<xsl:stylesheet xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" version=\"1.0\"><xsl:output method=\"text\"></xsl:output><xsl:template match=\"/\">nulab</xsl:template></xsl:stylesheet>";

fn transform(algorithm: &str, body: &str) -> String {
    format!("<ds:Transform Algorithm=\"{algorithm}\">{body}</ds:Transform>")
}

/// A valid response for Mia, signed on the Response and the Assertion by the mock IdP.
fn genuine(s: &Sso, request_id: &str) -> (ResponseSpec, String) {
    let mut spec = ResponseSpec::new("mia@corp.test", &s.acs(), &s.audience(), Some(request_id));
    spec.signing = Signing::Both;
    let xml = s.idp.response_xml(&spec).unwrap();
    (spec, xml)
}

/// Each variant of the genuine response, with the reason it must be refused for.
fn variants(s: &Sso, spec: &ResponseSpec, xml: &str) -> Vec<(&'static str, u16, String)> {
    let exc = format!("<ds:Transform Algorithm=\"{EXC_C14N}\"/>");
    assert!(
        xml.contains(&exc),
        "the mock's signatures use exclusive C14N"
    );
    let nameid = format!(
        "<saml:NameID Format=\"{}\">mia@corp.test</saml:NameID>",
        spec.name_id_format
    );
    assert!(xml.contains(&nameid));
    let assertion_at = xml.find("<saml:Assertion").unwrap();
    let hidden_assertion = format!(
        "<a:Assertion xmlns:a=\"urn:oasis:names:tc:SAML:2.0:&#97;ssertion\" ID=\"_hidden\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><a:Issuer>{}</a:Issuer><a:Subject><a:NameID>eve@corp.test</a:NameID></a:Subject></a:Assertion>",
        s.idp.entity_id
    );
    vec![
        (
            "transform_not_allowed",
            403,
            xml.replacen(&exc, &transform(XSLT, STYLESHEET), 1),
        ),
        (
            "transform_not_allowed",
            403,
            xml.replacen(
                &exc,
                &transform(
                    XPATH,
                    "<ds:XPath>count(ancestor-or-self::node()) &gt; 0</ds:XPath>",
                ),
                1,
            ),
        ),
        (
            "transform_not_allowed",
            403,
            xml.replacen(&exc, &transform("urn:example:not-a-transform", ""), 1),
        ),
        (
            "transform_not_allowed",
            403,
            xml.replacen(
                &format!("<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>"),
                &format!("<ds:CanonicalizationMethod Algorithm=\"{XSLT}\"/>"),
                1,
            ),
        ),
        (
            "weak_signature_algorithm",
            403,
            xml.replacen(
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
                1,
            ),
        ),
        (
            "signature_wrapping",
            403,
            format!(
                "{}{hidden_assertion}{}",
                &xml[..assertion_at],
                &xml[assertion_at..]
            ),
        ),
        (
            "nameid_split",
            403,
            xml.replacen(
                &nameid,
                &format!(
                    "<n:NameID xmlns:n=\"urn:oasis:names:tc:SAML:2.0:&#97;ssertion\" Format=\"{}\">mia@corp.test<!---->.evil.example</n:NameID>",
                    spec.name_id_format
                ),
                1,
            ),
        ),
        (
            "signature_wrapping",
            403,
            xml.replacen(
                &format!("ID=\"{}\"", spec.assertion_id),
                &format!(
                    "xmlns:x=\"urn:example:x\" x:ID=\"_other\" ID=\"{}\"",
                    spec.assertion_id
                ),
                1,
            ),
        ),
        (
            "signature_wrapping",
            403,
            xml.replacen(
                &format!("URI=\"#{}\"", spec.response_id),
                &format!("URI=\"#xpointer(id('{}'))\"", spec.response_id),
                1,
            ),
        ),
        (
            "malformed_response",
            400,
            format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{xml}"),
        ),
        (
            "malformed_response",
            400,
            xml.replacen(
                "<saml:Issuer>",
                "<saml:Issuer><?evil instruction?>",
                1,
            ),
        ),
        (
            "malformed_response",
            400,
            xml.replacen("<saml:Issuer>", "<saml:Issuer><!-- hidden -->", 1),
        ),
        (
            "malformed_response",
            400,
            xml.replacen(
                "<saml:Assertion ",
                "<saml:Assertion xmlns:rel=\"relative/ns\" ",
                1,
            ),
        ),
    ]
}

async fn hostile_xml(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let (spec, xml) = genuine(&s, &started.request_id);
    for (code, status, variant) in variants(&s, &spec, &xml) {
        let before = s.server.count("audit_events").await;
        let res = s.post_xml(&browser, &variant, &started).await;
        s.assert_refused(&browser, res, status, code).await;
        assert_eq!(
            s.server.count("audit_events").await,
            before + 1,
            "one event for {code}"
        );
    }
    // Nothing was used up: the genuine response still signs Mia in.
    let res = s.post_xml(&browser, &xml, &started).await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(
    transforms_hmac_and_parser_differentials_are_refused,
    hostile_xml
);

async fn oversized(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let (_, xml) = genuine(&s, &started.request_id);
    // Past the ACS's own limit (256 KiB) and past what any generic body limit would take.
    for padding in [300 * 1024, 4 * 1024 * 1024] {
        let huge = STANDARD.encode(format!("{xml}<!--{}-->", "x".repeat(padding)));
        let res = s
            .post(&browser, &huge, &started.relay_state, Some(&started.cookie))
            .await;
        s.assert_refused(&browser, res, 413, "response_too_large")
            .await;
    }
    let res = s.post_xml(&browser, &xml, &started).await;
    assert_eq!(res.status(), 303);
}
both!(an_oversized_body_is_refused_by_the_acs_itself, oversized);

/// A response whose only Reference transform is XSLT, signed with the IdP's real key over a
/// SignedInfo whose digest is that of the stylesheet's output: it verifies if and only if the
/// stylesheet runs.
fn valid_only_if_xslt_runs(s: &Sso, request_id: &str) -> String {
    let mut spec = ResponseSpec::new("mia@corp.test", &s.acs(), &s.audience(), Some(request_id));
    spec.signing = Signing::None;
    let unsigned = s.idp.response_xml(&spec).unwrap();
    let digest = STANDARD.encode(openssl::sha::sha256(b"nulab"));
    // Written in its canonical (exclusive C14N) form, so these are the bytes that are signed.
    let signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"></ds:SignatureMethod><ds:Reference URI=\"#{}\"><ds:Transforms>{}</ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></ds:DigestMethod><ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
        spec.response_id,
        transform(XSLT, STYLESHEET),
    );
    let mut signer = Signer::new(MessageDigest::sha256(), &s.idp.keys.key).unwrap();
    signer.update(signed_info.as_bytes()).unwrap();
    let value = STANDARD.encode(signer.sign_to_vec().unwrap());
    let signature = format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{signed_info}<ds:SignatureValue>{value}</ds:SignatureValue></ds:Signature>"
    );
    let issuer_end = unsigned.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    format!(
        "{}{signature}{}",
        &unsigned[..issuer_end],
        &unsigned[issuer_end..]
    )
}

async fn xslt_never_runs(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let xml = valid_only_if_xslt_runs(&s, &started.request_id);

    // The control: xmlsec1 with its default transforms runs the stylesheet and finds the
    // signature good, so only refusing the transform stops this response.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("response.xml"), &xml).unwrap();
    std::fs::write(
        dir.path().join("idp.pem"),
        s.idp.keys.cert.to_pem().unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new("xmlsec1")
        .args(["--verify", "--pubkey-cert-pem"])
        .arg(dir.path().join("idp.pem"))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
        ])
        .arg(dir.path().join("response.xml"))
        .output()
        .expect("xmlsec1 (Debian package xmlsec1) must be installed: scripts/setup.sh");
    assert!(
        out.status.success(),
        "with XSLT allowed the signature verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In this process xmlsec no longer knows the transform, so even a bare xmlsec verification
    // through samael, with no allow-list of its own, refuses the signature.
    dsig_policy::harden().unwrap();
    assert!(!dsig_policy::registered(XSLT));
    assert!(dsig_policy::registered(ENVELOPED));
    let cert = samael::crypto::CertificateDer::from(s.idp.keys.cert.to_der().unwrap());
    let direct = <samael::crypto::XmlSec as samael::crypto::CryptoProvider>::verify_signed_xml(
        &xml,
        &cert,
        Some("ID"),
    );
    assert!(direct.is_err(), "xmlsec refuses the XSLT transform itself");

    let res = s.post_xml(&browser, &xml, &started).await;
    s.assert_refused(&browser, res, 403, "transform_not_allowed")
        .await;
}
both!(
    a_response_valid_only_if_its_xslt_ran_is_refused,
    xslt_never_runs
);

async fn database_failure(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let (_, xml) = genuine(&s, &started.request_id);
    // The replay cache is written inside the sign-in's transaction: without it, the database
    // fails there, after the response was verified.
    sqlx::query("DROP TABLE saml_replay")
        .execute(s.server.db().pool())
        .await
        .unwrap();
    let failures_before = s.server.audit_actions(50).await;
    let res = s.post_xml(&browser, &xml, &started).await;
    assert_eq!(res.status(), 500, "our failure, not the IdP's");
    let page = res.text().await.unwrap();
    assert!(page.contains("Error id: <code>"), "{page}");
    assert!(!page.contains("malformed_response"), "{page}");
    assert!(s.signed_in_as(&browser).await.is_none());
    assert_eq!(
        s.server.audit_actions(50).await,
        failures_before,
        "nothing blamed on the response"
    );
}
both!(
    a_database_failure_in_the_acs_is_a_5xx_with_an_error_id,
    database_failure
);
