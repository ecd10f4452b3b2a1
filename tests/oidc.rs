//! Signing in to the products through the running server, with the `openidconnect` crate as the
//! product: discovery, the authorization code flow with PKCE, ID tokens verified against the
//! JWKS, userinfo, refresh, logout, session lifetimes, key rotation and the product commands of
//! the real binary; every bad input the issue names (each asserting the error and that nothing
//! was issued); TOTP break-glass and the "SSO required" guard; and a managed account signing in
//! through the mock IdP, also after a migration (the same `sub`). Everything runs on SQLite and
//! PostgreSQL.

#[path = "oidc/bad_input.rs"]
mod bad_input;
#[path = "oidc/break_glass.rs"]
mod break_glass;
mod common;
#[path = "oidc/migration.rs"]
mod migration;
#[path = "oidc/ownership.rs"]
mod ownership;
#[path = "oidc/refresh.rs"]
mod refresh;
#[path = "oidc/slo.rs"]
mod slo;
#[path = "oidc/sso.rs"]
mod sso;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, TestServer, api, csrf_of, hidden_value};
use nulab_pass::audit::Actor;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use reqwest::Method;
use serde_json::{Value, json};

pub const CALLBACK: &str = "https://backlog.test/callback";
pub const LOGGED_OUT: &str = "https://backlog.test/signed-out";
pub const PASSWORD: &str = "correct horse battery";
pub const ADA: &str = "ada@example.com";

pub type Product = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A product's credentials.
#[derive(Clone, Debug)]
pub struct Creds {
    pub client_id: String,
    pub client_secret: String,
}

/// A running server with its own signing-key folder, a Nulab account `ada@example.com` and a
/// registered product `backlog`.
pub struct World {
    pub server: TestServer,
    pub certs: tempfile::TempDir,
    pub backlog: Creds,
    /// The product's HTTP client (never follows redirects).
    pub http: reqwest::Client,
}

pub async fn world(backend: Backend) -> World {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    let server = TestServer::start_with(backend, move |c| c.certs_dir = dir).await;
    server.account(ADA, "Ada Lovelace", PASSWORD).await;
    let backlog = register(
        &server,
        "backlog",
        &[CALLBACK, "https://backlog.test/other"],
        &[LOGGED_OUT],
    )
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    World {
        server,
        certs,
        backlog,
        http,
    }
}

/// Registers a product as the operator does.
pub async fn register(server: &TestServer, name: &str, uris: &[&str], logout: &[&str]) -> Creds {
    let mut tx = server.db().begin().await.unwrap();
    let to_vec = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let creds = nulab_pass::oidc::clients::create(
        &mut tx,
        server.state.clock.now_ms(),
        name,
        &to_vec(uris),
        &to_vec(logout),
        None,
        &Actor::Operator,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Creds {
        client_id: creds.client_id,
        client_secret: creds.client_secret,
    }
}

impl World {
    /// The product, configured from discovery.
    pub async fn product(&self, creds: &Creds) -> Product {
        let issuer = IssuerUrl::new(self.server.base.clone()).unwrap();
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .expect("discovery");
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(creds.client_id.clone()),
            Some(ClientSecret::new(creds.client_secret.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(CALLBACK.to_string()).unwrap())
    }

    pub async fn backlog(&self) -> Product {
        self.product(&self.backlog).await
    }

    /// Runs the whole flow for a Nulab or managed account signing in with a password in a fresh
    /// browser; returns the browser, the verified ID token's payload and the token response.
    pub async fn sign_in_to_backlog(
        &self,
        email: &str,
        password: &str,
    ) -> (reqwest::Client, Value, Tokens) {
        let product = self.backlog().await;
        let browser = self.server.client();
        let started = start(&product, &[]);
        let callback = through_sign_in(&self.server, &browser, &started.url, email, password).await;
        assert_eq!(
            callback.get("state").map(String::as_str),
            Some(started.csrf.secret().as_str())
        );
        let tokens = self
            .exchange(&product, &callback["code"], started.verifier)
            .await;
        let payload = verified_payload(&product, &tokens, &started.nonce);
        (browser, payload, tokens)
    }

    pub async fn exchange(
        &self,
        product: &Product,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Tokens {
        let response = product
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .expect("token exchange");
        Tokens {
            access: response.access_token().secret().clone(),
            refresh: response
                .refresh_token()
                .expect("refresh token")
                .secret()
                .clone(),
            id_token: response.id_token().expect("id token").to_string(),
            response,
        }
    }

    /// POSTs to the token endpoint as a product would, with Basic credentials when given.
    pub async fn token_raw(
        &self,
        basic: Option<&Creds>,
        form: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.post(self.server.url("/oauth/token")).form(form);
        if let Some(c) = basic {
            req = req.basic_auth(&c.client_id, Some(&c.client_secret));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, res.json().await.unwrap_or(Value::Null), headers)
    }

    /// Userinfo with a bearer token: status and body.
    pub async fn userinfo(&self, access: &str) -> (u16, Value) {
        let res = self
            .http
            .get(self.server.url("/oauth/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Rows that a refused request must not add to.
    pub async fn issued(&self) -> (i64, i64) {
        (
            self.server.count("oidc_codes").await,
            self.server.count("oidc_tokens").await,
        )
    }
}

/// Tokens a product received.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub id_token: String,
    pub response: openidconnect::core::CoreTokenResponse,
}

/// An authorization request the product is about to send the browser to.
pub struct Started {
    pub url: String,
    pub csrf: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

/// The product's authorization URL (code flow, PKCE S256, scopes email, profile and
/// offline_access).
pub fn start(product: &Product, extra: &[(&str, &str)]) -> Started {
    start_with_scopes(product, &["email", "profile", "offline_access"], extra)
}

/// [`start`] asking for `scopes` besides `openid`.
pub fn start_with_scopes(product: &Product, scopes: &[&str], extra: &[(&str, &str)]) -> Started {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = product
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in scopes {
        request = request.add_scope(Scope::new(scope.to_string()));
    }
    for (k, v) in extra {
        request = request.add_extra_param(k.to_string(), v.to_string());
    }
    let (url, csrf, nonce) = request.url();
    Started {
        url: url.to_string(),
        csrf,
        nonce,
        verifier,
    }
}

/// The ID token verified by the product library (signature via JWKS, iss, aud, exp, nonce),
/// returned as its raw payload for the claims the library does not model (`org`).
pub fn verified_payload(product: &Product, tokens: &Tokens, nonce: &Nonce) -> Value {
    let id_token = tokens.response.id_token().expect("id token");
    id_token
        .claims(&product.id_token_verifier(), nonce)
        .expect("the ID token verifies");
    payload_of(&tokens.id_token)
}

/// A JWT's payload (no verification).
pub fn payload_of(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// GETs `url` without following redirects: status and `Location`.
pub async fn get(browser: &reqwest::Client, url: &str) -> (u16, String) {
    let res = browser.get(url).send().await.unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (res.status().as_u16(), location)
}

/// Query parameters of a URL.
pub fn params(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Signs in through the pages from a `/signin?...` location (identifier, then password);
/// returns where the password form sends the browser.
pub async fn sign_in_pages(
    server: &TestServer,
    browser: &reqwest::Client,
    signin: &str,
    email: &str,
    password: &str,
) -> String {
    let page = browser
        .get(server.url(signin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf").expect("csrf");
    let next = hidden_value(&page, "next").expect("next");
    let res = browser
        .post(server.url("/signin/identify"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("identifier", email),
            ("next", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the password form follows the email");
    let page = res.text().await.unwrap();
    assert!(page.contains("name=\"password\""));
    let next = hidden_value(&page, "next").unwrap().replace("&amp;", "&");
    let res = browser
        .post(server.url("/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
            ("next", next.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "password sign-in");
    res.headers()["location"].to_str().unwrap().to_string()
}

/// From the product's authorization URL to its callback, signing in by password when asked;
/// returns the callback's parameters.
pub async fn through_sign_in(
    server: &TestServer,
    browser: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
) -> HashMap<String, String> {
    let (status, mut location) = get(browser, url).await;
    assert_eq!(status, 303);
    if location.starts_with("/signin") {
        let next = sign_in_pages(server, browser, &location, email, password).await;
        assert!(
            next.starts_with("/oauth/authorize/resume?request="),
            "{next}"
        );
        location = get(browser, &server.url(&next)).await.1;
    }
    assert!(location.starts_with(CALLBACK), "{location}");
    params(&location)
}

async fn account_id(server: &TestServer, email: &str) -> String {
    nulab_pass::accounts::store::by_email(
        server.db().pool(),
        &nulab_pass::accounts::Email::parse(email).unwrap(),
    )
    .await
    .unwrap()
    .unwrap()
    .id
    .to_string()
}

async fn code_flow(backend: Backend) {
    let w = world(backend).await;
    // Discovery names this server as issuer and lists what products need.
    let (status, discovery) = api(
        &w.http,
        Method::GET,
        w.server.url("/.well-known/openid-configuration"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], w.server.base.as_str());
    for (key, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("jwks_uri", "/oauth/jwks"),
        ("end_session_endpoint", "/oauth/logout"),
    ] {
        assert_eq!(discovery[key], w.server.url(path).as_str(), "{key}");
    }
    assert_eq!(discovery["response_types_supported"], json!(["code"]));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );

    let signed_in_at = w.server.state.clock.now_ms() / 1000;
    let (browser, claims, tokens) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    let ada = account_id(&w.server, ADA).await;
    assert_eq!(claims["iss"], w.server.base.as_str());
    assert_eq!(claims["aud"], w.backlog.client_id.as_str());
    assert_eq!(claims["sub"], ada.as_str());
    assert_eq!(claims["email"], ADA);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert!(
        claims.get("org").is_none(),
        "a Nulab account has no org claim"
    );
    assert!((claims["auth_time"].as_i64().unwrap() - signed_in_at).abs() <= 5);
    let header = payload_of(&format!("x.{}", tokens.id_token.split('.').next().unwrap()));
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        w.server.count("oidc_requests").await,
        1,
        "the request waited for the sign-in"
    );

    // Userinfo through the library (it checks the subject) and raw.
    let product = w.backlog().await;
    let info: openidconnect::core::CoreUserInfoClaims = product
        .user_info(
            openidconnect::AccessToken::new(tokens.access.clone()),
            Some(openidconnect::SubjectIdentifier::new(ada.clone())),
        )
        .unwrap()
        .request_async(&w.http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().unwrap().as_str(), ADA);
    let (status, raw) = w.userinfo(&tokens.access).await;
    assert_eq!(status, 200);
    assert_eq!(
        raw,
        json!({"sub": ada, "email": ADA, "email_verified": true, "name": "Ada Lovelace"})
    );

    // Signed in already: the next authorization goes straight back with a code, and the
    // product may authenticate in the body (client_secret_post) instead.
    let post_product = w.backlog().await.set_auth_type(AuthType::RequestBody);
    let started = start(&post_product, &[]);
    let (status, location) = get(&browser, &started.url).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with(CALLBACK),
        "no sign-in page: {location}"
    );
    let again = w
        .exchange(&post_product, &params(&location)["code"], started.verifier)
        .await;
    verified_payload(&post_product, &again, &started.nonce);

    // Refresh rotates: the new pair works, the old refresh token is single-use, and presenting
    // it again ends the whole grant.
    let refreshed = product
        .exchange_refresh_token(&openidconnect::RefreshToken::new(tokens.refresh.clone()))
        .unwrap()
        .request_async(&w.http)
        .await
        .expect("refresh");
    let new_access = refreshed.access_token().secret().clone();
    assert_ne!(new_access, tokens.access);
    assert_eq!(w.userinfo(&new_access).await.0, 200);
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tokens.refresh),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        w.userinfo(&new_access).await.0,
        401,
        "the reuse revoked the grant"
    );
    assert_eq!(w.userinfo(&tokens.access).await.0, 401);
    assert_eq!(
        w.userinfo(&again.access).await.0,
        200,
        "another grant is untouched"
    );
    let actions = w.server.audit_actions(10).await;
    for action in [
        "oidc.refresh_token_reused",
        "oidc.token_refreshed",
        "oidc.token_issued",
        "oidc.code_issued",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}
both!(
    a_product_signs_a_nulab_account_in_with_code_and_pkce,
    code_flow
);

async fn managed_claims(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    let token = corp_org(s, 5).await;
    managed_account(s, &token, "kim@corp.test", "Kim").await;
    let (_, claims, tokens) = w.sign_in_to_backlog("kim@corp.test", PASSWORD).await;
    assert_eq!(claims["org"], "corp");
    assert_eq!(claims["sub"], account_id(s, "kim@corp.test").await.as_str());
    assert_eq!(w.userinfo(&tokens.access).await.1["org"], "corp");
}
both!(a_managed_account_carries_its_org, managed_claims);

/// An org `corp` (admin `admin@corp.test`) with `corp.test` verified and `seats` seats; returns
/// its admin API token.
pub async fn corp_org(s: &TestServer, seats: i64) -> String {
    let admin = s.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    s.verified_domain(&org, "corp.test").await;
    s.seats(&org, seats).await;
    s.token(&org).await
}

/// Creates a managed account with `PASSWORD` as its password (no forced change).
pub async fn managed_account(s: &TestServer, token: &str, email: &str, name: &str) {
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        token,
        Some(json!({"email": email, "name": name, "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    sqlx::query("UPDATE accounts SET must_change_password = 0 WHERE email_norm = $1")
        .bind(email.to_string())
        .execute(s.db().pool())
        .await
        .unwrap();
}

async fn prompts_and_hints(backend: Backend) {
    let w = world(backend).await;
    let (browser, _, _) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    let product = w.backlog().await;
    // prompt=login: a signed-in browser must sign in again before a code is issued.
    w.server.state.clock.advance_ms(5_000);
    let started = start(&product, &[("prompt", "login")]);
    let (status, location) = get(&browser, &started.url).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/signin?next="), "{location}");
    let resume = params(&w.server.url(&location))["next"].clone();
    let (_, back) = get(&browser, &w.server.url(&resume)).await;
    assert!(
        back.starts_with("/signin?next="),
        "the old sign-in does not count: {back}"
    );
    let next = sign_in_pages(&w.server, &browser, &location, ADA, PASSWORD).await;
    let (_, callback) = get(&browser, &w.server.url(&next)).await;
    let tokens = w
        .exchange(&product, &params(&callback)["code"], started.verifier)
        .await;
    let claims = verified_payload(&product, &tokens, &started.nonce);
    assert!(
        claims["auth_time"].as_i64().unwrap() * 1000 >= w.server.state.clock.now_ms() - 2_000,
        "a fresh auth_time"
    );
    // The resume link is single use.
    let (status, _) = get(&browser, &w.server.url(&next)).await;
    assert_eq!(status, 400);

    // prompt=none without a session answers login_required at the product.
    let fresh = w.server.client();
    let started = start(&product, &[("prompt", "none")]);
    let (_, location) = get(&fresh, &started.url).await;
    let back = params(&location);
    assert_eq!(back["error"], "login_required");
    assert_eq!(back["state"], started.csrf.secret().as_str());

    // login_hint without SSO prefills the sign-in page.
    let started = start(&product, &[("login_hint", ADA)]);
    let (_, location) = get(&fresh, &started.url).await;
    let page = fresh
        .get(w.server.url(&location))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("name=\"identifier\" value=\"{ADA}\"")),
        "{page}"
    );
}
both!(
    prompt_login_forces_a_fresh_sign_in_and_hints_prefill,
    prompts_and_hints
);

async fn logout(backend: Backend) {
    let w = world(backend).await;
    let (browser, _, tokens) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    // A post-logout URI that is not registered exactly is refused without a redirect.
    for bad in [
        "https://backlog.test/signed-out/x",
        "https://evil.test/",
        "https://backlog.test/signed-ou",
    ] {
        let url = format!(
            "{}?id_token_hint={}&post_logout_redirect_uri={}",
            w.server.url("/oauth/logout"),
            tokens.id_token,
            urlencode(bad)
        );
        let res = browser.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.headers().get("location").is_none());
    }
    assert_eq!(
        get(&browser, &w.server.url("/account")).await.0,
        200,
        "still signed in"
    );
    // Without an id_token_hint the user confirms first.
    let url = format!(
        "{}?client_id={}&post_logout_redirect_uri={}&state=s1",
        w.server.url("/oauth/logout"),
        w.backlog.client_id,
        urlencode(LOGGED_OUT)
    );
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Sign out of nulab-pass?")
    );
    assert_eq!(
        get(&browser, &w.server.url("/account")).await.0,
        200,
        "nothing happens before confirming"
    );
    // With the product's ID token for this session it ends at once and goes back exactly.
    let url = format!(
        "{}?id_token_hint={}&post_logout_redirect_uri={}&state=s2",
        w.server.url("/oauth/logout"),
        tokens.id_token,
        urlencode(LOGGED_OUT)
    );
    let (status, location) = get(&browser, &url).await;
    assert_eq!(
        (status, location.as_str()),
        (303, format!("{LOGGED_OUT}?state=s2").as_str())
    );
    assert_eq!(
        get(&browser, &w.server.url("/account")).await.0,
        303,
        "signed out"
    );
    assert!(
        w.server
            .audit_actions(3)
            .await
            .iter()
            .any(|a| a == "account.signed_out")
    );
}
both!(rp_initiated_logout_ends_the_session, logout);

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn session_lifetime(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    let token = corp_org(s, 5).await;
    managed_account(s, &token, "kim@corp.test", "Kim").await;
    let http = s.client();
    let url = s.url("/api/v1/orgs/corp/session-settings");
    assert_eq!(
        api(&http, Method::GET, url.clone(), &token, None).await.1,
        json!({"session_lifetime_hours": 12})
    );
    let audit_before = s.count("audit_events").await;
    for bad in [
        json!({"session_lifetime_hours": 0}),
        json!({"session_lifetime_hours": 721}),
        json!({"session_lifetime_hours": "12"}),
        json!({"hours": 3}),
    ] {
        let (status, body) = api(&http, Method::PUT, url.clone(), &token, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(
        s.count("audit_events").await,
        audit_before,
        "nothing changed"
    );
    assert_eq!(
        api(&http, Method::GET, url.clone(), &token, None).await.1["session_lifetime_hours"],
        12
    );
    let (status, _) = api(
        &http,
        Method::PUT,
        url.clone(),
        &token,
        Some(json!({"session_lifetime_hours": 1})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        s.audit_actions(1)
            .await
            .iter()
            .any(|a| a == "session_settings.changed")
    );

    // The page shows it and refuses out-of-range values with the reason.
    let admin_browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let page_url = s.url("/admin/corp/session-settings");
    let res = common::post_form(
        &admin_browser,
        &page_url,
        &page_url,
        &[("session_lifetime_hours", "9999")],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("between 1 and 720"));

    // A managed account's sign-in now lasts one hour, in the browser and for the product's
    // refresh.
    s.state.clock.advance_ms(1000);
    let (admin_product, _, admin_tokens) = w.sign_in_to_backlog("admin@corp.test", PASSWORD).await;
    let (browser, _, tokens) = w.sign_in_to_backlog("kim@corp.test", PASSWORD).await;
    s.state.clock.advance_ms(59 * 60_000);
    assert_eq!(get(&browser, &s.url("/account")).await.0, 200);
    s.state.clock.advance_ms(2 * 60_000);
    let (status, location) = get(&browser, &s.url("/account")).await;
    assert_eq!((status, location.starts_with("/signin")), (303, true));
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &tokens.refresh),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The admin is a Nulab account: corp's lifetime gates only corp's admin area; the account
    // page and the product's refresh keep the server default.
    assert_eq!(get(&admin_product, &s.url("/account")).await.0, 200);
    let (status, location) = get(&admin_product, &s.url("/admin/corp/members")).await;
    assert_eq!((status, location.starts_with("/signin?next=")), (303, true));
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &admin_tokens.refresh),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Ada, in no organization, keeps the server default.
    let (ada_browser, _, _) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    s.state.clock.advance_ms(2 * 3_600_000);
    assert_eq!(get(&ada_browser, &s.url("/account")).await.0, 200);
}
both!(
    session_lifetime_is_set_per_org_and_applied_at_sign_in,
    session_lifetime
);

async fn key_rotation(backend: Backend) {
    let w = world(backend).await;
    let (_, _, before) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    let jwks = w
        .http
        .get(w.server.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let old_kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let new_kid = nulab_pass::oidc::keys::rotate(w.certs.path()).unwrap();
    let jwks = w
        .http
        .get(w.server.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![new_kid.as_str(), old_kid.as_str()]);
    // A product that fetches the JWKS now still verifies the token signed before the rotation,
    // and new tokens carry the new key id.
    let product = w.backlog().await;
    let old = before.response.id_token().unwrap();
    old.claims(&product.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .expect("a token signed before the rotation verifies");
    let (_, _, after) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(after.id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());
}
both!(jwks_keeps_the_previous_key_after_rotation, key_rotation);
