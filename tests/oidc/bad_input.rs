//! Every bad input the issue names, each asserting the error and that nothing was issued.

use super::*;

/// The authorization URL of `creds` with `changes` applied (`None` removes a parameter).
fn authorize_url(
    w: &World,
    creds: &Creds,
    challenge: &str,
    changes: &[(&str, Option<&str>)],
) -> String {
    let mut params: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", creds.client_id.as_str()),
        ("redirect_uri", CALLBACK),
        ("scope", "openid email profile offline_access"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in changes {
        params.retain(|(k, _)| k != key);
        if let Some(v) = value {
            params.push((key.to_string(), v.to_string()));
        }
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}?{query}", w.server.url("/oauth/authorize"))
}

/// A signed-in browser (Ada) and a fresh code for backlog with its PKCE verifier.
async fn new_code(w: &World, browser: &reqwest::Client) -> (String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (status, location) = get(
        browser,
        &authorize_url(w, &w.backlog, challenge.as_str(), &[]),
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.starts_with(CALLBACK), "{location}");
    (params(&location)["code"].clone(), verifier.secret().clone())
}

async fn exchange_raw(
    w: &World,
    creds: &Creds,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let (status, body, _) = w.token_raw(Some(creds), &form).await;
    (status, body)
}

fn assert_error(got: (u16, Value), status: u16, error: &str) {
    assert_eq!(
        (got.0, got.1["error"].as_str()),
        (status, Some(error)),
        "{}",
        got.1
    );
    assert!(got.1["error_description"].is_string());
}

async fn signed_in(w: &World) -> reqwest::Client {
    w.server.signed_in(ADA, PASSWORD).await
}

async fn pkce(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let before = (w.issued().await, w.server.count("oidc_requests").await);
    for (changes, why) in [
        (
            vec![("code_challenge", None), ("code_challenge_method", None)],
            "no challenge",
        ),
        (
            vec![("code_challenge_method", None)],
            "method defaults to plain",
        ),
        (vec![("code_challenge_method", Some("plain"))], "plain"),
        (
            vec![("code_challenge", Some("too-short"))],
            "malformed challenge",
        ),
    ] {
        let (status, location) = get(
            &browser,
            &authorize_url(&w, &w.backlog, challenge.as_str(), &changes),
        )
        .await;
        assert_eq!(status, 303, "{why}");
        let back = params(&location);
        assert!(location.starts_with(CALLBACK));
        assert_eq!(
            (back["error"].as_str(), back["state"].as_str()),
            ("invalid_request", "st-1"),
            "{why}"
        );
        assert!(!back.contains_key("code"));
    }
    assert_eq!(
        (w.issued().await, w.server.count("oidc_requests").await),
        before,
        "nothing issued or parked"
    );

    let (code, verifier) = new_code(&w, &browser).await;
    let tokens_before = w.server.count("oidc_tokens").await;
    assert_error(
        exchange_raw(&w, &w.backlog, &code, CALLBACK, None).await,
        400,
        "invalid_grant",
    );
    let (_, other) = PkceCodeChallenge::new_random_sha256();
    assert_error(
        exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(other.secret())).await,
        400,
        "invalid_grant",
    );
    let challenge_as_verifier =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.clone()));
    assert_error(
        exchange_raw(
            &w,
            &w.backlog,
            &code,
            CALLBACK,
            Some(challenge_as_verifier.as_str()),
        )
        .await,
        400,
        "invalid_grant",
    );
    assert_eq!(
        w.server.count("oidc_tokens").await,
        tokens_before,
        "no token for a wrong verifier"
    );
    let (status, ok) = exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier)).await;
    assert_eq!(status, 200, "{ok}");
}
both!(pkce_s256_is_required_and_the_verifier_must_match, pkce);

async fn reused_code(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (code, verifier) = new_code(&w, &browser).await;
    let (status, first) = exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier)).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(w.userinfo(access).await.0, 200);
    assert_error(
        exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier)).await,
        400,
        "invalid_grant",
    );
    // The reuse revoked what the code had issued.
    let (status, _) = w.userinfo(access).await;
    assert_eq!(status, 401);
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_error((status, body), 400, "invalid_grant");
    assert!(
        w.server
            .audit_actions(3)
            .await
            .iter()
            .any(|a| a == "oidc.code_reused")
    );
}
both!(a_reused_code_is_refused_and_revokes_its_tokens, reused_code);

async fn other_client(backend: Backend) {
    let w = world(backend).await;
    let cacoo = register(&w.server, "cacoo", &["https://cacoo.test/cb"], &[]).await;
    let browser = signed_in(&w).await;
    let (code, verifier) = new_code(&w, &browser).await;
    let before = w.server.count("oidc_tokens").await;
    assert_error(
        exchange_raw(&w, &cacoo, &code, CALLBACK, Some(&verifier)).await,
        400,
        "invalid_grant",
    );
    assert_error(
        exchange_raw(&w, &cacoo, &code, "https://cacoo.test/cb", Some(&verifier)).await,
        400,
        "invalid_grant",
    );
    // The same product with another of its registered redirect URIs is not enough either.
    assert_error(
        exchange_raw(
            &w,
            &w.backlog,
            &code,
            "https://backlog.test/other",
            Some(&verifier),
        )
        .await,
        400,
        "invalid_grant",
    );
    assert_error(
        exchange_raw(
            &w,
            &w.backlog,
            &code,
            "https://backlog.test/callback/",
            Some(&verifier),
        )
        .await,
        400,
        "invalid_grant",
    );
    assert_eq!(w.server.count("oidc_tokens").await, before);
    assert_eq!(
        exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier))
            .await
            .0,
        200,
        "the rightful product still can"
    );
}
both!(a_code_is_bound_to_its_client_and_redirect_uri, other_client);

async fn redirect_uris(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let before = (w.issued().await, w.server.count("oidc_requests").await);
    let unknown = Creds {
        client_id: "00000000-0000-4000-8000-000000000000".into(),
        client_secret: String::new(),
    };
    let cases: Vec<(String, &str)> = vec![
        (
            authorize_url(&w, &unknown, challenge.as_str(), &[]),
            "unknown client",
        ),
        (
            authorize_url(&w, &w.backlog, challenge.as_str(), &[("client_id", None)]),
            "no client",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", None)],
            ),
            "no redirect_uri",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("https://evil.test/callback"))],
            ),
            "unregistered",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("https://backlog.test/callbackx"))],
            ),
            "prefix",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("https://backlog.test/callback/"))],
            ),
            "trailing slash",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("https://backlog.test/callback?x=1"))],
            ),
            "extra query",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[(
                    "redirect_uri",
                    Some("https://backlog.test/callback/../evil"),
                )],
            ),
            "dot segments",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("https://backlog.test/call"))],
            ),
            "shorter",
        ),
        (
            authorize_url(
                &w,
                &w.backlog,
                challenge.as_str(),
                &[("redirect_uri", Some("HTTPS://BACKLOG.TEST/callback"))],
            ),
            "case",
        ),
        (
            format!(
                "{}&redirect_uri={}",
                authorize_url(&w, &w.backlog, challenge.as_str(), &[]),
                urlencode(CALLBACK)
            ),
            "repeated",
        ),
    ];
    for (url, why) in cases {
        let res = browser.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{why}");
        assert!(
            res.headers().get("location").is_none(),
            "{why}: never redirected"
        );
        assert!(
            res.text().await.unwrap().contains("product"),
            "{why}: the page says what is wrong"
        );
    }
    assert_eq!(
        (w.issued().await, w.server.count("oidc_requests").await),
        before
    );
}
both!(
    unregistered_or_prefix_matching_redirect_uris_are_refused,
    redirect_uris
);

async fn state(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let odd = "a b&c=d/é?#+%";
    let (_, location) = get(
        &browser,
        &authorize_url(&w, &w.backlog, challenge.as_str(), &[("state", Some(odd))]),
    )
    .await;
    let back = params(&location);
    assert_eq!(
        (back["state"].as_str(), back.contains_key("code")),
        (odd, true)
    );
    let (_, location) = get(
        &browser,
        &authorize_url(
            &w,
            &w.backlog,
            challenge.as_str(),
            &[("state", Some(odd)), ("response_type", Some("token"))],
        ),
    )
    .await;
    assert_eq!(
        params(&location)["state"],
        odd,
        "errors carry the state too"
    );
    let (_, location) = get(
        &browser,
        &authorize_url(&w, &w.backlog, challenge.as_str(), &[("state", None)]),
    )
    .await;
    let back = params(&location);
    assert!(
        back.contains_key("code") && !back.contains_key("state"),
        "no state invented: {location}"
    );
    // The product library checks it: the state it generated comes back unchanged.
    let product = w.backlog().await;
    let started = start(&product, &[]);
    let (_, location) = get(&browser, &started.url).await;
    assert_eq!(params(&location)["state"], started.csrf.secret().as_str());
}
both!(state_is_passed_through_exactly, state);

async fn expired_code(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (code, verifier) = new_code(&w, &browser).await;
    w.server.state.clock.advance_ms(59_000);
    assert_eq!(
        exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier))
            .await
            .0,
        200,
        "59 s is in time"
    );
    let (code, verifier) = new_code(&w, &browser).await;
    let before = w.server.count("oidc_tokens").await;
    w.server.state.clock.advance_ms(61_000);
    let (status, body) = exchange_raw(&w, &w.backlog, &code, CALLBACK, Some(&verifier)).await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_error((status, body), 400, "invalid_grant");
    assert_eq!(w.server.count("oidc_tokens").await, before);
}
both!(a_code_lives_sixty_seconds, expired_code);

async fn client_auth(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (code, verifier) = new_code(&w, &browser).await;
    let before = w.server.count("oidc_tokens").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.as_str()),
    ];
    let wrong = Creds {
        client_secret: "nps_wrong".into(),
        ..w.backlog.clone()
    };
    let (status, body, headers) = w.token_raw(Some(&wrong), &form).await;
    assert_error((status, body), 401, "invalid_client");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(headers["cache-control"], "no-store");
    let unknown = Creds {
        client_id: "nobody".into(),
        ..w.backlog.clone()
    };
    assert_error(
        {
            let r = w.token_raw(Some(&unknown), &form).await;
            (r.0, r.1)
        },
        401,
        "invalid_client",
    );
    let with_body = |secret: &'static str| {
        let mut f = form.to_vec();
        f.push(("client_id", w.backlog.client_id.as_str()));
        f.push(("client_secret", secret));
        f
    };
    assert_error(
        {
            let r = w.token_raw(None, &with_body("nps_wrong")).await;
            (r.0, r.1)
        },
        401,
        "invalid_client",
    );
    assert_error(
        {
            let r = w.token_raw(None, &form).await;
            (r.0, r.1)
        },
        401,
        "invalid_client",
    );
    let mut both_ways = form.to_vec();
    both_ways.push(("client_secret", w.backlog.client_secret.as_str()));
    assert_error(
        {
            let r = w.token_raw(Some(&w.backlog), &both_ways).await;
            (r.0, r.1)
        },
        400,
        "invalid_request",
    );
    // A rotated secret replaces the old one at once.
    let mut tx = w.server.db().begin().await.unwrap();
    let rotated = nulab_pass::oidc::clients::rotate_secret(
        &mut tx,
        w.server.state.clock.now_ms(),
        "backlog",
        &Actor::Operator,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_error(
        {
            let r = w.token_raw(Some(&w.backlog), &form).await;
            (r.0, r.1)
        },
        401,
        "invalid_client",
    );
    assert_eq!(
        w.server.count("oidc_tokens").await,
        before,
        "nothing issued"
    );
    let fresh = Creds {
        client_id: rotated.client_id,
        client_secret: rotated.client_secret,
    };
    let (status, body, _) = w.token_raw(Some(&fresh), &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        w.server
            .audit_actions(5)
            .await
            .iter()
            .any(|a| a == "product.secret_rotated")
    );
}
both!(wrong_client_credentials_are_refused, client_auth);

async fn response_types(backend: Backend) {
    let w = world(backend).await;
    let browser = signed_in(&w).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let before = (w.issued().await, w.server.count("oidc_requests").await);
    for (changes, error) in [
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", Some("id_token"))],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", Some("code id_token"))],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", Some("code token"))],
            "unsupported_response_type",
        ),
        (vec![("response_type", None)], "invalid_request"),
        (vec![("response_mode", Some("fragment"))], "invalid_request"),
        (vec![("scope", Some("email profile"))], "invalid_scope"),
        (vec![("prompt", Some("none login"))], "invalid_request"),
    ] {
        let (status, location) = get(
            &browser,
            &authorize_url(&w, &w.backlog, challenge.as_str(), &changes),
        )
        .await;
        assert_eq!(status, 303, "{changes:?}");
        let back = params(&location);
        assert_eq!(
            (back["error"].as_str(), back["state"].as_str()),
            (error, "st-1"),
            "{changes:?}"
        );
        assert!(!back.contains_key("code"));
    }
    assert_eq!(
        (w.issued().await, w.server.count("oidc_requests").await),
        before
    );
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "password"),
                ("username", ADA),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_error((status, body), 400, "unsupported_grant_type");
}
both!(unsupported_response_types_are_refused, response_types);

/// An org `corp` with a verified domain, an API token, and managed accounts with passwords.
async fn corp(w: &World, people: &[&str]) -> String {
    let s = &w.server;
    let token = corp_org(s, 10).await;
    for email in people {
        managed_account(s, &token, email, "Person").await;
    }
    token
}

async fn suspended(backend: Backend) {
    let w = world(backend).await;
    let token = corp(
        &w,
        &[
            "kim@corp.test",
            "lee@corp.test",
            "max@corp.test",
            "joy@corp.test",
        ],
    )
    .await;
    let s = &w.server;
    let (kim, _, kim_tokens) = w.sign_in_to_backlog("kim@corp.test", PASSWORD).await;
    // Suspended while its browser still holds a session (as if the session outlived the change).
    sqlx::query("UPDATE accounts SET status = 'suspended' WHERE email_norm = 'kim@corp.test'")
        .execute(s.db().pool())
        .await
        .unwrap();
    let before = w.issued().await;
    let product = w.backlog().await;
    let (status, location) = get(&kim, &start(&product, &[]).url).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("/signin"),
        "no code for a suspended account: {location}"
    );
    assert_eq!(
        get(&kim, &s.url("/account")).await.0,
        303,
        "the session ended"
    );
    assert_eq!(w.userinfo(&kim_tokens.access).await.0, 401);
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &kim_tokens.refresh),
            ],
        )
        .await;
    assert_error((status, body), 400, "invalid_grant");
    assert_eq!(w.issued().await.0, before.0, "no code issued");

    // Suspension, sign-out everywhere and deletion by an admin revoke the product tokens at once.
    for (email, action, method) in [
        ("lee@corp.test", "suspend", Method::POST),
        ("max@corp.test", "sign-out", Method::POST),
        ("joy@corp.test", "", Method::DELETE),
    ] {
        let (_, _, tokens) = w.sign_in_to_backlog(email, PASSWORD).await;
        let id = account_id(s, email).await;
        let path = if action.is_empty() {
            format!("/api/v1/orgs/corp/managed-accounts/{id}")
        } else {
            format!("/api/v1/orgs/corp/managed-accounts/{id}/{action}")
        };
        let (status, body) = api(&s.client(), method, s.url(&path), &token, Some(json!({}))).await;
        assert!(status == 200 || status == 204, "{email}: {status} {body}");
        assert_eq!(w.userinfo(&tokens.access).await.0, 401, "{email}");
        let (status, body, _) = w
            .token_raw(
                Some(&w.backlog),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &tokens.refresh),
                ],
            )
            .await;
        assert_error((status, body), 400, "invalid_grant");
    }
}
both!(
    a_suspended_account_gets_no_code_even_with_a_session,
    suspended
);

async fn sso_required_password(backend: Backend) {
    let w = world(backend).await;
    let token = corp(&w, &["kim@corp.test"]).await;
    let s = &w.server;
    let (kim, _, _) = w.sign_in_to_backlog("kim@corp.test", PASSWORD).await;
    s.enroll_totp("admin@corp.test").await;
    let policy = json!({"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": false});
    let (status, body) = api(
        &s.client(),
        Method::PUT,
        s.url("/api/v1/orgs/corp/password-policy"),
        &token,
        Some(policy),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let before = w.issued().await;

    // The sign-in page answers as for any address on a domain without an IdP (no enumeration):
    // the password form; the right password is then refused and audited.
    let browser = s.client();
    let csrf = csrf_of(&browser, &s.url("/signin")).await;
    let res = browser
        .post(s.url("/signin/identify"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("identifier", "kim@corp.test"),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let res = browser
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
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("does not allow signing in with a password")
    );
    assert!(
        s.audit_actions(2)
            .await
            .iter()
            .any(|a| a == "account.sign_in_failed")
    );
    // A password session from before the switch no longer gets codes.
    let (status, location) = get(&kim, &start(&w.backlog().await, &[]).url).await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/signin"), "{location}");
    assert_eq!(w.issued().await, before, "nothing issued");
}
both!(
    managed_accounts_cannot_use_a_password_under_sso_required,
    sso_required_password
);
