//! SAML SSO through the real server with the mock IdP: SP- and IdP-initiated success, every
//! rejection class of the ACS (each asserting the reason code, that no session exists and
//! that an audit event was written), metadata in the shapes real IdPs publish, a certificate
//! rollover, a response signed by the xmlsec1 command-line tool, and connection administration.
//! Hostile XML (transforms, parser differentials, oversized bodies) is in `saml/xml_attacks.rs`.

#[path = "saml/attack_kit.rs"]
mod attack_kit;
#[path = "saml/attack_rules.rs"]
mod attack_rules;
#[path = "saml/attack_signatures.rs"]
mod attack_signatures;
#[path = "saml/cache.rs"]
mod cache;
#[path = "saml/cert_hold.rs"]
mod cert_hold;
mod common;
#[path = "saml/encryption.rs"]
mod encryption;
#[path = "saml/grouped_sign_ins.rs"]
mod grouped_sign_ins;
#[path = "saml/login_csrf.rs"]
mod login_csrf;
#[path = "saml/login_hint.rs"]
mod login_hint;
#[path = "saml/logs.rs"]
mod logs;
#[path = "saml/mapping.rs"]
mod mapping;
#[path = "saml/mint.rs"]
mod mint;
#[path = "saml/xml_attacks.rs"]
mod xml_attacks;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Backend, TestServer, api};
use nulab_pass::mock_idp::{Algorithm, MockIdp, ResponseSpec, Signing};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const IDP_ENTITY: &str = "https://idp.corp.test/metadata";
const IDP_SSO: &str = "https://idp.corp.test/sso";

/// An org `corp` with a verified domain, a managed account `mia@corp.test`, and a connection
/// to a mock IdP.
struct Sso {
    server: TestServer,
    idp: MockIdp,
    org: nulab_pass::orgs::Org,
    token: String,
    connection: Value,
}

/// Creates the managed account `email` in the organization `slug` through the API.
async fn new_managed(server: &TestServer, slug: &str, token: &str, email: &str, name: &str) {
    let (status, body) = api(
        &server.client(),
        Method::POST,
        server.url(&format!("/api/v1/orgs/{slug}/managed-accounts")),
        token,
        Some(json!({"email": email, "name": name})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn sso_with(backend: Backend, idp: MockIdp, metadata_xml: String, settings: Value) -> Sso {
    sso_on(
        TestServer::start(backend).await,
        idp,
        metadata_xml,
        settings,
    )
    .await
}

/// [`sso_with`] on a server the caller started (with its own configuration).
async fn sso_on(server: TestServer, idp: MockIdp, metadata_xml: String, settings: Value) -> Sso {
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    server.verified_domain(&org, "corp.test").await;
    server.seats(&org, 10).await;
    let token = server.token(&org).await;
    let http = server.client();
    new_managed(&server, "corp", &token, "mia@corp.test", "Mia").await;
    let mut body = json!({ "metadata_xml": metadata_xml, "name": "Mock IdP" });
    if let (Some(extra), Some(map)) = (settings.as_object(), body.as_object_mut()) {
        map.extend(extra.clone());
    }
    let (status, connection) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    Sso {
        server,
        idp,
        org,
        token,
        connection,
    }
}

async fn sso(backend: Backend) -> Sso {
    let idp = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let metadata = idp.metadata_xml();
    sso_with(backend, idp, metadata, json!({})).await
}

/// A sign-in started at the login URL: the request the IdP got and the browser's binding cookie.
struct Started {
    request_id: String,
    relay_state: String,
    cookie: String,
    location: String,
}

impl Sso {
    /// A valid IdP-initiated response for `email` (base64, as the form posts it).
    fn unsolicited(&self, email: &str) -> String {
        self.idp
            .response_b64(&ResponseSpec::new(
                email,
                &self.acs(),
                &self.audience(),
                None,
            ))
            .unwrap()
    }

    fn acs(&self) -> String {
        self.connection["acs_url"].as_str().unwrap().to_string()
    }
    fn audience(&self) -> String {
        self.connection["sp_entity_id"]
            .as_str()
            .unwrap()
            .to_string()
    }
    fn id(&self) -> String {
        self.connection["id"].as_str().unwrap().to_string()
    }

    async fn patch(&self, body: Value) -> (u16, Value) {
        api(
            &self.server.client(),
            Method::PATCH,
            self.server
                .url(&format!("/api/v1/orgs/corp/saml-connections/{}", self.id())),
            &self.token,
            Some(body),
        )
        .await
    }

    async fn start(&self, browser: &reqwest::Client) -> Started {
        let login = self.connection["login_url"].as_str().unwrap().to_string();
        self.started_at(browser, &login).await
    }

    /// GETs `url`, which must send the browser to the IdP, and reads what it started.
    async fn started_at(&self, browser: &reqwest::Client, url: &str) -> Started {
        let res = browser.get(url).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("nulab_pass_sso="))
            .expect("binding cookie");
        let query: Vec<(String, String)> = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let get = |k: &str| {
            query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let facts = nulab_pass::saml::mock_idp_server::read_request(&get("SAMLRequest")).unwrap();
        assert_eq!(facts.acs_url, self.acs());
        assert_eq!(facts.issuer, self.audience());
        Started {
            request_id: facts.id,
            relay_state: get("RelayState"),
            cookie: cookie.split(';').next().unwrap().to_string(),
            location,
        }
    }

    /// POSTs a response to the ACS as the IdP's page would, with the binding cookie when given.
    async fn post(
        &self,
        browser: &reqwest::Client,
        b64: &str,
        relay: &str,
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let mut req = browser
            .post(self.acs())
            .form(&[("SAMLResponse", b64), ("RelayState", relay)]);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        req.send().await.unwrap()
    }

    /// A browser that started a sign-in, and Mia's signed response (base64) to its request.
    async fn started_with_response(&self) -> (reqwest::Client, Started, String) {
        let browser = self.server.client();
        let started = self.start(&browser).await;
        let spec = ResponseSpec::new(
            "mia@corp.test",
            &self.acs(),
            &self.audience(),
            Some(&started.request_id),
        );
        let b64 = self.idp.response_b64(&spec).unwrap();
        (browser, started, b64)
    }

    /// POSTs `body` to the ACS byte for byte as a form, with the binding cookie of `started`.
    async fn post_raw(
        &self,
        browser: &reqwest::Client,
        started: &Started,
        body: String,
    ) -> reqwest::Response {
        browser
            .post(self.acs())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &started.cookie)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs the response `xml` (base64-encoded here) for the sign-in `started`, with its
    /// binding cookie.
    async fn post_xml(
        &self,
        browser: &reqwest::Client,
        xml: impl AsRef<[u8]>,
        started: &Started,
    ) -> reqwest::Response {
        let b64 = STANDARD.encode(xml);
        self.post(browser, &b64, &started.relay_state, Some(&started.cookie))
            .await
    }

    /// A whole SP-initiated sign-in for `email` with `change` applied to the IdP's response.
    async fn attempt(
        &self,
        email: &str,
        change: impl FnOnce(&mut ResponseSpec),
    ) -> (reqwest::Client, reqwest::Response) {
        let browser = self.server.client();
        let started = self.start(&browser).await;
        let mut spec = ResponseSpec::new(
            email,
            &self.acs(),
            &self.audience(),
            Some(&started.request_id),
        );
        change(&mut spec);
        let b64 = self.idp.response_b64(&spec).unwrap();
        let res = self
            .post(&browser, &b64, &started.relay_state, Some(&started.cookie))
            .await;
        (browser, res)
    }

    /// Runs "test connection" as `admin`: the IdP answers with Mia's response, changed by
    /// `change`; returns the ACS's answer (the test page).
    async fn test_sign_in(
        &self,
        admin: &reqwest::Client,
        change: impl FnOnce(&mut ResponseSpec),
    ) -> reqwest::Response {
        let test = self
            .server
            .url(&format!("/admin/corp/sso/{}/test", self.id()));
        let started = self.started_at(admin, &test).await;
        let mut spec = ResponseSpec::new(
            "mia@corp.test",
            &self.acs(),
            &self.audience(),
            Some(&started.request_id),
        );
        change(&mut spec);
        self.post_xml(admin, self.idp.response_xml(&spec).unwrap(), &started)
            .await
    }

    async fn signed_in_as(&self, browser: &reqwest::Client) -> Option<String> {
        let res = browser
            .get(self.server.url("/account"))
            .send()
            .await
            .unwrap();
        if res.status() != 200 {
            return None;
        }
        let page = res.text().await.unwrap();
        page.contains("Signed in with</dt><dd>saml").then_some(page)
    }

    /// The response was refused with `code`: the page says so, no session, an audit event.
    async fn assert_refused(
        &self,
        browser: &reqwest::Client,
        res: reqwest::Response,
        status: u16,
        code: &str,
    ) {
        assert_eq!(res.status().as_u16(), status, "expected {code}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains(&format!("<code>{code}</code>")),
            "page should name {code}: {body}"
        );
        assert!(
            self.signed_in_as(browser).await.is_none(),
            "no session after {code}"
        );
        let events = nulab_pass::audit::store::recent(self.server.db().pool(), None, 5)
            .await
            .unwrap();
        let failure = events
            .iter()
            .find(|e| e.action == "sso.signin.failed")
            .expect("failure audited");
        assert_eq!(failure.details["reason"], code);
        assert!(failure.ip.is_some(), "the audit event records the IP");
    }
}

async fn sp_initiated_sign_in(backend: Backend) {
    let s = sso(backend).await;
    let (browser, res) = s.attempt("Mia@Corp.test", |_| {}).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/account");
    let page = s
        .signed_in_as(&browser)
        .await
        .expect("signed in through SAML");
    assert!(page.contains("mia@corp.test") && page.contains("managed account"));
    let events =
        nulab_pass::audit::store::recent(s.server.db().pool(), Some(&s.org.id.to_string()), 3)
            .await
            .unwrap();
    let success = events
        .iter()
        .find(|e| e.action == "sso.signin.succeeded")
        .expect("success audited");
    assert_eq!(success.details["connection_id"], s.id().as_str());
    assert!(success.ip.is_some());
    // The login URL sends the browser back where it asked to go.
    let browser = s.server.client();
    let res = browser
        .get(format!(
            "{}?return_to=/admin/corp/members",
            s.connection["login_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(IDP_SSO)
            && location.contains("SAMLRequest=")
            && location.contains("RelayState=")
    );
    assert!(
        !location.contains("admin%2Fcorp"),
        "RelayState is an opaque reference, not the URL"
    );
}
both!(sp_initiated_sign_in_works, sp_initiated_sign_in);

/// The HTTP-POST form as IdPs encode it, sent byte for byte: base64 wrapped in lines (CRLF
/// every 76 characters, as .NET writes it, or LF), escapes in either case, a space as `+`, the
/// fields in any order. The first `SAMLResponse` field is the one read.
async fn form_encodings(backend: Backend) {
    let s = sso(backend).await;
    let escape = |b64: &str, upper: bool| -> String {
        let mut out = String::new();
        for c in b64.chars() {
            match (c, upper) {
                ('+', true) => out.push_str("%2B"),
                ('+', false) => out.push_str("%2b"),
                ('/', true) => out.push_str("%2F"),
                ('/', false) => out.push_str("%2f"),
                ('=', _) => out.push_str("%3D"),
                ('\r', _) => out.push_str("%0D"),
                ('\n', true) => out.push_str("%0A"),
                ('\n', false) => out.push_str("%0a"),
                (' ', _) => out.push('+'),
                (c, _) => out.push(c),
            }
        }
        out
    };
    let wrap = |b64: &str, end: &str| -> String {
        b64.as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect::<Vec<_>>()
            .join(end)
    };
    type Body = fn(&str, &str) -> String;
    let bodies: [(&str, Body); 4] = [
        (
            "CRLF lines, upper-case escapes, RelayState first",
            |response, relay| format!("RelayState={relay}&SAMLResponse={response}"),
        ),
        ("LF lines, lower-case escapes", |response, relay| {
            format!("SAMLResponse={response}&RelayState={relay}")
        }),
        (
            "spaces as +, an empty field and a second SAMLResponse",
            |response, relay| {
                format!("&SAMLResponse=++{response}++&&RelayState={relay}&SAMLResponse=bm90")
            },
        ),
        ("the key escaped", |response, relay| {
            format!("SAML%52esponse={response}&RelayState={relay}")
        }),
    ];
    for (at, (name, body)) in bodies.into_iter().enumerate() {
        let (browser, started, b64) = s.started_with_response().await;
        let (end, upper) = if at == 1 {
            ("\n", false)
        } else {
            ("\r\n", true)
        };
        let response = escape(&wrap(&b64, end), upper);
        let res = s
            .post_raw(&browser, &started, body(&response, &started.relay_state))
            .await;
        assert_eq!(res.status(), 303, "{name}");
        assert!(s.signed_in_as(&browser).await.is_some(), "{name}");
    }
    // A first SAMLResponse that is not a response is the one read, whatever follows.
    let (browser, started, b64) = s.started_with_response().await;
    let sessions = s.server.rows("SELECT id FROM sessions ORDER BY id").await;
    let body = format!(
        "SAMLResponse=bm90&SAMLResponse={}&RelayState={}",
        escape(&b64, true),
        started.relay_state
    );
    let res = s.post_raw(&browser, &started, body).await;
    s.assert_refused(&browser, res, 400, "malformed_response")
        .await;
    assert_eq!(
        s.server.rows("SELECT id FROM sessions ORDER BY id").await,
        sessions,
        "no session row written"
    );
}
both!(the_form_as_idps_encode_it_signs_in, form_encodings);

/// An SSO sign-in lasts the organization's session lifetime (read in the transaction that
/// records the sign-in), by either path: SP-initiated and the IdP-initiated continue step.
async fn session_lifetime(backend: Backend) {
    let s = sso(backend).await;
    let settings = s.server.url("/api/v1/orgs/corp/session-settings");
    let one_hour = json!({"session_lifetime_hours": 1});
    let http = s.server.client();
    let (status, _) = api(&http, Method::PUT, settings, &s.token, Some(one_hour)).await;
    assert_eq!(status, 200);
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let (sp_browser, res) = s.attempt("mia@corp.test", |_| {}).await;
    assert_eq!(res.status(), 303);
    s.server.state.clock.advance_ms(30 * 60_000);
    let idp_browser = s.server.client();
    let res = s
        .post(&idp_browser, &s.unsolicited("mia@corp.test"), "", None)
        .await;
    let back = res.headers()["location"].to_str().unwrap().to_string();
    let res = idp_browser.get(s.server.url(&back)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    s.server.state.clock.advance_ms(29 * 60_000);
    assert!(s.signed_in_as(&sp_browser).await.is_some(), "59 minutes in");
    assert!(
        s.signed_in_as(&idp_browser).await.is_some(),
        "29 minutes in"
    );
    s.server.state.clock.advance_ms(2 * 60_000);
    assert!(s.signed_in_as(&sp_browser).await.is_none(), "61 minutes in");
    assert!(
        s.signed_in_as(&idp_browser).await.is_some(),
        "31 minutes in"
    );
    s.server.state.clock.advance_ms(30 * 60_000);
    assert!(
        s.signed_in_as(&idp_browser).await.is_none(),
        "61 minutes in"
    );
}
both!(
    an_sso_sign_in_lasts_the_organizations_session_lifetime,
    session_lifetime
);

async fn idp_initiated(backend: Backend) {
    let s = sso(backend).await;
    let unsolicited = s.unsolicited("mia@corp.test");
    let browser = s.server.client();
    let res = s.post(&browser, &unsolicited, "", None).await;
    s.assert_refused(&browser, res, 403, "unsolicited_response")
        .await;

    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let fresh = s.unsolicited("mia@corp.test");
    let res = s.post(&browser, &fresh, "", None).await;
    // Parked until the browser comes back by a same-site request (saml/login_csrf.rs).
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(back, format!("/sso/{}/continue", s.id()));
    assert!(s.signed_in_as(&browser).await.is_none());
    let res = browser.get(s.server.url(&back)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
    // The same unsolicited response again: the replay cache refuses it.
    let other = s.server.client();
    let res = s.post(&other, &fresh, "", None).await;
    s.assert_refused(&other, res, 403, "replayed").await;
}
both!(idp_initiated_sign_in_only_when_allowed, idp_initiated);

async fn every_signing_shape(backend: Backend) {
    let s = sso(backend).await;
    for signing in [Signing::Response, Signing::Assertion, Signing::Both] {
        let (browser, res) = s
            .attempt("mia@corp.test", |spec| spec.signing = signing)
            .await;
        assert_eq!(res.status(), 303, "{signing:?}");
        assert!(s.signed_in_as(&browser).await.is_some(), "{signing:?}");
    }
    // Requiring a signed assertion refuses response-only signatures, and says so in SP metadata.
    assert_eq!(
        s.patch(json!({"require_signed_assertions": true})).await.0,
        200
    );
    let metadata = s
        .server
        .client()
        .get(s.connection["sp_metadata_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metadata.contains("WantAssertionsSigned=\"true\""));
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| spec.signing = Signing::Response)
        .await;
    s.assert_refused(&browser, res, 403, "assertion_not_signed")
        .await;
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| spec.signing = Signing::Assertion)
        .await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(
    response_assertion_and_both_signed_are_accepted,
    every_signing_shape
);

/// Declares one test (on both databases) per rejection class of a modified response.
macro_rules! refused {
    ($name:ident, $status:expr, $code:expr, $change:expr) => {
        async fn $name(backend: Backend) {
            let s = sso(backend).await;
            let change: fn(&mut ResponseSpec, &Sso) = $change;
            let browser = s.server.client();
            let started = s.start(&browser).await;
            let mut spec = ResponseSpec::new(
                "mia@corp.test",
                &s.acs(),
                &s.audience(),
                Some(&started.request_id),
            );
            change(&mut spec, &s);
            let b64 = s.idp.response_b64(&spec).unwrap();
            let res = s
                .post(&browser, &b64, &started.relay_state, Some(&started.cookie))
                .await;
            s.assert_refused(&browser, res, $status, $code).await;
        }
        both!($name, $name);
    };
}

refused!(unsigned, 403, "missing_signature", |spec, _| spec.signing =
    Signing::None);
refused!(sha1, 403, "weak_signature_algorithm", |spec, _| spec
    .algorithm =
    Algorithm::RsaSha1);
refused!(wrong_audience, 403, "wrong_audience", |spec, _| spec
    .audience =
    Some("https://someone-else.example/sp".into()));
refused!(no_audience, 403, "wrong_audience", |spec, _| spec
    .audience =
    None);
refused!(wrong_destination, 403, "wrong_destination", |spec, s| {
    spec.destination = Some(format!("{}/other", s.acs()))
});
refused!(wrong_recipient, 403, "wrong_recipient", |spec, _| spec
    .recipient =
    "https://attacker.example/acs".into());
refused!(wrong_issuer, 403, "wrong_issuer", |spec, _| spec.issuer =
    Some("https://other-idp.example".into()));
refused!(expired, 403, "expired", |spec, _| spec.issued_offset_secs =
    -3600);
refused!(not_yet_valid, 403, "not_yet_valid", |spec, _| spec
    .issued_offset_secs =
    900);
refused!(failed_status, 403, "status_not_success", |spec, _| spec
    .status =
    "urn:oasis:names:tc:SAML:2.0:status:Responder".into());
refused!(unknown_request, 403, "unknown_request", |spec, _| spec
    .in_response_to =
    Some("_not_a_request_of_ours".into()));
refused!(nameid_comment, 403, "nameid_split", |spec, _| spec
    .name_id_raw =
    Some("mia@corp.test<!---->.evil.example".into()));
refused!(unknown_account, 403, "unknown_account", |spec, _| spec
    .name_id =
    Some("nobody@corp.test".into()));
refused!(no_email, 403, "no_email", |spec, _| spec.name_id =
    Some("a1b2c3-opaque-id".into()));

async fn other_key(backend: Backend) {
    let s = sso(backend).await;
    let impostor = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    let res = s
        .post(
            &browser,
            &impostor.response_b64(&spec).unwrap(),
            &started.relay_state,
            Some(&started.cookie),
        )
        .await;
    s.assert_refused(&browser, res, 403, "unknown_signing_key")
        .await;
}
both!(a_key_not_configured_is_refused, other_key);

async fn tampered(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let mut spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    spec.signing = Signing::Assertion;
    let xml = s
        .idp
        .response_xml(&spec)
        .unwrap()
        .replace("mia@corp.test", "eve@corp.test");
    let res = s.post_xml(&browser, xml, &started).await;
    s.assert_refused(&browser, res, 403, "bad_signature").await;
}
both!(a_tampered_signed_response_is_refused, tampered);

async fn wrapping(backend: Backend) {
    let s = sso(backend).await;
    // Eve has a managed account too; she holds a valid response for Mia and wraps it.
    new_managed(&s.server, "corp", &s.token, "eve@corp.test", "Eve").await;
    let first = s.server.client();
    let started = s.start(&first).await;
    let mut spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    spec.signing = Signing::Assertion;
    let genuine = s.idp.response_xml(&spec).unwrap();
    let start = genuine.find("<saml:Assertion").unwrap();
    let end = genuine.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let signed_assertion = &genuine[start..end];
    let evil = signed_assertion
        .replace("mia@corp.test", "eve@corp.test")
        .replace(&spec.assertion_id, "_evil");
    let evil = match (evil.find("<ds:Signature"), evil.find("</ds:Signature>")) {
        (Some(a), Some(b)) => format!("{}{}", &evil[..a], &evil[b + "</ds:Signature>".len()..]),
        _ => evil,
    };
    for variant in [
        // The forged assertion first, the signed one after it.
        format!("{}{}{}", &genuine[..start], evil, &genuine[start..]),
        // The signed assertion hidden in Extensions, the forged one in its place.
        format!(
            "{}<samlp:Extensions>{}</samlp:Extensions>{}{}",
            &genuine[..start],
            signed_assertion,
            evil,
            &genuine[end..]
        ),
    ] {
        let browser = s.server.client();
        let started = s.start(&browser).await;
        let variant = variant.replace(&spec.in_response_to.clone().unwrap(), &started.request_id);
        let res = s.post_xml(&browser, &variant, &started).await;
        s.assert_refused(&browser, res, 403, "signature_wrapping")
            .await;
    }
}
both!(signature_wrapping_is_refused, wrapping);

/// Python's standard cookie jar, the policy of `requests` too: Secure cookies go over https only.
const PYTHON_CLIENT: &str = r#"
import http.cookiejar, sys, urllib.parse, urllib.request
mode, url, jar_path = sys.argv[1:4]
jar = http.cookiejar.MozillaCookieJar(jar_path)
if mode == "post":
    jar.load(ignore_discard=True)
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Stay)
data = None
if mode == "post":
    data = urllib.parse.urlencode({"SAMLResponse": open(sys.argv[4]).read()}).encode()
try:
    res = opener.open(urllib.request.Request(url, data=data))
    status, location = res.status, res.headers.get("Location", "")
except urllib.error.HTTPError as e:
    status, location = e.code, e.headers.get("Location", "")
jar.save(ignore_discard=True)
print(status, location)
"#;

fn python(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .args(args)
        .output()
        .expect("python3 (Debian package python3) must be installed: scripts/setup.sh --test");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, location) = stdout.trim().split_once(' ').unwrap_or((stdout.trim(), ""));
    (status.parse().unwrap(), location.to_string())
}

async fn non_browser_client(backend: Backend) {
    let s = sso(backend).await;
    // An HTTP client library with its own cookie jar, as an integrator's test suite drives
    // SP-initiated sign-in against a local server over plain http.
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let login = s.connection["login_url"].as_str().unwrap().to_string();
    let (status, location) = python(&["start", &login, jar]);
    assert_eq!(status, 303);
    let query: Vec<(String, String)> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let saml_request = &query.iter().find(|(k, _)| k == "SAMLRequest").unwrap().1;
    let request = nulab_pass::saml::mock_idp_server::read_request(saml_request).unwrap();
    let spec = ResponseSpec::new("mia@corp.test", &s.acs(), &s.audience(), Some(&request.id));
    let response = dir.path().join("response.b64");
    std::fs::write(&response, s.idp.response_b64(&spec).unwrap()).unwrap();
    let (status, location) = python(&["post", &s.acs(), jar, response.to_str().unwrap()]);
    assert_eq!(status, 303, "signed in, not refused as another browser");
    assert_eq!(location, "/account");
}
both!(
    a_non_browser_client_signs_in_over_plain_http,
    non_browser_client
);

async fn request_binding(backend: Backend) {
    let s = sso(backend).await;
    // Another browser's request: the response arrives without (or with another) binding cookie.
    let (alice, started, b64) = s.started_with_response().await;
    let mallory = s.server.client();
    let other_start = s.start(&mallory).await;
    let res = s
        .post(
            &mallory,
            &b64,
            &started.relay_state,
            Some(&other_start.cookie),
        )
        .await;
    s.assert_refused(&mallory, res, 403, "other_browser").await;
    let res = s.post(&mallory, &b64, &started.relay_state, None).await;
    s.assert_refused(&mallory, res, 403, "other_browser").await;
    // The rightful browser still signs in with it, once; the second post is a replay.
    let res = s
        .post(&alice, &b64, &started.relay_state, Some(&started.cookie))
        .await;
    assert_eq!(res.status(), 303);
    let again = s.server.client();
    let res = s
        .post(&again, &b64, &started.relay_state, Some(&started.cookie))
        .await;
    s.assert_refused(&again, res, 403, "replayed").await;
    // A request older than 10 minutes has expired.
    let late = s.server.client();
    let started = s.start(&late).await;
    s.server.state.clock.advance_ms(11 * 60 * 1000);
    let spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    let res = s
        .post(
            &late,
            &s.idp.response_b64(&spec).unwrap(),
            &started.relay_state,
            Some(&started.cookie),
        )
        .await;
    s.assert_refused(&late, res, 403, "expired_request").await;
}
both!(
    responses_are_bound_to_the_browser_single_use_and_fresh,
    request_binding
);

async fn hostile_bodies(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    let xml = s.idp.response_xml(&spec).unwrap();
    let with_dtd = format!("<!DOCTYPE r [<!ENTITY e \"mia@corp.test\">]>{xml}");
    let res = s.post_xml(&browser, with_dtd, &started).await;
    s.assert_refused(&browser, res, 400, "dtd_forbidden").await;
    let huge = STANDARD.encode(format!("{xml}<!--{}-->", "x".repeat(300 * 1024)));
    let res = s
        .post(&browser, &huge, &started.relay_state, Some(&started.cookie))
        .await;
    s.assert_refused(&browser, res, 413, "response_too_large")
        .await;
    let res = s
        .post(
            &browser,
            "%%%not-base64",
            &started.relay_state,
            Some(&started.cookie),
        )
        .await;
    s.assert_refused(&browser, res, 400, "malformed_response")
        .await;
    // None of this used up the request: the genuine response still works.
    let res = s.post_xml(&browser, &xml, &started).await;
    assert_eq!(res.status(), 303);
}
both!(
    dtds_oversized_and_garbage_bodies_are_refused,
    hostile_bodies
);

async fn account_rules(backend: Backend) {
    let s = sso(backend).await;
    let http = s.server.client();
    // Suspended.
    let mia: (String,) =
        sqlx::query_as("SELECT id FROM accounts WHERE email_norm = 'mia@corp.test'")
            .fetch_one(s.server.db().pool())
            .await
            .unwrap();
    let (status, _) = api(
        &http,
        Method::POST,
        s.server.url(&format!(
            "/api/v1/orgs/corp/managed-accounts/{}/suspend",
            mia.0
        )),
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (browser, res) = s.attempt("mia@corp.test", |_| {}).await;
    s.assert_refused(&browser, res, 403, "account_suspended")
        .await;
    // A Nulab account: told their admin can migrate them.
    s.server.account("nils@corp.test", "Nils", PASSWORD).await;
    let (browser, res) = s.attempt("nils@corp.test", |_| {}).await;
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(body.contains("not_managed_account") && body.contains("can migrate"));
    assert!(s.signed_in_as(&browser).await.is_none());
    // A managed account on a domain that lapsed.
    s.server
        .domain_row(&s.org, "lab.corp.test", "verified")
        .await;
    new_managed(&s.server, "corp", &s.token, "lea@lab.corp.test", "Lea").await;
    sqlx::query("UPDATE domains SET status = 'lapsed' WHERE domain = 'lab.corp.test'")
        .execute(s.server.db().pool())
        .await
        .unwrap();
    let (browser, res) = s.attempt("lea@lab.corp.test", |_| {}).await;
    s.assert_refused(&browser, res, 403, "domain_not_verified")
        .await;
    // A managed account of another organization.
    let boss = s.server.account("boss@other.test", "Boss", PASSWORD).await;
    let other = s.server.org("other", &boss).await;
    s.server.verified_domain(&other, "other.test").await;
    s.server.seats(&other, 1).await;
    let other_token = s.server.token(&other).await;
    new_managed(&s.server, "other", &other_token, "oz@other.test", "Oz").await;
    let (browser, res) = s.attempt("oz@other.test", |_| {}).await;
    s.assert_refused(&browser, res, 403, "unknown_account")
        .await;
}
both!(
    only_active_managed_accounts_on_verified_domains_sign_in,
    account_rules
);

async fn email_attribute(backend: Backend) {
    let s = sso(backend).await;
    let claim = nulab_pass::mock_idp::EMAIL_CLAIM;
    assert_eq!(s.patch(json!({"email_attribute": claim})).await.0, 200);
    // Entra's shape: an opaque persistent NameID, the email in a claim.
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| {
            spec.name_id = Some("AAAAAAAAAAAAAAAAAAAAAD2xQ".into());
            spec.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into();
            spec.attributes = vec![(claim.to_string(), vec!["mia@corp.test".into()])];
        })
        .await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| spec.attributes.clear())
        .await;
    s.assert_refused(&browser, res, 403, "no_email").await;
    // Back to the NameID (null), taken as the email whatever its format (Okta's unspecified).
    assert_eq!(s.patch(json!({"email_attribute": null})).await.0, 200);
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| {
            spec.name_id_format = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified".into()
        })
        .await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(
    the_email_comes_from_the_nameid_or_a_named_attribute,
    email_attribute
);

async fn sha1_when_allowed(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_sha1": true})).await.0, 200);
    let (browser, res) = s
        .attempt("mia@corp.test", |spec| spec.algorithm = Algorithm::RsaSha1)
        .await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(sha1_only_when_an_admin_allows_it, sha1_when_allowed);

/// Fills a fixture's placeholders.
/// A response in Shibboleth IdP v4/v5's layout: `saml2`/`saml2p` prefixes, only the Response
/// signed with `InclusiveNamespaces PrefixList="xsd"`, a transient NameID with NameQualifier and
/// SPNameQualifier, the mail attribute by OID with NameFormat uri, and eduPersonTargetedID
/// whose value is a NameID element.
fn shibboleth_response(spec: &mut ResponseSpec, audience: &str) {
    spec.signing = Signing::Response;
    spec.prefixes = ("saml2".into(), "saml2p".into());
    spec.inclusive_prefixes = Some("xsd".into());
    spec.name_id = Some("AAdzZWNyZXQxeLC9ZDe6AhmrJzE4l1wZ".into());
    spec.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into();
    spec.name_id_qualifiers = Some((IDP_ENTITY.into(), audience.into()));
    let uri = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
    spec.attributes = Vec::new();
    spec.raw_attributes = Some(format!(
        "<saml:Attribute FriendlyName=\"mail\" Name=\"urn:oid:0.9.2342.19200300.100.1.3\" NameFormat=\"{uri}\"><saml:AttributeValue>mia@corp.test</saml:AttributeValue></saml:Attribute>\
         <saml:Attribute FriendlyName=\"eduPersonTargetedID\" Name=\"urn:oid:1.3.6.1.4.1.5923.1.1.1.10\" NameFormat=\"{uri}\"><saml:AttributeValue><saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\" NameQualifier=\"{IDP_ENTITY}\" SPNameQualifier=\"{audience}\">8hUMK/CWNzJ2Lx07BK6A5BCDEoY=</saml:NameID></saml:AttributeValue></saml:Attribute>"
    ));
}

async fn shibboleth(backend: Backend) {
    let back_channel = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let first = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let second = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let xml = fixture(
        "shibboleth-v5.xml",
        &first.cert_base64(),
        &second.cert_base64(),
    )
    .replace("{{CERT3}}", &back_channel.cert_base64());
    // Each key without `use` may sign (SAML metadata 2.4.1.1), beside the one marked signing.
    for signer in [first, second, back_channel] {
        let s = sso_with(
            backend,
            signer,
            xml.clone(),
            json!({"email_attribute": "urn:oid:0.9.2342.19200300.100.1.3"}),
        )
        .await;
        let audience = s.audience();
        let (browser, res) = s
            .attempt("mia@corp.test", |spec| shibboleth_response(spec, &audience))
            .await;
        assert_eq!(res.status(), 303, "Shibboleth's response signs in");
        assert!(s.signed_in_as(&browser).await.is_some());
    }
}
both!(shibboleth_idp_responses_and_metadata_sign_in, shibboleth);

fn fixture(name: &str, cert1: &str, cert2: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/idp-metadata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("{{CERT1}}", cert1)
    .replace("{{CERT2}}", cert2)
    .replace("{{ENTITY_ID}}", IDP_ENTITY)
    .replace("{{SSO_URL}}", IDP_SSO)
}

async fn real_idp_shapes(backend: Backend) {
    let other = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    for (name, sign_with_second) in [
        ("okta.xml", false),
        ("entra.xml", false),
        ("google.xml", false),
        ("adfs.xml", false),
        ("keycloak.xml", false),
        ("shibboleth.xml", false),
        ("shibboleth.xml", true),
        ("rollover.xml", true),
        ("rollover.xml", false),
    ] {
        let first = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
        let xml = fixture(name, &first.cert_base64(), &other.cert_base64());
        let signer = if sign_with_second {
            MockIdp::with_keys(IDP_ENTITY, IDP_SSO, other.keys.clone())
        } else {
            first.clone()
        };
        let s = sso_with(backend, signer, xml, json!({})).await;
        let (browser, res) = s.attempt("mia@corp.test", |_| {}).await;
        assert_eq!(res.status(), 303, "{name} (second key: {sign_with_second})");
        assert!(s.signed_in_as(&browser).await.is_some(), "{name}");
        // The response shapes these IdPs send: the namespaces' prefixes (none: the default
        // namespace), which elements are signed, the signature's own prefix, and whether the
        // XML is indented.
        let shapes: &[(&str, &str, Signing, &str, bool)] = match name {
            // Entra: the assertion and its signature unprefixed, the assertion signed only.
            "entra.xml" => &[("", "samlp", Signing::Assertion, "", false)],
            // AD FS: everything unprefixed but the signature, both signed, indented.
            "adfs.xml" => &[
                ("", "", Signing::Both, "ds", true),
                ("", "", Signing::Assertion, "ds", false),
            ],
            // Keycloak: `saml`/`samlp`, the signature as `dsig`.
            "keycloak.xml" => &[("saml", "samlp", Signing::Both, "dsig", false)],
            // Shibboleth: `saml2`/`saml2p`, indented.
            "shibboleth.xml" if !sign_with_second => {
                &[("saml2", "saml2p", Signing::Both, "ds", true)]
            }
            _ => &[],
        };
        for &(assertion, protocol, signing, dsig, pretty) in shapes {
            let shape = |spec: &mut ResponseSpec| {
                spec.prefixes = (assertion.into(), protocol.into());
                spec.signing = signing;
                spec.dsig_prefix = dsig.into();
                spec.pretty = pretty;
            };
            let mut spec = ResponseSpec::new("mia@corp.test", &s.acs(), &s.audience(), None);
            shape(&mut spec);
            let xml = s.idp.response_xml(&spec).unwrap();
            let root = if protocol.is_empty() {
                "<Response xmlns=\"urn:oasis:names:tc:SAML:2.0:protocol\"".to_string()
            } else {
                format!("<{protocol}:Response ")
            };
            let signature = if dsig.is_empty() {
                "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"".to_string()
            } else {
                format!("<{dsig}:Signature xmlns:{dsig}=")
            };
            assert!(xml.starts_with(&root), "{xml}");
            assert_eq!(xml.contains(">\n    <"), pretty, "{xml}");
            assert!(xml.contains(&signature), "{xml}");
            if assertion.is_empty() {
                assert!(xml.contains("<Assertion xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\""));
                assert!(xml.contains("<NameID "), "{xml}");
            }
            let (browser, res) = s.attempt("mia@corp.test", shape).await;
            assert_eq!(
                res.status(),
                303,
                "{name}: {assertion:?} {protocol:?} {signing:?} {dsig:?}"
            );
            assert!(s.signed_in_as(&browser).await.is_some(), "{name}");
        }
        if name == "google.xml" {
            let started = s.start(&s.server.client()).await;
            assert!(
                started
                    .location
                    .starts_with(&format!("{IDP_SSO}?idpid=C0abc123&SAMLRequest=")),
                "{}",
                started.location
            );
        }
        if name == "keycloak.xml" {
            assert_eq!(
                s.connection["sign_authn_requests"], true,
                "Keycloak asks for signed requests"
            );
        }
    }
}
both!(
    metadata_in_the_shapes_real_idps_publish_works,
    real_idp_shapes
);

async fn refused_metadata(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    let token = server.token(&org).await;
    let http = server.client();
    let idp = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let before = (
        server.count("saml_connections").await,
        server.count("audit_events").await,
    );
    for (xml, fragment) in [
        (
            fixture("no-signing-key.xml", &idp.cert_base64(), &idp.cert_base64()),
            "no signing certificate",
        ),
        (
            fixture("no-keys.xml", &idp.cert_base64(), &idp.cert_base64()),
            "no signing certificate",
        ),
        ("<md:EntityDescriptor".to_string(), "not well-formed"),
        (
            format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", idp.metadata_xml()),
            "DTD",
        ),
        (
            idp.metadata_xml()
                .replace(&idp.cert_base64(), "bm90IGEgY2VydGlmaWNhdGU="),
            "not valid X.509",
        ),
    ] {
        let (status, body) = api(
            &http,
            Method::POST,
            server.url("/api/v1/orgs/corp/saml-connections"),
            &token,
            Some(json!({"metadata_xml": xml})),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_metadata")),
            "{fragment}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(fragment),
            "{body}"
        );
    }
    for (settings, code) in [
        (json!({"clock_skew_seconds": 601}), "invalid_setting"),
        (json!({"clock_skew_seconds": -1}), "invalid_setting"),
        (
            json!({"domains": ["notverified.test"]}),
            "domain_not_verified",
        ),
    ] {
        let mut body = json!({"metadata_xml": idp.metadata_xml()});
        body.as_object_mut()
            .unwrap()
            .extend(settings.as_object().unwrap().clone());
        let (status, reply) = api(
            &http,
            Method::POST,
            server.url("/api/v1/orgs/corp/saml-connections"),
            &token,
            Some(body),
        )
        .await;
        assert_eq!((status, reply["error"].as_str()), (400, Some(code)));
    }
    assert_eq!(
        (
            server.count("saml_connections").await,
            server.count("audit_events").await
        ),
        before
    );
}
both!(
    metadata_without_a_signing_key_and_bad_settings_are_refused,
    refused_metadata
);

async fn delete_and_recreate(backend: Backend) {
    let s = sso(backend).await;
    let http = s.server.client();
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let (status, _) = api(
        &http,
        Method::DELETE,
        s.server
            .url(&format!("/api/v1/orgs/corp/saml-connections/{}", s.id())),
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    let res = s
        .post(
            &browser,
            &s.idp.response_b64(&spec).unwrap(),
            &started.relay_state,
            Some(&started.cookie),
        )
        .await;
    s.assert_refused(&browser, res, 404, "unknown_connection")
        .await;
    let (status, again) = api(
        &http,
        Method::POST,
        s.server.url("/api/v1/orgs/corp/saml-connections"),
        &s.token,
        Some(json!({"metadata_xml": s.idp.metadata_xml()})),
    )
    .await;
    assert_eq!(status, 201, "the same IdP entity ID may be used again");
    assert_ne!(again["id"], s.connection["id"]);
    let (status, dup) = api(
        &http,
        Method::POST,
        s.server.url("/api/v1/orgs/corp/saml-connections"),
        &s.token,
        Some(json!({"metadata_xml": s.idp.metadata_xml()})),
    )
    .await;
    assert_eq!(
        (status, dup["error"].as_str()),
        (409, Some("duplicate_connection"))
    );
}
both!(
    deleting_a_connection_stops_sign_in_at_once,
    delete_and_recreate
);

async fn signed_requests_and_sp_metadata(backend: Backend) {
    let s = sso(backend).await;
    let (status, view) = s.patch(json!({"sign_authn_requests": true})).await;
    assert_eq!(
        (status, view["sign_authn_requests"].as_bool()),
        (200, Some(true))
    );
    let metadata = s
        .server
        .client()
        .get(s.connection["sp_metadata_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metadata.contains("AuthnRequestsSigned=\"true\"")
            && metadata.contains(&format!("Location=\"{}\"", s.acs()))
    );
    assert!(metadata.contains(&format!("entityID=\"{}\"", s.audience())));
    let cert_b64 = metadata
        .split("<ds:X509Certificate>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let cert = openssl::x509::X509::from_der(&STANDARD.decode(cert_b64).unwrap()).unwrap();
    let started = s.start(&s.server.client()).await;
    let query = started.location.split_once('?').unwrap().1;
    let (signed_part, signature) = query.rsplit_once("&Signature=").unwrap();
    assert!(
        signed_part
            .contains("SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256")
    );
    let signature = STANDARD
        .decode(
            url::form_urlencoded::parse(format!("s={signature}").as_bytes())
                .next()
                .unwrap()
                .1
                .as_bytes(),
        )
        .unwrap();
    let public = cert.public_key().unwrap();
    let mut verifier =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public).unwrap();
    verifier.update(signed_part.as_bytes()).unwrap();
    assert!(
        verifier.verify(&signature).unwrap(),
        "the redirect signature verifies with the SP certificate"
    );
    assert!(
        started.request_id.len() >= 33,
        "request IDs carry at least 128 random bits"
    );
}
both!(
    authn_requests_are_signed_when_asked_and_sp_metadata_says_so,
    signed_requests_and_sp_metadata
);

async fn xmlsec1_signed(backend: Backend) {
    let s = sso(backend).await;
    let browser = s.server.client();
    let started = s.start(&browser).await;
    let mut spec = ResponseSpec::new(
        "mia@corp.test",
        &s.acs(),
        &s.audience(),
        Some(&started.request_id),
    );
    spec.signing = Signing::None;
    let unsigned = s.idp.response_xml(&spec).unwrap();
    // Put an empty signature template in the Assertion and let the xmlsec1 tool sign it.
    let template = s
        .idp
        .signature_template(&spec.assertion_id, Algorithm::RsaSha256);
    let issuer_end = unsigned.rfind("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let with_template = format!(
        "{}{}{}",
        &unsigned[..issuer_end],
        template,
        &unsigned[issuer_end..]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.xml"), &with_template).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        s.idp.keys.key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new("xmlsec1")
        .args(["--sign", "--privkey-pem"])
        .arg(dir.path().join("key.pem"))
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--output",
        ])
        .arg(dir.path().join("out.xml"))
        .arg(dir.path().join("in.xml"))
        .output()
        .expect("xmlsec1 (Debian package xmlsec1) must be installed: scripts/setup.sh");
    assert!(
        out.status.success(),
        "xmlsec1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = std::fs::read_to_string(dir.path().join("out.xml")).unwrap();
    assert!(
        signed.contains("<ds:SignatureValue>")
            && !signed.contains("<ds:SignatureValue></ds:SignatureValue>")
    );
    let res = s.post_xml(&browser, signed, &started).await;
    assert_eq!(res.status(), 303);
    assert!(s.signed_in_as(&browser).await.is_some());
}
both!(
    a_response_signed_by_the_xmlsec1_tool_is_accepted,
    xmlsec1_signed
);

async fn test_connection(backend: Backend) {
    let s = sso(backend).await;
    let admin = s.server.signed_in("admin@corp.test", PASSWORD).await;
    let page = admin
        .get(s.server.url("/admin/corp/sso"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&s.acs()) && page.contains(&s.audience()),
        "the SP values are shown"
    );
    let res = s.test_sign_in(&admin, |_| {}).await;
    assert_eq!(res.status(), 200);
    assert!(s.server.audited("sso.test_completed").await);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("The sign-in works")
            && page.contains("mia@corp.test")
            && page.contains("No session was created")
    );
    // A failing test shows what was expected and what came. (The manual Cookie header above
    // replaced this client's session, so sign in again.)
    let admin = s.server.signed_in("admin@corp.test", PASSWORD).await;
    let res = s
        .test_sign_in(&admin, |spec| {
            spec.audience = Some("https://wrong.example/sp".into())
        })
        .await;
    let page = res.text().await.unwrap();
    assert!(
        page.contains("would be refused")
            && page.contains("wrong_audience")
            && page.contains("https://wrong.example/sp"),
        "{page}"
    );
}
both!(
    test_connection_shows_the_result_without_a_session,
    test_connection
);

async fn metadata_url_and_refresh(backend: Backend) {
    // The mock IdP server publishes its metadata on loopback; then it rolls its key.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let idp = MockIdp::generate(&format!("{base}/metadata"), &format!("{base}/sso")).unwrap();
    let served = Arc::new(std::sync::Mutex::new(idp.metadata_xml()));
    let shared = served.clone();
    let app = axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let xml = shared.lock().unwrap().clone();
            async move { xml }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // Outside development mode a loopback (or http) metadata URL is refused before any
    // connection, and nothing is created.
    let guarded = TestServer::start(backend).await;
    let admin = guarded.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = guarded.org("corp", &admin).await;
    let token = guarded.token(&org).await;
    for url in [
        format!("{base}/metadata"),
        format!("https://{addr}/metadata"),
    ] {
        let (status, body) = api(
            &guarded.client(),
            Method::POST,
            guarded.url("/api/v1/orgs/corp/saml-connections"),
            &token,
            Some(json!({ "metadata_url": url })),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "metadata_url_refused");
        assert_eq!(guarded.count("saml_connections").await, 0);
    }
    // Development mode fetches from loopback, as integrators' test setups need.
    let server = TestServer::start_with(backend, |c| c.dev = true).await;
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    let token = server.token(&org).await;
    let http = server.client();
    let (status, created) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(json!({"metadata_url": format!("{base}/metadata")})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["idp_entity_id"], format!("{base}/metadata"));
    let (status, body) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(json!({"metadata_url": format!("{base}/missing")})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("metadata_fetch_failed"))
    );

    let rolled = MockIdp::generate(&idp.entity_id, &idp.sso_url).unwrap();
    *served.lock().unwrap() = nulab_pass::saml::mock_idp::metadata_with_certs(
        &idp.entity_id,
        &idp.sso_url,
        &[idp.cert_base64(), rolled.cert_base64()],
        false,
    );
    server.state.clock.advance_ms(25 * 3600 * 1000);
    nulab_pass::saml::jobs::pass(&server.state).await.unwrap();
    let (_, view) = api(
        &http,
        Method::GET,
        server.url(&format!(
            "/api/v1/orgs/corp/saml-connections/{}",
            created["id"].as_str().unwrap()
        )),
        &token,
        None,
    )
    .await;
    // Unsigned metadata with another certificate is held for the admins' approval
    // (`saml/cert_hold.rs` follows a change to the end).
    assert_eq!(view["certificates"].as_array().unwrap().len(), 1);
    assert!(
        server
            .audit_actions(10)
            .await
            .iter()
            .any(|a| a == "saml_connection.certificates_held")
    );
    server
        .last_mail("admin@corp.test", "saml_connection.notice")
        .await;
}
both!(
    metadata_urls_are_fetched_and_refreshed,
    metadata_url_and_refresh
);

async fn expiry_warnings(backend: Backend) {
    let keys = nulab_pass::saml::keys::self_signed("soon expiring", 1, 20).unwrap();
    let idp = MockIdp::with_keys(IDP_ENTITY, IDP_SSO, keys);
    let metadata = idp.metadata_xml();
    let s = sso_with(backend, idp, metadata, json!({})).await;
    nulab_pass::saml::jobs::pass(&s.server.state).await.unwrap();
    nulab_pass::saml::jobs::pass(&s.server.state).await.unwrap();
    let warnings: Vec<_> = nulab_pass::mail::store::recent(s.server.db().pool(), 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.subject.contains("expires soon"))
        .collect();
    assert_eq!(warnings.len(), 1, "one 30-day warning, sent once");
    assert!(
        s.server
            .audited("saml_connection.certificate_expiry_warned")
            .await
    );
    s.server.state.clock.advance_ms(14 * 24 * 3600 * 1000);
    nulab_pass::saml::jobs::pass(&s.server.state).await.unwrap();
    let warnings = nulab_pass::mail::store::recent(s.server.db().pool(), 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.subject.contains("expires soon"))
        .count();
    assert_eq!(warnings, 2, "then the 7-day warning");
}
both!(
    certificate_expiry_is_warned_30_and_7_days_ahead,
    expiry_warnings
);

async fn cross_site_in_chromium(backend: Backend) {
    // The IdP lives on another site (localhost vs 127.0.0.1), so its POST to the ACS is a real
    // cross-site POST: the binding cookie must survive it, and the CSRF guard must not stop it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let public = format!("http://localhost:{port}");
    let idp = MockIdp::generate(&format!("{public}/metadata"), &format!("{public}/sso")).unwrap();
    let metadata = idp.metadata_xml();
    let router = nulab_pass::saml::mock_idp_server::router(Arc::new(idp.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let s = sso_with(backend, idp, metadata, json!({})).await;

    let browser = common::browser::Browser::start().await;
    browser
        .goto(s.connection["login_url"].as_str().unwrap())
        .await;
    assert!(
        browser
            .current_url()
            .await
            .starts_with(&format!("{public}/sso?")),
        "at the IdP"
    );
    browser.fill("input[name=email]", "mia@corp.test").await;
    browser.click("#sign-in").await;
    let mut at = String::new();
    for _ in 0..100 {
        at = browser.current_url().await;
        if at.ends_with("/account") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        at.starts_with(&s.server.base) && at.ends_with("/account"),
        "landed on {at}"
    );
    let page = browser.source().await;
    assert!(
        page.contains("mia@corp.test") && page.contains("saml"),
        "signed in through SAML"
    );
    browser.quit().await;
}
both!(a_real_browser_signs_in_across_sites, cross_site_in_chromium);

async fn return_to(backend: Backend) {
    let s = sso(backend).await;
    let login = s.connection["login_url"].as_str().unwrap().to_string();
    for (asked, kept) in [
        ("/admin/corp/sso", "/admin/corp/sso"),
        ("/\t/evil.example", "/account"),
        ("/%5c/evil.example", "/account"),
        ("//evil.example", "/account"),
        ("https:evil.example", "/account"),
    ] {
        let url = format!("{login}?{}", query_pair("return_to", asked));
        let started = s.started_at(&s.server.client(), &url).await;
        let row: (String,) = sqlx::query_as("SELECT return_to FROM saml_requests WHERE id = $1")
            .bind(started.request_id)
            .fetch_one(s.server.db().pool())
            .await
            .unwrap();
        assert_eq!(row.0, kept, "{asked:?}");
    }
}
both!(an_sso_return_target_stays_on_the_site, return_to);

fn query_pair(key: &str, value: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish()
}

async fn refusal_keeps_session(backend: Backend) {
    let s = sso(backend).await;
    let admin = s.server.signed_in("admin@corp.test", PASSWORD).await;
    // A cross-site POST arrives without the (SameSite=Lax) session cookie: the refusal must not
    // set a new session cookie, which would replace the person's own.
    let res = s
        .server
        .client()
        .post(s.acs())
        .form(&[("SAMLResponse", "not a response")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        !cookies.iter().any(|c| c.starts_with("nulab_pass_session=")),
        "{cookies:?}"
    );
    // With the cookie (a same-site post), a refusal leaves the session as it was.
    let res = admin
        .post(s.acs())
        .form(&[("SAMLResponse", "not a response")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let account = admin.get(s.server.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200, "still signed in");
}
both!(
    a_refused_response_leaves_the_browser_session_alone,
    refusal_keeps_session
);

async fn managed_cannot_found(backend: Backend) {
    let s = sso(backend).await;
    // Mia signs in through SSO: a managed account of corp.
    let (browser, res) = s.attempt("mia@corp.test", |_| {}).await;
    assert_eq!(res.status(), 303);
    let new_org = s.server.url("/orgs/new");
    let csrf = common::csrf_of(&browser, &new_org).await;
    let orgs_before = s.server.rows("SELECT slug FROM orgs ORDER BY slug").await;
    let res = browser
        .post(&new_org)
        .form(&[
            ("csrf", csrf.as_str()),
            ("slug", "mias-own"),
            ("name", "Mia's own"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(page.contains("cannot create another one"), "{page}");
    assert_eq!(
        s.server.rows("SELECT slug FROM orgs ORDER BY slug").await,
        orgs_before,
        "no organization was created"
    );
}
both!(
    a_managed_account_cannot_create_an_organization,
    managed_cannot_found
);

/// A sign-in's transaction commits without waiting for the disk (`db::Batch::defer_flush`,
/// PostgreSQL's `synchronous_commit = off` for that transaction) and that setting ends with it:
/// the connection's next transaction, a browser session's or a deletion's, syncs again. On
/// SQLite it changes nothing and the transaction commits as any other.
async fn deferred_flush_is_local(backend: Backend) {
    let test = common::fresh_db(backend).await;
    let db = &test.db;
    let postgres = backend == Backend::Postgres;
    let mut tx = db.begin().await.unwrap();
    let backend_pid = pid(&mut tx, postgres).await;
    if postgres {
        // The suite's PostgreSQL runs with synchronous commit off; a deployment's is on. For the
        // rest of this connection's session.
        sqlx::query("SET synchronous_commit TO on")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let mut batch = nulab_pass::db::Batch::new();
    batch.push_unread(
        "INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) VALUES ($1, $2, $3)",
        vec!["idp".into(), "deferred".into(), 1.into()],
    );
    batch.defer_flush();
    let outcomes = batch.run(&mut tx).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    if postgres {
        assert_eq!(synchronous_commit(&mut tx).await, "off");
    }
    tx.commit().await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM saml_replay")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(kept, 1, "the deferred transaction's write is kept");
    if postgres {
        // The next transaction on the same connection (the pool hands out its idle ones in
        // turn; the committed one comes back after its release ping).
        for _ in 0..100 {
            let mut next = db.begin().await.unwrap();
            if pid(&mut next, postgres).await != backend_pid {
                next.rollback().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            assert_eq!(
                synchronous_commit(&mut next).await,
                "on",
                "the setting outlived its transaction"
            );
            next.rollback().await.unwrap();
            return;
        }
        panic!("the pool never handed out the deferred transaction's connection again");
    }
}
both!(
    a_sign_in_commit_defers_only_its_own_flush,
    deferred_flush_is_local
);

/// The PostgreSQL backend process of `conn` (0 on SQLite).
async fn pid(conn: &mut sqlx::AnyConnection, postgres: bool) -> i32 {
    if !postgres {
        return 0;
    }
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn synchronous_commit(conn: &mut sqlx::AnyConnection) -> String {
    let (value,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
        .fetch_one(conn)
        .await
        .unwrap();
    value
}
