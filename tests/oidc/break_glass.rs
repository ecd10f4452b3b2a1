//! Break-glass access: TOTP enrollment on the account page, the second factor that admins of an
//! organization that requires SSO need for its admin area (audited, other admins emailed; their
//! own account stays open without it), and the rule that SSO cannot be required while no admin
//! could sign in without it.

use super::*;

const OFF: &str = r#"{"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": false}"#;

async fn put_policy(s: &TestServer, token: &str) -> (u16, Value) {
    api(
        &s.client(),
        Method::PUT,
        s.url("/api/v1/orgs/corp/password-policy"),
        token,
        Some(serde_json::from_str(OFF).unwrap()),
    )
    .await
}

async fn post(
    browser: &reqwest::Client,
    s: &TestServer,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let res = common::post_form(browser, &s.url(page), &s.url(action), fields).await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, res.text().await.unwrap())
}

async fn confirmed(s: &TestServer) -> i64 {
    let row: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM totp_credentials WHERE confirmed_at IS NOT NULL")
            .fetch_one(s.db().pool())
            .await
            .unwrap();
    row.0
}

/// The organization corp with two admins, admin@corp.test and bob@corp.test, neither with a
/// second factor; returns the world and corp's API token.
async fn corp(backend: Backend) -> (World, String, nulab_pass::orgs::Org) {
    let w = world(backend).await;
    let s = &w.server;
    let admin = s.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    s.account("bob@corp.test", "Bob", PASSWORD).await;
    let token = s.token(&org).await;
    s.add_member(&org, "bob@corp.test", "admin").await;
    (w, token, org)
}

/// The secret the two-step page shows to `browser`.
async fn secret_of(s: &TestServer, browser: &reqwest::Client) -> String {
    let page = browser
        .get(s.url("/account/two-step"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split("id=\"totp-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string()
}

async fn no_break_glass_admin(backend: Backend) {
    let (w, token, _org) = corp(backend).await;
    let s = &w.server;
    // No admin has a second factor: SSO cannot be required, by the API or the page, which says why.
    let admin_browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let audit_before = s.count("audit_events").await;
    let (status, body) = put_policy(s, &token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("no_break_glass_admin")),
        "{body}"
    );
    let (status, _, page) = post(
        &admin_browser,
        s,
        "/admin/corp/password-policy",
        "/admin/corp/password-policy",
        &[
            ("min_length", "12"),
            ("max_age_days", ""),
            ("reject_common", "1"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        page.contains("two-step verification") && page.contains("IdP failed"),
        "{page}"
    );
    assert!(
        page.contains("No admin qualifies yet"),
        "the page explains it before anyone tries"
    );
    let (_, policy) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/corp/password-policy"),
        &token,
        None,
    )
    .await;
    assert_eq!(policy["password_sign_in"], true);
    assert_eq!(
        s.count("audit_events").await,
        audit_before,
        "nothing changed"
    );
}
both!(
    sso_cannot_be_required_while_no_admin_has_a_second_factor,
    no_break_glass_admin
);

async fn enrollment(backend: Backend) {
    let (w, _token, _org) = corp(backend).await;
    let s = &w.server;
    let admin_browser = s.signed_in("admin@corp.test", PASSWORD).await;
    // The admin enrolls on the account page: the password and a code from the app confirm it.
    let page = admin_browser
        .get(s.url("/account/two-step"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secret = page
        .split("id=\"totp-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    assert!(page.contains(&format!(
        "otpauth://totp/nulab-pass:admin%40corp.test?secret={secret}"
    )));
    let wrong_code = if s.totp_code(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, _, page) = post(
        &admin_browser,
        s,
        "/account/two-step",
        "/account/two-step",
        &[("password", PASSWORD), ("code", wrong_code)],
    )
    .await;
    assert_eq!(status, 401);
    assert!(page.contains("code is wrong"));
    let (status, _, _) = post(
        &admin_browser,
        s,
        "/account/two-step",
        "/account/two-step",
        &[
            ("password", "not the password"),
            ("code", &s.totp_code(&secret)),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(confirmed(s).await, 0, "not enrolled by bad attempts");
    let (status, _, _) = post(
        &admin_browser,
        s,
        "/account/two-step",
        "/account/two-step",
        &[("password", PASSWORD), ("code", &s.totp_code(&secret))],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(confirmed(s).await, 1);
    assert!(
        s.audit_actions(1)
            .await
            .iter()
            .any(|a| a == "account.totp_enrolled")
    );
    assert!(
        admin_browser
            .get(s.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("badge ok\">on")
    );
}
both!(
    an_admin_enrolls_a_second_factor_on_the_account_page,
    enrollment
);

async fn break_glass(backend: Backend) {
    let (w, token, org) = corp(backend).await;
    let s = &w.server;
    let admin_browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let secret = secret_of(s, &admin_browser).await;
    let (status, _, _) = post(
        &admin_browser,
        s,
        "/account/two-step",
        "/account/two-step",
        &[("password", PASSWORD), ("code", &s.totp_code(&secret))],
    )
    .await;
    assert_eq!(status, 303, "enrolled");
    let wrong_code = if s.totp_code(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };

    // Now SSO can be required; the policy page names who keeps a way in.
    let page = admin_browser
        .get(s.url("/admin/corp/password-policy"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Admins who qualify: admin@corp.test"),
        "{page}"
    );
    assert_eq!(put_policy(s, &token).await.0, 200);

    // Bob, an admin without a second factor, still signs in to his own account; corp's admin
    // area asks him for two-step verification first.
    let bob = s.client();
    let (status, location, _) = post(
        &bob,
        s,
        "/signin",
        "/signin",
        &[
            ("email", "bob@corp.test"),
            ("password", PASSWORD),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!((status, location.as_str()), (303, "/account"));
    assert_eq!(get(&bob, &s.url("/account")).await.0, 200);
    let mails_before = s.count("outbox").await;
    let res = bob.get(s.url("/admin/corp/members")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("two-step verification"));
    assert_eq!(s.count("outbox").await, mails_before, "nobody is told");

    // The admin signs in to a product with the password, then the code: the product gets it,
    // and nobody is told, because nothing of corp was used.
    s.state.clock.advance_ms(30_000);
    let product = w.backlog().await;
    let started = start(&product, &[]);
    let browser = s.client();
    let (_, signin) = get(&browser, &started.url).await;
    let two_step = sign_in_pages(s, &browser, &signin, "admin@corp.test", PASSWORD).await;
    assert_eq!(two_step, "/signin/two-step");
    assert_eq!(
        get(&browser, &s.url("/account")).await.0,
        303,
        "not signed in before the code"
    );
    let (status, _, _) = post(
        &browser,
        s,
        "/signin/two-step",
        "/signin/two-step",
        &[("code", wrong_code)],
    )
    .await;
    assert_eq!(status, 401);
    let code = s.totp_code(&secret);
    let (status, resume, _) = post(
        &browser,
        s,
        "/signin/two-step",
        "/signin/two-step",
        &[("code", &code)],
    )
    .await;
    assert_eq!(status, 303);
    let (_, callback) = get(&browser, &s.url(&resume)).await;
    let tokens = w
        .exchange(&product, &params(&callback)["code"], started.verifier)
        .await;
    let claims = verified_payload(&product, &tokens, &started.nonce);
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(s.count("outbox").await, mails_before);
    // Opening corp's admin area is the break-glass use: audited in corp, emailed to the other
    // admin, once per sign-in.
    assert_eq!(get(&browser, &s.url("/admin/corp/members")).await.0, 200);
    assert_eq!(get(&browser, &s.url("/admin/corp/domains")).await.0, 200);
    let events = nulab_pass::audit::store::recent(s.db().pool(), Some(&org.id.to_string()), 10)
        .await
        .unwrap();
    let glass: Vec<_> = events
        .iter()
        .filter(|e| e.action == "account.break_glass_signed_in")
        .collect();
    assert_eq!(glass.len(), 1, "once per sign-in");
    assert_eq!(glass[0].details["email"], "admin@corp.test");
    assert_eq!(
        s.count("outbox").await,
        mails_before + 1,
        "one email: to the other admin"
    );
    s.last_mail("bob@corp.test", "account.break_glass_signed_in")
        .await;

    // The same code cannot be used again.
    let again = s.client();
    let next = sign_in_pages(
        s,
        &again,
        "/signin?next=/account",
        "admin@corp.test",
        PASSWORD,
    )
    .await;
    assert_eq!(next, "/signin/two-step");
    let (status, _, _) = post(
        &again,
        s,
        "/signin/two-step",
        "/signin/two-step",
        &[("code", &code)],
    )
    .await;
    assert_eq!(status, 401, "a used code is refused");

    // The only admin who can still sign in without SSO cannot remove the second factor.
    s.state.clock.advance_ms(30_000);
    let (status, _, page) = post(
        &admin_browser,
        s,
        "/account/two-step",
        "/account/two-step/remove",
        &[("password", PASSWORD), ("code", &s.totp_code(&secret))],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("only admin"));
    assert_eq!(confirmed(s).await, 1);
}
both!(
    admins_sign_in_with_a_second_factor_when_sso_is_required,
    break_glass
);

async fn too_many_codes(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    s.enroll_totp(ADA).await;
    let browser = s.client();
    let next = sign_in_pages(s, &browser, "/signin?next=/account", ADA, PASSWORD).await;
    assert_eq!(
        next, "/signin/two-step",
        "an enrolled Nulab account is asked for its code too"
    );
    for _ in 0..4 {
        let (status, _, _) = post(
            &browser,
            s,
            "/signin/two-step",
            "/signin/two-step",
            &[("code", "12345")],
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, _, page) = post(
        &browser,
        s,
        "/signin/two-step",
        "/signin/two-step",
        &[("code", "12345")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(page.contains("Too many wrong codes"));
    assert_eq!(
        get(&browser, &s.url("/signin/two-step")).await.0,
        401,
        "the password must be entered again"
    );
    assert_eq!(get(&browser, &s.url("/account")).await.0, 303);
}
both!(wrong_codes_are_limited, too_many_codes);
