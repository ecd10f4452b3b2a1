//! Organizations, members and API tokens through the real server: pages (with CSRF) and the
//! JSON API (with bearer tokens), including every bad input of the foundation issue.

mod common;
#[path = "orgs/invitations.rs"]
mod invitations;
#[path = "orgs/policies.rs"]
mod policies;
#[path = "orgs/tokens.rs"]
mod tokens;

use common::{Backend, TestServer, csrf_of};
use nulab_pass::orgs::AdminScope;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// An org API token made as an admin would.
async fn token_for(server: &TestServer, org: &nulab_pass::orgs::Org) -> String {
    let scope = AdminScope::operator(org.clone());
    let mut tx = server.db().begin().await.unwrap();
    let (_, secret) =
        nulab_pass::api_tokens::create(&mut tx, server.state.clock.now_ms(), &scope, "tests")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    secret
}

async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

async fn org_created_on_page(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    let browser = server.signed_in("ada@example.com", PASSWORD).await;
    let csrf = csrf_of(&browser, &server.url("/orgs/new")).await;
    let res = browser
        .post(server.url("/orgs/new"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("slug", "Acme-Corp"),
            ("name", "Acme Corporation"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/admin/acme-corp/members");
    let page = browser
        .get(server.url("/admin/acme-corp/members"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Acme Corporation")
            && page.contains("ada@example.com")
            && page.contains("admin")
    );

    // Duplicate and malformed slugs: clear errors, nothing created.
    let orgs_before = server.count("orgs").await;
    let audit_before = server.count("audit_events").await;
    for (slug, status, fragment) in [
        ("acme-corp", 409, "is taken"),
        ("ACME-CORP", 409, "is taken"),
        ("ab", 400, "not a valid organization ID"),
        ("-acme", 400, "not a valid organization ID"),
        ("acme_corp", 400, "not a valid organization ID"),
        ("x".repeat(33).as_str(), 400, "not a valid organization ID"),
    ] {
        let csrf = csrf_of(&browser, &server.url("/orgs/new")).await;
        let res = browser
            .post(server.url("/orgs/new"))
            .form(&[("csrf", csrf.as_str()), ("slug", slug), ("name", "Another")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{slug}");
        assert!(res.text().await.unwrap().contains(fragment), "{slug}");
    }
    assert_eq!(server.count("orgs").await, orgs_before);
    assert_eq!(server.count("audit_events").await, audit_before);
}
both!(organization_is_created_on_its_page, org_created_on_page);

async fn members_through_pages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    let bob = server.account("bob@example.com", "Bob", PASSWORD).await;
    let org = server.org("acme", &ada).await;
    let browser = server.signed_in("ada@example.com", PASSWORD).await;
    let members = server.url("/admin/acme/members");

    let csrf = csrf_of(&browser, &members).await;
    let res = browser
        .post(&members)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "Bob@Example.com"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = browser
        .get(&members)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.to_lowercase()
            .contains("bob@example.com was invited as member."),
        "flash notice"
    );
    assert_eq!(server.count("memberships").await, 1, "not a member yet");
    // Bob accepts on his account page.
    let bob_browser = server.signed_in("bob@example.com", PASSWORD).await;
    let account_page = bob_browser
        .get(server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accept = common::link_in(&account_page, "/account/invitations/").expect("an invitation");
    let res = common::post_form(
        &bob_browser,
        &server.url("/account"),
        &server.url(&accept),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(server.count("memberships").await, 2);

    // Promote, demote: the last admin stays.
    let role_url = |id: &str| server.url(&format!("/admin/acme/members/{id}/role"));
    let csrf = csrf_of(&browser, &members).await;
    let res = browser
        .post(role_url(&bob.id.to_string()))
        .form(&[("csrf", csrf.as_str()), ("role", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = browser
        .post(role_url(&bob.id.to_string()))
        .form(&[("csrf", csrf.as_str()), ("role", "member")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let before = server.count("audit_events").await;
    let res = browser
        .post(role_url(&ada.id.to_string()))
        .form(&[("csrf", csrf.as_str()), ("role", "member")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("at least one admin"));
    let res = browser
        .post(server.url(&format!("/admin/acme/members/{}/remove", ada.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        server.count("audit_events").await,
        before,
        "refused changes write nothing"
    );
    let role = nulab_pass::orgs::store::role_of(server.db().pool(), org.id, ada.id)
        .await
        .unwrap();
    assert_eq!(role, Some(nulab_pass::orgs::Role::Admin));

    // Remove Bob; a form without its token is refused and changes nothing.
    let remove_bob = server.url(&format!("/admin/acme/members/{}/remove", bob.id));
    let res = browser
        .post(&remove_bob)
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(server.count("memberships").await, 2);
    let res = browser
        .post(&remove_bob)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(server.count("memberships").await, 1);
    let actions = server.audit_actions(10).await;
    for expected in [
        "member.invited",
        "member.invitation_accepted",
        "member.role_changed",
        "member.removed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
}
both!(members_are_managed_on_pages, members_through_pages);

async fn bad_member_additions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    server.org("acme", &ada).await;
    let browser = server.signed_in("ada@example.com", PASSWORD).await;
    let members = server.url("/admin/acme/members");
    let memberships_before = server.count("memberships").await;
    let audit_before = server.count("audit_events").await;
    for (email, role, status, fragment) in [
        ("ada@example.com", "member", 409, "already a member"),
        ("ADA@example.com", "admin", 409, "already a member"),
        ("not an email", "member", 400, "not a valid email"),
        ("ada@example.com", "owner", 400, "must be"),
    ] {
        let csrf = csrf_of(&browser, &members).await;
        let res = browser
            .post(&members)
            .form(&[("csrf", csrf.as_str()), ("email", email), ("role", role)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{email}");
        assert!(
            res.text().await.unwrap().contains(fragment),
            "{email}: {fragment}"
        );
    }
    assert_eq!(server.count("memberships").await, memberships_before);
    assert_eq!(server.count("audit_events").await, audit_before);
}
both!(bad_member_additions_change_nothing, bad_member_additions);

async fn other_orgs_are_invisible(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    let eve = server.account("eve@example.com", "Eve", PASSWORD).await;
    let acme = server.org("acme", &ada).await;
    let evil = server.org("evil", &eve).await;
    let eve_browser = server.signed_in("eve@example.com", PASSWORD).await;
    let eve_token = token_for(&server, &evil).await;
    let client = server.client();

    // Eve administers "evil"; with her session and her token she gets nothing of "acme".
    for path in [
        "/admin/acme/members",
        "/admin/acme/api-tokens",
        "/admin/acme",
    ] {
        let res = eve_browser.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert!(!res.text().await.unwrap().contains("ada@example.com"));
    }
    let csrf = csrf_of(&eve_browser, &server.url("/admin/evil/members")).await;
    let res = eve_browser
        .post(server.url("/admin/acme/members"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "eve@example.com"),
            ("role", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = eve_browser
        .post(server.url(&format!("/admin/acme/members/{}/remove", ada.id)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/v1/orgs/acme".to_string(), None),
        (
            reqwest::Method::GET,
            "/api/v1/orgs/acme/members".to_string(),
            None,
        ),
        (
            reqwest::Method::POST,
            "/api/v1/orgs/acme/members".to_string(),
            Some(json!({"email": "eve@example.com", "role": "admin"})),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/orgs/acme/members/{}", ada.id),
            Some(json!({"role": "member"})),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/orgs/acme/members/{}", ada.id),
            None,
        ),
    ] {
        let (status, body) = api(&client, method, server.url(&path), &eve_token, body).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body["error"], "forbidden");
        assert!(!body.to_string().contains("ada@example.com"));
    }
    assert_eq!(
        nulab_pass::orgs::store::count_admins(server.db().pool(), acme.id)
            .await
            .unwrap(),
        1
    );
    assert_eq!(server.count("memberships").await, 2);
    // A member who is not an admin sees 403 on admin pages.
    let mut tx = server.db().begin().await.unwrap();
    nulab_pass::orgs::store::insert_membership(
        &mut tx,
        acme.id,
        eve.id,
        nulab_pass::orgs::Role::Member,
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        eve_browser
            .get(server.url("/admin/acme/members"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}
both!(
    admins_of_one_org_cannot_reach_another,
    other_orgs_are_invisible
);

async fn api_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    let org = server.org("acme", &ada).await;
    let token = token_for(&server, &org).await;
    let client = server.client();
    for i in 0..7 {
        server
            .account(
                &format!("user{i}@example.com"),
                &format!("User {i}"),
                PASSWORD,
            )
            .await;
    }

    let (status, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["slug"], "acme");

    for i in 0..7 {
        server
            .add_member(&org, &format!("User{i}@example.com"), "member")
            .await;
    }
    let (_, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme/members?limit=2"),
        &token,
        None,
    )
    .await;
    let first = &body["items"][1];
    assert_eq!(
        (&first["role"], &first["kind"], &first["status"]),
        (&json!("member"), &json!("nulab"), &json!("active")),
        "{body}"
    );
    // Pages of three, in email order, until next_cursor is null.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/api/v1/orgs/acme/members?limit=3");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = api(&client, reqwest::Method::GET, url, &token, None).await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|m| m["email"].as_str().unwrap().to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 8);
    let (status, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme/members?limit=501"),
        &token,
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme/members?cursor=garbage!"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Role changes and removal; the last admin is protected.
    let target = nulab_pass::accounts::store::by_email(
        server.db().pool(),
        &nulab_pass::accounts::Email::parse("user0@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let (status, body) = api(
        &client,
        reqwest::Method::PATCH,
        server.url(&format!("/api/v1/orgs/acme/members/{}", target.id)),
        &token,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!((status, body["role"].as_str()), (200, Some("admin")));
    let (status, _) = api(
        &client,
        reqwest::Method::DELETE,
        server.url(&format!("/api/v1/orgs/acme/members/{}", target.id)),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let before = (
        server.count("memberships").await,
        server.count("audit_events").await,
    );
    let cases = [
        (
            reqwest::Method::DELETE,
            format!("/api/v1/orgs/acme/members/{}", ada.id),
            None,
            409,
            "last_admin",
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/orgs/acme/members/{}", ada.id),
            Some(json!({"role": "member"})),
            409,
            "last_admin",
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/orgs/acme/members/{}", target.id),
            None,
            404,
            "not_a_member",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/orgs/acme/members/not-a-uuid".to_string(),
            Some(json!({"role": "admin"})),
            404,
            "not_a_member",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/orgs/acme/members".to_string(),
            Some(json!({"email": "user1@example.com"})),
            409,
            "already_member",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/orgs/acme/members".to_string(),
            Some(json!({"email": "x", "role": "owner"})),
            400,
            "invalid_body",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/orgs/acme/members".to_string(),
            Some(json!({"mail": "x"})),
            400,
            "invalid_body",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, reply) = api(&client, method, server.url(&path), &token, body).await;
        assert_eq!(got, status, "{path}: {reply}");
        assert_eq!(reply["error"], code, "{path}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        (
            server.count("memberships").await,
            server.count("audit_events").await
        ),
        before
    );
}
both!(members_api_with_pagination_and_errors, api_members);

async fn tokens_lifecycle(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    server.org("acme", &ada).await;
    let browser = server.signed_in("ada@example.com", PASSWORD).await;
    let page_url = server.url("/admin/acme/api-tokens");
    let csrf = csrf_of(&browser, &page_url).await;
    let res = browser
        .post(&page_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "provisioning"),
            ("scope", "read"),
            ("scope", "members"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    let start = page.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let secret = page[start..start + 46].to_string();
    assert!(secret.starts_with("np_"));
    // Stored only as a hash; shown once.
    let stored: (String,) = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_one(server.db().pool())
        .await
        .unwrap();
    assert_ne!(stored.0, secret);
    assert!(
        !browser
            .get(&page_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains(&secret)
    );

    let client = server.client();
    let (status, _) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme/members"),
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme/members"),
        "np_forged",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let res = client
        .get(server.url("/api/v1/orgs/acme/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Revoke on the page: the token stops working at once.
    let id: (String,) = sqlx::query_as("SELECT id FROM api_tokens")
        .fetch_one(server.db().pool())
        .await
        .unwrap();
    let res = browser
        .post(server.url(&format!("/admin/acme/api-tokens/{}/revoke", id.0)))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let before = server.count("memberships").await;
    let (status, body) = api(
        &client,
        reqwest::Method::POST,
        server.url("/api/v1/orgs/acme/members"),
        &secret,
        Some(json!({"email": "ada@example.com"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(server.count("memberships").await, before);
    let actions = server.audit_actions(5).await;
    assert!(
        actions.iter().any(|a| a == "api_token.created")
            && actions.iter().any(|a| a == "api_token.revoked")
    );
}
both!(api_tokens_are_shown_once_and_revocable, tokens_lifecycle);

async fn api_errors_and_openapi(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.account("ada@example.com", "Ada", PASSWORD).await;
    let org = server.org("acme", &ada).await;
    let token = token_for(&server, &org).await;
    let client = server.client();
    let doc = server.openapi().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every operation has its own operationId (client generators name methods by it).
    let mut ids = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                ids.push(id.to_string());
            }
        }
    }
    let operations = ids.len();
    ids.sort();
    ids.dedup();
    assert!(operations >= 40, "{operations} operations");
    assert_eq!(
        ids.len(),
        operations,
        "an operationId is used twice: {ids:?}"
    );
    // Links lead from what an operation creates to the operations that take it.
    let mut links = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for link in response["links"]
                    .as_object()
                    .into_iter()
                    .flat_map(|l| l.values())
                {
                    let target = link["operationId"].as_str().unwrap().to_string();
                    assert!(ids.binary_search(&target).is_ok(), "link to {target}");
                    links += 1;
                }
            }
        }
    }
    assert_eq!(links, 17, "every link of app::FOLLOWS is published");
    for path in [
        "/api/v1/orgs/{org}",
        "/api/v1/orgs/{org}/members",
        "/api/v1/orgs/{org}/members/{account_id}",
        "/api/v1/orgs/{org}/invitations/{invitation_id}",
        "/api/v1/orgs/{org}/invitations/{invitation_id}/resend",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let (status, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/nothing-here"),
        &token,
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // An API body over the limit gets 413 and changes nothing.
    let huge = json!({"email": "x".repeat(300 * 1024)});
    let (status, _) = api(
        &client,
        reqwest::Method::POST,
        server.url("/api/v1/orgs/acme/members"),
        &token,
        Some(huge),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(server.count("memberships").await, 1);

    // A server-side failure (the database is gone) answers 500 with only an error id.
    server.db().close().await;
    let (status, body) = api(
        &client,
        reqwest::Method::GET,
        server.url("/api/v1/orgs/acme"),
        &token,
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (500, Some("internal")));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("internal error (error id ")
            && !message.to_lowercase().contains("pool"),
        "{message}"
    );
}
both!(api_errors_and_openapi_document, api_errors_and_openapi);
