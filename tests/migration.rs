//! Migration of Nulab accounts into managed accounts, through the running server: the whole
//! flow with a real SMTP server (the link followed from the captured email) and an SSO sign-in
//! afterwards; every bad input and race, each asserting the error and that nothing changed; the
//! admin's pages (member list, filter, link lifetime) in `migration/admin_pages.rs`; the server
//! process killed mid-batch in `migration/crash.rs`; two migrations that cross each other's
//! organizations in `migration/crossed.rs`.

#[path = "migration/admin_pages.rs"]
mod admin_pages;
mod common;
#[path = "migration/crash.rs"]
mod crash;
#[path = "migration/crossed.rs"]
mod crossed;
#[path = "migration/last_admin.rs"]
mod last_admin;

use common::smtp::SmtpSink;
use common::{Backend, TestServer, api, link_in, post_form};
use nulab_pass::accounts::{self, AccountKind};
use nulab_pass::mock_idp::MockIdp;
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// An org `corp` (admin `admin@corp.test`) with `corp.test` verified, `seats` seats, an API
/// token, and Nulab-account members `names@corp.test`; `sam` is also a member of `other`.
struct World {
    server: TestServer,
    org: nulab_pass::orgs::Org,
    token: String,
    other_token: String,
}

async fn world_with(server: TestServer, seats: i64, names: &[&str]) -> World {
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    let other_admin = server.account("boss@other.test", "Boss", PASSWORD).await;
    let other = server.org("other", &other_admin).await;
    server.verified_domain(&org, "corp.test").await;
    server.seats(&org, seats).await;
    let token = server.token(&org).await;
    let other_token = server.token(&other).await;
    let w = World {
        server,
        org,
        token,
        other_token,
    };
    for name in names {
        w.member(name, PASSWORD).await;
    }
    w
}

async fn world(backend: Backend, seats: i64, names: &[&str]) -> World {
    world_with(TestServer::start(backend).await, seats, names).await
}

impl World {
    /// A Nulab account `name@corp.test` with `password`, added to corp as a member.
    async fn member(&self, name: &str, password: &str) {
        let email = format!("{name}@corp.test");
        self.server.account(&email, name, password).await;
        self.add_to("corp", &email).await;
    }
    /// Adds the existing account `email` to `org` as a member, as the operator's
    /// `org add-member` does.
    async fn add_to(&self, org: &str, email: &str) {
        let org = nulab_pass::orgs::store::by_slug(self.server.db().pool(), org)
            .await
            .unwrap()
            .expect("org");
        self.server.add_member(&org, email, "member").await;
    }
    async fn ask(&self, body: Value) -> (u16, Value) {
        api(
            &self.server.client(),
            Method::POST,
            self.server.url("/api/v1/orgs/corp/migrations"),
            &self.token,
            Some(body),
        )
        .await
    }
    async fn ask_one(&self, email: &str) -> String {
        let (status, body) = self.ask(json!({"emails": [email]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["requested"], 1, "{body}");
        body["results"][0]["id"].as_str().unwrap().to_string()
    }
    /// The newest consent link emailed to `email` (from the outbox).
    async fn link(&self, email: &str) -> String {
        let mail = self.server.last_mail(email, "migration.requested").await;
        link_in(&mail.body_text, &self.server.url("/migration/")).expect("link in email")
    }
    async fn account(&self, email: &str) -> accounts::Account {
        accounts::store::by_email(
            self.server.db().pool(),
            &accounts::Email::parse(email).unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
    }
    /// The request with `id`, as the API lists it.
    async fn request(&self, id: &str) -> Value {
        let (_, list) = api(
            &self.server.client(),
            Method::GET,
            self.server.url("/api/v1/orgs/corp/migrations"),
            &self.token,
            None,
        )
        .await;
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    }
    async fn status_of(&self, id: &str) -> String {
        self.request(id).await["status"]
            .as_str()
            .unwrap()
            .to_string()
    }
    async fn post(&self, path: &str) -> (u16, Value) {
        api(
            &self.server.client(),
            Method::POST,
            self.server.url(path),
            &self.token,
            None,
        )
        .await
    }
    /// Agrees on the consent page with the password, in a fresh browser.
    async fn agree(&self, link: &str, password: &str) -> (u16, String) {
        self.agree_with(link, &[("password", password)]).await
    }
    /// Agrees on the consent page with these fields, in a fresh browser.
    async fn agree_with(&self, link: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let browser = self.server.client();
        // The CSRF token is per browser session: take it from any page (a dead link shows none).
        let res = post_form(
            &browser,
            &self.server.url("/signin"),
            &format!("{link}/accept"),
            fields,
        )
        .await;
        (res.status().as_u16(), res.text().await.unwrap())
    }
    /// Still a Nulab account, still a member, and (when given) still the same kind of request.
    async fn assert_unchanged(&self, email: &str) {
        let account = self.account(email).await;
        assert_eq!(
            account.kind,
            AccountKind::Nulab,
            "{email} must still be a Nulab account"
        );
        assert_eq!(account.org_id, None);
        assert_eq!(
            nulab_pass::orgs::seats::used(self.server.db().pool(), self.org.id)
                .await
                .unwrap(),
            0
        );
    }
}

async fn end_to_end(backend: Backend) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let server = TestServer::start_with(backend, |c| c.smtp_url = Some(url)).await;
    let w = world_with(server, 5, &["sam"]).await;
    let s = &w.server;
    let http = s.client();
    // sam is also a member of another organization, whose membership will end.
    w.add_to("other", "sam@corp.test").await;
    let before = w.account("sam@corp.test").await;
    // sam has a session that the migration will end.
    let old_browser = s.signed_in("sam@corp.test", PASSWORD).await;
    assert_eq!(
        old_browser
            .get(s.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let id = w.ask_one("sam@corp.test").await;
    // The user's email arrives over SMTP; follow its link as a browser would.
    let got = sink.wait_for(2, 30).await;
    let to_sam = got
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r == "sam@corp.test"))
        .expect("email to sam");
    assert!(
        got.iter()
            .any(|m| m.rcpt_to.iter().any(|r| r == "admin@corp.test")),
        "admins are told"
    );
    let text = to_sam.text();
    assert!(
        text.contains("API token") && text.contains("Test Org"),
        "who asks: {text}"
    );
    // The asker opens a sentence: capitalised.
    assert!(
        text.contains("\nAn administrator (API token") || text.starts_with("An administrator"),
        "{text}"
    );
    let link = link_in(&text, &s.url("/migration/")).expect("consent link");
    let browser = s.client();
    let page = browser.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for expected in [
        "<strong>An administrator (API token",
        "password settings",
        "deletion",
        "Test Org",
        "Backlog, Cacoo and Typetalk stays",
        "name=\"csrf\"",
    ] {
        assert!(page.contains(expected), "consent page shows {expected}");
    }
    // Other organizations' memberships are listed by name (both orgs are named "Test Org" here).
    assert!(page.contains("memberships in these organizations end"));
    let res = post_form(
        &browser,
        &link,
        &format!("{link}/accept"),
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("now a managed account"));

    let after = w.account("sam@corp.test").await;
    assert_eq!(after.id, before.id, "the id never changes");
    assert_eq!(after.email, before.email);
    assert_eq!(after.kind, AccountKind::Managed);
    assert_eq!(after.org_id, Some(w.org.id));
    let orgs = nulab_pass::orgs::store::orgs_of(s.db().pool(), after.id)
        .await
        .unwrap();
    assert_eq!(orgs.len(), 1, "only this org's membership stays");
    assert_eq!(orgs[0].0.slug, "corp");
    assert_eq!(w.status_of(&id).await, "completed");
    // The old session ended.
    assert_ne!(
        old_browser
            .get(s.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let actions = s.audit_actions(10).await;
    assert!(
        actions.contains(&"migration.accepted".to_string()),
        "{actions:?}"
    );
    let got = sink.wait_for(4, 30).await;
    assert!(
        got.iter()
            .any(|m| m.rcpt_to.iter().any(|r| r == "sam@corp.test")
                && m.text().contains("now a managed account"))
    );
    assert!(
        got.iter().any(
            |m| m.rcpt_to.iter().any(|r| r == "admin@corp.test") && m.text().contains("agreed")
        )
    );
    // The link is single use.
    let again = browser.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);

    // The migrated account signs in through the org's IdP, as the same account.
    let idp = MockIdp::generate(
        "https://idp.corp.test/metadata",
        "https://idp.corp.test/sso",
    )
    .unwrap();
    let (status, connection) = api(
        &http,
        Method::POST,
        s.url("/api/v1/orgs/corp/saml-connections"),
        &w.token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Mock IdP"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    let sso = s.client();
    let res = sso
        .get(connection["login_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    let res = common::idp_answers(&sso, &to_idp, &idp, &connection, "sam@corp.test").await;
    assert_eq!(res.status(), 303, "SSO sign-in of the migrated account");
    let account_page = sso
        .get(s.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account_page.contains("sam@corp.test") && account_page.contains("managed account"));
    let events = nulab_pass::audit::store::recent(s.db().pool(), None, 5)
        .await
        .unwrap();
    let signed_in = events
        .iter()
        .find(|e| e.action == "sso.signin.succeeded")
        .expect("SSO sign-in audited");
    assert!(
        signed_in.target_id.as_deref() == Some(before.id.to_string().as_str())
            || signed_in.actor_id.as_deref() == Some(before.id.to_string().as_str()),
        "the same account (OIDC sub) signs in: {signed_in:?}"
    );
    s.assert_seats_counted().await;
}
both!(the_whole_flow_works_end_to_end, end_to_end);

async fn eligibility(backend: Backend) {
    let w = world(backend, 2, &["ann", "bob", "cid", "dan"]).await;
    let s = &w.server;
    let http = s.client();
    // Not members: an account of another org, an unknown email, a managed account.
    s.account("eve@corp.test", "Eve", PASSWORD).await;
    w.add_to("other", "eve@corp.test").await;
    s.account("zed@elsewhere.test", "Zed", PASSWORD).await;
    w.add_to("corp", "zed@elsewhere.test").await;
    let (status, _) = api(
        &http,
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &w.token,
        Some(json!({"email": "max@corp.test", "name": "Max"})),
    )
    .await;
    assert_eq!(status, 201);
    let outbox = s.count("outbox").await;
    let (status, body) = w.ask(json!({"emails": ["eve@corp.test", "nobody@corp.test", "max@corp.test", "zed@elsewhere.test", "not an email"]})).await;
    assert_eq!(status, 200);
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "not_a_member",
            "not_a_member",
            "already_managed",
            "domain_not_verified",
            "invalid_input"
        ]
    );
    assert_eq!(body["requested"], 0);
    assert_eq!(s.count("migration_requests").await, 0, "nothing created");
    assert_eq!(s.count("outbox").await, outbox, "nothing emailed");
    // Another org's token cannot ask for corp's members.
    let (status, _) = api(
        &http,
        Method::POST,
        s.url("/api/v1/orgs/corp/migrations"),
        &w.other_token,
        Some(json!({"emails": ["ann@corp.test"]})),
    )
    .await;
    assert_eq!(status, 403);
    // One seat is used by max: one free. More accounts than free seats: one asked, the rest say why.
    let (status, body) = w
        .ask(
            json!({"emails": ["ann@corp.test", "bob@corp.test", "cid@corp.test", "ann@corp.test"]}),
        )
        .await;
    assert_eq!(status, 200);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "pending");
    assert_eq!(results[1]["error"], "no_free_seats");
    assert_eq!(results[2]["error"], "no_free_seats");
    assert_eq!(results[3]["error"], "pending_request");
    assert!(results[1]["message"].as_str().unwrap().contains("seat"));
    assert_eq!(s.count("migration_requests").await, 1);
    // Bad bodies.
    for bad in [
        json!({}),
        json!({"emails": []}),
        json!({"emails": ["a@corp.test"], "account_ids": []}),
    ] {
        let (status, body) = w.ask(bad).await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, _) = api(
        &http,
        Method::GET,
        s.url("/api/v1/orgs/corp/migrations?status=bogus"),
        &w.token,
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, list) = api(
        &http,
        Method::GET,
        s.url("/api/v1/orgs/corp/migrations?status=pending"),
        &w.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["counts"]["pending"], 1);
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);
    // Cancelling frees the seat for another member.
    let id = results[0]["id"].as_str().unwrap();
    let (status, _) = w
        .post(&format!("/api/v1/orgs/corp/migrations/{id}/cancel"))
        .await;
    assert_eq!(status, 200);
    let (status, again) = w
        .post(&format!("/api/v1/orgs/corp/migrations/{id}/cancel"))
        .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("not_pending"))
    );
    w.ask_one("bob@corp.test").await;
}
both!(
    only_eligible_members_within_free_seats_are_asked,
    eligibility
);

async fn bad_links(backend: Backend) {
    let w = world(backend, 5, &["ann", "bob", "cid", "dan"]).await;
    let s = &w.server;
    // Forged.
    let forged = s.url("/migration/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(s.client().get(&forged).send().await.unwrap().status(), 404);
    // Cancelled.
    let id = w.ask_one("ann@corp.test").await;
    assert!(s.audited("migration.requested").await);
    let link = w.link("ann@corp.test").await;
    w.post(&format!("/api/v1/orgs/corp/migrations/{id}/cancel"))
        .await;
    assert!(s.audited("migration.cancelled").await);
    let (status, body) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 410);
    assert!(body.contains("cancelled"), "{body}");
    w.assert_unchanged("ann@corp.test").await;
    // Superseded by a resend: the old link dies, the new one works.
    let id = w.ask_one("bob@corp.test").await;
    let old = w.link("bob@corp.test").await;
    let (status, _) = w
        .post(&format!("/api/v1/orgs/corp/migrations/{id}/resend"))
        .await;
    assert_eq!(status, 200);
    let new = w.link("bob@corp.test").await;
    assert_ne!(old, new);
    assert!(s.audited("migration.resent").await);
    let (status, body) = w.agree(&old, PASSWORD).await;
    assert_eq!(status, 404);
    assert!(body.contains("newest email"), "{body}");
    w.assert_unchanged("bob@corp.test").await;
    assert_eq!(s.client().get(&new).send().await.unwrap().status(), 200);
    // Another account's session sees a clear message and cannot act.
    let cid_id = w.ask_one("cid@corp.test").await;
    let cid_link = w.link("cid@corp.test").await;
    let dan = s.signed_in("dan@corp.test", PASSWORD).await;
    let page = dan.get(&cid_link).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("signed in as dan@corp.test")
    );
    let csrf = common::csrf_of(&dan, &s.url("/account")).await;
    for action in ["accept", "decline"] {
        let res = dan
            .post(format!("{cid_link}/{action}"))
            .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{action} by another account");
    }
    w.assert_unchanged("cid@corp.test").await;
    w.assert_unchanged("dan@corp.test").await;
    assert_eq!(w.status_of(&cid_id).await, "pending");
    // Expired: the job ends it and frees the seat; the link says so.
    s.state.clock.advance_ms(11 * 24 * 3600 * 1000);
    let summary = nulab_pass::migration::jobs::run_once(s.db(), s.state.clock.now_ms(), &s.base)
        .await
        .unwrap();
    assert!(summary.reminded >= 1, "{summary:?}");
    s.last_mail("cid@corp.test", "migration.reminder").await;
    assert!(s.audited("migration.reminded").await);
    s.state.clock.advance_ms(4 * 24 * 3600 * 1000);
    let summary = nulab_pass::migration::jobs::run_once(s.db(), s.state.clock.now_ms(), &s.base)
        .await
        .unwrap();
    assert!(summary.expired >= 2, "{summary:?}");
    assert_eq!(w.status_of(&cid_id).await, "expired");
    assert!(s.audited("migration.expired").await);
    let (status, body) = w.agree(&cid_link, PASSWORD).await;
    assert_eq!(status, 410);
    assert!(body.contains("expired"), "{body}");
    w.assert_unchanged("cid@corp.test").await;
    // Declined, then the link is used up; admins may ask again.
    let dan_id = w.ask_one("dan@corp.test").await;
    let dan_link = w.link("dan@corp.test").await;
    let browser = s.client();
    let res = post_form(&browser, &dan_link, &format!("{dan_link}/decline"), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(w.status_of(&dan_id).await, "declined");
    // The user gets a confirmation, the admins the outcome.
    assert!(
        s.last_mail("dan@corp.test", "migration.declined")
            .await
            .body_text
            .contains("Nothing changed")
    );
    let outcome = s
        .last_mail("admin@corp.test", "migration.admins_outcome")
        .await;
    assert!(
        outcome.subject.contains("dan@corp.test") && outcome.body_text.contains("declined"),
        "{}",
        outcome.body_text
    );
    let (status, _) = w.agree(&dan_link, PASSWORD).await;
    assert_eq!(status, 410, "a decided link is dead");
    w.assert_unchanged("dan@corp.test").await;
    w.ask_one("dan@corp.test").await;
}
both!(
    reused_expired_cancelled_superseded_forged_and_foreign_links_fail,
    bad_links
);

async fn wrong_password(backend: Backend) {
    let w = world(backend, 5, &["ann"]).await;
    let s = &w.server;
    let id = w.ask_one("ann@corp.test").await;
    let link = w.link("ann@corp.test").await;
    for _ in 0..5 {
        let (status, body) = w.agree(&link, "wrong password!").await;
        assert_eq!(status, 403);
        assert!(body.contains("password is wrong"));
    }
    // Now even the right password is refused until the window ends.
    let (status, body) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 429, "{body}");
    w.assert_unchanged("ann@corp.test").await;
    assert_eq!(w.status_of(&id).await, "pending");
    s.state.clock.advance_ms(16 * 60 * 1000);
    let (status, _) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(w.account("ann@corp.test").await.kind, AccountKind::Managed);
}
both!(wrong_passwords_are_refused_and_rate_limited, wrong_password);

/// The consent page's password counts towards the account's sign-in limit, and the account's
/// pause holds on the consent page too (429 with `Retry-After`, nothing changed).
async fn consent_limits(backend: Backend) {
    let w = world(backend, 5, &["ann"]).await;
    let s = &w.server;
    let id = w.ask_one("ann@corp.test").await;
    let link = w.link("ann@corp.test").await;
    let signin = s.url("/signin");
    let sign_in = |password: &'static str| {
        let (s, signin) = (s, signin.clone());
        async move {
            let fields = [("email", "ann@corp.test"), ("password", password)];
            post_form(&s.client(), &signin, &signin, &fields)
                .await
                .status()
                .as_u16()
        }
    };
    for _ in 0..4 {
        assert_eq!(w.agree(&link, "wrong password!").await.0, 403);
    }
    for _ in 0..6 {
        assert_eq!(sign_in("wrong password!").await, 401);
    }
    // Ten wrong passwords in all: the next attempt starts the pause.
    assert_eq!(sign_in(PASSWORD).await, 429);
    assert!(s.audited("account.sign_in_paused").await);
    let browser = s.client();
    let res = post_form(
        &browser,
        &signin,
        &format!("{link}/accept"),
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 429);
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((898..=900).contains(&retry), "{retry}");
    w.assert_unchanged("ann@corp.test").await;
    assert_eq!(w.status_of(&id).await, "pending");
    s.state.clock.advance_ms(15 * 60 * 1000 + 1000);
    assert_eq!(w.agree(&link, PASSWORD).await.0, 200);
    assert_eq!(w.account("ann@corp.test").await.kind, AccountKind::Managed);
}
both!(
    the_consent_password_counts_towards_the_sign_in_limit,
    consent_limits
);

async fn races(backend: Backend) {
    let w = world(backend, 10, &["ann", "bob", "cid", "dan", "eli"]).await;
    let s = &w.server;
    // Two parallel acceptances: exactly one migration.
    w.ask_one("ann@corp.test").await;
    let link = w.link("ann@corp.test").await;
    let (a, b) = tokio::join!(w.agree(&link, PASSWORD), w.agree(&link, PASSWORD));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 410], "exactly one acceptance wins");
    let accepted = nulab_pass::audit::store::recent(s.db().pool(), None, 50)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "migration.accepted")
        .count();
    assert_eq!(accepted, 1);
    assert_eq!(
        nulab_pass::orgs::seats::used(s.db().pool(), w.org.id)
            .await
            .unwrap(),
        1
    );
    // Cancel while the user accepts: one of them wins, never both.
    let id = w.ask_one("bob@corp.test").await;
    let link = w.link("bob@corp.test").await;
    let cancel_path = format!("/api/v1/orgs/corp/migrations/{id}/cancel");
    let (accept, cancel) = tokio::join!(w.agree(&link, PASSWORD), w.post(&cancel_path));
    let bob = w.account("bob@corp.test").await;
    match (accept.0, cancel.0) {
        (200, 409) => assert_eq!(bob.kind, AccountKind::Managed),
        (410, 200) => assert_eq!(bob.kind, AccountKind::Nulab),
        other => panic!("both or neither won: {other:?}"),
    }
    // The domain lapses between request and consent.
    let cid_id = w.ask_one("cid@corp.test").await;
    let cid_link = w.link("cid@corp.test").await;
    sqlx::query("UPDATE domains SET status = 'lapsed' WHERE domain = 'corp.test'")
        .execute(s.db().pool())
        .await
        .unwrap();
    let (status, body) = w.agree(&cid_link, PASSWORD).await;
    assert_eq!(status, 409);
    assert!(body.contains("not a verified domain"), "{body}");
    w.assert_unchanged_kind("cid@corp.test").await;
    let row = w.request(&cid_id).await;
    assert_eq!(row["status"], "pending");
    assert_eq!(
        row["failure"], "domain_not_verified",
        "the request shows why"
    );
    sqlx::query("UPDATE domains SET status = 'verified' WHERE domain = 'corp.test'")
        .execute(s.db().pool())
        .await
        .unwrap();
    // The member is removed in between.
    w.ask_one("dan@corp.test").await;
    let dan_link = w.link("dan@corp.test").await;
    let dan = w.account("dan@corp.test").await;
    let (status, _) = api(
        &s.client(),
        Method::DELETE,
        s.url(&format!("/api/v1/orgs/corp/members/{}", dan.id)),
        &w.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = w.agree(&dan_link, PASSWORD).await;
    assert_eq!(status, 409);
    assert!(body.contains("not a member"), "{body}");
    w.assert_unchanged_kind("dan@corp.test").await;
    // Over seats in between (the seats no longer cover pending requests, as after a legacy
    // import; no admin can reduce below them): no seat for eli.
    w.ask_one("eli@corp.test").await;
    let eli_link = w.link("eli@corp.test").await;
    let used = nulab_pass::orgs::seats::used(s.db().pool(), w.org.id)
        .await
        .unwrap();
    sqlx::query("UPDATE orgs SET seats = $1 WHERE id = $2")
        .bind(used)
        .bind(w.org.id.to_string())
        .execute(s.db().pool())
        .await
        .unwrap();
    let (status, body) = w.agree(&eli_link, PASSWORD).await;
    assert_eq!(status, 409);
    assert!(body.contains("seat"), "{body}");
    w.assert_unchanged_kind("eli@corp.test").await;
    assert_eq!(
        nulab_pass::orgs::seats::used(s.db().pool(), w.org.id)
            .await
            .unwrap(),
        used
    );
    s.assert_seats_counted().await;
}
both!(
    races_and_changed_preconditions_migrate_once_or_not_at_all,
    races
);

impl World {
    async fn assert_unchanged_kind(&self, email: &str) {
        let account = self.account(email).await;
        assert_eq!(
            account.kind,
            AccountKind::Nulab,
            "{email} must still be a Nulab account"
        );
        assert_eq!(account.org_id, None);
    }
}

async fn admin_page(backend: Backend) {
    let w = world(backend, 5, &["ann", "bob"]).await;
    let s = &w.server;
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let page = admin
        .get(s.url("/admin/corp/migrations"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("ann@corp.test") && html.contains("Migrations"));
    let ann = w.account("ann@corp.test").await;
    let page_url = s.url("/admin/corp/migrations");
    let res = post_form(
        &admin,
        &page_url,
        &page_url,
        &[("step", "preview"), ("account_id", &ann.id.to_string())],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("nothing has been sent yet") && html.contains("will be asked"),
        "{html}"
    );
    assert_eq!(
        s.count("migration_requests").await,
        0,
        "a preview sends nothing"
    );
    let res = post_form(
        &admin,
        &page_url,
        &page_url,
        &[("step", "send"), ("emails", "ann@corp.test, bob@corp.test")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(s.count("migration_requests").await, 2);
    let csv = admin
        .get(s.url("/admin/corp/migrations.csv?status=pending"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("id,account_id,email,status") && csv.contains("\"ann@corp.test\""),
        "{csv}"
    );
    // A member who is not an admin cannot open it.
    let bob = s.signed_in("bob@corp.test", PASSWORD).await;
    assert_eq!(
        bob.get(s.url("/admin/corp/migrations"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}
both!(the_admin_page_previews_sends_and_exports, admin_page);

async fn policy_after_migration(backend: Backend) {
    let w = world(backend, 5, &[]).await;
    let s = &w.server;
    // corp asks for 24 characters: ann's password is too short, bob's is long enough.
    const LONG: &str = "a rather longer passphrase of bob";
    w.member("ann", PASSWORD).await;
    w.member("bob", LONG).await;
    let (status, body) = api(
        &s.client(),
        Method::PUT,
        s.url("/api/v1/orgs/corp/password-policy"),
        &w.token,
        Some(json!({"min_length": 24, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (name, password) in [("ann", PASSWORD), ("bob", LONG)] {
        let email = format!("{name}@corp.test");
        w.ask_one(&email).await;
        let (status, body) = w.agree(&w.link(&email).await, password).await;
        assert_eq!(status, 200, "{body}");
    }
    let ann = w.account("ann@corp.test").await;
    let bob = w.account("bob@corp.test").await;
    assert_eq!(
        (ann.kind, ann.must_change_password),
        (AccountKind::Managed, true),
        "a password the org's policy refuses must be changed at the next sign-in"
    );
    assert_eq!(
        (bob.kind, bob.must_change_password),
        (AccountKind::Managed, false),
        "a password within the policy stays until the next change"
    );
    // Signing in shows it: ann goes to the password change page, bob to the account.
    for (email, password, to) in [
        ("ann@corp.test", PASSWORD, "/account/password"),
        ("bob@corp.test", LONG, "/account"),
    ] {
        let browser = s.client();
        let res = post_form(
            &browser,
            &s.url("/signin"),
            &s.url("/signin"),
            &[
                ("email", email),
                ("password", password),
                ("next", "/account"),
            ],
        )
        .await;
        assert_eq!(res.status(), 303, "{email} signs in");
        assert_eq!(res.headers()["location"], to, "{email}");
    }
}
both!(
    the_org_password_policy_applies_at_once_only_to_a_password_it_refuses,
    policy_after_migration
);

async fn second_factor(backend: Backend) {
    let w = world(backend, 5, &["ann"]).await;
    let s = &w.server;
    let secret = s.enroll_totp("ann@corp.test").await;
    let id = w.ask_one("ann@corp.test").await;
    let link = w.link("ann@corp.test").await;
    let page = s
        .client()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"code\""), "the page asks for the code");
    let now = s.state.clock.now_ms();
    let stale = nulab_pass::accounts::totp::code_at(&secret, now - 10 * 60 * 1000).unwrap();
    let current = s.totp_code(&secret);
    // Each refusal says why and changes nothing.
    for (fields, expected) in [
        (
            vec![("password", PASSWORD)],
            "code from your authenticator app as well",
        ),
        (
            vec![("password", PASSWORD), ("code", stale.as_str())],
            "wrong or was already used",
        ),
        (
            vec![("password", "wrong password!"), ("code", current.as_str())],
            "password is wrong",
        ),
    ] {
        let (status, body) = w.agree_with(&link, &fields).await;
        assert_eq!(status, 403, "{expected}");
        assert!(body.contains(expected), "{expected}: {body}");
        w.assert_unchanged_kind("ann@corp.test").await;
        assert_eq!(w.request(&id).await["status"], "pending");
    }
    // A wrong password did not spend the code; a code used elsewhere (here by a sign-in) is
    // refused on the page.
    let account = w.account("ann@corp.test").await;
    let mut tx = s.db().begin().await.unwrap();
    assert!(
        nulab_pass::sign_in::second_factor::use_code(
            &mut tx,
            &s.state.totp_key,
            account.id,
            &current,
            now,
        )
        .await
        .unwrap(),
        "the wrong password left the code unspent"
    );
    tx.commit().await.unwrap();
    let (status, body) = w
        .agree_with(&link, &[("password", PASSWORD), ("code", current.as_str())])
        .await;
    assert_eq!(status, 403);
    assert!(body.contains("already used"), "{body}");
    w.assert_unchanged_kind("ann@corp.test").await;
    let failed = nulab_pass::audit::store::recent(s.db().pool(), None, 20)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "migration.failed" && e.details["reason"] == "wrong_second_factor")
        .count();
    assert_eq!(failed, 2, "wrong codes are audited");
    // The next code, with the password, migrates.
    s.state.clock.advance_ms(30 * 1000);
    let next = s.totp_code(&secret);
    let (status, body) = w
        .agree_with(&link, &[("password", PASSWORD), ("code", next.as_str())])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.account("ann@corp.test").await.kind, AccountKind::Managed);
}
both!(
    an_account_with_a_second_factor_agrees_with_password_and_code,
    second_factor
);

async fn list_pages(backend: Backend) {
    let w = world(backend, 5, &["ann", "bob", "cid"]).await;
    let s = &w.server;
    let mut asked = Vec::new();
    for name in ["ann", "bob", "cid"] {
        asked.push(w.ask_one(&format!("{name}@corp.test")).await);
        // Distinct request times, so the order is the order of asking.
        s.state.clock.advance_ms(1000);
    }
    let token = &w.token;
    let get = |query: String| async move {
        api(
            &s.client(),
            Method::GET,
            s.url(&format!("/api/v1/orgs/corp/migrations{query}")),
            token,
            None,
        )
        .await
    };
    // Newest first, two a page, then the rest; the counts cover every request.
    let (status, first) = get("?limit=2".to_string()).await;
    assert_eq!(status, 200, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), [asked[2].clone(), asked[1].clone()]);
    assert_eq!(first["counts"]["pending"], 3);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (status, second) = get(format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&second), [asked[0].clone()]);
    assert!(second["next_cursor"].is_null(), "the last page");
    // Bad paging is refused with the reason.
    for query in [
        "?limit=0",
        "?limit=501",
        "?cursor=not-a-cursor",
        "?limit=two",
    ] {
        let (status, body) = get(query.to_string()).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
}
both!(the_request_list_pages_by_cursor, list_pages);

/// Migrating ends the account's memberships of other organizations, and with them the API
/// tokens it created there as an admin (only those, each with an event).
async fn tokens_of_migrated_admin(backend: Backend) {
    let w = world(backend, 5, &["sam"]).await;
    let s = &w.server;
    let other = nulab_pass::orgs::store::by_slug(s.db().pool(), "other")
        .await
        .unwrap()
        .unwrap();
    s.add_member(&other, "sam@corp.test", "admin").await;
    let browser = s.signed_in("sam@corp.test", PASSWORD).await;
    let sams = s.admin_token(&browser, "other", &["read"]).await;
    let members = |token: String| {
        let client = s.client();
        let url = s.url("/api/v1/orgs/other/members");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(members(sams.clone()).await, 200);

    w.ask_one("sam@corp.test").await;
    let link = w.link("sam@corp.test").await;
    let (status, page) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 200, "{page}");

    assert_eq!(
        members(sams).await,
        401,
        "sam's token died with the membership"
    );
    assert_eq!(
        members(w.other_token.clone()).await,
        200,
        "the operator's lives"
    );
    assert_eq!(
        s.rows("SELECT revoked_reason FROM api_tokens WHERE revoked_at IS NOT NULL")
            .await,
        ["creator_migrated"]
    );
    let events = s
        .rows("SELECT details FROM audit_events WHERE action = 'api_token.revoked'")
        .await;
    assert_eq!(events.len(), 1);
    assert!(events[0].contains("creator_migrated"), "{}", events[0]);
}
both!(
    migration_revokes_the_tokens_the_account_made_elsewhere,
    tokens_of_migrated_admin
);
