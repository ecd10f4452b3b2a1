//! Accounts through the real server: sign-up, email verification, sign-in and sign-out, with
//! every bad input named by the foundation issue, and the pause of password sign-in after
//! repeated wrong passwords or codes. Each test runs on SQLite and PostgreSQL.

#[path = "accounts/at_rest.rs"]
mod at_rest;
mod common;
#[path = "accounts/grouped_sessions.rs"]
mod grouped_sessions;

use common::{Backend, TestServer, csrf_of, link_in, post_form};
use nulab_pass::mail::store as outbox;

const PASSWORD: &str = "correct horse battery";

async fn signup_form(
    server: &TestServer,
    client: &reqwest::Client,
    email: &str,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let csrf = csrf_of(client, &server.url("/signup")).await;
    client
        .post(server.url("/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("name", name),
            ("password", password),
        ])
        .send()
        .await
        .expect("post signup")
}

/// The verification link of the newest queued email to `to`.
async fn verification_link(server: &TestServer, to: &str) -> String {
    let messages = outbox::recent(server.db().pool(), 50)
        .await
        .expect("outbox");
    let message = messages
        .iter()
        .find(|m| m.to_addr == to && m.kind == "account.verify_email")
        .expect("verification email queued");
    link_in(
        &message.body_text,
        &format!("{}/verify-email?token=", server.base),
    )
    .expect("link in email")
}

async fn signup_verify_signin(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let res = signup_form(
        &server,
        &client,
        "Grace@Example.COM",
        "Grace Hopper",
        PASSWORD,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Check your email"));
    let account = nulab_pass::accounts::store::by_email(
        server.db().pool(),
        &nulab_pass::accounts::Email::parse("grace@example.com").unwrap(),
    )
    .await
    .unwrap()
    .expect("account stored");
    assert!(!account.email_verified);
    assert_eq!(account.kind, nulab_pass::accounts::AccountKind::Nulab);
    assert_eq!(
        account.id.0.get_version_num(),
        4,
        "account ids are random UUIDs"
    );

    // The email carries a single-use link; following it verifies the address.
    let link = verification_link(&server, "Grace@example.com").await;
    let res = client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Email confirmed"));
    let reused = client.get(&link).send().await.unwrap();
    assert_eq!(reused.status(), 410);
    assert!(reused.text().await.unwrap().contains("already been used"));

    // Sign out, then sign in again with any letter case of the email.
    let csrf = csrf_of(&client, &server.url("/account")).await;
    let res = client
        .post(server.url("/signout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = client.get(server.url("/account")).send().await.unwrap();
    assert_eq!(
        res.status(),
        303,
        "signed out: the account page redirects to sign-in"
    );

    let browser = server.signed_in("GRACE@example.com", PASSWORD).await;
    let page = browser
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Grace Hopper") && page.contains("confirmed"));
    let actions = server.audit_actions(10).await;
    for expected in [
        "account.signed_up",
        "account.email_verified",
        "account.signed_out",
        "account.signed_in",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "missing {expected} in {actions:?}"
        );
    }
}
both!(signup_verify_and_sign_in, signup_verify_signin);

async fn session_cookie_is_rotated_and_flagged(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    let client = server.client();
    let res = client.get(server.url("/signin")).send().await.unwrap();
    let before = res
        .headers()
        .get("set-cookie")
        .expect("anonymous session for the form")
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        before.contains("HttpOnly") && before.contains("SameSite=Lax"),
        "{before}"
    );
    assert!(
        !before.contains("Secure"),
        "plain http base URL: no Secure flag"
    );
    let csrf = common::hidden_value(&res.text().await.unwrap(), "csrf").unwrap();
    let res = client
        .post(server.url("/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let after = res
        .headers()
        .get("set-cookie")
        .expect("new session id at sign-in")
        .to_str()
        .unwrap()
        .to_string();
    let id = |c: &str| c.split(';').next().unwrap().to_string();
    assert_ne!(id(&before), id(&after), "the session id changes at sign-in");
}
both!(
    session_id_rotates_at_sign_in,
    session_cookie_is_rotated_and_flagged
);

async fn bad_sign_ups_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("taken@example.com", "Taken", PASSWORD).await;
    let accounts_before = server.count("accounts").await;
    let outbox_before = server.count("outbox").await;
    let audit_before = server.count("audit_events").await;
    let client = server.client();
    let cases = [
        (
            "TAKEN@Example.com",
            "Other",
            PASSWORD,
            409,
            "already exists",
        ),
        (
            "not-an-email",
            "Someone",
            PASSWORD,
            400,
            "not a valid email",
        ),
        ("a@b", "Someone", PASSWORD, 400, "not a valid email"),
        (
            "new@example.com",
            "Someone",
            "short pass",
            400,
            "at least 12 characters",
        ),
        ("new@example.com", "   ", PASSWORD, 400, "name is required"),
    ];
    for (email, name, password, status, fragment) in cases {
        let res = signup_form(&server, &client, email, name, password).await;
        assert_eq!(res.status(), status, "{email}");
        let body = res.text().await.unwrap();
        assert!(body.contains(fragment), "{email}: expected {fragment:?}");
    }
    assert_eq!(server.count("accounts").await, accounts_before);
    assert_eq!(server.count("outbox").await, outbox_before);
    assert_eq!(server.count("audit_events").await, audit_before);
}
both!(
    bad_sign_ups_are_refused_and_change_nothing,
    bad_sign_ups_change_nothing
);

async fn bad_links_change_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    assert_eq!(
        signup_form(&server, &client, "lin@example.com", "Lin", PASSWORD)
            .await
            .status(),
        200
    );
    let link = verification_link(&server, "lin@example.com").await;
    let audit_before = server.count("audit_events").await;

    // Forged: a token never issued.
    let forged = format!(
        "{}/verify-email?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        server.base
    );
    let res = client.get(&forged).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not valid"));

    // Expired: the link lives 48 hours.
    server.state.clock.advance_ms(49 * 3600 * 1000);
    let res = client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 410);
    assert!(res.text().await.unwrap().contains("expired"));

    let account = nulab_pass::accounts::store::by_email(
        server.db().pool(),
        &nulab_pass::accounts::Email::parse("lin@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!account.email_verified, "no bad link verified the address");
    assert_eq!(server.count("audit_events").await, audit_before);

    // A resent link supersedes the first; the new one works.
    let csrf = csrf_of(&client, &server.url("/account")).await;
    let res = client
        .post(server.url("/account/resend-verification"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let fresh = verification_link(&server, "lin@example.com").await;
    assert_ne!(fresh, link);
    assert_eq!(client.get(&fresh).send().await.unwrap().status(), 200);
}
both!(
    forged_and_expired_links_are_refused,
    bad_links_change_nothing
);

async fn wrong_password_is_refused_and_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    let client = server.client();
    for (email, password) in [
        ("ada@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let csrf = csrf_of(&client, &server.url("/signin")).await;
        let res = client
            .post(server.url("/signin"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("email or password is wrong")
        );
    }
    assert_eq!(
        client
            .get(server.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        303,
        "no session"
    );
    let failures = server
        .audit_actions(5)
        .await
        .iter()
        .filter(|a| *a == "account.sign_in_failed")
        .count();
    assert_eq!(failures, 2);
}
both!(
    wrong_password_is_refused,
    wrong_password_is_refused_and_audited
);

async fn csrf_and_body_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let accounts_before = server.count("accounts").await;
    // No token at all.
    let res = client
        .post(server.url("/signup"))
        .form(&[
            ("email", "x@example.com"),
            ("name", "X"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("did not come from this site")
    );
    // A wrong token with a live session.
    let _ = csrf_of(&client, &server.url("/signup")).await;
    let res = client
        .post(server.url("/signup"))
        .form(&[
            ("csrf", "forged"),
            ("email", "x@example.com"),
            ("name", "X"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A body over the limit (256 KiB by default).
    let csrf = csrf_of(&client, &server.url("/signup")).await;
    let huge = "n".repeat(300 * 1024);
    let res = client
        .post(server.url("/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "x@example.com"),
            ("name", huge.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(server.count("accounts").await, accounts_before);
}
both!(csrf_and_body_limit_are_enforced, csrf_and_body_limit);

async fn health_endpoints(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.db().close().await;
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
both!(health_and_readiness, health_endpoints);

/// One password sign-in attempt, as a browser posts the form: the status, where it leads, and the
/// page text.
async fn try_sign_in(
    server: &TestServer,
    browser: &reqwest::Client,
    email: &str,
    password: &str,
) -> (u16, String, String) {
    let signin = server.url("/signin");
    let fields = [
        ("email", email),
        ("password", password),
        ("next", "/account"),
    ];
    let res = post_form(browser, &signin, &signin, &fields).await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, res.text().await.unwrap())
}

/// Rows of the per-account sign-in limit (counts and pauses).
async fn account_counts(server: &TestServer) -> usize {
    server
        .rows("SELECT key FROM rate_limits WHERE bucket = 'sign_in_per_account'")
        .await
        .len()
}

async fn sessions_of(server: &TestServer, email: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE a.email = $1",
    )
    .bind(email.to_string())
    .fetch_one(server.db().pool())
    .await
    .unwrap();
    row.0
}

async fn paused_sign_in(backend: Backend) {
    const ADA: &str = "ada@example.com";
    const NEW: &str = "a brand new passphrase";
    let s = TestServer::start(backend).await;
    s.account(ADA, "Ada", PASSWORD).await;
    s.account("bob@example.com", "Bob", PASSWORD).await;
    // Nine wrong passwords, then the right one: signed in, and the count starts again.
    for _ in 0..9 {
        assert_eq!(
            try_sign_in(&s, &s.client(), ADA, "wrong password!").await.0,
            401
        );
    }
    let ada_browser = s.client();
    assert_eq!(try_sign_in(&s, &ada_browser, ADA, PASSWORD).await.0, 303);
    assert_eq!(
        account_counts(&s).await,
        0,
        "the right password ends the count"
    );
    // Ten wrong ones within 15 minutes pause password sign-in: even the right password is
    // refused, without being checked, and nothing is signed in.
    for _ in 0..10 {
        assert_eq!(
            try_sign_in(&s, &s.client(), ADA, "wrong password!").await.0,
            401
        );
    }
    let sessions = sessions_of(&s, ADA).await;
    let (status, _, page) = try_sign_in(&s, &s.client(), ADA, PASSWORD).await;
    assert_eq!(status, 429);
    assert!(page.contains("is paused until"), "{page}");
    assert_eq!(sessions_of(&s, ADA).await, sessions, "no new session");
    let events = nulab_pass::audit::store::recent(s.db().pool(), None, 3)
        .await
        .unwrap();
    // Events of one millisecond have no order among themselves: look at the last three as a set.
    let mut actions: Vec<String> = events
        .iter()
        .map(|e| match e.details["reason"].as_str() {
            Some(reason) => format!("{} ({reason})", e.action),
            None => e.action.clone(),
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "account.sign_in_failed (invalid_credentials)",
            "account.sign_in_failed (sign_in_paused)",
            "account.sign_in_paused",
        ]
    );
    // Other accounts are not affected; an unknown email is paused just the same, so the pause
    // tells nothing about which addresses have accounts.
    assert_eq!(
        try_sign_in(&s, &s.client(), "bob@example.com", PASSWORD)
            .await
            .0,
        303
    );
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            try_sign_in(&s, &s.client(), "nobody@example.com", PASSWORD)
                .await
                .0,
        );
    }
    assert_eq!(statuses, [[401; 10].as_slice(), &[429]].concat());
    assert_eq!(
        account_counts(&s).await,
        2,
        "Ada's pause and the unknown address's"
    );
    // The pause ends after 15 minutes.
    s.state.clock.advance_ms(15 * 60 * 1000 + 1000);
    assert_eq!(try_sign_in(&s, &s.client(), ADA, PASSWORD).await.0, 303);
    // A new password ends a pause at once: Ada, still signed in on her own browser, changes it.
    for _ in 0..10 {
        try_sign_in(&s, &s.client(), ADA, "wrong password!").await;
    }
    assert_eq!(try_sign_in(&s, &s.client(), ADA, PASSWORD).await.0, 429);
    let change = s.url("/account/password");
    let res = post_form(
        &ada_browser,
        &change,
        &change,
        &[("current", PASSWORD), ("password", NEW), ("confirm", NEW)],
    )
    .await;
    assert_eq!(res.status(), 303, "password changed");
    assert_eq!(try_sign_in(&s, &s.client(), ADA, NEW).await.0, 303);
}
both!(
    repeated_wrong_passwords_pause_password_sign_in,
    paused_sign_in
);

async fn paused_by_codes(backend: Backend) {
    const BOB: &str = "bob@example.com";
    let s = TestServer::start(backend).await;
    s.account(BOB, "Bob", PASSWORD).await;
    let secret = s.enroll_totp(BOB).await;
    let now = s.state.clock.now_ms();
    let wrong = nulab_pass::accounts::totp::code_at(&secret, now - 10 * 60 * 1000).unwrap();
    let two_step = s.url("/signin/two-step");
    // Two rounds of the right password and five wrong codes: the tenth wrong code pauses
    // password sign-in, so guessing codes cannot go on by entering the password again.
    for round in 0..2 {
        let browser = s.client();
        let (status, location, _) = try_sign_in(&s, &browser, BOB, PASSWORD).await;
        assert_eq!(
            (status, location.as_str()),
            (303, "/signin/two-step"),
            "round {round}"
        );
        for _ in 0..5 {
            let res = post_form(&browser, &two_step, &two_step, &[("code", wrong.as_str())]).await;
            assert_eq!(res.status(), 401);
        }
    }
    assert_eq!(sessions_of(&s, BOB).await, 0);
    let (status, _, page) = try_sign_in(&s, &s.client(), BOB, PASSWORD).await;
    assert_eq!(status, 429);
    assert!(page.contains("is paused until"), "{page}");
    // After the pause, the password and the right code sign in and end the count.
    s.state.clock.advance_ms(15 * 60 * 1000 + 1000);
    let browser = s.client();
    assert_eq!(
        try_sign_in(&s, &browser, BOB, PASSWORD).await.1,
        "/signin/two-step"
    );
    let code = s.totp_code(&secret);
    let res = post_form(&browser, &two_step, &two_step, &[("code", code.as_str())]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(sessions_of(&s, BOB).await, 1);
    assert_eq!(account_counts(&s).await, 0, "the right code ends the count");
}
both!(
    wrong_second_factor_codes_count_towards_the_pause,
    paused_by_codes
);

async fn session_store_failure(backend: Backend) {
    let s = TestServer::start(backend).await;
    // The session table goes away: saving the session of a new visitor fails.
    sqlx::query("ALTER TABLE sessions RENAME TO sessions_away")
        .execute(s.db().pool())
        .await
        .unwrap();
    let res = s.client().get(s.url("/signin")).send().await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "the error page, not an empty answer"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("error id"), "{page}");
    sqlx::query("ALTER TABLE sessions_away RENAME TO sessions")
        .execute(s.db().pool())
        .await
        .unwrap();
    assert_eq!(
        s.client()
            .get(s.url("/signin"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
both!(
    a_failing_session_store_shows_the_error_page_with_an_id,
    session_store_failure
);

/// Return targets browsers would turn into another site: tab, newline, backslash, their
/// percent-encoded forms, `//`, a scheme without slashes.
pub const HOSTILE_NEXT: &[&str] = &[
    "//evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%5c/evil.example",
    "/%5C%5Cevil.example",
    "https:evil.example",
    "https://evil.example",
    "javascript:alert(1)",
];

async fn open_redirect(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .account("ada@example.com", "Ada", "correct horse battery")
        .await;
    let signin = server.url("/signin");
    for next in HOSTILE_NEXT.iter().copied().chain(["/account/security"]) {
        let browser = server.client();
        let page = browser
            .get(&signin)
            .query(&[("next", next)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let kept = common::hidden_value(&page, "next").unwrap_or_default();
        let fields = [
            ("email", "ada@example.com"),
            ("password", "correct horse battery"),
            ("next", next),
        ];
        let res = post_form(&browser, &signin, &signin, &fields).await;
        assert_eq!(res.status(), 303, "{next:?}");
        let location = res.headers()["location"].to_str().unwrap().to_string();
        if next == "/account/security" {
            assert_eq!((kept.as_str(), location.as_str()), (next, next));
        } else {
            assert_eq!(
                kept, "/account",
                "the form keeps no hostile target: {next:?}"
            );
            assert_eq!(location, "/account", "{next:?}");
        }
    }
}
both!(no_return_target_leads_off_the_site, open_redirect);

async fn headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let page = client.get(server.url("/signin")).send().await.unwrap();
    let h = page.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.get("strict-transport-security").is_none(), "not on http");
    // Pages load no inline script: behaviour comes from a file the policy allows.
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/static/app.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    let file = client
        .get(server.url("/static/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert!(file.headers().get("cache-control").is_none());
    // Behind TLS the browser is told to keep to https.
    let tls = TestServer::start_with(backend, |c| {
        c.base_url = Some("https://pass.example.com".parse().unwrap())
    })
    .await;
    let res = tls.client().get(tls.url("/signin")).send().await.unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000"
    );
}
both!(pages_send_the_security_headers, headers);
