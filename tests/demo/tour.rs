//! The README's tour in headless Chromium on a fresh demo: alice signs in to the demo product
//! through SSO; the admin opens the dashboard and the SSO page; bob follows the emailed
//! migration link, proves his password and agrees; the admin finds all of it in the audit log and
//! exports it. A screenshot of each stop is kept in the target directory (`screenshots/tour`); the
//! README's pictures are these, made smaller.

use std::path::PathBuf;

use super::common::browser::Browser;
use super::demo_process::{DemoProcess, Ports};
use super::{number, one};

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots/tour");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sign_in(browser: &Browser, demo: &DemoProcess, email: &str) {
    browser
        .sign_in_with_password(&demo.base, email, &demo.password())
        .await;
}

async fn sign_out(browser: &Browser) {
    browser.click("form[action='/signout'] button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let demo = DemoProcess::start(&dir.path().join("demo-data"), Ports::free(), &[]).await;
    let db = demo.db().await;
    let browser = Browser::start().await;
    // Small enough for the README.
    browser.set_window_size(1200, 900).await;
    let shots = shots();

    // 1. Alice signs in to the product through SSO.
    browser
        .sso_into_product(&demo.product, &demo.base, &demo.idp, "alice@acme.test")
        .await;
    browser
        .screenshot(&shots.join("product-signed-in.png"))
        .await;

    // 2. The admin's dashboard and SSO page.
    sign_in(&browser, &demo, "admin@acme.test").await;
    browser.goto(&demo.url("/admin/acme")).await;
    browser.wait_for_text("Overview").await;
    browser.screenshot(&shots.join("dashboard.png")).await;
    browser.goto(&demo.url("/admin/acme/sso")).await;
    browser.wait_for_text("Mock IdP (demo)").await;
    browser.screenshot(&shots.join("sso.png")).await;
    sign_out(&browser).await;

    // 3. Bob follows the link of the email waiting on /dev/mail and agrees.
    let mail = "SELECT body_text FROM outbox WHERE to_addr = 'bob@acme.test' AND kind = 'migration.requested'";
    let body = one(&db, mail).await;
    let link = super::common::link_in(&body, &demo.url("/migration/")).expect("a link");
    browser.goto(&link).await;
    browser.wait_for_text("Password of bob@acme.test").await;
    browser
        .screenshot(&shots.join("migration-consent.png"))
        .await;
    browser.fill("input[name=password]", &demo.password()).await;
    browser
        .click("form[action$='/accept'] button[type=submit]")
        .await;
    let kind = "SELECT kind FROM accounts WHERE email = 'bob@acme.test'";
    assert_eq!(
        one(&db, kind).await,
        "managed",
        "bob is a managed account of acme now"
    );
    let globex = "SELECT COUNT(*) FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE a.email = 'bob@acme.test'";
    assert_eq!(
        number(&db, globex).await,
        1,
        "his membership of globex ended"
    );

    // 4. The admin finds it all in the audit log, and exports it.
    sign_in(&browser, &demo, "admin@acme.test").await;
    browser.goto(&demo.url("/admin/acme/audit")).await;
    let log = browser.wait_for_text("migration.accepted").await;
    assert!(log.contains("sso.signin.succeeded") && log.contains("domain.verified"));
    browser
        .script("const t = document.querySelector('table.audit-events'); window.scrollTo(0, t.getBoundingClientRect().top + window.scrollY - 120); return null")
        .await;
    browser.screenshot(&shots.join("audit-log.png")).await;
    let js = "return fetch('/admin/acme/audit/export?format=jsonl').then(r => r.text())";
    let export = browser.script(js).await;
    let export = export.as_str().unwrap();
    for action in [
        "migration.accepted",
        "sso.signin.succeeded",
        "domain.verified",
        "saml_connection.created",
    ] {
        assert!(
            export.contains(&format!("\"{action}\"")),
            "{action} is exported"
        );
    }
    browser.quit().await;
    db.close().await;
    demo.stop().await;
}
