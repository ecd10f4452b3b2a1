//! Every main page in headless Chromium, at desktop width and at phone width (390 px): axe-core
//! finds no violation of serious or critical impact, the console shows no error (a script error,
//! a refused resource or a Content-Security-Policy violation), nothing is wider than a phone's
//! screen, and a screenshot of each is kept under `target/page-screenshots/` for people to look at.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::common::browser::Browser;
use crate::common::{Backend, TestServer, api, link_in};
use nulab_pass::saml::mock_idp::MockIdp;

const PASSWORD: &str = "correct horse battery";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// The elements that reach past the window's right edge (innermost first), to say what is cut off.
const WIDEST: &str = "var w = document.documentElement.clientWidth; var out = [];
document.querySelectorAll('body *').forEach(function (e) {
  var r = e.getBoundingClientRect();
  if (r.right > w + 1 && !(e.parentElement && e.parentElement.closest('.table-scroll')) && out.length < 8) {
    out.unshift(e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') + ' ' + Math.round(r.right));
  }
});
return out.join(' < ');";

/// Where screenshots go: the target dir of this build.
fn screenshot_dir(backend: Backend) -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_string());
    let dir = std::path::Path::new(&target)
        .join("page-screenshots")
        .join(format!("{backend:?}").to_lowercase());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An organization with something on every page: a verified domain, seats, a managed account,
/// a Nulab-account member asked to migrate, an SSO connection, an API token, audit events.
/// Returns the link of the migration request.
async fn acme(server: &TestServer) -> String {
    let admin = server
        .account("admin@example.com", "Ada Admin", PASSWORD)
        .await;
    let org = server.org("acme", &admin).await;
    server.verified_domain(&org, "acme.test").await;
    server.domain_row(&org, "pending.test", "pending").await;
    server.seats(&org, 5).await;
    server.account("bob@acme.test", "Bob Nulab", PASSWORD).await;
    server.add_member(&org, "bob@acme.test", "member").await;
    let token = server.token(&org).await;
    let http = server.client();
    let idp = MockIdp::generate(
        "https://idp.acme.test/metadata",
        "https://idp.acme.test/sso",
    )
    .unwrap();
    for (path, body) in [
        (
            "/api/v1/orgs/acme/managed-accounts",
            json!({"email": "mia@acme.test", "name": "Mia Managed"}),
        ),
        (
            "/api/v1/orgs/acme/saml-connections",
            json!({"metadata_xml": idp.metadata_xml(), "name": "Acme IdP"}),
        ),
        (
            "/api/v1/orgs/acme/migrations",
            json!({"emails": ["bob@acme.test"]}),
        ),
    ] {
        let (status, body) = api(&http, Method::POST, server.url(path), &token, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {body}");
    }
    let mail = server
        .last_mail("bob@acme.test", "migration.requested")
        .await;
    link_in(&mail.body_text, &format!("{}/migration/", server.base)).unwrap()
}

/// Checks the page the browser shows at both widths and keeps its screenshots; adds what is
/// wrong to `problems` (all pages are checked before the test fails).
async fn check(browser: &Browser, backend: Backend, name: &str, problems: &mut Vec<String>) {
    let dir = screenshot_dir(backend);
    for (width, height, label) in [
        (DESKTOP.0, DESKTOP.1, "desktop"),
        (PHONE.0, PHONE.1, "phone"),
    ] {
        browser.set_window_size(width, height).await;
        let violations = browser.axe_serious_violations().await;
        problems.extend(violations.iter().map(|v| format!("{name} at {label}: {v}")));
        let overflow = browser
            .script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await;
        if overflow != json!(0) {
            let widest = browser.script(WIDEST).await;
            problems.push(format!(
                "{name} is {overflow} px wider than the window at {label}: {widest}"
            ));
        }
        browser
            .full_screenshot(&dir.join(format!("{name}-{label}.png")), width, height)
            .await;
    }
    browser.set_window_size(DESKTOP.0, DESKTOP.1).await;
    // An error page's own status (a 404) is logged as the document's; anything else counts.
    let url = browser.current_url().await;
    let errors = browser.console_errors().await;
    problems.extend(
        errors
            .iter()
            .filter(|e| !e.starts_with(&format!("{url} - Failed to load resource")))
            .map(|e| format!("{name}: console error {e}")),
    );
}

async fn every_main_page(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.dev = true).await;
    let consent = acme(&server).await;
    let browser = Browser::start().await;
    let mut problems = Vec::new();
    for (name, path) in [("signin", "/signin"), ("signup", "/signup")] {
        browser.goto(&server.url(path)).await;
        check(&browser, backend, name, &mut problems).await;
    }
    browser.goto(&consent).await;
    check(&browser, backend, "migration-consent", &mut problems).await;

    browser.goto(&server.url("/signin")).await;
    browser
        .fill(
            "input[name=identifier], input[name=email]",
            "admin@example.com",
        )
        .await;
    browser.click("main button[type=submit]").await;
    if browser.source().await.contains("name=\"password\"") {
        browser.fill("input[name=password]", PASSWORD).await;
        browser.click("main button[type=submit]").await;
    }
    assert!(
        !browser.current_url().await.contains("/signin"),
        "signed in: {}",
        browser.current_url().await
    );
    let mia = nulab_pass::accounts::store::by_email(
        server.db().pool(),
        &nulab_pass::accounts::Email::parse("mia@acme.test").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let pages = [
        ("account", "/account".to_string()),
        ("two-step", "/account/two-step".to_string()),
        ("new-org", "/orgs/new".to_string()),
        ("dashboard", "/admin/acme".to_string()),
        ("members", "/admin/acme/members".to_string()),
        ("managed-account", format!("/admin/acme/members/{}", mia.id)),
        ("domains", "/admin/acme/domains".to_string()),
        ("migrations", "/admin/acme/migrations".to_string()),
        ("sso", "/admin/acme/sso".to_string()),
        ("password-policy", "/admin/acme/password-policy".to_string()),
        ("sessions", "/admin/acme/session-settings".to_string()),
        ("billing", "/admin/acme/billing".to_string()),
        ("api-tokens", "/admin/acme/api-tokens".to_string()),
        ("audit", "/admin/acme/audit".to_string()),
        ("dev-mail", "/dev/mail".to_string()),
        ("not-found", "/admin/nope".to_string()),
    ];
    for (name, path) in pages {
        browser.goto(&server.url(&path)).await;
        check(&browser, backend, name, &mut problems).await;
    }
    browser.quit().await;
    assert!(problems.is_empty(), "{problems:#?}");
}
both!(
    every_main_page_passes_axe_at_desktop_and_phone_width,
    every_main_page
);
