//! What the attack-class tests share (`attack_signatures.rs`, `attack_rules.rs`): a server
//! whose ACS takes a table of refusals, the ledger of what a refusal must leave unchanged, the
//! tables themselves (each variant's status, reason code and single audit event, then a genuine
//! response that still signs in), and the XML surgery the variants are made with.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nulab_pass::config::Rate;
use nulab_pass::mock_idp::{Algorithm, MockIdp, ResponseSpec, Signing};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::Value;

use super::{IDP_ENTITY, IDP_SSO, Sso, Started, new_managed, sso_on};
use crate::common::{Backend, TestServer};

pub(crate) const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub(crate) const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub(crate) const HMAC_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#hmac-sha1";
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// One hostile variant: what it is, the reason code it must get, the XML posted.
pub(crate) type Case = (&'static str, &'static str, String);

/// `cases![code: ["what" => xml, ...], ...]`: variants grouped by the reason they must get.
macro_rules! cases {
    ($($code:literal: [$($what:literal => $xml:expr),* $(,)?]),* $(,)?) => {
        vec![$($(($what, $code, String::from($xml)),)*)*]
    };
}
pub(crate) use cases;

/// The status the ACS answers a reason with.
pub(crate) fn status_of(code: &str) -> u16 {
    match code {
        "malformed_response" | "dtd_forbidden" => 400,
        _ => 403,
    }
}

/// `sso_on` of the parent module, with room for the many refusals of a table (the ACS blocks
/// an address after 20 failed posts in 5 minutes) and Eve's managed account, which forged
/// identities name.
pub(crate) async fn setup(backend: Backend, settings: Value) -> Sso {
    let server = TestServer::start_with(backend, |c| {
        let room = Rate {
            max: 10_000,
            window_ms: 300_000,
        };
        c.limits.acs_failures_per_address = room;
    })
    .await;
    let idp = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let metadata = idp.metadata_xml();
    let s = sso_on(server, idp, metadata, settings).await;
    new_managed(&s.server, "corp", &s.token, "eve@corp.test", "Eve").await;
    s
}

/// Everything a refusal must leave as it was.
pub(crate) const LEDGER: &[&str] = &[
    "SELECT id FROM sessions ORDER BY id",
    "SELECT message_id FROM saml_replay ORDER BY message_id",
    "SELECT sign_in_id FROM saml_sessions ORDER BY sign_in_id",
    "SELECT handle_hash FROM saml_pending_sign_ins ORDER BY handle_hash",
    "SELECT id || ' ' || COALESCE(CAST(used_at AS TEXT), '-') FROM saml_requests ORDER BY id",
    "SELECT id || ' ' || kind || ' ' || status || ' ' || name || ' ' || \
     COALESCE(CAST(last_sign_in_at AS TEXT), '-') FROM accounts ORDER BY id",
];

pub(crate) async fn ledger(s: &Sso) -> (Vec<Vec<String>>, i64) {
    let mut rows = Vec::new();
    for sql in LEDGER {
        rows.push(s.server.rows(sql).await);
    }
    (rows, s.server.count("audit_events").await)
}

/// Sends `post` and checks the refusal: the status and the page naming `code`, no session, one
/// `sso.signin.failed` event with that reason, nothing else changed. Returns the page.
pub(crate) async fn refused(
    s: &Sso,
    browser: &reqwest::Client,
    what: &str,
    code: &str,
    post: impl std::future::Future<Output = reqwest::Response>,
) -> String {
    let (rows, events) = ledger(s).await;
    let res = post.await;
    let status = res.status().as_u16();
    let page = res.text().await.unwrap();
    assert_eq!(status, status_of(code), "{what}: expected {code}: {page}");
    let named = page.contains(&format!("<code>{code}</code>"));
    assert!(named, "{what}: expected {code}: {page}");
    let signed_in = s.signed_in_as(browser).await.is_some();
    assert!(!signed_in, "{what}: no session");
    let (rows_after, events_after) = ledger(s).await;
    assert_eq!(rows_after, rows, "{what}: nothing changed");
    assert_eq!(events_after, events + 1, "{what}: one audit event");
    let pool = s.server.db().pool();
    let latest = nulab_pass::audit::store::recent(pool, None, 1)
        .await
        .unwrap();
    assert_eq!(latest[0].action, "sso.signin.failed", "{what}");
    assert_eq!(latest[0].details["reason"], code, "{what}");
    page
}

/// A browser that started a sign-in.
pub(crate) type Begun = (reqwest::Client, Started);

pub(crate) async fn begin(s: &Sso) -> Begun {
    let browser = s.server.client();
    let started = s.start(&browser).await;
    (browser, started)
}

/// Posts every case for the sign-in `begun` (each refused, as [`refused`] checks), then
/// `genuine`, which must still sign the browser in. Returns the refusal pages.
pub(crate) async fn table(s: &Sso, begun: &Begun, cases: Vec<Case>, genuine: &str) -> Vec<String> {
    let (browser, started) = begun;
    let mut pages = Vec::new();
    for (what, code, xml) in cases {
        let post = s.post_xml(browser, &xml, started);
        pages.push(refused(s, browser, what, code, post).await);
    }
    let res = s.post_xml(browser, genuine, started).await;
    assert_eq!(res.status(), 303, "the genuine response still signs in");
    assert!(s.signed_in_as(browser).await.is_some());
    pages
}

pub(crate) fn spec(s: &Sso, request: Option<&str>, email: &str, signing: Signing) -> ResponseSpec {
    let mut spec = ResponseSpec::new(email, &s.acs(), &s.audience(), request);
    spec.signing = signing;
    spec
}

/// The mock IdP's response for `email` to `started`, signed as `signing` says.
pub(crate) fn minted(
    s: &Sso,
    started: &Started,
    email: &str,
    signing: Signing,
) -> (ResponseSpec, String) {
    let spec = spec(s, Some(&started.request_id), email, signing);
    let xml = s.idp.response_xml(&spec).unwrap();
    (spec, xml)
}

/// The first `open`…`close` of `xml`, both included.
pub(crate) fn piece<'x>(xml: &'x str, open: &str, close: &str) -> &'x str {
    let start = xml.find(open).unwrap_or_else(|| panic!("{open} in {xml}"));
    let from = start + open.len();
    let end = from + xml[from..].find(close).unwrap() + close.len();
    &xml[start..end]
}

pub(crate) fn assertion_of(xml: &str) -> &str {
    piece(xml, "<saml:Assertion", "</saml:Assertion>")
}

pub(crate) fn signature_of(xml: &str) -> &str {
    piece(xml, "<ds:Signature", "</ds:Signature>")
}

/// `xml` with `what` inserted right after the first `</saml:Issuer>` at or after `from`.
pub(crate) fn after_issuer(xml: &str, from: usize, what: &str) -> String {
    let at = from + xml[from..].find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    format!("{}{what}{}", &xml[..at], &xml[at..])
}

/// A forged assertion for Eve made from Mia's: its ID `_evil`, no signature.
pub(crate) fn forged(assertion: &str, spec: &ResponseSpec) -> String {
    let bare = match assertion.contains("<ds:Signature") {
        true => assertion.replace(signature_of(assertion), ""),
        false => assertion.to_string(),
    };
    let eve = bare.replace("mia@corp.test", "eve@corp.test");
    eve.replace(&spec.assertion_id, "_evil")
}

/// `xml`, an unsigned response of the mock's changed by a test, signed with the mock IdP's key
/// as `signing` says: what the IdP would send if it said so.
pub(crate) fn signed_by(idp: &MockIdp, xml: &str, signing: Signing) -> String {
    let template = |x: &str| {
        let id = piece(x, " ID=\"", "\"")[5..].trim_end_matches('"');
        idp.signature_template(id, Algorithm::RsaSha256)
    };
    let mut xml = xml.to_string();
    if matches!(signing, Signing::Assertion | Signing::Both) {
        let assertion = assertion_of(&xml).to_string();
        let signed = idp.sign(&after_issuer(&assertion, 0, &template(&assertion)));
        xml = xml.replace(&assertion, &signed.unwrap());
    }
    if matches!(signing, Signing::Response | Signing::Both) {
        xml = idp.sign(&after_issuer(&xml, 0, &template(&xml))).unwrap();
    }
    xml
}

/// `xml` with its first signature made an HMAC (`uri`) keyed with `key`: the public
/// certificate, which anyone can read in the metadata.
pub(crate) fn hmac_signed(xml: &str, uri: &str, key: &[u8]) -> String {
    let xml = xml.replacen(RSA_SHA256, uri, 1);
    let digest = match uri {
        HMAC_SHA1 => MessageDigest::sha1(),
        _ => MessageDigest::sha256(),
    };
    let signed_info = piece(&xml, "<ds:SignedInfo>", "</ds:SignedInfo>");
    let mut signer = Signer::new(digest, &PKey::hmac(key).unwrap()).unwrap();
    signer.update(signed_info.as_bytes()).unwrap();
    let value = STANDARD.encode(signer.sign_to_vec().unwrap());
    let old = piece(&xml, "<ds:SignatureValue>", "</ds:SignatureValue>");
    xml.replacen(
        old,
        &format!("<ds:SignatureValue>{value}</ds:SignatureValue>"),
        1,
    )
}

/// The data's CipherValue of an EncryptedAssertion (the last one; the first is the key's),
/// decoded, changed by `change`, and put back.
pub(crate) fn with_data(xml: &str, change: impl Fn(&mut Vec<u8>)) -> String {
    let (open, close) = ("<xenc:CipherValue>", "</xenc:CipherValue>");
    let old = piece(&xml[xml.rfind(open).unwrap()..], open, close);
    let mut bytes = STANDARD
        .decode(&old[open.len()..old.len() - close.len()])
        .unwrap();
    change(&mut bytes);
    xml.replacen(old, &format!("{open}{}{close}", STANDARD.encode(bytes)), 1)
}

/// The time `offset_secs` from now, as an IdP writes it.
pub(crate) fn instant(offset_secs: i64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::seconds(offset_secs);
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
