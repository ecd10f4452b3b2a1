//! The pages in a real browser (headless Chromium): a person signs up, confirms the email from
//! the link, creates an organization, adds a member, previews its migration from the member list
//! and creates an API token.

use crate::both;
use crate::common::browser::Browser;
use crate::common::{self, Backend, TestServer, link_in};

async fn first_day_in_a_browser(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .account("bob@example.com", "Bob", "another long password")
        .await;
    let browser = Browser::start().await;

    browser.goto(&server.url("/signup")).await;
    browser.fill("input[name=email]", "ada@example.com").await;
    browser.fill("input[name=name]", "Ada Lovelace").await;
    browser
        .fill("input[name=password]", "correct horse battery")
        .await;
    browser.click("main button[type=submit]").await;
    assert!(browser.source().await.contains("Check your email"));

    let outbox = nulab_pass::mail::store::recent(server.db().pool(), 10)
        .await
        .unwrap();
    let link = link_in(
        &outbox[0].body_text,
        &format!("{}/verify-email?token=", server.base),
    )
    .unwrap();
    browser.goto(&link).await;
    assert!(browser.source().await.contains("Email confirmed"));

    browser.goto(&server.url("/orgs/new")).await;
    browser.fill("input[name=slug]", "acme").await;
    browser.fill("input[name=name]", "Acme Corp").await;
    browser.click("main button[type=submit]").await;
    assert!(browser.current_url().await.ends_with("/admin/acme/members"));
    assert!(
        browser
            .source()
            .await
            .contains("Organization Acme Corp created")
    );

    browser
        .fill(
            "form[action='/admin/acme/members'] input[name=email]",
            "bob@example.com",
        )
        .await;
    browser
        .click("form[action='/admin/acme/members'] button[type=submit]")
        .await;
    let page = browser.source().await;
    assert!(
        page.contains("bob@example.com was invited as member."),
        "notice shown"
    );
    // Bob accepts on his account page (over HTTP); the admin's list then shows him.
    let bob = server
        .signed_in("bob@example.com", "another long password")
        .await;
    let account_page = bob.get(server.url("/account")).send().await.unwrap();
    let accept = link_in(&account_page.text().await.unwrap(), "/account/invitations/").unwrap();
    let res = common::post_form(&bob, &server.url("/account"), &server.url(&accept), &[]).await;
    assert_eq!(res.status(), 303);
    browser.goto(&server.url("/admin/acme/members")).await;
    if let Ok(dir) = std::env::var("NULAB_PASS_SCREENSHOTS") {
        browser
            .screenshot(&std::path::Path::new(&dir).join(format!("members-{backend:?}.png")))
            .await;
    }

    // A ticked row belongs to the migration form through its form attribute (the row holds its
    // own forms): the preview names bob, who cannot be asked while acme has no verified domain.
    browser
        .tick("input[form=migrate][aria-label*='bob@example.com']")
        .await;
    browser.click("form#migrate button[type=submit]").await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with("/admin/acme/migrations")
    );
    let page = browser.source().await;
    assert!(
        page.contains("nothing has been sent yet") && page.contains("bob@example.com: "),
        "{page}"
    );

    browser.goto(&server.url("/admin/acme/api-tokens")).await;
    browser.fill("input[name=name]", "provisioning").await;
    browser
        .click("form[action='/admin/acme/api-tokens'] button[type=submit]")
        .await;
    let token = browser
        .script("return document.getElementById('new-token').textContent")
        .await;
    let token = token.as_str().unwrap().to_string();
    assert!(token.starts_with("np_"));
    let res = server
        .client()
        .get(server.url("/api/v1/orgs/acme/members"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Signing out in the browser ends the session.
    browser.goto(&server.url("/account")).await;
    browser.click("header form[action='/signout'] button").await;
    browser.goto(&server.url("/admin/acme/members")).await;
    assert!(browser.current_url().await.contains("/signin?next="));
    browser.quit().await;
}
both!(first_day_in_a_browser_works, first_day_in_a_browser);
