//! The admin dashboard: figures and charts from the organization's real state, and each warning
//! appearing when its cause holds, linking to the page that fixes it.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::{Backend, TestServer, api};
use nulab_pass::saml::mock_idp::MockIdp;

const PASSWORD: &str = "correct horse battery";

async fn page(client: &reqwest::Client, server: &TestServer) -> String {
    let res = client.get(server.url("/admin/acme")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The text of the element with `id` (a figure on the page).
fn figure(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no {id}"));
    let rest = &html[start + id.len() + 6..];
    rest[..rest.find('<').unwrap()].to_string()
}

async fn the_dashboard_shows_the_organization(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@example.com", "Admin", PASSWORD).await;
    let org = server.org("acme", &admin).await;
    let client = server.signed_in("admin@example.com", PASSWORD).await;

    // A new organization: no domain, no SSO connection; its Nulab-account admin can sign in
    // with a password, so only the missing connection is a warning.
    let html = page(&client, &server).await;
    assert!(html.contains("warning-no_sso_connection"), "{html}");
    assert!(html.contains("href=\"/admin/acme/sso\">Connect an IdP</a>"));
    assert!(!html.contains("warning-no_break_glass_admin"));
    assert!(!html.contains("warning-over_seats"));
    assert!(html.contains("No domains yet."));
    assert!(html.contains("aria-current=\"page\">Overview</a>"));
    assert!(html.contains("<svg class=\"chart\" id=\"signins-chart\""));

    // Domains, seats, managed accounts, a connection and sign-ins.
    server.verified_domain(&org, "acme.test").await;
    server.domain_row(&org, "old.test", "lapsed").await;
    server.seats(&org, 3).await;
    let token = server.token(&org).await;
    let http = server.client();
    for (email, password) in [("mia@acme.test", Some(PASSWORD)), ("max@acme.test", None)] {
        let (status, body) = api(
            &http,
            Method::POST,
            server.url("/api/v1/orgs/acme/managed-accounts"),
            &token,
            Some(json!({"email": email, "name": "M", "password": password})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let idp = MockIdp::generate(
        "https://idp.acme.test/metadata",
        "https://idp.acme.test/sso",
    )
    .unwrap();
    let (status, connection) = api(
        &http,
        Method::POST,
        server.url("/api/v1/orgs/acme/saml-connections"),
        &token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Acme IdP"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    // Two sign-ins of mia: one refused (wrong password), one that succeeds.
    let mia = server.client();
    let csrf = crate::common::csrf_of(&mia, &server.url("/signin")).await;
    for password in ["wrong password here", PASSWORD] {
        mia.post(server.url("/signin"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", "mia@acme.test"),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
    }
    let html = page(&client, &server).await;
    assert_eq!(figure(&html, "seats-used"), "2");
    assert_eq!(figure(&html, "seats-subscribed"), "3");
    assert_eq!(figure(&html, "members-managed"), "2");
    assert_eq!(figure(&html, "members-nulab"), "1");
    assert!(
        html.contains("Failed: Invalid credentials</th><td>1"),
        "{html}"
    );
    assert!(
        html.contains("Succeeded with a password</th><td>1"),
        "{html}"
    );
    assert!(!html.contains("warning-no_sso_connection"));
    assert!(!html.contains("warning-certificate_expiring"));
    assert!(html.contains("warning-domain_check_failing"));
    assert!(html.contains("old.test has lapsed"));
    assert!(html.contains("href=\"/admin/acme/domains#domain-"));
    assert!(html.contains("Acme IdP"));

    // With a connection and no admin able to sign in if the IdP failed (a Nulab-account admin
    // with two-step verification), the dashboard says so; over seats (as an organization
    // brought in from before billing can be) and a certificate close to its expiry too.
    assert!(html.contains("warning-no_break_glass_admin"), "{html}");
    assert!(html.contains("href=\"/admin/acme/members\">Review the admins</a>"));
    server.enroll_totp("admin@example.com").await;
    sqlx::query("UPDATE orgs SET seats = 1 WHERE id = $1")
        .bind(org.id.to_string())
        .execute(server.db().pool())
        .await
        .unwrap();
    let not_after = connection["certificates"][0]["not_after"].as_i64().unwrap();
    let now = server.state.clock.now_ms();
    server
        .state
        .clock
        .advance_ms(not_after - now - 10 * 24 * 3600 * 1000 - 1000);
    let html = page(&client, &server).await;
    assert!(!html.contains("warning-no_break_glass_admin"));
    assert!(html.contains("warning-over_seats"), "{html}");
    assert!(html.contains("href=\"/admin/acme/billing\">Add seats</a>"));
    assert!(html.contains("warning-certificate_expiring"));
    assert!(html.contains("(10 days left)"), "{html}");
    assert!(!html.contains("style="), "no inline style under the CSP");
}
both!(
    the_dashboard_shows_the_organization_works,
    the_dashboard_shows_the_organization
);

async fn only_admins_see_the_dashboard(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@example.com", "Admin", PASSWORD).await;
    let org = server.org("acme", &admin).await;
    server.account("bob@example.com", "Bob", PASSWORD).await;
    server.add_member(&org, "bob@example.com", "member").await;
    let bob = server.signed_in("bob@example.com", PASSWORD).await;
    let res = bob.get(server.url("/admin/acme")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = server
        .client()
        .get(server.url("/admin/acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}
both!(
    only_admins_see_the_dashboard_works,
    only_admins_see_the_dashboard
);
