//! Pages an admin is glad to use, over HTTP: a failed form comes back on the same page with the
//! input kept and the error, in a sentence, beside its field, and nothing changed; destructive
//! actions ask first; empty lists say what to do; /dev/mail links are links; the sign-in page
//! names the product; two-step setup shows a QR code; a favicon.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::{Backend, TestServer, api, csrf_of};
use nulab_pass::audit::Actor;

const PASSWORD: &str = "correct horse battery";

async fn failed_forms_come_back_with_the_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@example.com", "Admin", PASSWORD).await;
    let org = server.org("acme", &admin).await;
    server.seats(&org, 5).await;
    let client = server.signed_in("admin@example.com", PASSWORD).await;
    let members = server.url("/admin/acme/members");
    let csrf = csrf_of(&client, &members).await;
    let accounts = server.count("accounts").await;
    let events = server.count("audit_events").await;

    // A managed account on a domain the organization has not verified.
    let res = client
        .post(server.url("/admin/acme/managed-accounts"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ann@unverified.test"),
            ("name", "Ann Example"),
            ("role", "admin"),
            ("password", "a long initial password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("aria-current=\"page\">Members</a>"),
        "the admin area stays"
    );
    assert!(html.contains("<h1>Members</h1>"));
    assert!(html.contains("value=\"ann@unverified.test\" aria-invalid=\"true\" aria-describedby=\"create-email-error\""), "{html}");
    assert!(html.contains("value=\"Ann Example\""));
    assert!(html.contains("<option value=\"admin\" selected>admin</option>"));
    assert!(
        !html.contains("a long initial password"),
        "a password is never sent back"
    );
    assert!(
        html.contains("<span class=\"field-error\" id=\"create-email-error\">Unverified.test is not a verified domain of this organization: verify it on the Domains page first.</span>"),
        "{html}"
    );
    assert!(!html.contains("HTTP 409"));
    assert_eq!(server.count("accounts").await, accounts);
    assert_eq!(server.count("audit_events").await, events);

    // An invitation to an address that is not one.
    let res = client
        .post(members.clone())
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "not an address"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains(
            "value=\"not an address\" aria-invalid=\"true\" aria-describedby=\"invite-email-error\""
        ),
        "{html}"
    );
    assert!(html.contains("<span class=\"field-error\" id=\"invite-email-error\">"));
    assert_eq!(server.count("invitations").await, 0);
    assert_eq!(server.count("audit_events").await, events);

    // An error page speaks in words, with a sentence.
    let res = client
        .get(server.url("/admin/nope/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap();
    assert!(html.contains("<h1>Not found</h1>"), "{html}");
}
both!(
    failed_forms_come_back_with_the_input_works,
    failed_forms_come_back_with_the_input
);

/// Whether every form posting to an action that ends in one of `endings` sits inside a
/// `<details class="confirm">` (the question the admin answers first).
fn every_destructive_form_asks(html: &str, endings: &[&str]) -> usize {
    let mut seen = 0;
    for (at, _) in html.match_indices("<form ") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        let Some(action) = tag
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
        else {
            continue;
        };
        if !endings.iter().any(|e| action.ends_with(e)) {
            continue;
        }
        let before = &html[..at];
        let opened = before.rfind("<details class=\"confirm\">");
        let closed = before.rfind("</details>");
        assert!(
            opened.is_some() && opened > closed,
            "{action} is posted without a confirmation"
        );
        seen += 1;
    }
    seen
}

async fn destructive_actions_ask_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@example.com", "Admin", PASSWORD).await;
    let org = server.org("acme", &admin).await;
    server.verified_domain(&org, "acme.test").await;
    server.seats(&org, 5).await;
    server.account("bob@example.com", "Bob", PASSWORD).await;
    server.add_member(&org, "bob@example.com", "member").await;
    let token = server.token(&org).await;
    let http = server.client();
    let (status, mia) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/acme/managed-accounts"),
        &token,
        Some(json!({"email": "mia@acme.test", "name": "Mia"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/acme/members"),
        &token,
        Some(json!({"email": "carol@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201);
    let client = server.signed_in("admin@example.com", PASSWORD).await;
    let endings = [
        "/remove", "/revoke", "/delete", "/suspend", "/cancel", "/leave",
    ];
    let mut asked = 0;
    for path in [
        "/admin/acme/members".to_string(),
        format!("/admin/acme/members/{}", mia["id"].as_str().unwrap()),
        "/admin/acme/domains".to_string(),
        "/admin/acme/api-tokens".to_string(),
        "/account".to_string(),
    ] {
        let html = client
            .get(server.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        asked += every_destructive_form_asks(&html, &endings);
    }
    // Remove the admin and bob, revoke carol's invitation, suspend and delete mia, remove the
    // domain, revoke the token, leave acme.
    assert_eq!(asked, 8);
}
both!(
    destructive_actions_ask_first_works,
    destructive_actions_ask_first
);

async fn empty_lists_say_what_to_do(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@example.com", "Admin", PASSWORD).await;
    server.org("acme", &admin).await;
    let client = server.signed_in("admin@example.com", PASSWORD).await;
    for (path, marker) in [
        (
            "/admin/acme/api-tokens",
            "id=\"no-tokens\">No API tokens yet.",
        ),
        (
            "/admin/acme/migrations",
            "id=\"no-requests\">No migration requests yet.",
        ),
        ("/admin/acme", "No domains yet."),
    ] {
        let html = client
            .get(server.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(marker), "{path}: {html}");
    }
}
both!(empty_lists_say_what_to_do_works, empty_lists_say_what_to_do);

async fn small_things(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.dev = true).await;
    let client = server.client();

    // The favicon, also where a browser asks for it by the old name.
    let res = client.get(server.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/static/favicon.svg");
    let res = client
        .get(server.url("/static/favicon.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    let page = client
        .get(server.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<link rel=\"icon\" href=\"/static/favicon.svg\""));

    // Links in /dev/mail are links.
    let csrf = csrf_of(&client, &server.url("/signup")).await;
    let res = client
        .post(server.url("/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ann@example.com"),
            ("name", "Ann"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success() || res.status().is_redirection());
    let page = client
        .get(server.url("/dev/mail"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = format!("<a href=\"{}/verify-email?token=", server.base);
    assert!(page.contains(&link), "{page}");

    // Two-step setup shows the key as a QR code beside it.
    server.account("ada@example.com", "Ada", PASSWORD).await;
    let ada = server.signed_in("ada@example.com", PASSWORD).await;
    let page = ada
        .get(server.url("/account/two-step"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<img class=\"qr\" id=\"totp-qr\" src=\"data:image/svg+xml;base64,"),
        "{page}"
    );
    assert!(page.contains("id=\"totp-secret\""));

    // The sign-in page names the product the user signs in to.
    let mut tx = server.db().begin().await.unwrap();
    let creds = nulab_pass::oidc::clients::create(
        &mut tx,
        server.state.clock.now_ms(),
        "backlog",
        &["https://backlog.test/callback".to_string()],
        &[],
        None,
        &Actor::Operator,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let browser = server.client();
    let authorize = format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fbacklog.test%2Fcallback&scope=openid%20email&state=s1&nonce=n1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSstw-cM&code_challenge_method=S256",
        creds.client_id
    );
    let res = browser.get(server.url(&authorize)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let signin = res.headers()["location"].to_str().unwrap().to_string();
    assert!(signin.starts_with("/signin?next="), "{signin}");
    let page = browser
        .get(server.url(&signin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>Sign in to backlog</h1>"), "{page}");
    // The name belongs to that sign-in only: the plain sign-in page names nothing.
    let page = browser
        .get(server.url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>Sign in</h1>"));
}
both!(small_things_work, small_things);
