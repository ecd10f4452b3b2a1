//! The published attack classes on what a response says and where it goes, at the running
//! server's ACS: encrypted assertions (wrapped, forged, other key transports, tampered
//! ciphertext that must all read alike), replay and the browser binding (an answer to a request
//! is never taken as IdP-initiated), conditions and subject confirmation, other tenants'
//! identities and email look-alikes. Checked as `attack_signatures.rs`'s are.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::join_all;
use nulab_pass::mock_idp::{Encryption, ResponseSpec, Signing};
use nulab_pass::saml::decrypt;
use reqwest::Method;
use serde_json::json;

use super::attack_kit::*;
use super::{IDP_ENTITY, PASSWORD, Started, new_managed};
use crate::both;
use crate::common::{Backend, api};

async fn encrypted(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let sp = s.server.state.sp_keys.keys().unwrap().encryption[0]
        .cert
        .clone();
    let encrypted = |signing, gcm| {
        let mut spec = spec(&s, Some(&begun.1.request_id), "mia@corp.test", signing);
        spec.encrypt_for = Some(Encryption {
            recipient: sp.clone(),
            gcm,
        });
        s.idp.response_xml(&spec).unwrap()
    };
    // CBC under a Response that is not signed: its ciphertext is anyone's to change.
    let cbc = encrypted(Signing::Assertion, false);
    let gcm = encrypted(Signing::Assertion, true);
    let signed_response = encrypted(Signing::Response, false);
    let of = |xml: &str| {
        piece(
            xml,
            "<saml:EncryptedAssertion",
            "</saml:EncryptedAssertion>",
        )
        .to_string()
    };
    let e = of(&cbc);
    let (clear_spec, clear) = minted(&s, &begun.1, "mia@corp.test", Signing::Assertion);
    let signed = assertion_of(&clear);
    // Anyone can encrypt for this SP: its certificate is in its metadata.
    let by_sender = |assertion: &str| decrypt::encrypt(assertion, &sp, false).unwrap();
    let advice = format!("<saml:Advice>{signed}</saml:Advice>");
    let wrapper = by_sender(&after_issuer(&forged(signed, &clear_spec), 0, &advice));
    let in_place = by_sender(&forged(signed, &clear_spec));
    let with_dtd = by_sender(&format!("<!DOCTYPE x [<!ENTITY e \"eve\">]>{signed}"));
    let md5 = "http://www.w3.org/2001/04/xmldsig-more#md5";
    let xmlenc = |name: &str| format!("http://www.w3.org/2001/04/xmlenc#{name}");
    let key = piece(&cbc, "<xenc:CipherValue>", "</xenc:CipherValue>");
    let other_key = format!(
        "<xenc:CipherValue>{}</xenc:CipherValue>",
        STANDARD.encode([1u8; 256])
    );
    let cases = cases![
        "bad_signature": [
            "a forged unsigned Assertion in place of a signed Response's" =>
                signed_response.replacen(&of(&signed_response), &in_place, 1),
        ],
        "signature_wrapping": [
            "the signed Assertion inside a forged one, encrypted by the sender" =>
                cbc.replacen(&e, &wrapper, 1),
            "a clear Assertion beside an EncryptedAssertion" =>
                cbc.replacen(&e, &format!("{signed}{e}"), 1),
            "two EncryptedAssertions" => cbc.replacen(&e, &format!("{e}{e}"), 1),
        ],
        "dtd_forbidden": ["a DTD inside the encrypted Assertion" => cbc.replacen(&e, &with_dtd, 1)],
        "decryption_failed": [
            "key transport by AES key wrap" =>
                cbc.replacen(&xmlenc("rsa-oaep-mgf1p"), &xmlenc("kw-aes128"), 1),
            "content by Triple DES" =>
                cbc.replacen(&xmlenc("aes128-cbc"), &xmlenc("tripledes-cbc"), 1),
            "an OAEP digest of MD5" =>
                cbc.replacen(&format!("{DSIG}sha1"), md5, 1),
        ],
    ];
    // Tampered ciphertext: bad padding, a plaintext that is no XML, a short or broken block, a
    // content key that does not unwrap, a GCM tag. Each must read exactly alike, so that no
    // answer tells a padding error from a parsing one (a decryption oracle).
    let oracle = cases![
        "decryption_failed": [
            "the padding byte changed" => with_data(&cbc, |b| *b.last_mut().unwrap() ^= 0x40),
            "the first byte of the IV changed" => with_data(&cbc, |b| b[0] ^= 0x01),
            "a middle block changed" => with_data(&cbc, |b| {
                let at = b.len() / 32 * 16;
                b[at] ^= 0xFF
            }),
            "the last block dropped" => with_data(&cbc, |b| b.truncate(b.len() - 16)),
            "a byte dropped" => with_data(&cbc, |b| {
                b.pop();
            }),
            "the content key changed" => cbc.replacen(key, &other_key, 1),
            "a GCM tag changed" => with_data(&gcm, |b| *b.last_mut().unwrap() ^= 0x01),
        ],
    ];
    let first = cases.len();
    let pages = table(&s, &begun, [cases, oracle].concat(), &cbc).await;
    let oracle = &pages[first..];
    assert!(
        oracle.iter().all(|p| *p == oracle[0]),
        "every tampered ciphertext reads alike"
    );
    for hint in [
        "padding",
        "unwrap",
        "UTF-8",
        "length",
        "not one Assertion",
        "could not be read",
    ] {
        assert!(
            !oracle[0].contains(hint),
            "the page says nothing of {hint:?}"
        );
    }
}
both!(encrypted_assertion_attacks_are_refused_alike, encrypted);

async fn replay_and_binding(backend: Backend) {
    let s = setup(backend, json!({"allow_idp_initiated": true})).await;
    let b64 = |xml: &str| STANDARD.encode(xml);
    // A victim's sign-in, answered by an IdP that signs only the Assertion (as many do).
    let victim = begin(&s).await;
    let (_, answer) = minted(&s, &victim.1, "mia@corp.test", Signing::Assertion);
    let (_, both) = minted(&s, &victim.1, "mia@corp.test", Signing::Both);
    // The Response's InResponseTo comes first; the Assertion's is signed.
    let irt = format!(" InResponseTo=\"{}\"", victim.1.request_id);
    let (mallory, theirs) = begin(&s).await;
    let their_irt = format!(" InResponseTo=\"{}\"", theirs.request_id);
    let m = &mallory;
    let cases: [(&str, &str, String, Option<&Started>); 4] = [
        (
            "the answer to another browser's request, posted as IdP-initiated",
            "unknown_request",
            answer.replacen(&irt, "", 1),
            None,
        ),
        (
            "the same, its Response signed",
            "bad_signature",
            both.replacen(&irt, "", 1),
            None,
        ),
        (
            "the answer to another browser's request, without its binding",
            "other_browser",
            answer.clone(),
            None,
        ),
        (
            "the answer to another browser's request, its Response made to answer this one's",
            "unknown_request",
            answer.replacen(&irt, &their_irt, 1),
            Some(&theirs),
        ),
    ];
    for (what, code, xml, binding) in cases {
        let (relay, cookie) = binding.map_or(("", None), |b| (&*b.relay_state, Some(&*b.cookie)));
        refused(&s, m, what, code, s.post(m, &b64(&xml), relay, cookie)).await;
    }
    // The victim's browser still signs in with its answer.
    let res = s.post_xml(&victim.0, &answer, &victim.1).await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&victim.0).await.is_some());
    // An IdP-initiated assertion, used once, then wrapped in a new Response by whoever kept it.
    let unsolicited = spec(&s, None, "mia@corp.test", Signing::Assertion);
    let xml = s.idp.response_xml(&unsolicited).unwrap();
    let res = s.post(&s.server.client(), &b64(&xml), "", None).await;
    assert_eq!(res.status(), 303, "parked");
    let new_id = format!("ID=\"{}\"", unsolicited.response_id);
    let rewrapped = b64(&xml.replacen(&new_id, "ID=\"_rewrapped\"", 1));
    let what = "an IdP-initiated assertion in a new Response";
    refused(&s, m, what, "replayed", s.post(m, &rewrapped, "", None)).await;
    // One response posted by four browsers at once: one is parked, three are replays.
    let fresh = s.unsolicited("mia@corp.test");
    let parked = s.server.count("saml_pending_sign_ins").await;
    let posts = (0..4).map(|_| {
        let (browser, acs, body) = (s.server.client(), s.acs(), fresh.clone());
        async move {
            let form = [("SAMLResponse", body)];
            let res = browser.post(acs).form(&form).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    });
    let answers = join_all(posts).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    for (status, page) in answers.iter().filter(|(status, _)| *status != 303) {
        assert_eq!(*status, 403);
        assert!(page.contains("<code>replayed</code>"), "{page}");
    }
    assert_eq!(s.server.count("saml_pending_sign_ins").await, parked + 1);
}
both!(
    replays_and_answers_to_other_browsers_are_refused,
    replay_and_binding
);

async fn conditions(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let request = begun.1.request_id.as_str();
    // What the IdP says, changed before it signs the Response and the Assertion.
    let base_spec = spec(&s, Some(request), "mia@corp.test", Signing::None);
    let base = s.idp.response_xml(&base_spec).unwrap();
    let idp = |xml: String| signed_by(&s.idp, &xml, Signing::Both);
    let data = piece(&base, "<saml:SubjectConfirmationData", "/>");
    let in_data = |from: &str, to: &str| idp(base.replacen(data, &data.replacen(from, to, 1), 1));
    let until = piece(data, " NotOnOrAfter=\"", "\"");
    let bearer = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
    let method = |name: &str| {
        idp(base.replacen(bearer, &format!("urn:oasis:names:tc:SAML:2.0:cm:{name}"), 1))
    };
    let restriction = piece(
        &base,
        "<saml:AudienceRestriction>",
        "</saml:AudienceRestriction>",
    );
    let other_sp = restriction.replace(&s.audience(), "https://other-sp.example/metadata");
    let issuer = format!("<saml:Issuer>{IDP_ENTITY}</saml:Issuer>");
    let other_issuer = "<saml:Issuer>https://other-idp.example</saml:Issuer>";
    let mut ahead = base_spec.clone();
    ahead.issued_offset_secs = 3600;
    let ahead = s.idp.response_xml(&ahead).unwrap();
    let no_not_before = ahead.replacen(piece(&ahead, " NotBefore=\"", "\""), "", 1);
    let at = base.find("<saml:Assertion").unwrap();
    let no_issuer = format!("{}{}", &base[..at], base[at..].replacen(&issuer, "", 1));
    let recipient = format!(" Recipient=\"{}\"", s.acs());
    let cases = cases![
        "wrong_recipient": [
            "a holder-of-key confirmation" => method("holder-of-key"),
            "a sender-vouches confirmation" => method("sender-vouches"),
            "a confirmation without Recipient" => in_data(&recipient, ""),
        ],
        "expired": [
            "a confirmation without NotOnOrAfter" => in_data(until, ""),
            "a confirmation that ended an hour ago" =>
                in_data(until, &format!(" NotOnOrAfter=\"{}\"", instant(-3600))),
        ],
        "not_yet_valid": [
            "a confirmation from an hour ahead" =>
                in_data(until, &format!("{until} NotBefore=\"{}\"", instant(3600))),
            "issued an hour ahead, without NotBefore" => idp(no_not_before),
        ],
        "unknown_request": ["a confirmation answering another request" =>
            in_data(request, "_another")],
        "wrong_audience": [
            "a second AudienceRestriction naming another SP" =>
                idp(base.replacen(restriction, &format!("{other_sp}{restriction}"), 1)),
        ],
        "wrong_issuer": [
            "a Response issued by another IdP than its Assertion" =>
                idp(base.replacen(&issuer, other_issuer, 1)),
            "an Assertion without Issuer" => signed_by(&s.idp, &no_issuer, Signing::Response),
        ],
        "wrong_destination": [
            "a signed Response without Destination" =>
                idp(base.replacen(&format!(" Destination=\"{}\"", s.acs()), "", 1)),
        ],
    ];
    // The same response as the IdP signs it unchanged signs in.
    table(&s, &begun, cases, &idp(base.clone())).await;
}
both!(conditions_and_subject_confirmation_are_enforced, conditions);

async fn cross_tenant(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let (server, http, pool) = (&s.server, s.server.client(), s.server.db().pool());
    for domain in ["lab.corp.test", "pending.corp.test", "moved.test"] {
        server.domain_row(&s.org, domain, "verified").await;
    }
    for email in [
        "lea@lab.corp.test",
        "pat@pending.corp.test",
        "max@moved.test",
        "dan@corp.test",
    ] {
        new_managed(server, "corp", &s.token, email, "Someone").await;
    }
    for sql in [
        "UPDATE domains SET status = 'pending' WHERE domain = 'pending.corp.test'",
        "UPDATE domains SET status = 'lapsed' WHERE domain = 'moved.test'",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    let dan: (String,) =
        sqlx::query_as("SELECT id FROM accounts WHERE email_norm = 'dan@corp.test'")
            .fetch_one(pool)
            .await
            .unwrap();
    let url = server.url(&format!("/api/v1/orgs/corp/managed-accounts/{}", dan.0));
    assert_eq!(api(&http, Method::DELETE, url, &s.token, None).await.0, 204);
    // Another organization, which verified moved.test since, with a connection to the same IdP.
    let boss = server.account("boss@other.test", "Boss", PASSWORD).await;
    let other = server.org("other", &boss).await;
    server.verified_domain(&other, "other.test").await;
    server.verified_domain(&other, "moved.test").await;
    server.seats(&other, 5).await;
    let other_token = server.token(&other).await;
    new_managed(server, "other", &other_token, "oz@other.test", "Oz").await;
    let body = json!({"metadata_xml": s.idp.metadata_xml(), "allow_idp_initiated": true});
    let url = server.url("/api/v1/orgs/other/saml-connections");
    let (status, theirs) = api(&http, Method::POST, url, &other_token, Some(body)).await;
    assert_eq!(status, 201, "{theirs}");
    // Only corp.test signs in through our connection (a domain's verification is judged first).
    assert_eq!(s.patch(json!({"domains": ["corp.test"]})).await.0, 200);

    let begun = begin(&s).await;
    let to_us = |email: &str| minted(&s, &begun.1, email, Signing::Both).1;
    let cases = cases![
        "unknown_account": [
            "a deleted managed account" => to_us("dan@corp.test"),
            "a managed account of another organization" => to_us("oz@other.test"),
            "an address on a domain nobody verified" => to_us("mia@unverified.test"),
        ],
        "domain_not_verified": [
            "a domain still pending" => to_us("pat@pending.corp.test"),
            "a domain another organization verified since" => to_us("max@moved.test"),
        ],
        "domain_not_routed": ["a domain not routed to this connection" =>
            to_us("lea@lab.corp.test")],
    ];
    table(&s, &begun, cases, &to_us("mia@corp.test")).await;

    // Our connection's responses at the other organization's ACS, which trusts the same IdP.
    let acs = theirs["acs_url"].as_str().unwrap();
    let audience = theirs["sp_entity_id"].as_str().unwrap();
    let mut ours = spec(&s, None, "mia@corp.test", Signing::Both);
    let for_us = s.idp.response_b64(&ours).unwrap();
    ours.signing = Signing::Assertion;
    ours.destination = None;
    let for_us_bare = s.idp.response_b64(&ours).unwrap();
    let for_them = ResponseSpec::new("mia@corp.test", acs, audience, None);
    let for_them = s.idp.response_b64(&for_them).unwrap();
    let browser = server.client();
    for (what, code, b64) in [
        (
            "a response to our ACS at theirs",
            "wrong_destination",
            for_us,
        ),
        (
            "an assertion for our SP at their ACS",
            "wrong_audience",
            for_us_bare,
        ),
        (
            "their IdP naming our managed account",
            "unknown_account",
            for_them,
        ),
    ] {
        let post = browser.post(acs).form(&[("SAMLResponse", b64)]).send();
        refused(&s, &browser, what, code, async { post.await.unwrap() }).await;
    }
}
both!(
    identities_of_other_tenants_and_domains_are_refused,
    cross_tenant
);

async fn look_alikes(backend: Backend) {
    let s = setup(backend, json!({})).await;
    let begun = begin(&s).await;
    let to_us = |email: &str| minted(&s, &begun.1, email, Signing::Both).1;
    let cases = cases![
        "no_email": [
            "a trailing dot" => to_us("mia@corp.test."),
            "a second @" => to_us("mia@corp.test@evil.test"),
            "a zero-width space" => to_us("mia\u{200b}@corp.test"),
            "a zero-width joiner after the domain" => to_us("mia@corp.test\u{200d}"),
            "a Cyrillic letter" => to_us("m\u{456}a@corp.test"),
            "fullwidth letters" => to_us("\u{ff4d}ia@corp.test"),
            "a quoted local part" => to_us("\"mia\"@corp.test"),
            "a Unicode domain" => to_us("mia@c\u{f6}rp.test"),
            "a line break inside" => to_us("mia@corp.test\n.evil.test"),
        ],
        "unknown_account": [
            "a percent-hack route" => to_us("mia%corp.test@evil.test"),
            "a look-alike IDN A-label" => to_us("mia@xn--crp-xla.test"),
            "a sub-address" => to_us("mia+admin@corp.test"),
        ],
    ];
    // Case and surrounding whitespace make no other address.
    table(&s, &begun, cases, &to_us("  MIA@Corp.TEST \n")).await;
    let page = s.signed_in_as(&begun.0).await.unwrap();
    assert!(page.contains("mia@corp.test"));
}
both!(email_look_alikes_never_name_another_account, look_alikes);
