//! Single Logout through the running server with the mock IdP and a product played by the
//! `openidconnect` crate: SP-initiated (the sign-out button sends a signed LogoutRequest, the
//! IdP's LogoutResponse finishes it), IdP-initiated by HTTP-Redirect (the signature checked over
//! the query octets as received) and HTTP-POST, OpenID Connect Back-Channel Logout to the
//! product, and every hostile logout message refused with nothing changed.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nulab_pass::mock_idp::MockIdp;
use nulab_pass::saml::mock_idp_slo::read_message;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::sso::sign_in_through_idp_in;
use super::*;

const IDP_ENTITY: &str = "https://idp.corp.test/metadata";
const IDP_SSO: &str = "https://idp.corp.test/sso";
const IDP_SLO: &str = "https://idp.corp.test/slo";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// What a product's back-channel logout endpoint received.
type Received = Arc<Mutex<Vec<String>>>;

/// A product endpoint on loopback that records every logout token posted to it.
async fn backchannel_endpoint() -> (String, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/backchannel",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "logout_token")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push(token);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/backchannel"), received)
}

/// A world whose server runs with `dev` as given, `corp` with Mia (managed) connected to a
/// mock IdP that does Single Logout, and the product `typetalk` with a back-channel URI.
struct Slo {
    w: World,
    idp: MockIdp,
    connection: Value,
    product: Product,
    creds: Creds,
    received: Received,
    /// `corp`'s admin API token.
    token: String,
}

async fn slo_world(backend: Backend, dev: bool) -> Slo {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    let server = TestServer::start_with(backend, move |c| {
        c.certs_dir = dir;
        c.dev = dev;
    })
    .await;
    let backlog = register(&server, "backlog", &[CALLBACK], &[LOGGED_OUT]).await;
    let (uri, received) = backchannel_endpoint().await;
    let mut tx = server.db().begin().await.unwrap();
    let created = nulab_pass::oidc::clients::create(
        &mut tx,
        server.state.clock.now_ms(),
        "typetalk",
        &[CALLBACK.to_string()],
        &[LOGGED_OUT.to_string()],
        Some(&uri),
        &Actor::Operator,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let creds = Creds {
        client_id: created.client_id,
        client_secret: created.client_secret,
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let w = World {
        server,
        certs,
        backlog,
        http,
    };
    let token = corp_org(&w.server, 5).await;
    managed_account(&w.server, &token, "mia@corp.test", "Mia").await;
    let idp = MockIdp::generate(IDP_ENTITY, IDP_SSO)
        .unwrap()
        .with_slo(IDP_SLO);
    let (status, connection) = api(
        &w.server.client(),
        Method::POST,
        w.server.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Mock IdP"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    assert_eq!(connection["idp_slo_url"], IDP_SLO, "read from the metadata");
    let product = w.product(&creds).await;
    Slo {
        w,
        idp,
        connection,
        product,
        creds,
        received,
        token,
    }
}

impl Slo {
    fn sp_slo(&self) -> String {
        self.connection["sp_slo_url"].as_str().unwrap().to_string()
    }

    /// Mia signs in to typetalk through the IdP in a new browser; returns it and the ID token's
    /// claims (with its `sid`) and tokens.
    async fn mia(&self) -> (reqwest::Client, Value, Tokens) {
        let browser = self.w.server.client();
        let (claims, tokens) = sign_in_through_idp_in(
            &browser,
            &self.w,
            &self.product,
            &self.idp,
            &self.connection,
            "mia@corp.test",
        )
        .await;
        assert!(claims["sid"].as_str().is_some_and(|s| s.len() == 32));
        (browser, claims, tokens)
    }

    async fn signed_in(&self, browser: &reqwest::Client) -> bool {
        let res = browser
            .get(self.w.server.url("/account"))
            .send()
            .await
            .unwrap();
        res.status() == 200
    }

    /// The refresh grant: 200 while the grant lives.
    async fn refresh(&self, tokens: &Tokens) -> u16 {
        self.w
            .http
            .post(self.w.server.url("/oauth/token"))
            .basic_auth(&self.creds.client_id, Some(&self.creds.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens.refresh.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Rows of `table` matching `condition`.
    async fn count(&self, table_and_condition: &str) -> i64 {
        self.w.server.count(table_and_condition).await
    }

    /// Waits (up to 10 s of polling) for `n` logout tokens at the product.
    async fn logout_tokens(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if self.received.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.received.lock().unwrap().clone()
    }
}

/// The signed octets of a redirect-bound message verify with `cert`.
fn redirect_signature_verifies(location: &str, cert: &openssl::x509::X509) -> bool {
    let query = location.split_once('?').unwrap().1;
    let (signed, signature) = query.rsplit_once("&Signature=").unwrap();
    let signature = url::form_urlencoded::parse(format!("s={signature}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let key = cert.public_key().unwrap();
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &key).unwrap();
    verifier.update(signed.as_bytes()).unwrap();
    verifier
        .verify(&STANDARD.decode(signature).unwrap())
        .unwrap()
}

fn query_value(location: &str, name: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn sp_initiated(backend: Backend) {
    let s = slo_world(backend, true).await;
    let server = &s.w.server;
    let (browser, claims, tokens) = s.mia().await;
    let (other, _, other_tokens) = s.mia().await;
    let csrf = csrf_of(&browser, &server.url("/account")).await;
    let res = browser
        .post(server.url("/signout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    assert!(to_idp.starts_with(IDP_SLO), "{to_idp}");
    let sp_cert = server.state.sp_keys.keys().unwrap().signing.cert.clone();
    assert!(redirect_signature_verifies(&to_idp, &sp_cert));
    assert_eq!(query_value(&to_idp, "SigAlg"), RSA_SHA256);
    let request = read_message(&query_value(&to_idp, "SAMLRequest")).unwrap();
    assert_eq!(request.name_id, "mia@corp.test");
    assert!(
        request.session_index.is_some(),
        "the AuthnStatement's index"
    );
    assert_eq!(request.issuer, s.connection["sp_entity_id"]);

    // Signed out here before the browser even reaches the IdP; the grant of that sign-in is
    // revoked and the product is told; Mia's other browser stays signed in.
    assert!(!s.signed_in(&browser).await);
    assert_eq!(s.refresh(&tokens).await, 400);
    assert!(s.signed_in(&other).await);
    assert_eq!(s.refresh(&other_tokens).await, 200);
    let tokens_seen = s.logout_tokens(1).await;
    assert_eq!(tokens_seen.len(), 1, "one logout token for one sign-in");
    let logout = server
        .state
        .oidc_keys
        .verify_own(&tokens_seen[0])
        .unwrap()
        .expect("signed by the provider's key");
    assert_eq!(logout["aud"], s.creds.client_id.as_str());
    assert_eq!(logout["sid"], claims["sid"]);
    assert_eq!(logout["sub"], claims["sub"]);
    assert!(logout.get("nonce").is_none());
    assert!(logout["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());

    // The IdP answers; the browser lands on the sign-in page. The same answer again is refused.
    let answer = s.idp.logout_response_xml(&s.sp_slo(), &request.id, SUCCESS);
    let url = s
        .idp
        .redirect(&s.sp_slo(), "SAMLResponse", &answer, None)
        .unwrap();
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/signin");
    let failed = s
        .count("audit_events WHERE action = 'sso.logout.failed'")
        .await;
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("unknown_request"));
    assert_eq!(
        s.count("audit_events WHERE action = 'sso.logout.failed'")
            .await,
        failed + 1
    );
    assert!(s.signed_in(&other).await);
}
both!(
    sp_initiated_logout_goes_through_the_idp_and_tells_the_product,
    sp_initiated
);

async fn idp_initiated(backend: Backend) {
    let s = slo_world(backend, true).await;
    let server = &s.w.server;
    let (first, _, first_tokens) = s.mia().await;
    let (second, _, _) = s.mia().await;
    let admin = server.signed_in("admin@corp.test", PASSWORD).await;
    assert!(s.signed_in(&admin).await);

    // The IdP signs its own encoding of the query (lower-case escapes): the signature covers the
    // octets as sent, so a verifier that re-encoded them would refuse it.
    let xml = s.idp.logout_request_xml(
        &nulab_pass::mock_idp::new_id(),
        &s.sp_slo(),
        "mia@corp.test",
        None,
        false,
    );
    let url = lower_case_signed(&s.idp, &s.sp_slo(), &xml, "back-to-idp");
    let res = first.get(&url).send().await.unwrap();
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let answer = res.headers()["location"].to_str().unwrap().to_string();
    assert!(answer.starts_with(IDP_SLO), "{answer}");
    assert_eq!(query_value(&answer, "RelayState"), "back-to-idp");
    let sp_cert = server.state.sp_keys.keys().unwrap().signing.cert.clone();
    assert!(redirect_signature_verifies(&answer, &sp_cert));
    let response = read_message(&query_value(&answer, "SAMLResponse")).unwrap();
    assert_eq!(response.status.as_deref(), Some(SUCCESS));
    assert!(response.in_response_to.is_some());

    // Every SSO sign-in of Mia ended, in every browser; the admin's password sign-in did not.
    assert!(!s.signed_in(&first).await);
    assert!(!s.signed_in(&second).await);
    assert_eq!(s.refresh(&first_tokens).await, 400);
    assert!(s.signed_in(&admin).await);
    assert_eq!(s.logout_tokens(2).await.len(), 2);

    // The same request again: refused as a replay, nothing else happens.
    let (third, _, third_tokens) = s.mia().await;
    let res = third.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("replayed"));
    assert!(s.signed_in(&third).await);
    assert_eq!(s.refresh(&third_tokens).await, 200);

    // By HTTP-POST with an enveloped signature and the sign-in's SessionIndex, its base64 in
    // indented lines of 76 characters.
    let index: String = sqlx::query_scalar(
        "SELECT session_index FROM saml_sessions WHERE ended_at IS NULL ORDER BY created_at DESC",
    )
    .fetch_one(server.db().pool())
    .await
    .unwrap();
    let id = nulab_pass::mock_idp::new_id();
    let xml = s
        .idp
        .logout_request_xml(&id, &s.sp_slo(), "mia@corp.test", Some(&index), true);
    let signed = STANDARD.encode(s.idp.sign(&xml).unwrap());
    let lines: Vec<&str> = signed
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let res = third
        .post(s.sp_slo())
        .form(&[("SAMLRequest", lines.join("\r\n\t").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(!s.signed_in(&third).await);
    assert!(s.signed_in(&admin).await);
    let actions = server.audit_actions(1000).await;
    let count = |name: &str| actions.iter().filter(|a| *a == name).count();
    assert_eq!(count("sso.logout.succeeded"), 2);
    assert_eq!(count("sso.logout.failed"), 1, "the replay");
}
both!(
    idp_initiated_logout_ends_every_sso_sign_in_of_the_subject,
    idp_initiated
);

/// `xml` by HTTP-Redirect with percent-escapes in lower case, signed over exactly those octets.
fn lower_case_signed(idp: &MockIdp, to: &str, xml: &str, relay: &str) -> String {
    use std::io::Write;
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater.write_all(xml.as_bytes()).unwrap();
    let encoded = STANDARD.encode(deflater.finish().unwrap());
    let lower = |raw: &str| -> String {
        raw.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    let query = format!(
        "SAMLRequest={}&RelayState={}&SigAlg={}",
        lower(&encoded),
        lower(relay),
        lower(RSA_SHA256)
    );
    let mut signer = Signer::new(MessageDigest::sha256(), &idp.keys.key).unwrap();
    signer.update(query.as_bytes()).unwrap();
    let signature = STANDARD.encode(signer.sign_to_vec().unwrap());
    format!("{to}?{query}&Signature={}", lower(&signature))
}

async fn hostile(backend: Backend) {
    let s = slo_world(backend, false).await;
    let server = &s.w.server;
    let (browser, _, tokens) = s.mia().await;
    let stranger = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let request = |name_id: &str, destination: &str| {
        s.idp.logout_request_xml(
            &nulab_pass::mock_idp::new_id(),
            destination,
            name_id,
            None,
            false,
        )
    };
    let slo = s.sp_slo();
    let signed = s
        .idp
        .redirect(&slo, "SAMLRequest", &request("mia@corp.test", &slo), None)
        .unwrap();
    let unsigned = signed.split("&SigAlg=").next().unwrap().to_string();
    // The NameID changed after signing: the octets no longer match the signature.
    let swapped = {
        let other = s
            .idp
            .redirect(&slo, "SAMLRequest", &request("ada@corp.test", &slo), None)
            .unwrap();
        let (_, sig) = signed.split_once("&SigAlg=").unwrap();
        format!("{}&SigAlg={sig}", other.split("&SigAlg=").next().unwrap())
    };
    let by_stranger = stranger
        .redirect(&slo, "SAMLRequest", &request("mia@corp.test", &slo), None)
        .unwrap();
    let elsewhere = s
        .idp
        .redirect(
            &slo,
            "SAMLRequest",
            &request("mia@corp.test", "https://elsewhere.test/slo"),
            None,
        )
        .unwrap();
    let twice = format!("{signed}&SAMLRequest=x");
    let bomb = {
        let huge = format!(
            "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">{}</samlp:LogoutRequest>",
            " ".repeat(2_000_000)
        );
        s.idp.redirect(&slo, "SAMLRequest", &huge, None).unwrap()
    };
    let unsigned_post = STANDARD.encode(request("mia@corp.test", &slo));
    let cases: Vec<(&str, String)> = vec![
        ("missing_signature", unsigned),
        ("bad_signature", swapped),
        ("bad_signature", by_stranger),
        ("wrong_destination", elsewhere),
        ("malformed_response", twice),
        ("response_too_large", bomb),
    ];
    let failures = || async {
        let actions = server.audit_actions(1000).await;
        actions.iter().filter(|a| *a == "sso.logout.failed").count()
    };
    for (code, url) in cases {
        let failed = failures().await;
        let res = browser.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{code}");
        let page = res.text().await.unwrap();
        assert!(page.contains(code), "{code}: {page}");
        assert!(s.signed_in(&browser).await, "{code} changed nothing");
        assert_eq!(failures().await, failed + 1);
    }
    let res = browser
        .post(&slo)
        .form(&[("SAMLRequest", unsigned_post.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("missing_signature"));
    assert!(s.signed_in(&browser).await);

    // A subject with no sign-in here: answered with success, nothing ends.
    let url = s
        .idp
        .redirect(
            &slo,
            "SAMLRequest",
            &request("nobody@corp.test", &slo),
            None,
        )
        .unwrap();
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(s.signed_in(&browser).await);
    assert_eq!(s.refresh(&tokens).await, 200);
    assert_eq!(s.count("saml_sessions WHERE ended_at IS NOT NULL").await, 0);

    // Outside development mode the product's loopback back-channel URI is refused, never
    // fetched: the delivery waits with the reason.
    let csrf = csrf_of(&browser, &server.url("/account")).await;
    let res = browser
        .post(server.url("/signout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let mut reason = String::new();
    for _ in 0..200 {
        reason =
            sqlx::query_scalar::<_, Option<String>>("SELECT last_error FROM backchannel_logouts")
                .fetch_one(server.db().pool())
                .await
                .unwrap()
                .unwrap_or_default();
        if !reason.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        reason.contains("back-channel logout URI was refused"),
        "{reason}"
    );
    assert!(s.received.lock().unwrap().is_empty());
}
both!(hostile_logout_messages_change_nothing, hostile);

/// The mock IdP's own HTTP server drives Single Logout both ways, as an integrator would use it.
async fn mock_idp_server(backend: Backend) {
    let s = slo_world(backend, true).await;
    let server = &s.w.server;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = MockIdp::with_keys(
        &format!("{base}/metadata"),
        &format!("{base}/sso"),
        s.idp.keys.clone(),
    )
    .with_slo(&format!("{base}/slo"));
    let app = nulab_pass::saml::mock_idp_server::router(Arc::new(idp.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // A second connection of corp, to the mock IdP server, routing the same domain.
    let token = s.token.clone();
    let (status, _) = api(
        &server.client(),
        Method::DELETE,
        server.url(&format!(
            "/api/v1/orgs/corp/saml-connections/{}",
            s.connection["id"].as_str().unwrap()
        )),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, connection) = api(
        &server.client(),
        Method::POST,
        server.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(json!({"metadata_url": format!("{base}/metadata"), "name": "Mock IdP server"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    assert_eq!(connection["idp_slo_url"], format!("{base}/slo"));

    // SP-initiated: sign out here → the mock's /slo answers → back on the sign-in page.
    let browser = server.client();
    sso_sign_in(&browser, &idp, &connection).await;
    let csrf = csrf_of(&browser, &server.url("/account")).await;
    let res = browser
        .post(server.url("/signout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to_idp.starts_with(&format!("{base}/slo?SAMLRequest=")),
        "{to_idp}"
    );
    let res = browser.get(&to_idp).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(connection["sp_slo_url"].as_str().unwrap()));
    let res = browser.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/signin");

    // IdP-initiated: the mock's /logout → this service ends the sign-in and answers the mock.
    sso_sign_in(&browser, &idp, &connection).await;
    assert!(s.signed_in(&browser).await);
    let start = format!(
        "{base}/logout?slo={}&name_id=mia%40corp.test",
        url::form_urlencoded::byte_serialize(connection["sp_slo_url"].as_str().unwrap().as_bytes())
            .collect::<String>()
    );
    let res = browser.get(&start).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to_sp = res.headers()["location"].to_str().unwrap().to_string();
    let res = browser.get(&to_sp).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(!s.signed_in(&browser).await);
    let answer = res.headers()["location"].to_str().unwrap().to_string();
    let page = browser
        .get(&answer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(SUCCESS), "{page}");
}
both!(
    the_mock_idp_server_drives_single_logout_both_ways,
    mock_idp_server
);

/// Mia signs in at the connection's login URL; `idp` answers.
async fn sso_sign_in(browser: &reqwest::Client, idp: &MockIdp, connection: &Value) {
    let (status, to_idp) = get(browser, connection["login_url"].as_str().unwrap()).await;
    assert_eq!(status, 303);
    let res = common::idp_answers(browser, &to_idp, idp, connection, "mia@corp.test").await;
    assert_eq!(res.status(), 303);
}
