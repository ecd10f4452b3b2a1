//! The published attack classes on the signature and the XML at the running server's ACS, each a
//! table of variants built from responses the mock IdP signs (or re-signed with its key after
//! the change): signature wrapping (XSW1-XSW8, moved and copied signatures, duplicated IDs, a
//! reference to another element), signature exclusion, comments and markup in identity values,
//! parser differentials (encodings, DTDs, entities, duplicated attributes, rebound prefixes,
//! depth), key confusion and weak algorithms. Every refusal is checked for its status and reason
//! code, one audit event, no session, and nothing else changed (`attack_kit::refused`); each
//! table ends with a response that signs in, so the refusals used nothing up.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nulab_pass::mock_idp::{Algorithm, MockIdp, Signing};
use serde_json::json;

use super::attack_kit::*;
use super::{IDP_ENTITY, IDP_SSO};
use crate::both;
use crate::common::Backend;

async fn wrapping(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let (sa, a) = minted(&s, &begun.1, "mia@corp.test", Signing::Assertion);
    let (sr, r) = minted(&s, &begun.1, "mia@corp.test", Signing::Response);
    let (_, both) = minted(&s, &begun.1, "mia@corp.test", Signing::Both);
    let signed = assertion_of(&a);
    let sig = signature_of(signed);
    let bare = signed.replace(sig, "");
    let evil = forged(signed, &sa);
    // The forged assertion carrying the genuine signature, with `inside` in it.
    let carrying = |inside: &str| {
        let object = format!("{inside}</ds:Signature>");
        after_issuer(&evil, 0, &sig.replacen("</ds:Signature>", &object, 1))
    };
    let in_a = |assertion: String| a.replace(signed, &assertion);
    // A forged Response (Eve's assertion) around the signed one, which `place` puts in it.
    let (r_sig, r_evil) = (signature_of(&r), forged(assertion_of(&r), &sr));
    let around_r = |place: &str| {
        let forged = r.replacen("</ds:Signature>", place, 1);
        let forged = forged.replacen(assertion_of(&r), &r_evil, 1);
        forged.replacen(&format!("ID=\"{}\"", sr.response_id), "ID=\"_forged\"", 1)
    };
    let r_uri = format!("URI=\"#{}\"", sr.response_id);
    let extensions = |inside: &str| format!("<samlp:Extensions>{inside}</samlp:Extensions>");
    let evil_under_genuine_id = evil.replace("_evil", &sa.assertion_id);
    let r_moved = r.replacen(r_sig, "", 1);
    let r_sig_in_assertion =
        after_issuer(&r_moved, r_moved.find("<saml:Assertion").unwrap(), r_sig);
    let duplicate_id = extensions(&format!("<x ID=\"{}\"/>", sa.assertion_id));
    let duplicate_xml_id = extensions(&format!("<x xml:id=\"{}\"/>", sa.assertion_id));
    let both_sig = signature_of(&both);
    let in_subject = format!("<saml:Subject>{sig}");
    let cases = cases![
        "signature_wrapping": [
            "XSW1: the signed Response in its signature's Object" =>
                around_r(&format!("<ds:Object>{r}</ds:Object></ds:Signature>")),
            "XSW2: the signed Response beside its signature" =>
                around_r(&format!("</ds:Signature>{r}")),
            "XSW4: the signed Assertion inside a forged one" =>
                in_a(evil.replacen("</saml:Assertion>", &format!("{signed}</saml:Assertion>"), 1)),
            "XSW5: the signature on a forged Assertion, the signed one after it" =>
                in_a(format!("{}{bare}", carrying(""))),
            "XSW6: the signed Assertion in the forged one's signature" =>
                in_a(carrying(&format!("<ds:Object>{signed}</ds:Object>"))),
            "XSW8: the bare signed Assertion in the forged one's signature" =>
                in_a(carrying(&format!("<ds:Object>{bare}</ds:Object>"))),
            "the signed Assertion in the Advice of a forged one" =>
                in_a(after_issuer(&evil, 0, &format!("<saml:Advice>{signed}</saml:Advice>"))),
            "the only Assertion forged, carrying the genuine signature" => in_a(carrying("")),
            "the Response's signature moved into the Assertion" => r_sig_in_assertion,
            "the Response's signature moved into Extensions" =>
                r.replacen(r_sig, &extensions(r_sig), 1),
            "the Assertion's signature moved into its Subject" =>
                a.replacen(sig, "", 1).replacen("<saml:Subject>", &in_subject, 1),
            "a copy of the Assertion's signature on the Response" => after_issuer(&a, 0, sig),
            "the Response's reference pointed at the Assertion" =>
                r.replacen(&r_uri, &format!("URI=\"#{}\"", sr.assertion_id), 1),
        ],
        "bad_signature": [
            "the only Assertion forged under the genuine ID and signature" =>
                a.replace(signed, &after_issuer(&evil_under_genuine_id, 0, sig)),
            "an element of Extensions with the Assertion's ID" =>
                after_issuer(&a, 0, &duplicate_id),
            "an xml:id with the Assertion's ID" => after_issuer(&a, 0, &duplicate_xml_id),
            "a second copy of the Response's signature" =>
                both.replacen(both_sig, &format!("{both_sig}{both_sig}"), 1),
        ],
    ];
    table(&s, &begun, cases, &both).await;
}
both!(
    signature_wrapping_in_every_published_shape_is_refused,
    wrapping
);

async fn exclusion(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let (sa, a) = minted(&s, &begun.1, "mia@corp.test", Signing::Assertion);
    let (_, r) = minted(&s, &begun.1, "mia@corp.test", Signing::Response);
    let (_, both) = minted(&s, &begun.1, "mia@corp.test", Signing::Both);
    let sig = signature_of(&a);
    let reference = piece(sig, "<ds:Reference", "</ds:Reference>");
    let info = piece(sig, "<ds:SignedInfo>", "</ds:SignedInfo>");
    let digest = piece(sig, "<ds:DigestValue>", "</ds:DigestValue>");
    let value = piece(sig, "<ds:SignatureValue>", "</ds:SignatureValue>");
    let uri = format!("URI=\"#{}\"", sa.assertion_id);
    let other = format!(
        "<ds:DigestValue>{}</ds:DigestValue>",
        STANDARD.encode([7u8; 32])
    );
    let forged_info = info.replace(digest, &other);
    let to_response = reference.replace(&uri, &format!("URI=\"#{}\"", sa.response_id));
    let change = |from: &str, to: &str| a.replacen(from, to, 1);
    let inner = signature_of(assertion_of(&both));
    let cases = cases![
        "missing_signature": [
            "the Assertion's signature removed" => change(sig, ""),
            "the Response's signature removed" => r.replacen(signature_of(&r), "", 1),
        ],
        "signature_wrapping": [
            "an empty Signature" => change(sig, &format!("<ds:Signature xmlns:ds=\"{DSIG}\"/>")),
            "a SignedInfo without a Reference" => change(reference, ""),
            "a Reference to the whole document (URI=\"\")" => change(&uri, "URI=\"\""),
            "a Reference without a URI" => change(&uri, ""),
            "a second Reference, to the Response" =>
                change(reference, &format!("{reference}{to_response}")),
        ],
        "bad_signature": [
            "the Assertion's signature removed under a signed Response" =>
                both.replacen(inner, "", 1),
            "an empty SignatureValue" => change(value, "<ds:SignatureValue></ds:SignatureValue>"),
            "another DigestValue" => change(digest, &other),
            "a second DigestValue before the real one" =>
                change(digest, &format!("{other}{digest}")),
            "a forged SignedInfo before the real one" =>
                change(info, &format!("{forged_info}{info}")),
            "a forged SignedInfo after the real one" =>
                change(info, &format!("{info}{forged_info}")),
            "a second SignatureValue" => change(value, &format!("{value}{value}")),
        ],
    ];
    table(&s, &begun, cases, &a).await;
}
both!(unsigned_and_emptied_signatures_are_refused, exclusion);

async fn identity_values(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let request = begun.1.request_id.as_str();
    // The attacker's own account at the IdP, whose value the IdP signs; the markup comes after
    // (canonicalization drops comments, so the signature still holds).
    let theirs = "mia@corp.test.evil.example";
    let mut cases: Vec<Case> = Vec::new();
    for signing in [Signing::Assertion, Signing::Response] {
        let (_, xml) = minted(&s, &begun.1, theirs, signing);
        let nameid = format!(">{theirs}</saml:NameID>");
        let with = |markup: &str| {
            let split = format!(">mia@corp.test{markup}.evil.example</saml:NameID>");
            xml.replacen(&nameid, &split, 1)
        };
        let cdata = format!("><![CDATA[{theirs}]]></saml:NameID>");
        cases.extend(cases![
            "nameid_split": [
                "a comment in the NameID" => with("<!---->"),
                "a processing instruction in the NameID" => with("<?x?>"),
                "an empty CDATA section in the NameID" => with("<![CDATA[]]>"),
                "the NameID in a CDATA section" => xml.replacen(&nameid, &cdata, 1),
            ],
        ]);
    }
    // The email read from an attribute: markup in its value, and in an element inside it.
    let mut attribute = spec(&s, Some(request), theirs, Signing::Assertion);
    attribute.name_id = Some("opaque-1".into());
    let value = format!(">{theirs}</saml:AttributeValue>");
    let split = ">mia@corp.test<!---->.evil.example";
    let in_value = s.idp.response_xml(&attribute).unwrap();
    attribute.attributes.clear();
    attribute.raw_attributes = Some(format!(
        "<saml:Attribute Name=\"email\"><saml:AttributeValue><x xmlns=\"urn:example:x\">{theirs}</x></saml:AttributeValue></saml:Attribute>"
    ));
    let in_element = s.idp.response_xml(&attribute).unwrap();
    cases.extend(cases![
        "nameid_split": [
            "a comment in the email attribute's value" =>
                in_value.replacen(&value, &format!("{split}</saml:AttributeValue>"), 1),
        ],
        "malformed_response": [
            "a comment in an element inside the email attribute's value" =>
                in_element.replacen(&format!(">{theirs}</x>"), &format!("{split}</x>"), 1),
        ],
    ]);
    assert_eq!(s.patch(json!({"email_attribute": "email"})).await.0, 200);
    // Character references are the text they stand for, to every reader: this signs Mia in.
    let control = spec(&s, Some(request), "mia@corp.test", Signing::Assertion);
    let genuine = s.idp.response_xml(&control).unwrap();
    let genuine = genuine.replace(">mia@corp.test</", ">mia&#64;corp&#x2E;test</");
    assert_eq!(genuine.matches("mia&#64;corp&#x2E;test").count(), 2);
    table(&s, &begun, cases, &genuine).await;
    let page = s.signed_in_as(&begun.0).await.unwrap();
    assert!(page.contains("mia@corp.test"));
}
both!(
    comments_and_markup_in_identity_values_are_refused,
    identity_values
);

async fn parser_differentials(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let (_, a) = minted(&s, &begun.1, "mia@corp.test", Signing::Assertion);
    let (_, both) = minted(&s, &begun.1, "mia@corp.test", Signing::Both);
    let dtd = |doctype: &str| format!("{doctype}{a}");
    let nameid = "mia@corp.test</saml:NameID>";
    let data = "<saml:SubjectConfirmationData ";
    let with_data = |attributes: &str| a.replacen(data, &format!("{data}{attributes} "), 1);
    let deep = format!("{}{}", "<x>".repeat(300), "</x>".repeat(300));
    let deep = after_issuer(
        &a,
        0,
        &format!("<samlp:Extensions>{deep}</samlp:Extensions>"),
    );
    let laughs = "<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;\">]>";
    let external = dtd("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/hostname\">]>");
    let default_ns = both.replacen("<saml:NameID ", &format!("<NameID xmlns=\"{SAML}\" "), 1);
    let cases = cases![
        "malformed_response": [
            "declared UTF-16" => format!("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-16\"?>{a}"),
            "declared ISO-8859-1" => format!("<?xml version='1.0' encoding = 'ISO-8859-1'?>{a}"),
            "an undeclared entity in the NameID" =>
                a.replacen(nameid, "mia@corp.test&x;</saml:NameID>", 1),
            "a duplicated attribute" => with_data("Recipient=\"https://attacker.example/acs\""),
            "elements nested past libxml2's depth limit" => deep,
        ],
        "dtd_forbidden": [
            "a DTD giving the NameID an ID attribute" =>
                dtd("<!DOCTYPE samlp:Response [<!ATTLIST saml:NameID ID ID #IMPLIED>]>"),
            "an external entity" => external.replacen(nameid, "&x;</saml:NameID>", 1),
            "nested entities (billion laughs)" => dtd(laughs),
        ],
        "missing_signature": [
            "the ds prefix rebound to another namespace" =>
                a.replace(&format!("xmlns:ds=\"{DSIG}\""), &format!("xmlns:ds=\"{DSIG}x\"")),
        ],
        "bad_signature": [
            "one attribute twice through two prefixes" =>
                with_data("xmlns:p=\"urn:x\" xmlns:q=\"urn:x\" p:a=\"1\" q:a=\"2\""),
            "the saml prefix rebound on the NameID" =>
                a.replacen("<saml:NameID ", &format!("<saml:NameID xmlns:saml=\"{SAML}#x\" "), 1),
            "the NameID in the default namespace of a signed Response" =>
                default_ns.replacen("</saml:NameID>", "</NameID>", 1),
        ],
    ];
    // UTF-16 itself is not UTF-8 text: refused before anything parses it.
    let (browser, started) = &begun;
    let declared = format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{a}");
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(declared.encode_utf16().flat_map(u16::to_le_bytes));
    let utf16 = STANDARD.encode(utf16);
    let post = s.post(browser, &utf16, &started.relay_state, Some(&started.cookie));
    refused(
        &s,
        browser,
        "UTF-16 with a byte-order mark",
        "malformed_response",
        post,
    )
    .await;
    // A byte-order mark and a UTF-8 declaration are fine.
    let genuine = format!("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>{a}");
    table(&s, &begun, cases, &genuine).await;
}
both!(
    parser_differentials_and_hostile_documents_are_refused,
    parser_differentials
);

async fn keys_and_algorithms(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let (_, a) = minted(&s, &begun.1, "mia@corp.test", Signing::Assertion);
    // Another key's signature over the same response.
    let impostor = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let forged = spec(
        &s,
        Some(&begun.1.request_id),
        "mia@corp.test",
        Signing::Assertion,
    );
    let theirs = impostor.response_xml(&forged).unwrap();
    let (ours, their_cert) = (s.idp.cert_base64(), impostor.cert_base64());
    let x509 = piece(&theirs, "<ds:X509Data>", "</ds:X509Data>");
    let key_info = piece(&theirs, "<ds:KeyInfo>", "</ds:KeyInfo>");
    let rsa = impostor.keys.key.rsa().unwrap();
    let (n, e) = (
        STANDARD.encode(rsa.n().to_vec()),
        STANDARD.encode(rsa.e().to_vec()),
    );
    let key_value = format!(
        "<ds:KeyValue><ds:RSAKeyValue><ds:Modulus>{n}</ds:Modulus><ds:Exponent>{e}</ds:Exponent></ds:RSAKeyValue></ds:KeyValue>"
    );
    let pem = format!("-----BEGIN CERTIFICATE-----{ours}-----END CERTIFICATE-----");
    let two = format!("{ours}</ds:X509Certificate><ds:X509Certificate>{their_cert}");
    let der = s.idp.keys.cert.to_der().unwrap();
    let method = |uri: &str| a.replacen(RSA_SHA256, uri, 1);
    let more = |name: &str| format!("http://www.w3.org/2001/04/xmldsig-more#{name}");
    let transform = |uri: &str| {
        let exc = format!("<ds:Transform Algorithm=\"{EXC_C14N}\"/>");
        a.replacen(&exc, &format!("<ds:Transform Algorithm=\"{uri}\"/>"), 1)
    };
    let c14n = |uri: &str| {
        let exc = format!("<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>");
        a.replacen(
            &exc,
            &format!("<ds:CanonicalizationMethod Algorithm=\"{uri}\"/>"),
            1,
        )
    };
    let sha1_digest = a.replacen(
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2000/09/xmldsig#sha1",
        1,
    );
    let cases = cases![
        "bad_signature": [
            "another key, the configured certificate in KeyInfo" =>
                theirs.replace(&their_cert, &ours),
            "another key, its bare RSA key in KeyInfo" => theirs.replacen(x509, &key_value, 1),
            "another key, no KeyInfo" => theirs.replacen(key_info, "", 1),
            "the enveloped-signature transform as canonicalization" =>
                c14n("http://www.w3.org/2000/09/xmldsig#enveloped-signature"),
        ],
        "unknown_signing_key": [
            "the configured certificate with bytes after it" =>
                a.replacen(&ours, &format!("{ours}AAAA"), 1),
            "the configured certificate with a PEM header" => a.replacen(&ours, &pem, 1),
            "the configured certificate and another one" => a.replacen(&ours, &two, 1),
        ],
        "weak_signature_algorithm": [
            "HMAC-SHA256 keyed with the certificate" => hmac_signed(&a, &more("hmac-sha256"), &der),
            "DSA-SHA1" => method("http://www.w3.org/2000/09/xmldsig#dsa-sha1"),
            "ECDSA-SHA256" => method(&more("ecdsa-sha256")),
            "RSA-MD5" => method(&more("rsa-md5")),
            "a SHA-1 digest under RSA-SHA256" => sha1_digest,
        ],
        "transform_not_allowed": [
            "XPath Filter 2.0" => transform("http://www.w3.org/2002/06/xmldsig-filter2"),
            "XPointer" => transform(&more("xptr")),
            "base64" => transform("http://www.w3.org/2000/09/xmldsig#base64"),
        ],
    ];
    // The certificate in lines, as many IdPs write it, is the configured one.
    let lines: Vec<&str> = (ours.as_bytes().chunks(64))
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let genuine = a.replacen(&ours, &format!("\n{}\n", lines.join("\r\n")), 1);
    table(&s, &begun, cases, &genuine).await;
    // SHA-1 allowed by the admin lets no HMAC through.
    assert_eq!(s.patch(json!({"allow_sha1": true})).await.0, 200);
    let begun = begin(&s).await;
    let mut sha1 = spec(
        &s,
        Some(&begun.1.request_id),
        "mia@corp.test",
        Signing::Assertion,
    );
    sha1.algorithm = Algorithm::RsaSha1;
    let genuine = s.idp.response_xml(&sha1).unwrap();
    let hmac = hmac_signed(&genuine.replacen(RSA_SHA1, RSA_SHA256, 1), HMAC_SHA1, &der);
    let cases = cases!["weak_signature_algorithm": ["HMAC-SHA1 with SHA-1 allowed" => hmac]];
    table(&s, &begun, cases, &genuine).await;
}
both!(
    foreign_keys_and_weak_algorithms_are_refused,
    keys_and_algorithms
);
