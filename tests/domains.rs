//! Domain verification end to end: the real server (API with a bearer token, pages with CSRF)
//! resolving through a real DNS server on loopback that each test controls, on SQLite and
//! PostgreSQL. The re-verification job runs through `recheck_all` with a moved clock.

mod common;
#[path = "common/dns.rs"]
mod dns;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, csrf_of};
use dns::{DnsServer, Mode};
use nulab_pass::clock::DAY_MS;
use nulab_pass::domains::{self, DomainSettings, RecheckSummary, TxtLookup};
use nulab_pass::orgs::{AdminScope, Org};
use reqwest::Method;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
/// Generous: a loaded CI machine must not turn a slow answer into a "timed out" result.
const TIMEOUT_MS: u64 = 2000;

/// A server resolving through its own DNS server, an org `acme` with an admin and an API token.
struct World {
    server: TestServer,
    dns: DnsServer,
    org: Org,
    token: String,
    http: reqwest::Client,
}

impl World {
    async fn new(backend: Backend) -> World {
        let dns = DnsServer::start(&["test", "provider.example"]).await;
        let servers = dns.servers();
        let server = TestServer::start_with(backend, move |config| {
            config.dns_servers = servers;
            config.dns_timeout_ms = TIMEOUT_MS;
        })
        .await;
        let admin = server.account("ada@acme.example", "Ada", PASSWORD).await;
        let org = server.org("acme", &admin).await;
        let token = token_for(&server, &org).await;
        World {
            server,
            dns,
            org,
            token,
            http: reqwest::Client::new(),
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        api_as(&self.server, &self.http, &self.token, method, path, body).await
    }

    /// Adds `domain` to acme through the API and returns the domain object.
    async fn add(&self, domain: &str) -> Value {
        let (status, body) = self
            .api(
                Method::POST,
                "/api/v1/orgs/acme/domains",
                Some(json!({ "domain": domain })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn verify(&self, domain: &Value) -> (u16, Value) {
        let path = format!(
            "/api/v1/orgs/acme/domains/{}/verify",
            domain["id"].as_str().unwrap()
        );
        self.api(Method::POST, &path, None).await
    }

    async fn get(&self, domain: &Value) -> Value {
        let path = format!(
            "/api/v1/orgs/acme/domains/{}",
            domain["id"].as_str().unwrap()
        );
        let (status, body) = self.api(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Publishes the domain's own record.
    async fn publish(&self, domain: &Value) {
        let name = domain["txt_name"].as_str().unwrap();
        self.dns
            .add_txt(name, &[domain["txt_value"].as_str().unwrap()])
            .await;
    }

    /// Moves the clock and runs the re-verification job once.
    async fn recheck_after(&self, ms: i64) -> RecheckSummary {
        self.server.state.clock.advance_ms(ms);
        let lookup =
            TxtLookup::new(&self.dns.servers(), Duration::from_millis(TIMEOUT_MS)).unwrap();
        domains::recheck_all(
            self.server.db(),
            &lookup,
            self.server.state.clock.now_ms(),
            &DomainSettings::from_config(&self.server.state.config),
            &self.server.base,
        )
        .await
        .expect("recheck")
    }

    async fn verified_for(&self, org: &Org, email_domain: &str) -> bool {
        let mut tx = self.server.db().begin().await.unwrap();
        let answer = domains::is_email_domain_verified(&mut tx, org.id, email_domain)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        answer
    }

    async fn outbox_kinds(&self, kind: &str) -> Vec<String> {
        nulab_pass::mail::store::recent(self.server.db().pool(), 200)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.to_addr)
            .collect()
    }

    async fn count_action(&self, action: &str) -> usize {
        self.server
            .audit_actions(500)
            .await
            .iter()
            .filter(|a| *a == action)
            .count()
    }
}

async fn token_for(server: &TestServer, org: &Org) -> String {
    let scope = AdminScope::operator(org.clone());
    let mut tx = server.db().begin().await.unwrap();
    let (_, secret) =
        nulab_pass::api_tokens::create(&mut tx, server.state.clock.now_ms(), &scope, "tests")
            .await
            .unwrap();
    tx.commit().await.unwrap();
    secret
}

async fn api_as(
    server: &TestServer,
    http: &reqwest::Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

async fn record_present_verifies(backend: Backend) {
    let w = World::new(backend).await;
    let added = w.add("Corp.Test.").await;
    assert_eq!(added["domain"], "corp.test");
    assert_eq!(added["status"], "pending");
    assert_eq!(added["txt_name"], "corp.test");
    let value = added["txt_value"].as_str().unwrap();
    let token = value
        .strip_prefix("nulab-pass-verification=")
        .expect("record text");
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(added["created_at"].as_i64().unwrap() > 0);
    assert!(added["verified_at"].is_null() && added["last_checked_at"].is_null());
    assert!(added["expires_at"].as_i64().unwrap() > added["created_at"].as_i64().unwrap());
    assert!(!w.verified_for(&w.org, "corp.test").await);

    w.publish(&added).await;
    let (status, verified) = w.verify(&added).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["last_check_result"], "found");
    assert!(verified["verified_at"].as_i64().is_some());
    assert!(verified["last_checked_at"].as_i64().is_some());
    let (_, list) = w.api(Method::GET, "/api/v1/orgs/acme/domains", None).await;
    assert_eq!(list["items"][0]["status"], "verified");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // The one function the rest of the service calls.
    assert!(w.verified_for(&w.org, "corp.test").await);
    assert!(w.verified_for(&w.org, "CORP.TEST.").await);
    assert!(!w.verified_for(&w.org, "other.test").await);
    let bob = w.server.account("bob@acme.example", "Bob", PASSWORD).await;
    let other = w.server.org("other", &bob).await;
    assert!(!w.verified_for(&other, "corp.test").await);

    // An internationalised name is stored as punycode and verified at that name.
    let idn = w.add("Bücher.test").await;
    assert_eq!(idn["domain"], "xn--bcher-kva.test");
    assert_eq!(idn["txt_name"], "xn--bcher-kva.test");
    w.publish(&idn).await;
    assert_eq!(w.verify(&idn).await.1["status"], "verified");

    // The API document lists the operations.
    let openapi = w
        .http
        .get(w.server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let openapi = openapi.text().await.unwrap();
    for path in [
        "/api/v1/orgs/{org}/domains",
        "/api/v1/orgs/{org}/domains/{id}",
        "/api/v1/orgs/{org}/domains/{id}/verify",
        "/api/v1/orgs/{org}/domains/{id}/retry",
    ] {
        assert!(
            openapi.contains(&format!("\"{path}\"")),
            "{path} in the OpenAPI document"
        );
    }

    let actions = w.server.audit_actions(10).await;
    for expected in ["domain.added", "domain.verified"] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
}
both!(
    a_published_record_verifies_the_domain,
    record_present_verifies
);

async fn absent_or_wrong_records(backend: Backend) {
    let w = World::new(backend).await;
    let domain = w.add("corp.test").await;
    let failures_before = w.count_action("domain.verification_failed").await;

    // Nothing at the name at all (NXDOMAIN).
    let (status, body) = w.verify(&domain).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["last_check_result"], "no_records");
    assert_eq!(body["last_check_message"], "no TXT records found");
    assert!(body["verified_at"].is_null());

    // One record with another token.
    let wrong = "nulab-pass-verification=not-the-token";
    w.dns.add_txt("corp.test", &[wrong]).await;
    let body = w.verify(&domain).await.1;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["last_check_result"], "no_match");
    assert_eq!(
        body["last_check_message"],
        "found 1 TXT record, it does not match"
    );

    // The token as a prefix of a longer value, and another record: still no match.
    let longer = format!("{}x", domain["txt_value"].as_str().unwrap());
    w.dns.add_txt("corp.test", &[&longer]).await;
    let body = w.verify(&domain).await.1;
    assert_eq!(
        body["last_check_message"],
        "found 2 TXT records, none matches"
    );
    assert_eq!(body["status"], "pending");
    assert!(!w.verified_for(&w.org, "corp.test").await);
    assert_eq!(
        w.count_action("domain.verification_failed").await,
        failures_before + 3
    );
}
both!(
    absent_and_wrong_records_leave_the_domain_pending,
    absent_or_wrong_records
);

async fn multi_string_and_several_records(backend: Backend) {
    let w = World::new(backend).await;
    // One record split into several strings, cut inside the token.
    let split = w.add("split.test").await;
    let value = split["txt_value"].as_str().unwrap();
    w.dns
        .add_txt("split.test", &[&value[..10], &value[10..30], &value[30..]])
        .await;
    assert_eq!(w.verify(&split).await.1["status"], "verified");

    // Several TXT records at the name, ours with spaces around it.
    let several = w.add("several.test").await;
    w.dns
        .add_txt("several.test", &["v=spf1 include:_spf.example -all"])
        .await;
    w.dns
        .add_txt("several.test", &["google-site-verification=abc123"])
        .await;
    let padded = format!("  {}  ", several["txt_value"].as_str().unwrap());
    w.dns.add_txt("several.test", &[&padded]).await;
    let body = w.verify(&several).await.1;
    assert_eq!(body["status"], "verified", "{body}");
    assert_eq!(body["last_check_result"], "found");
}
both!(
    multi_string_and_several_records_verify,
    multi_string_and_several_records
);

async fn cname_chain(backend: Backend) {
    let w = World::new(backend).await;
    let domain = w.add("alias.test").await;
    // alias.test → a.provider.example → b.provider.example, which holds the record.
    w.dns.set_cname("alias.test", "a.provider.example").await;
    w.dns
        .set_cname("a.provider.example", "b.provider.example")
        .await;
    w.dns
        .add_txt(
            "b.provider.example",
            &[domain["txt_value"].as_str().unwrap()],
        )
        .await;
    let body = w.verify(&domain).await.1;
    assert_eq!(body["status"], "verified", "{body}");
}
both!(a_cname_chain_is_followed, cname_chain);

async fn dns_failures(backend: Backend) {
    let w = World::new(backend).await;
    let domain = w.add("corp.test").await;
    w.publish(&domain).await;

    w.dns.set_mode(Mode::ServFail);
    let body = w.verify(&domain).await.1;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["last_check_result"], "servfail");
    assert_eq!(body["last_check_message"], "DNS server failure (SERVFAIL)");

    w.dns.set_mode(Mode::Silent);
    let started = Instant::now();
    let body = w.verify(&domain).await.1;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["last_check_result"], "timeout");
    assert_eq!(body["last_check_message"], "lookup timed out");
    assert!(
        started.elapsed() < Duration::from_millis(TIMEOUT_MS * 5),
        "the lookup is bounded by NULAB_PASS_DNS_TIMEOUT_MS"
    );
    let events = nulab_pass::audit::store::recent(w.server.db().pool(), None, 5)
        .await
        .unwrap();
    let failed = events
        .iter()
        .find(|e| e.action == "domain.verification_failed")
        .unwrap();
    assert_eq!(failed.details["reason"], "timeout");

    w.dns.set_mode(Mode::Answer);
    assert_eq!(w.verify(&domain).await.1["status"], "verified");
}
both!(servfail_and_timeout_are_failures_not_absence, dns_failures);

async fn grace_lapse_restore(backend: Backend) {
    let w = World::new(backend).await;
    let bob = w.server.account("bob@acme.example", "Bob", PASSWORD).await;
    let scope = AdminScope::operator(w.org.clone());
    let mut tx = w.server.db().begin().await.unwrap();
    nulab_pass::orgs::add_member(
        &mut tx,
        0,
        &scope,
        &bob.email,
        nulab_pass::orgs::Role::Admin,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let domain = w.add("corp.test").await;
    w.publish(&domain).await;
    assert_eq!(w.verify(&domain).await.1["status"], "verified");

    // Still there a day later: nothing changes.
    w.recheck_after(DAY_MS + 1000).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "verified");
    assert!(body["record_missing_since"].is_null());

    // A DNS failure while the record is there starts nothing.
    w.dns.clear("corp.test").await;
    w.dns.set_mode(Mode::ServFail);
    w.recheck_after(DAY_MS).await;
    let body = w.get(&domain).await;
    assert_eq!(body["last_check_result"], "servfail");
    assert!(
        body["record_missing_since"].is_null(),
        "failure is not absence"
    );
    assert!(w.outbox_kinds("domain.record_missing").await.is_empty());

    // The record is gone: admins are warned once and the grace period starts.
    w.dns.set_mode(Mode::Answer);
    w.recheck_after(DAY_MS).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "verified");
    let since = body["record_missing_since"]
        .as_i64()
        .expect("grace started");
    assert_eq!(body["lapses_at"].as_i64().unwrap(), since + 7 * DAY_MS);
    let mut warned = w.outbox_kinds("domain.record_missing").await;
    warned.sort();
    assert_eq!(warned, ["ada@acme.example", "bob@acme.example"]);
    assert_eq!(w.count_action("domain.record_missing").await, 1);
    assert!(
        w.verified_for(&w.org, "corp.test").await,
        "verified during grace"
    );

    w.recheck_after(DAY_MS).await;
    assert_eq!(
        w.outbox_kinds("domain.record_missing").await.len(),
        2,
        "warned once"
    );
    assert_eq!(w.count_action("domain.record_missing").await, 1);

    // Past the grace period, but the server fails: no lapse.
    w.dns.set_mode(Mode::ServFail);
    w.recheck_after(7 * DAY_MS).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "verified");
    assert_eq!(body["record_missing_since"].as_i64(), Some(since));
    assert_eq!(w.count_action("domain.lapsed").await, 0);

    // The server answers that the record is still gone: lapsed, admins told.
    w.dns.set_mode(Mode::Answer);
    w.recheck_after(16 * 60 * 1000).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "lapsed");
    assert!(body["record_missing_since"].is_null());
    assert_eq!(w.outbox_kinds("domain.lapsed").await.len(), 2);
    assert_eq!(w.count_action("domain.lapsed").await, 1);
    assert!(!w.verified_for(&w.org, "corp.test").await);

    // Restored: verified again at the next check.
    w.publish(&domain).await;
    w.recheck_after(DAY_MS).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "verified");
    assert!(w.verified_for(&w.org, "corp.test").await);
    let events = nulab_pass::audit::store::recent(w.server.db().pool(), None, 3)
        .await
        .unwrap();
    assert_eq!(events[0].action, "domain.verified");
    assert_eq!(events[0].details["again"], true);
    assert_eq!(events[0].actor_type, "system");

    // Missing, then back within the grace period: the grace period ends, no lapse.
    w.dns.clear("corp.test").await;
    w.recheck_after(DAY_MS).await;
    assert!(w.get(&domain).await["record_missing_since"].is_i64());
    w.publish(&domain).await;
    w.recheck_after(DAY_MS).await;
    let body = w.get(&domain).await;
    assert_eq!(body["status"], "verified");
    assert!(body["record_missing_since"].is_null());
    assert_eq!(w.count_action("domain.record_restored").await, 1);
}
both!(
    missing_record_grace_then_lapse_then_restore,
    grace_lapse_restore
);

async fn pending_expiry(backend: Backend) {
    let w = World::new(backend).await;
    let stale = w.add("stale.test").await;
    // A pending domain whose record appears is verified by the job, without a click.
    let quiet = w.add("quiet.test").await;
    w.publish(&quiet).await;
    w.recheck_after(DAY_MS).await;
    assert_eq!(w.get(&quiet).await["status"], "verified");
    assert_eq!(w.get(&stale).await["status"], "pending");

    w.recheck_after(29 * DAY_MS).await;
    let body = w.get(&stale).await;
    assert_eq!(body["status"], "expired");
    assert_eq!(w.count_action("domain.expired").await, 1);

    // Expired: "verify" is refused and changes nothing; retry issues a new token.
    let audit_before = w.server.count("audit_events").await;
    let (status, err) = w.verify(&stale).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("domain_expired"))
    );
    assert_eq!(w.get(&stale).await["status"], "expired");
    assert_eq!(w.server.count("audit_events").await, audit_before);

    let retry = |d: &Value| {
        format!(
            "/api/v1/orgs/acme/domains/{}/retry",
            d["id"].as_str().unwrap()
        )
    };
    let (status, err) = w.api(Method::POST, &retry(&quiet), None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("domain_not_expired"))
    );
    let (status, renewed) = w.api(Method::POST, &retry(&stale), None).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["status"], "pending");
    assert_ne!(renewed["txt_value"], stale["txt_value"]);
    assert_eq!(renewed["id"], stale["id"]);
    assert_eq!(w.count_action("domain.token_renewed").await, 1);

    // The old record no longer counts; the new one does.
    w.publish(&stale).await;
    assert_eq!(w.verify(&renewed).await.1["status"], "pending");
    w.publish(&renewed).await;
    assert_eq!(w.verify(&renewed).await.1["status"], "verified");
}
both!(pending_domains_expire_and_can_be_retried, pending_expiry);

async fn bad_input(backend: Backend) {
    let w = World::new(backend).await;
    w.add("corp.test").await;
    let domains_before = w.server.count("domains").await;
    let audit_before = w.server.count("audit_events").await;
    for (input, status, code, fragment) in [
        (
            "not a domain",
            400,
            "invalid_domain",
            "not a valid domain name",
        ),
        (
            "localhost",
            400,
            "invalid_domain",
            "not a valid domain name",
        ),
        (
            "-corp.test",
            400,
            "invalid_domain",
            "not a valid domain name",
        ),
        (
            "corp..test",
            400,
            "invalid_domain",
            "not a valid domain name",
        ),
        ("", 400, "invalid_domain", "not a valid domain name"),
        ("192.0.2.10", 400, "ip_address", "is an IP address"),
        ("[2001:db8::1]", 400, "ip_address", "is an IP address"),
        (
            "https://corp.test",
            400,
            "not_a_domain",
            "leave out https://",
        ),
        ("corp.test/login", 400, "not_a_domain", "leave out https://"),
        ("corp.test:8443", 400, "not_a_domain", "leave out https://"),
        (
            "ada@corp.test",
            400,
            "email_not_domain",
            "only the part after @",
        ),
        ("gmail.com", 400, "public_mail_domain", "public mail domain"),
        (
            "Outlook.COM.",
            400,
            "public_mail_domain",
            "public mail domain",
        ),
        (
            "yahoo.co.jp",
            400,
            "public_mail_domain",
            "public mail domain",
        ),
        (
            "CORP.test.",
            409,
            "domain_exists",
            "already on this organization",
        ),
    ] {
        let (got, body) = w
            .api(
                Method::POST,
                "/api/v1/orgs/acme/domains",
                Some(json!({ "domain": input })),
            )
            .await;
        assert_eq!(got, status, "{input:?}: {body}");
        assert_eq!(body["error"], code, "{input:?}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{input:?}: {message}");
    }
    let (got, body) = w
        .api(
            Method::POST,
            "/api/v1/orgs/acme/domains",
            Some(json!({ "name": "x.test" })),
        )
        .await;
    assert_eq!((got, body["error"].as_str()), (400, Some("invalid_body")));
    assert_eq!(w.server.count("domains").await, domains_before);
    assert_eq!(w.server.count("audit_events").await, audit_before);
}
both!(bad_domains_are_refused_and_change_nothing, bad_input);

async fn held_by_another_org(backend: Backend) {
    let w = World::new(backend).await;
    let bob = w.server.account("bob@beta.example", "Bob", PASSWORD).await;
    let beta = w.server.org("beta", &bob).await;
    let beta_token = token_for(&w.server, &beta).await;
    let beta_api = |method: Method, path: String, body: Option<Value>| {
        let (server, http, token) = (&w.server, &w.http, beta_token.clone());
        async move { api_as(server, http, &token, method, &path, body).await }
    };

    // Both add shared.test before either verifies; both publish their records.
    let ours = w.add("shared.test").await;
    let (status, theirs) = beta_api(
        Method::POST,
        "/api/v1/orgs/beta/domains".into(),
        Some(json!({ "domain": "shared.test" })),
    )
    .await;
    assert_eq!(status, 201);
    w.publish(&ours).await;
    w.publish(&theirs).await;
    assert_eq!(w.verify(&ours).await.1["status"], "verified");

    // beta's verification is refused without naming acme, and changes nothing.
    let domains_before = w.server.count("domains").await;
    let audit_before = w.server.count("audit_events").await;
    let verify_theirs = format!(
        "/api/v1/orgs/beta/domains/{}/verify",
        theirs["id"].as_str().unwrap()
    );
    let (status, err) = beta_api(Method::POST, verify_theirs.clone(), None).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "domain_verified_elsewhere");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("shared.test") && message.contains("another organization"));
    assert!(
        !message.contains("acme") && !message.contains("ada@"),
        "{message}"
    );
    let path = format!(
        "/api/v1/orgs/beta/domains/{}",
        theirs["id"].as_str().unwrap()
    );
    let (_, after) = beta_api(Method::GET, path, None).await;
    assert_eq!(after["status"], "pending");
    assert!(after["last_checked_at"].is_null());

    // Adding it anew is refused too; nothing changed.
    let (status, err) = beta_api(
        Method::POST,
        "/api/v1/orgs/beta/domains".into(),
        Some(json!({ "domain": "Shared.Test" })),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("domain_verified_elsewhere"))
    );
    assert_eq!(w.server.count("domains").await, domains_before);
    assert_eq!(w.server.count("audit_events").await, audit_before);

    // The job leaves beta's domain pending and says why.
    w.recheck_after(DAY_MS).await;
    let path = format!(
        "/api/v1/orgs/beta/domains/{}",
        theirs["id"].as_str().unwrap()
    );
    let (_, after) = beta_api(Method::GET, path, None).await;
    assert_eq!(after["status"], "pending");
    assert_eq!(after["last_check_result"], "verified_elsewhere");
    assert!(w.verified_for(&w.org, "shared.test").await);
    assert!(!w.verified_for(&beta, "shared.test").await);

    // The database refuses a second verified row whatever the code does.
    let err = sqlx::query("UPDATE domains SET status = 'verified' WHERE id = $1")
        .bind(theirs["id"].as_str().unwrap().to_string())
        .execute(w.server.db().pool())
        .await
        .expect_err("second verified row");
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
}
both!(
    a_domain_verified_by_another_org_is_refused,
    held_by_another_org
);

/// Inserts an account row directly (managed-account creation is a later feature).
async fn insert_account(
    w: &World,
    email: &str,
    kind: &str,
    org: Option<&Org>,
    status: &str,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, password_hash, \
         email_verified_at, created_at, updated_at) VALUES ($1, $2, $3, 'Someone', $4, $5, $6, NULL, 0, 0, 0)",
    )
    .bind(id.clone())
    .bind(email.to_string())
    .bind(email.to_lowercase())
    .bind(kind.to_string())
    .bind(org.map(|o| o.id.to_string()))
    .bind(status.to_string())
    .execute(w.server.db().pool())
    .await
    .unwrap();
    id
}

async fn removal(backend: Backend) {
    let w = World::new(backend).await;
    let bob = w.server.account("bob@beta.example", "Bob", PASSWORD).await;
    let beta = w.server.org("beta", &bob).await;
    let domain = w.add("corp.test").await;
    w.publish(&domain).await;
    w.verify(&domain).await;
    let managed = insert_account(&w, "Carol@Corp.Test", "managed", Some(&w.org), "active").await;
    // None of these count: a Nulab account, another org's managed account, a deleted one,
    // and an address on a subdomain.
    insert_account(&w, "dan@corp.test", "nulab", None, "active").await;
    insert_account(&w, "erin@corp.test", "managed", Some(&beta), "active").await;
    insert_account(&w, "fay@corp.test", "managed", Some(&w.org), "deleted").await;
    insert_account(&w, "gus@mail.corp.test", "managed", Some(&w.org), "active").await;

    let path = format!(
        "/api/v1/orgs/acme/domains/{}",
        domain["id"].as_str().unwrap()
    );
    let domains_before = w.server.count("domains").await;
    let audit_before = w.server.count("audit_events").await;
    let (status, err) = w.api(Method::DELETE, &path, None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("domain_in_use")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("1 managed account;"),
        "{err}"
    );
    assert_eq!(w.server.count("domains").await, domains_before);
    assert_eq!(w.server.count("audit_events").await, audit_before);
    assert_eq!(w.get(&domain).await["status"], "verified");

    // Unknown and malformed ids.
    let (status, err) = w
        .api(
            Method::DELETE,
            &format!("/api/v1/orgs/acme/domains/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("domain_not_found"))
    );
    let (status, _) = w
        .api(Method::DELETE, "/api/v1/orgs/acme/domains/nope", None)
        .await;
    assert_eq!(status, 404);
    // Another org's token cannot touch it.
    let beta_token = token_for(&w.server, &beta).await;
    let (status, _) = api_as(&w.server, &w.http, &beta_token, Method::DELETE, &path, None).await;
    assert_eq!(status, 403);
    assert_eq!(w.server.count("domains").await, domains_before);

    sqlx::query("UPDATE accounts SET status = 'deleted' WHERE id = $1")
        .bind(managed)
        .execute(w.server.db().pool())
        .await
        .unwrap();
    let (status, _) = w.api(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(w.server.count("domains").await, domains_before - 1);
    assert_eq!(w.server.audit_actions(1).await, ["domain.removed"]);
    assert!(!w.verified_for(&w.org, "corp.test").await);
    let (status, _) = w.api(Method::GET, &path, None).await;
    assert_eq!(status, 404);
}
both!(removing_a_domain_with_managed_accounts_is_refused, removal);

async fn pages(backend: Backend) {
    let w = World::new(backend).await;
    let browser = w.server.signed_in("ada@acme.example", PASSWORD).await;
    let page_url = w.server.url("/admin/acme/domains");
    let page = browser
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("href=\"/admin/acme/domains\"") && page.contains(">Domains</a>"));

    let csrf = csrf_of(&browser, &page_url).await;
    let res = browser
        .post(&page_url)
        .form(&[("csrf", csrf.as_str()), ("domain", "Corp.Test")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = browser
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("corp.test was added."), "flash");
    let (_, list) = w.api(Method::GET, "/api/v1/orgs/acme/domains", None).await;
    let domain = list["items"][0].clone();
    let value = domain["txt_value"].as_str().unwrap();
    assert!(
        page.contains(&format!("value=\"{value}\"")),
        "record ready to copy"
    );
    assert!(
        page.contains(&format!("corp.test. 3600 IN TXT \"{value}\"")),
        "zone-file line"
    );
    assert!(page.contains("status-pending"));

    let verify_url = w.server.url(&format!(
        "/admin/acme/domains/{}/verify",
        domain["id"].as_str().unwrap()
    ));
    let res = browser
        .post(&verify_url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = browser
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("corp.test is not verified yet: no TXT records found. Publish the TXT record below at corp.test, then press Verify now again"),
        "result in words"
    );
    assert!(page.contains("Last check") && page.contains(": no TXT records found."));
    assert!(
        page.contains(r#"<p class="notice warning" role="status">corp.test is not verified yet"#),
        "a check that did not verify is a warning, not a success"
    );

    w.publish(&domain).await;
    browser
        .post(&verify_url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let page = browser
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("corp.test is verified.") && page.contains("status-verified"));
    assert!(page.contains(r#"<p class="notice" role="status">corp.test is verified."#));

    // Bad input on the page: the error, the status, and nothing stored.
    let before = w.server.count("domains").await;
    let audit_before = w.server.count("audit_events").await;
    let res = browser
        .post(&page_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("domain", "https://corp.test/login"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("leave out https://"));
    let res = browser
        .post(&page_url)
        .form(&[("csrf", "wrong"), ("domain", "fine.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no CSRF token, no change");
    assert_eq!(w.server.count("domains").await, before);
    assert_eq!(w.server.count("audit_events").await, audit_before);

    // A member who is not an admin cannot open the page.
    let mona = w
        .server
        .account("mona@acme.example", "Mona", PASSWORD)
        .await;
    let mut tx = w.server.db().begin().await.unwrap();
    nulab_pass::orgs::store::insert_membership(
        &mut tx,
        w.org.id,
        mona.id,
        nulab_pass::orgs::Role::Member,
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let member = w.server.signed_in("mona@acme.example", PASSWORD).await;
    assert_eq!(member.get(&page_url).send().await.unwrap().status(), 403);
}
both!(domains_are_managed_on_the_admin_page, pages);

async fn concurrent_rechecks(backend: Backend) {
    let w = World::new(backend).await;
    let mut added = Vec::new();
    for i in 0..6 {
        let domain = w.add(&format!("d{i}.test")).await;
        w.publish(&domain).await;
        assert_eq!(w.verify(&domain).await.1["status"], "verified");
        w.dns.clear(&format!("d{i}.test")).await;
        added.push(domain);
    }
    w.server.state.clock.advance_ms(DAY_MS + 1000);
    let now = w.server.state.clock.now_ms();
    let settings = DomainSettings::from_config(&w.server.state.config);
    let run = || async {
        let lookup = TxtLookup::new(&w.dns.servers(), Duration::from_millis(TIMEOUT_MS)).unwrap();
        domains::recheck_all(w.server.db(), &lookup, now, &settings, &w.server.base)
            .await
            .unwrap()
    };
    let (a, b) = tokio::join!(run(), run());
    assert_eq!(a.record_missing + b.record_missing, 6, "{a:?} {b:?}");
    assert_eq!(
        w.count_action("domain.record_missing").await,
        6,
        "each domain once"
    );
    assert_eq!(w.outbox_kinds("domain.record_missing").await.len(), 6);
    for domain in &added {
        assert!(w.get(domain).await["record_missing_since"].is_i64());
    }
}
both!(
    concurrent_rechecks_handle_each_domain_once,
    concurrent_rechecks
);

/// One resolver across changes of the zone: it never answers from a cache.
#[tokio::test]
async fn one_lookup_sees_each_change_at_once() {
    let dns = DnsServer::start(&["test"]).await;
    let lookup = TxtLookup::new(&dns.servers(), Duration::from_millis(TIMEOUT_MS)).unwrap();
    let name = domains::DomainName::parse("corp.test").unwrap();
    assert_eq!(lookup.lookup(&name).await, domains::TxtAnswer::NoRecords);
    dns.add_txt("corp.test", &["one", "two"]).await;
    dns.add_txt("corp.test", &["three"]).await;
    let domains::TxtAnswer::Found(mut texts) = lookup.lookup(&name).await else {
        panic!("records expected");
    };
    texts.sort();
    assert_eq!(texts, ["onetwo", "three"]);
    dns.clear("corp.test").await;
    assert_eq!(lookup.lookup(&name).await, domains::TxtAnswer::NoRecords);
    dns.set_mode(Mode::ServFail);
    assert_eq!(
        lookup.lookup(&name).await,
        domains::TxtAnswer::Failure(domains::DnsFailure::ServFail)
    );
    dns.set_mode(Mode::Silent);
    assert_eq!(
        lookup.lookup(&name).await,
        domains::TxtAnswer::Failure(domains::DnsFailure::TimedOut)
    );
}

/// Transactions that rely on "is this domain verified?" (SSO sign-ins, account creation) hold
/// its row shared: on PostgreSQL two of them run side by side, while a lapse of the domain
/// waits for both and then counts for whoever asks next. (SQLite runs one writing transaction
/// at a time; there the answers alone are checked.)
async fn verified_domain_is_shared(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.account("admin@acme.test", "Admin", PASSWORD).await;
    let org = server.org("acme", &admin).await;
    server.verified_domain(&org, "acme.test").await;
    let db = server.db();
    let mut first = db.begin().await.unwrap();
    assert!(
        domains::is_email_domain_verified(&mut first, org.id, "ACME.test")
            .await
            .unwrap()
    );
    assert!(
        !domains::is_email_domain_verified(&mut first, org.id, "other.test")
            .await
            .unwrap()
    );
    if db.dialect() == nulab_pass::db::Dialect::Sqlite {
        first.commit().await.unwrap();
        return;
    }
    // A second holder does not wait for the first.
    let mut second = db.begin().await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        domains::is_email_domain_verified(&mut second, org.id, "acme.test"),
    )
    .await
    .expect("the second transaction waited for the first");
    assert!(answer.unwrap());
    // A lapse waits for both holders.
    let lapse = async {
        sqlx::query("UPDATE domains SET status = 'lapsed' WHERE org_id = $1 AND domain = $2")
            .bind(org.id.to_string())
            .bind("acme.test")
            .execute(db.pool())
            .await
            .unwrap()
            .rows_affected()
    };
    let release = async {
        let mut queued = false;
        for _ in 0..500 {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(db.pool())
            .await
            .unwrap();
            if waiting == 1 {
                queued = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(queued, "the lapse never queued behind the holders");
        let status: (String,) =
            sqlx::query_as("SELECT status FROM domains WHERE org_id = $1 AND domain = 'acme.test'")
                .bind(org.id.to_string())
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(
            status.0, "verified",
            "the lapse waits while the domain is held"
        );
        first.commit().await.unwrap();
        second.commit().await.unwrap();
    };
    let (lapsed, ()) = tokio::join!(lapse, release);
    assert_eq!(lapsed, 1);
    let mut after = db.begin().await.unwrap();
    assert!(
        !domains::is_email_domain_verified(&mut after, org.id, "acme.test")
            .await
            .unwrap()
    );
    after.rollback().await.unwrap();
}
both!(
    sign_ins_share_a_verified_domain_and_a_lapse_waits_for_them,
    verified_domain_is_shared
);
