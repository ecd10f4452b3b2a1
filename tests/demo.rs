//! `nulab-pass demo` as a newcomer runs it: the real binary seeds a fresh data directory through
//! the product's own code paths, reuses it on the next run and starts fresh with `--reset`; a
//! domain is verified by publishing its record on the demo's DNS page; and in headless Chromium
//! a managed account signs in to the demo product through SSO at the mock IdP. The demo runs on
//! SQLite by design (its data directory); `serve` has none of its pages on either database.

mod common;
#[path = "common/demo.rs"]
mod demo_process;
#[path = "demo/tour.rs"]
mod tour;

use std::time::Duration;

use common::{Backend, TestServer, csrf_of, post_form};
use demo_process::{DemoProcess, Ports, demo_fails};
use nulab_pass::db::Db;

async fn one(db: &Db, sql: &str) -> String {
    let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.0
}

async fn number(db: &Db, sql: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.0
}

/// A client with a cookie jar that follows no redirect.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn signed_in(demo: &DemoProcess, email: &str) -> reqwest::Client {
    let client = client();
    let csrf = csrf_of(&client, &demo.url("/signin")).await;
    let password = demo.password();
    let res = client
        .post(demo.url("/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", &password),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{email} signs in with the printed password"
    );
    client
}

/// Everything the demo promises is in its database, made by the product's own flows.
async fn assert_seeded(db: &Db) {
    let acme = "(SELECT id FROM orgs WHERE slug = 'acme')";
    assert_eq!(
        number(
            db,
            "SELECT COUNT(*) FROM orgs WHERE slug IN ('acme', 'globex')"
        )
        .await,
        2
    );
    assert_eq!(
        number(db, &format!("SELECT seats FROM orgs WHERE id = {acme}")).await,
        10
    );
    let domain =
        format!("SELECT status FROM domains WHERE domain = 'acme.test' AND org_id = {acme}");
    assert_eq!(one(db, &domain).await, "verified");
    let actions = format!("SELECT COUNT(*) FROM audit_events WHERE org_id = {acme} AND action = ");
    assert_eq!(
        number(db, &format!("{actions}'domain.verified'")).await,
        1,
        "verified by a lookup"
    );
    assert_eq!(
        number(db, &format!("{actions}'saml_connection.created'")).await,
        1
    );
    assert_eq!(
        number(db, &format!("{actions}'managed_account.created'")).await,
        3
    );
    assert_eq!(
        number(db, &format!("{actions}'migration.requested'")).await,
        1
    );
    let metadata = format!("SELECT metadata_url FROM saml_connections WHERE org_id = {acme}");
    assert!(
        one(db, &metadata).await.ends_with("/metadata"),
        "made from the mock IdP's URL"
    );
    let managed = format!(
        "SELECT COUNT(*) FROM accounts WHERE kind = 'managed' AND org_id = {acme} AND email IN ('alice@acme.test', 'dave@acme.test', 'erin@acme.test')"
    );
    assert_eq!(number(db, &managed).await, 3);
    let nulab = format!(
        "SELECT COUNT(*) FROM accounts a JOIN memberships m ON m.account_id = a.id WHERE a.kind = 'nulab' AND m.org_id = {acme} AND a.email IN ('bob@acme.test', 'carol@acme.test')"
    );
    assert_eq!(
        number(db, &nulab).await,
        2,
        "Nulab-account members ready to migrate"
    );
    let bob_orgs = "SELECT COUNT(*) FROM memberships m JOIN accounts a ON a.id = m.account_id WHERE a.email = 'bob@acme.test'";
    assert_eq!(
        number(db, bob_orgs).await,
        2,
        "bob is also a member of globex"
    );
    let pending = "SELECT r.status FROM migration_requests r JOIN accounts a ON a.id = r.account_id WHERE a.email = 'bob@acme.test'";
    assert_eq!(one(db, pending).await, "pending");
    let mail = "SELECT COUNT(*) FROM outbox WHERE to_addr = 'bob@acme.test' AND kind = 'migration.requested'";
    assert_eq!(
        number(db, mail).await,
        1,
        "the migration email waits on /dev/mail"
    );
    assert_eq!(
        number(
            db,
            "SELECT COUNT(*) FROM oidc_clients WHERE name = 'backlog-demo'"
        )
        .await,
        1
    );
}

/// The admin adds a domain, publishes its record on `/demo/dns` and verifies it; a name outside
/// `.test` is refused there with the input kept and nothing published.
async fn verify_a_domain_on_the_demo_page(demo: &DemoProcess, db: &Db) {
    let admin = signed_in(demo, "admin@acme.test").await;
    let domains = demo.url("/admin/acme/domains");
    let res = post_form(&admin, &domains, &domains, &[("domain", "example.test")]).await;
    assert_eq!(res.status(), 303);
    let (id, token) = (
        one(db, "SELECT id FROM domains WHERE domain = 'example.test'").await,
        one(
            db,
            "SELECT token FROM domains WHERE domain = 'example.test'",
        )
        .await,
    );
    let text = format!("nulab-pass-verification={token}");
    let page = demo.url("/demo/dns");
    let before = std::fs::read(demo.data_dir.join("dns.json")).unwrap();
    let res = post_form(
        &admin,
        &page,
        &page,
        &[("name", "example.com"), ("text", &text)],
    )
    .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("only for names ending in .test") && html.contains("value=\"example.com\""),
        "{html}"
    );
    assert_eq!(
        std::fs::read(demo.data_dir.join("dns.json")).unwrap(),
        before,
        "nothing published"
    );
    let res = post_form(
        &admin,
        &page,
        &page,
        &[("name", "example.test"), ("text", &text)],
    )
    .await;
    assert_eq!(res.status(), 303);
    let shown = admin.get(&page).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("Published a TXT record at example.test") && shown.contains(&text));
    assert!(
        shown.contains("admin@acme.test") && !shown.contains("Create a Nulab account"),
        "the header shows who is signed in"
    );
    let verify = demo.url(&format!("/admin/acme/domains/{id}/verify"));
    let res = post_form(&admin, &domains, &verify, &[]).await;
    assert!(res.status().is_redirection(), "{}", res.status());
    let status = one(
        db,
        "SELECT status FROM domains WHERE domain = 'example.test'",
    )
    .await;
    assert_eq!(status, "verified", "verified against the demo DNS server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seeds_a_fresh_data_dir_reuses_it_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let ports = Ports::free();
    let demo = DemoProcess::start(&data, ports, &[]).await;
    for promised in [
        "alice@acme.test",
        "admin@acme.test",
        "/dev/mail",
        "/demo/dns",
        "Three things to try",
    ] {
        assert!(demo.printed.contains(promised), "{promised} is printed");
    }
    assert!(
        demo.printed.contains(&demo.password()),
        "the password is printed"
    );
    let db = demo.db().await;
    assert_seeded(&db).await;
    let signed_in_page = signed_in(&demo, "admin@acme.test")
        .await
        .get(demo.url("/admin/acme/sso"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in_page.status(),
        200,
        "the admin reaches the SSO page"
    );
    verify_a_domain_on_the_demo_page(&demo, &db).await;
    let org_id = one(&db, "SELECT id FROM orgs WHERE slug = 'acme'").await;
    let events = number(&db, "SELECT COUNT(*) FROM audit_events").await;
    let password = demo.password();
    db.close().await;
    demo.stop().await;

    // A second run reuses everything, and the record published on the page is served again.
    let demo = DemoProcess::start(&data, ports, &[]).await;
    let db = demo.db().await;
    assert_eq!(demo.password(), password);
    assert_eq!(
        one(&db, "SELECT id FROM orgs WHERE slug = 'acme'").await,
        org_id
    );
    assert_eq!(
        number(&db, "SELECT COUNT(*) FROM orgs").await,
        2,
        "nothing seeded twice"
    );
    assert_eq!(number(&db, "SELECT COUNT(*) FROM oidc_clients").await, 1);
    assert!(number(&db, "SELECT COUNT(*) FROM audit_events").await >= events);
    assert_eq!(
        number(
            &db,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'org.created'"
        )
        .await,
        2
    );
    let lookup = nulab_pass::domains::TxtLookup::new(&[demo.dns], Duration::from_secs(5)).unwrap();
    let name = nulab_pass::domains::DomainName::parse("example.test").unwrap();
    let answer = lookup.lookup(&name).await;
    assert!(
        matches!(answer, nulab_pass::domains::TxtAnswer::Found(ref t) if t.len() == 1),
        "{answer:?}"
    );
    db.close().await;
    demo.stop().await;

    // --reset starts fresh: a new organization, a new password, no record of the first run.
    let demo = DemoProcess::start(&data, ports, &["--reset"]).await;
    let db = demo.db().await;
    assert_ne!(
        one(&db, "SELECT id FROM orgs WHERE slug = 'acme'").await,
        org_id
    );
    assert_ne!(demo.password(), password);
    assert_seeded(&db).await;
    assert_eq!(
        number(
            &db,
            "SELECT COUNT(*) FROM domains WHERE domain = 'example.test'"
        )
        .await,
        0
    );
    db.close().await;
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_refuses_a_folder_the_demo_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let path = dir.path().display().to_string();
    let said = demo_fails(&["--data-dir", &path, "--reset", "--bind", "127.0.0.1:0"]).await;
    assert!(
        said.contains("refuses to empty") && said.contains("notes.txt"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing else made"
    );
}

/// `serve`, even with `--dev`, has none of the demo's pages.
async fn serve_has_no_demo_page(backend: Backend) {
    for dev in [false, true] {
        let s = TestServer::start_with(backend, |c| c.dev = dev).await;
        let res = s.client().get(s.url("/demo/dns")).send().await.unwrap();
        assert_eq!(res.status(), 404, "dev: {dev}");
        let res = s.client().get(s.url("/dev/mail")).send().await.unwrap();
        assert_eq!(res.status(), if dev { 200 } else { 404 }, "dev: {dev}");
    }
}
both!(
    serve_has_no_demo_page_even_in_dev_mode,
    serve_has_no_demo_page
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_signs_in_to_the_demo_product_through_sso_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let demo = DemoProcess::start(&dir.path().join("demo-data"), Ports::free(), &[]).await;
    // A callback this browser did not start is refused, and nobody is signed in.
    let http = client();
    let forged = format!("{}/callback?code=stolen&state=guessed", demo.product);
    let res = http.get(&forged).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("not started in this browser")
    );
    let home = http
        .get(&demo.product)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("id=\"sign-in\"") && !home.contains("claim-sub"));

    let browser = common::browser::Browser::start().await;
    browser
        .sso_into_product(&demo.product, &demo.base, &demo.idp, "alice@acme.test")
        .await;
    let db = demo.db().await;
    let alice = one(
        &db,
        "SELECT id FROM accounts WHERE email = 'alice@acme.test'",
    )
    .await;
    assert_eq!(
        browser.product_claim("sub").await,
        alice,
        "sub is the account id"
    );
    assert_eq!(browser.product_claim("email").await, "alice@acme.test");
    assert_eq!(browser.product_claim("org").await, "acme");
    assert_eq!(browser.product_claim("amr").await, "saml");
    let audited = "SELECT COUNT(*) FROM audit_events WHERE action = 'sso.signin.succeeded'";
    assert_eq!(number(&db, audited).await, 1);
    browser.quit().await;
    db.close().await;
    demo.stop().await;
}
