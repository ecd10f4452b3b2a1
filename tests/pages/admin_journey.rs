//! The whole journey through the real pages in headless Chromium, from an organization with an
//! admin and nothing else: the admin verifies a domain (its TXT record published on a DNS server
//! on loopback), adds the mock IdP by its metadata URL, invites a person with a Nulab account on
//! that domain and asks them to migrate; the member follows the emailed links (SMTP on loopback)
//! in a browser of their own, agrees on the consent page and signs in to the demo product through
//! SSO; the admin finds every step in the audit log, filtered by action, and exports it as CSV.

use std::sync::Arc;

use crate::both;
use crate::common::browser::Browser;
use crate::common::smtp::SmtpSink;
use crate::common::{Backend, TestServer, link_in};
use crate::dns::DnsServer;
use nulab_pass::demo::{client, product, seed};
use nulab_pass::mock_idp::MockIdp;

const ADMIN: &str = "admin@corp.test";
const ADMIN_PASSWORD: &str = "correct horse battery";
const BOB: &str = "bob@corp.test";
const BOB_PASSWORD: &str = "bob's own long password";

/// The mock IdP's HTTP server on loopback; returns its URL (metadata at `/metadata`).
async fn mock_idp() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let idp = MockIdp::generate(&format!("{url}/metadata"), &format!("{url}/sso")).unwrap();
    let router = nulab_pass::saml::mock_idp_server::router(Arc::new(idp));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// The demo product ("Backlog (demo)"), registered as a product of `server` as the demo does
/// and serving on loopback; returns its URL.
async fn demo_product(server: &TestServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let registered = seed::product(server.db(), &url).await.unwrap();
    let client = client::Client::discover(
        &server.base,
        &registered.client_id,
        &registered.client_secret,
        &format!("{url}/callback"),
    )
    .await
    .unwrap();
    let router = product::router(product::Product::new(client, &url));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// Saves a screenshot of what `browser` shows as `name` in `$CARGO_TARGET_TMPDIR/screenshots/
/// admin-journey/<database>/` (for people to look at; nothing compares pixels).
async fn shot(browser: &Browser, server: &TestServer, name: &str) {
    let backend = if server.testdb.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots/admin-journey")
        .join(backend);
    std::fs::create_dir_all(&dir).unwrap();
    browser.screenshot(&dir.join(format!("{name}.png"))).await;
}

/// The value of the form control matching `css` on the page.
async fn value_of(browser: &Browser, css: &str) -> String {
    let js = format!("return document.querySelector({css:?}).value");
    browser.script(&js).await.as_str().unwrap().to_string()
}

/// The single-use link starting with `prefix` in the newest email to `to` that has one.
async fn emailed_link(sink: &SmtpSink, to: &str, prefix: &str) -> String {
    for _ in 0..200 {
        let found = sink.messages().into_iter().rev().find_map(|m| {
            let text = m.text();
            m.rcpt_to
                .iter()
                .any(|r| r == to)
                .then(|| link_in(&text, prefix))
                .flatten()
        });
        if let Some(link) = found {
            return link;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no email to {to} with a link {prefix}...: {:#?}",
        sink.messages()
    );
}

async fn one(server: &TestServer, sql: &str) -> String {
    let rows = server.rows(sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone()
}

/// The admin adds `corp.test`, is told that no record is found yet, the record shown is
/// published on the DNS server, and "Verify now" verifies it.
async fn verify_domain(admin: &Browser, server: &TestServer, dns: &DnsServer) {
    admin.goto(&server.url("/admin/corp/domains")).await;
    admin.wait_for_text("No domains yet.").await;
    admin.fill("input[name=domain]", "corp.test").await;
    admin
        .click("form[action='/admin/corp/domains'] button[type=submit]")
        .await;
    admin.wait_for_text("status-pending").await;
    shot(admin, server, "01-domain-added").await;
    let name = value_of(admin, "input[aria-label='Record name']").await;
    let value = value_of(admin, "input[aria-label='Record value']").await;
    let token = one(
        server,
        "SELECT token FROM domains WHERE domain = 'corp.test'",
    )
    .await;
    assert_eq!(
        (name.as_str(), value.as_str()),
        (
            "corp.test",
            format!("nulab-pass-verification={token}").as_str()
        ),
        "the record to publish is shown"
    );
    admin.click("form[action$='/verify'] button").await;
    let page = admin
        .wait_for_text("corp.test is not verified yet: no TXT records found.")
        .await;
    assert!(page.contains("status-pending"), "nothing published yet");
    shot(admin, server, "02-domain-not-found").await;
    let status = "SELECT status FROM domains WHERE domain = 'corp.test'";
    assert_eq!(one(server, status).await, "pending");

    dns.add_txt(&name, &[&value]).await;
    admin.click("form[action$='/verify'] button").await;
    admin.wait_for_text("status-verified").await;
    shot(admin, server, "03-domain-verified").await;
    assert_eq!(one(server, status).await, "verified");
}

/// The admin adds the mock IdP by its metadata URL on the SSO page.
async fn connect_idp(admin: &Browser, server: &TestServer, idp: &str) {
    admin.goto(&server.url("/admin/corp/sso")).await;
    admin.wait_for_text("Verified domains: corp.test").await;
    let metadata = format!("{idp}/metadata");
    admin.fill("input[name=metadata_url]", &metadata).await;
    admin.fill("input[name=name]", "Corp IdP").await;
    admin
        .click("form[action='/admin/corp/sso'] button[type=submit]")
        .await;
    let page = admin
        .wait_for_text(&format!("Connection to {metadata} created"))
        .await;
    assert!(page.contains("Corp IdP") && page.contains("Test connection"));
    shot(admin, server, "04-sso-connected").await;
    let stored = "SELECT metadata_url FROM saml_connections";
    assert_eq!(one(server, stored).await, metadata);
}

/// The admin invites Bob, who has a Nulab account of his own on corp.test; Bob follows the
/// emailed link in his browser and signs in as anyone would, by his email: corp.test signs in
/// through the IdP now, which refuses his Nulab account and offers his password; that sign-in
/// brings him back to the invitation, and he joins.
async fn invite_bob(
    admin: &Browser,
    bob: &Browser,
    server: &TestServer,
    sink: &SmtpSink,
    idp: &str,
) {
    admin.goto(&server.url("/admin/corp/members")).await;
    admin.fill("#invite-member input[name=email]", BOB).await;
    admin.click("#invite-member button[type=submit]").await;
    admin
        .wait_for_text(&format!("{BOB} was invited as member."))
        .await;
    shot(admin, server, "05-invited").await;

    let link = emailed_link(sink, BOB, &server.url("/invitations/")).await;
    bob.goto(&link).await;
    bob.wait_for_text("Join Test Org?").await;
    shot(bob, server, "06-invitation").await;
    bob.click("a.button[href^='/signin?next=']").await;
    bob.identify_at_idp(idp, BOB).await;
    bob.wait_for_text("Your account is a Nulab account").await;
    shot(bob, server, "07-sso-refused").await;
    // The way on keeps where he was going (it used to lead to the account page).
    bob.click("#password-sign-in").await;
    bob.fill("input[name=email]", BOB).await;
    bob.fill("input[name=password]", BOB_PASSWORD).await;
    bob.click("form[action='/signin'] button[type=submit]")
        .await;
    bob.wait_for_url(&link).await;
    shot(bob, server, "08-invitation-signed-in").await;
    bob.click("form[action$='/accept'] button[type=submit]")
        .await;
    shot(bob, server, "09-invitation-accepted").await;
    let members = "SELECT a.kind FROM memberships m JOIN accounts a ON a.id = m.account_id \
                   WHERE a.email = 'bob@corp.test'";
    assert_eq!(one(server, members).await, "nulab", "Bob joined corp");
}

/// The admin selects Bob on the Migrations page, previews and sends the request.
async fn request_migration(admin: &Browser, server: &TestServer) {
    admin.goto(&server.url("/admin/corp/migrations")).await;
    admin
        .tick(&format!("input[aria-label='select {BOB}']"))
        .await;
    admin
        .click("form:has(input[name=step][value=preview]) button[type=submit]")
        .await;
    let preview = admin
        .wait_for_text("Preview: nothing has been sent yet")
        .await;
    assert!(preview.contains("Corp IdP"), "Bob's domain signs in there");
    shot(admin, server, "10-migration-preview").await;
    admin.click("#preview button[type=submit]").await;
    admin.wait_for_text("pending: 1").await;
    shot(admin, server, "11-migration-requested").await;
    let request = "SELECT r.status FROM migration_requests r JOIN accounts a \
                   ON a.id = r.account_id WHERE a.email = 'bob@corp.test'";
    assert_eq!(one(server, request).await, "pending");
}

/// Bob, in a fresh browser, reads the consent page, gets a wrong password refused, and agrees.
async fn bob_consents(bob: &Browser, server: &TestServer, sink: &SmtpSink) {
    let link = emailed_link(sink, BOB, &server.url("/migration/")).await;
    bob.goto(&link).await;
    let page = bob
        .wait_for_text("Test Org asks to manage your account")
        .await;
    shot(bob, server, "12-consent").await;
    for promise in [
        "You are not a member of any other organization",
        "You can sign in through the single sign-on of Test Org",
        "your data in Backlog, Cacoo and Typetalk stays",
        "Password of bob@corp.test",
    ] {
        assert!(page.contains(promise), "the consent page says {promise:?}");
    }
    let kind = "SELECT kind FROM accounts WHERE email = 'bob@corp.test'";
    bob.fill("input[name=password]", "not his password").await;
    bob.click("form[action$='/accept'] button[type=submit]")
        .await;
    // In a sentence, as on every other form.
    bob.wait_for_text("The password is wrong.").await;
    shot(bob, server, "13-consent-wrong-password").await;
    assert_eq!(one(server, kind).await, "nulab", "nothing changed");

    bob.fill("input[name=password]", BOB_PASSWORD).await;
    bob.click("form[action$='/accept'] button[type=submit]")
        .await;
    bob.wait_for_text("Your account is now a managed account")
        .await;
    shot(bob, server, "14-consent-accepted").await;
    assert_eq!(one(server, kind).await, "managed");
    let org = "SELECT o.slug FROM accounts a JOIN orgs o ON o.id = a.org_id \
               WHERE a.email = 'bob@corp.test'";
    assert_eq!(one(server, org).await, "corp");
}

const JOURNEY: [&str; 8] = [
    "domain.verified",
    "saml_connection.created",
    "member.invited",
    "sso.signin.failed",
    "member.invitation_accepted",
    "migration.requested",
    "migration.accepted",
    "sso.signin.succeeded",
];

/// The action column of each row of an audit CSV export (the fifth: the four before it hold no
/// comma); checks the header first.
fn exported_actions(csv: &str) -> Vec<&str> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(header.split(',').nth(4), Some("action"), "{header}");
    lines.map(|l| l.split(',').nth(4).unwrap()).collect()
}

/// The admin filters the audit log by each action of the journey and exports what matches, then
/// exports the whole log.
async fn audit_log(admin: &Browser, server: &TestServer) {
    let export = "return fetch(document.querySelector('a[href*=\"format=csv\"]').href)\
                  .then(r => r.text())";
    let actions = "return Array.from(document.querySelectorAll('table.audit-events tbody tr \
                   td:nth-child(2)')).map(td => td.textContent)";
    for action in JOURNEY {
        admin.goto(&server.url("/admin/corp/audit")).await;
        admin.fill("input[name=action]", action).await;
        admin
            .click("form[action='/admin/corp/audit'] button[type=submit]")
            .await;
        let shown = admin.script(actions).await;
        let shown: Vec<&str> = shown
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            !shown.is_empty() && shown.iter().all(|a| *a == action),
            "filtered by {action}: {shown:?}"
        );
        shot(admin, server, &format!("16-audit-{action}")).await;
        let csv = admin.script(export).await;
        let csv = csv.as_str().unwrap();
        let exported = exported_actions(csv);
        assert_eq!(
            exported, shown,
            "the export of {action} holds what the page shows: {csv}"
        );
    }
    admin.goto(&server.url("/admin/corp/audit")).await;
    let csv = admin.script(export).await;
    let exported = exported_actions(csv.as_str().unwrap());
    for action in JOURNEY {
        assert!(
            exported.contains(&action),
            "{action} exported: {exported:?}"
        );
    }
}

async fn admin_journey(backend: Backend) {
    let dns = DnsServer::start(&["test"]).await;
    let sink = SmtpSink::start().await;
    let (servers, smtp) = (dns.servers(), sink.url());
    let server = TestServer::start_with(backend, move |c| {
        // Development mode lets the server fetch the IdP's metadata over http on loopback.
        c.dev = true;
        c.smtp_url = Some(smtp);
        c.dns_servers = servers;
        c.dns_timeout_ms = 2000;
    })
    .await;
    let admin_account = server.account(ADMIN, "Ada Admin", ADMIN_PASSWORD).await;
    server.org("corp", &admin_account).await;
    let bob_account = server.account(BOB, "Bob Builder", BOB_PASSWORD).await;
    let idp = mock_idp().await;
    let product = demo_product(&server).await;

    let admin = Browser::start().await;
    admin
        .sign_in_with_password(&server.base, ADMIN, ADMIN_PASSWORD)
        .await;
    verify_domain(&admin, &server, &dns).await;
    connect_idp(&admin, &server, &idp).await;
    let bob = Browser::start().await;
    invite_bob(&admin, &bob, &server, &sink, &idp).await;
    bob.quit().await;
    request_migration(&admin, &server).await;

    let bob = Browser::start().await;
    bob_consents(&bob, &server, &sink).await;
    bob.sso_into_product(&product, &server.base, &idp, BOB)
        .await;
    shot(&bob, &server, "15-product-signed-in").await;
    assert_eq!(
        bob.product_claim("sub").await,
        bob_account.id.to_string(),
        "the same account, now managed"
    );
    assert_eq!(bob.product_claim("email").await, BOB);
    assert_eq!(bob.product_claim("org").await, "corp");
    assert_eq!(bob.product_claim("amr").await, "saml");
    bob.quit().await;

    audit_log(&admin, &server).await;
    admin.quit().await;
}
both!(
    an_admin_verifies_connects_and_migrates_and_the_member_signs_in_to_a_product,
    admin_journey
);
