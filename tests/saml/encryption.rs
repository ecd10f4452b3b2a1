//! Encrypted assertions through the running server: AES-GCM and AES-CBC with RSA-OAEP, every
//! signing shape, a decrypted assertion that must be signed when the Response is not, a key
//! the SP does not have, RSA PKCS#1 v1.5 refused, the per-connection requirement, and a
//! rollover with two encryption keys published in SP metadata.

use nulab_pass::mock_idp::{Encryption, MockIdp, ResponseSpec, Signing};
use nulab_pass::saml::keys;
use serde_json::json;

use super::{IDP_ENTITY, IDP_SSO, Sso, sso};
use crate::both;
use crate::common::Backend;

fn sp_cert(s: &Sso) -> openssl::x509::X509 {
    s.server.state.sp_keys.keys().unwrap().encryption[0]
        .cert
        .clone()
}

fn encrypted(
    recipient: &openssl::x509::X509,
    signing: Signing,
    gcm: bool,
) -> impl FnOnce(&mut ResponseSpec) {
    let recipient = recipient.clone();
    move |spec: &mut ResponseSpec| {
        spec.signing = signing;
        spec.encrypt_for = Some(Encryption { recipient, gcm });
    }
}

async fn shapes(backend: Backend) {
    let s = sso(backend).await;
    let cert = sp_cert(&s);
    for (signing, gcm) in [
        (Signing::Assertion, true),
        (Signing::Assertion, false),
        (Signing::Response, true),
        (Signing::Both, false),
    ] {
        let (browser, res) = s
            .attempt("mia@corp.test", encrypted(&cert, signing, gcm))
            .await;
        assert_eq!(res.status(), 303, "{signing:?}, GCM {gcm}");
        assert!(s.signed_in_as(&browser).await.is_some());
    }
}
both!(encrypted_assertions_sign_in_with_gcm_and_cbc, shapes);

/// The mock's encryption follows XML Encryption as xmlsec implements it: the xmlsec1 tool
/// decrypts what the mock encrypts with the SP's key, for both content ciphers.
#[test]
fn the_xmlsec1_tool_decrypts_what_the_mock_encrypts() {
    let dir = tempfile::tempdir().unwrap();
    let sp = keys::load_or_create(dir.path(), "sp-encryption", "sp").unwrap();
    for gcm in [true, false] {
        let assertion = "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_a\">hello</saml:Assertion>";
        let encrypted = nulab_pass::saml::decrypt::encrypt(assertion, &sp.cert, gcm).unwrap();
        std::fs::write(dir.path().join("in.xml"), &encrypted).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(dir.path().join("sp-encryption-key.pem"))
            .arg(dir.path().join("in.xml"))
            .output()
            .expect("xmlsec1 (Debian package xmlsec1) must be installed: scripts/setup.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ID=\"_a\">hello</saml:Assertion>"),
            "GCM {gcm}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And ours decrypts it back.
        let key = &sp.key;
        assert_eq!(
            nulab_pass::saml::decrypt::assertion(&encrypted, &[key]).unwrap(),
            assertion
        );
    }
}

async fn refused(backend: Backend) {
    let s = sso(backend).await;
    let cert = sp_cert(&s);
    // Nothing signed: the decrypted assertion carries no signature of its own.
    let (browser, res) = s
        .attempt("mia@corp.test", encrypted(&cert, Signing::None, true))
        .await;
    s.assert_refused(&browser, res, 403, "missing_signature")
        .await;
    // Encrypted for a key this SP does not have.
    let stranger = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap().keys.cert;
    let (browser, res) = s
        .attempt(
            "mia@corp.test",
            encrypted(&stranger, Signing::Assertion, true),
        )
        .await;
    s.assert_refused(&browser, res, 403, "decryption_failed")
        .await;
    // RSA PKCS#1 v1.5 key transport is refused (the assertion is signed, the Response not, so
    // nothing else stops it first).
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let mut spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    encrypted(&cert, Signing::Assertion, false)(&mut spec);
    let xml = s.idp.response_xml(&spec).unwrap().replace(
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
    );
    let res = s.post_xml(&browser, xml, &started).await;
    s.assert_refused(&browser, res, 403, "decryption_failed")
        .await;
    // The connection requires encryption: a clear assertion is refused, an encrypted one works.
    assert_eq!(
        s.patch(json!({"require_encrypted_assertions": true}))
            .await
            .0,
        200
    );
    let (browser, res) = s.attempt("mia@corp.test", |_| {}).await;
    s.assert_refused(&browser, res, 403, "assertion_not_encrypted")
        .await;
    let (browser, res) = s
        .attempt("mia@corp.test", encrypted(&cert, Signing::Both, true))
        .await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(
    unsigned_foreign_key_pkcs1_and_clear_assertions_are_refused,
    refused
);

async fn rollover(backend: Backend) {
    let s = sso(backend).await;
    let dir = s.server.state.config.certs_dir.clone();
    let metadata = || async {
        s.server
            .client()
            .get(s.audience())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let current = sp_cert(&s);
    assert_eq!(metadata().await.matches("use=\"encryption\"").count(), 1);
    // The operator puts the next pair beside the current one before the switch; the running
    // server sees the new files without a restart.
    let next = keys::load_or_create(&dir, "sp-encryption-next", "next").unwrap();
    let metadata = metadata().await;
    assert_eq!(
        metadata.matches("use=\"encryption\"").count(),
        2,
        "{metadata}"
    );
    assert!(metadata.contains(&next.cert_base64().unwrap()));
    assert!(metadata.contains("http://www.w3.org/2009/xmlenc11#aes256-gcm"));
    for cert in [current, next.cert.clone()] {
        let (browser, res) = s
            .attempt("mia@corp.test", encrypted(&cert, Signing::Assertion, true))
            .await;
        assert_eq!(res.status(), 303);
        assert!(s.signed_in_as(&browser).await.is_some());
    }
}
both!(
    both_encryption_keys_of_a_rollover_are_published_and_decrypt,
    rollover
);
