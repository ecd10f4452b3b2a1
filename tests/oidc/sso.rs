//! A managed account signs in to a product registered with the real binary, through the mock
//! IdP, on the running server.

use super::*;
use nulab_pass::mock_idp::MockIdp;

const IDP_ENTITY: &str = "https://idp.corp.test/metadata";
const IDP_SSO: &str = "https://idp.corp.test/sso";

async fn run_binary(db_url: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nulab-pass"))
        .args(args)
        .env("NULAB_PASS_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run nulab-pass");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Connects `corp` (through its admin API token) to a new mock IdP; returns the IdP and the
/// connection as the API shows it.
pub async fn connect_mock_idp(s: &TestServer, token: &str) -> (MockIdp, Value) {
    let idp = MockIdp::generate(IDP_ENTITY, IDP_SSO).unwrap();
    let (status, connection) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/saml-connections"),
        token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Mock IdP"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    (idp, connection)
}

/// The product sends `email` with a login hint, in a fresh browser: straight to the IdP (no page
/// in between), which answers for it; back to the product, which exchanges the code. Returns the
/// verified ID token's payload and the tokens.
pub async fn sign_in_through_idp(
    w: &World,
    product: &Product,
    idp: &MockIdp,
    connection: &Value,
    email: &str,
) -> (Value, Tokens) {
    let browser = w.server.client();
    sign_in_through_idp_in(&browser, w, product, idp, connection, email).await
}

/// [`sign_in_through_idp`] in a given browser (which keeps the sign-in).
pub async fn sign_in_through_idp_in(
    browser: &reqwest::Client,
    w: &World,
    product: &Product,
    idp: &MockIdp,
    connection: &Value,
    email: &str,
) -> (Value, Tokens) {
    let s = &w.server;
    let login_url = connection["login_url"].as_str().unwrap();
    let started = start(product, &[("login_hint", email)]);
    let (status, location) = get(browser, &started.url).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with(login_url) && location.contains("return_to="),
        "{location}"
    );
    let res = browser.get(&location).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    assert!(to_idp.starts_with(IDP_SSO), "{to_idp}");
    let res = common::idp_answers(browser, &to_idp, idp, connection, email).await;
    assert_eq!(
        res.status(),
        303,
        "{}",
        res.text().await.unwrap_or_default()
    );
    // After SSO the browser continues the request it started with.
    let resume = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        resume.starts_with("/oauth/authorize/resume?request="),
        "{resume}"
    );
    let (_, callback) = get(browser, &s.url(&resume)).await;
    let back = params(&callback);
    assert_eq!(back["state"], started.csrf.secret().as_str());
    let tokens = w.exchange(product, &back["code"], started.verifier).await;
    let claims = verified_payload(product, &tokens, &started.nonce);
    (claims, tokens)
}

async fn through_the_idp(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    let db_url = s.testdb.url.clone();
    // The operator registers the product with the real binary.
    let (code, out, err) = run_binary(
        &db_url,
        &[
            "product",
            "create",
            "--name",
            "typetalk",
            "--redirect-uri",
            CALLBACK,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let creds = Creds {
        client_id: created["client_id"].as_str().unwrap().into(),
        client_secret: created["client_secret"].as_str().unwrap().into(),
    };

    // An org with a verified domain, a managed account and a connection to the mock IdP.
    let token = corp_org(s, 5).await;
    let http = s.client();
    let (status, _) = api(
        &http,
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(json!({"email": "mia@corp.test", "name": "Mia"})),
    )
    .await;
    assert_eq!(status, 201);
    let (idp, connection) = connect_mock_idp(s, &token).await;
    let login_url = connection["login_url"].as_str().unwrap();

    // The product sends Mia with a login hint: straight to the IdP, no page in between.
    let product = w.product(&creds).await;
    let (claims, _) = sign_in_through_idp(&w, &product, &idp, &connection, "mia@corp.test").await;
    assert_eq!(claims["sub"], account_id(s, "mia@corp.test").await.as_str());
    assert_eq!(claims["email"], "mia@corp.test");
    assert_eq!(claims["org"], "corp");
    assert_eq!(claims["amr"], json!(["saml"]));
    assert_eq!(claims["aud"], creds.client_id.as_str());

    // The sign-in page routes the work email and the organization ID to the IdP too.
    for identifier in ["mia@corp.test", "corp"] {
        let b = s.client();
        let csrf = csrf_of(&b, &s.url("/signin")).await;
        let res = b
            .post(s.url("/signin/identify"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("identifier", identifier),
                ("next", "/account"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{identifier}");
        assert!(
            res.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with(login_url),
            "{identifier}"
        );
    }
    // A Nulab account on that domain is routed like any address there (the answer never tells
    // whether an account exists), and keeps its password through the password form.
    s.account("nora@corp.test", "Nora", PASSWORD).await;
    let b = s.client();
    let csrf = csrf_of(&b, &s.url("/signin")).await;
    let res = b
        .post(s.url("/signin/identify"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("identifier", "nora@corp.test"),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(login_url)
    );
    let page = b
        .get(s.url("/signin?with=password"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let res = b
        .post(s.url("/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "nora@corp.test"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "Nora signs in with her password");
    let b = s.client();
    let csrf = csrf_of(&b, &s.url("/signin")).await;
    // Under "SSO required" the password form of a managed account offers the IdP instead.
    managed_account(s, &token, "kim@corp.test", "Kim").await;
    s.enroll_totp("admin@corp.test").await;
    let (status, _) = api(&http, Method::PUT, s.url("/api/v1/orgs/corp/password-policy"), &token, Some(json!({"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": false}))).await;
    assert_eq!(status, 200);
    let res = b
        .post(s.url("/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "kim@corp.test"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Sign in with single sign-on") && page.contains(login_url),
        "{page}"
    );
}
both!(
    a_cli_registered_product_signs_in_a_managed_account_through_the_mock_idp,
    through_the_idp
);

async fn product_commands(backend: Backend) {
    let w = world(backend).await;
    let db_url = w.server.testdb.url.clone();
    let before = w.server.count("oidc_clients").await;
    for (args, why) in [
        (
            vec!["product", "create", "--name", "cacoo"],
            "no redirect URI",
        ),
        (
            vec![
                "product",
                "create",
                "--name",
                "cacoo",
                "--redirect-uri",
                "http://cacoo.test/cb",
            ],
            "http off loopback",
        ),
        (
            vec![
                "product",
                "create",
                "--name",
                "Cacoo!",
                "--redirect-uri",
                "https://cacoo.test/cb",
            ],
            "bad name",
        ),
        (
            vec![
                "product",
                "create",
                "--name",
                "backlog",
                "--redirect-uri",
                "https://cacoo.test/cb",
            ],
            "name taken",
        ),
        (
            vec!["product", "rotate-secret", "--name", "nothing"],
            "unknown",
        ),
    ] {
        let (code, _, _) = run_binary(&db_url, &args).await;
        assert_ne!(code, 0, "{why}");
    }
    assert_eq!(
        w.server.count("oidc_clients").await,
        before,
        "nothing registered"
    );
    let (code, out, err) = run_binary(
        &db_url,
        &[
            "product",
            "create",
            "--name",
            "cacoo",
            "--redirect-uri",
            "https://cacoo.test/cb",
            "--redirect-uri",
            "https://cacoo.test/cb2",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    let stored: (String,) =
        sqlx::query_as("SELECT secret_hash FROM oidc_clients WHERE name = 'cacoo'")
            .fetch_one(w.server.db().pool())
            .await
            .unwrap();
    assert!(
        !stored.0.contains(&secret) && stored.0.len() == 64,
        "stored only as a hash"
    );
    let (_, out, _) = run_binary(&db_url, &["product", "list"]).await;
    assert!(
        out.contains("\"name\":\"cacoo\"")
            && out.contains("https://cacoo.test/cb2")
            && !out.contains(&secret)
    );
    let (code, out, _) =
        run_binary(&db_url, &["product", "rotate-secret", "--name", "cacoo"]).await;
    assert_eq!(code, 0);
    let rotated: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rotated["client_id"], created["client_id"]);
    assert_ne!(rotated["client_secret"], created["client_secret"]);
    let (code, _, _) = run_binary(&db_url, &["product", "delete", "--name", "cacoo"]).await;
    assert_eq!(code, 0);
    assert_eq!(w.server.count("oidc_clients").await, before);
    let actions = w.server.audit_actions(5).await;
    for action in [
        "product.created",
        "product.secret_rotated",
        "product.deleted",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
}
both!(product_commands_of_the_binary, product_commands);
