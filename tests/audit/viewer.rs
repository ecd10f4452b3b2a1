//! The viewer and the API: investigating a failed SSO sign-in (page, detail, API, export),
//! filters, cursor pages that hold still while events arrive, and every bad input refused with
//! nothing changed.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::common::{Backend, TestServer, api, idp_answers};
use nulab_pass::mock_idp::MockIdp;
use nulab_pass::saml::acs::Reason;

pub const PASSWORD: &str = "correct horse battery";

/// An org `corp` (admin `admin@corp.test`, API token) with a verified domain and a SAML
/// connection to a mock IdP.
pub struct Corp {
    pub s: TestServer,
    pub org: nulab_pass::orgs::Org,
    pub token: String,
    pub idp: MockIdp,
    pub connection: Value,
}

pub async fn corp(s: TestServer) -> Corp {
    let admin = s.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    s.verified_domain(&org, "corp.test").await;
    s.seats(&org, 10).await;
    let token = s.token(&org).await;
    let idp = MockIdp::generate(
        "https://idp.corp.test/metadata",
        "https://idp.corp.test/sso",
    )
    .unwrap();
    let (status, connection) = call(
        &s,
        &token,
        Method::POST,
        "/api/v1/orgs/corp/saml-connections",
        Some(json!({ "metadata_xml": idp.metadata_xml(), "name": "Corp IdP" })),
    )
    .await;
    assert_eq!(status, 201, "{connection}");
    Corp {
        s,
        org,
        token,
        idp,
        connection,
    }
}

pub async fn call(
    s: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api(&s.client(), method, s.url(path), token, body).await
}

/// A raw GET with the token (for exports and error bodies).
pub async fn get_raw(s: &TestServer, token: &str, path: &str) -> (u16, String, String) {
    let res = s
        .client()
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let kind = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, res.text().await.unwrap())
}

/// `ghost@corp.test` has no account: the IdP vouches for it, the ACS refuses.
async fn failed_sign_in(c: &Corp) {
    let browser = c.s.client();
    let login = c.connection["login_url"].as_str().unwrap();
    let res = browser.get(login).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    let res = idp_answers(&browser, &to_idp, &c.idp, &c.connection, "ghost@corp.test").await;
    assert_eq!(res.status(), 403);
}

async fn investigate_a_failed_sso_sign_in(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    failed_sign_in(&c).await;
    let words = Reason::UnknownAccount.message();

    // The page, filtered to failed SSO sign-ins.
    let admin = c.s.signed_in("admin@corp.test", PASSWORD).await;
    let page = admin
        .get(c.s.url("/admin/corp/audit?action=sso.signin.failed"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("href=\"/admin/corp/audit\" aria-current=\"page\""),
        "in the navigation"
    );
    assert!(html.contains("sso.signin.failed") && html.contains("127.0.0.1"));
    let escaped_words = words.replace('\'', "&#39;").replace('"', "&quot;");
    assert!(
        html.contains("unknown_account") && html.contains(&escaped_words),
        "{html}"
    );
    assert!(
        html.contains("ghost@corp.test"),
        "the user the IdP asserted"
    );
    assert!(
        !html.contains("<code>org.created</code>"),
        "the filter holds"
    );

    // The API finds the same event, with the reason in words.
    let (status, found) = call(
        &c.s,
        &c.token,
        Method::GET,
        "/api/v1/orgs/corp/audit-events?action=sso.signin.failed",
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    let event = &items[0];
    assert_eq!(event["details"]["reason"], "unknown_account");
    assert_eq!(event["reason_message"], words);
    assert_eq!(event["ip"], "127.0.0.1");
    assert!(
        event["details"]["detail"]
            .as_str()
            .unwrap()
            .contains("ghost@corp.test")
    );
    let id = event["id"].as_str().unwrap().to_string();

    // The detail page: the user, the connection by name, the reason in words, the IP.
    let detail = admin
        .get(c.s.url(&format!("/admin/corp/audit/events/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(detail.status(), 200);
    let html = detail.text().await.unwrap();
    for expected in [
        "ghost@corp.test",
        "Corp IdP",
        "unknown_account",
        "127.0.0.1",
    ] {
        assert!(html.contains(expected), "detail shows {expected}: {html}");
    }
    assert!(html.contains(&escaped_words));
    let (status, one) = call(
        &c.s,
        &c.token,
        Method::GET,
        &format!("/api/v1/orgs/corp/audit-events/{id}"),
        None,
    )
    .await;
    assert_eq!((status, &one["id"]), (200, &json!(id)));

    // Exported as CSV (API) and JSON Lines (the page's button), with the same filter.
    let (status, kind, csv) = get_raw(
        &c.s,
        &c.token,
        "/api/v1/orgs/corp/audit-events?action=sso.signin.failed&format=csv",
    )
    .await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,seq,occurred_at,time,action"));
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with(&id) && lines[1].contains("unknown_account"));
    let res = admin
        .get(c.s.url("/admin/corp/audit/export?format=jsonl&action=sso.signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".jsonl")
    );
    let jsonl = res.text().await.unwrap();
    let parsed: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0]["id"], id.as_str());
    assert_eq!(parsed[0]["details"]["reason"], "unknown_account");

    // The OpenAPI document describes both export formats of the list.
    let doc = c.s.openapi().await;
    let list = &doc["paths"]["/api/v1/orgs/{org}/audit-events"]["get"];
    let content = &list["responses"]["200"]["content"];
    for kind in ["application/json", "text/csv", "application/jsonl"] {
        assert!(content.get(kind).is_some(), "{kind}: {content}");
    }
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "action", "actor", "target", "ip", "since", "until", "q", "cursor", "limit", "format",
    ] {
        assert!(params.contains(&name), "{name}: {params:?}");
    }
}
both!(
    investigate_a_failed_sso_sign_in,
    investigate_a_failed_sso_sign_in
);

async fn add_domains(c: &Corp, names: &[&str]) {
    for name in names {
        let (status, body) = call(
            &c.s,
            &c.token,
            Method::POST,
            "/api/v1/orgs/corp/domains",
            Some(json!({ "domain": name })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
}

async fn page(c: &Corp, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = call(
        &c.s,
        &c.token,
        Method::GET,
        &format!("/api/v1/orgs/corp/audit-events?{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    (
        body["items"].as_array().unwrap().clone(),
        body["next_cursor"].as_str().map(str::to_string),
    )
}

/// Pages of three walk the whole log newest first; events written meanwhile do not shift them.
async fn pages_hold_still_and_filters_narrow(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    add_domains(&c, &["a.example", "b.example", "c.example", "d.example"]).await;
    let (all, _) = page(&c, "limit=500").await;
    let (mut seen, mut cursor) = page(&c, "limit=3").await;
    let mut late = 0;
    while let Some(next) = cursor {
        // A new event between pages lands above the cursor, never inside later pages.
        late += 1;
        add_domains(&c, &[&format!("late{late}.example")]).await;
        let (items, more) = page(&c, &format!("limit=3&cursor={next}")).await;
        seen.extend(items);
        cursor = more;
    }
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&seen), ids(&all), "every event once, in order");
    let seqs: Vec<i64> = seen.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    // Admin API calls are audited with the token as the actor.
    let (added, _) = page(&c, "action=domain.added&limit=500").await;
    assert_eq!(added.len(), 4 + late);
    let token_id = added[0]["actor_id"].as_str().unwrap().to_string();
    assert!(added.iter().all(|e| e["actor_type"] == "api_token"));
    let (by_actor, _) = page(&c, &format!("actor={token_id}&action=domain")).await;
    assert_eq!(by_actor.len(), added.len());
    let (by_email, _) = page(&c, "actor=admin@corp.test").await;
    assert!(
        by_email
            .iter()
            .all(|e| e["actor_label"] == "admin@corp.test")
    );

    let target = added[1]["target_id"].as_str().unwrap().to_string();
    let (by_target, _) = page(&c, &format!("target={target}")).await;
    assert!(!by_target.is_empty() && by_target.iter().all(|e| e["target_id"] == target.as_str()));
    let (by_ip, _) = page(&c, "ip=127.0.0.1&action=domain.added").await;
    assert_eq!(by_ip.len(), added.len());
    let (by_ip, _) = page(&c, "ip=10.9.9.9").await;
    assert!(by_ip.is_empty());
    let (by_text, _) = page(&c, "q=C.EXAMPLE").await;
    assert_eq!(by_text.len(), 1, "case-insensitive free text");
    let (by_text, _) = page(&c, "q=100%25_").await;
    assert!(by_text.is_empty(), "% and _ are matched literally");
    let newest = all[0]["occurred_at"].as_i64().unwrap();
    let (recent, _) = page(&c, &format!("since={}", newest + 1)).await;
    assert!(
        recent
            .iter()
            .all(|e| e["occurred_at"].as_i64().unwrap() > newest)
    );
    let (old, _) = page(&c, "until=2000-01-01").await;
    assert!(old.is_empty());
}
both!(
    pages_hold_still_and_filters_narrow,
    pages_hold_still_and_filters_narrow
);

/// Events in the organization `corp`'s chain (sign-ins of admins go to the global chain).
pub async fn audit_count(s: &TestServer) -> i64 {
    s.rows("SELECT CAST(COUNT(*) AS TEXT) FROM audit_events e JOIN orgs o ON o.id = e.chain WHERE o.slug = 'corp'")
        .await[0]
        .parse()
        .unwrap()
}

/// Malformed filters and time ranges: 400 naming the parameter, on the API and the page.
async fn bad_filters_are_named(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    let admin = c.s.signed_in("admin@corp.test", PASSWORD).await;
    let before = audit_count(&c.s).await;
    for (query, param) in [
        ("since=yesterday", "since"),
        ("until=2026-02-30", "until"),
        ("since=2026-12-02&until=2026-12-01", "until"),
        ("action=nosuch", "action"),
        ("action=sso.sign", "action"),
        ("ip=999.1.1.1", "ip"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("format=xml", "format"),
        ("actor=a%00b", "actor"),
    ] {
        let (status, body) = call(
            &c.s,
            &c.token,
            Method::GET,
            &format!("/api/v1/orgs/corp/audit-events?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_parameter", "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{param}:")),
            "{query}: {message}"
        );
        if param != "format" {
            let res = admin
                .get(c.s.url(&format!("/admin/corp/audit?{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 400, "page {query}");
            assert!(res.text().await.unwrap().contains(&format!("{param}:")));
        }
    }
    assert_eq!(audit_count(&c.s).await, before, "nothing written");
}
both!(bad_filters_are_named, bad_filters_are_named);

/// A cursor of another organization, or a changed one, is refused; so are another
/// organization's events, one by one or exported.
async fn other_orgs_cursors_and_events_are_refused(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    add_domains(&c, &["a.example", "b.example"]).await;
    let other_admin = c.s.account("admin@other.test", "Other", PASSWORD).await;
    let other = c.s.org("other", &other_admin).await;
    let other_token = c.s.token(&other).await;
    let (status, body) = call(
        &c.s,
        &other_token,
        Method::POST,
        "/api/v1/orgs/other/domains",
        Some(json!({"domain": "o.example"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (corp_items, corp_cursor) = page(&c, "limit=1").await;
    let corp_cursor = corp_cursor.expect("more than one event");
    let before = audit_count(&c.s).await;

    let path = format!("/api/v1/orgs/other/audit-events?limit=1&cursor={corp_cursor}");
    let (status, body) = call(&c.s, &other_token, Method::GET, &path, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_cursor")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().starts_with("cursor:"));
    let (payload, mac) = corp_cursor.split_once('.').unwrap();
    let mut forged_payload = payload.to_string();
    forged_payload.replace_range(0..1, if payload.starts_with('A') { "B" } else { "A" });
    for forged in [
        format!("{forged_payload}.{mac}"),
        format!("{payload}.{}", mac.chars().rev().collect::<String>()),
        "not-a-cursor".to_string(),
    ] {
        let path = format!("/api/v1/orgs/corp/audit-events?cursor={forged}");
        let (status, body) = call(&c.s, &c.token, Method::GET, &path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_cursor")),
            "{forged}"
        );
    }

    // Another organization's token and admin cannot read or export corp's events.
    let (status, _, _) = get_raw(
        &c.s,
        &other_token,
        "/api/v1/orgs/corp/audit-events?format=csv",
    )
    .await;
    assert_eq!(status, 403);
    let corp_event = corp_items[0]["id"].as_str().unwrap();
    let (status, _) = call(
        &c.s,
        &other_token,
        Method::GET,
        &format!("/api/v1/orgs/other/audit-events/{corp_event}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "corp's event is not in other's log");
    let other_browser = c.s.signed_in("admin@other.test", PASSWORD).await;
    for path in ["/admin/corp/audit/export?format=jsonl", "/admin/corp/audit"] {
        let res = other_browser.get(c.s.url(path)).send().await.unwrap();
        // An organization the admin does not belong to is not shown to exist.
        assert_eq!(res.status(), 404, "{path}");
        assert!(!res.text().await.unwrap().contains(corp_event));
    }
    let (status, kind, jsonl) = get_raw(
        &c.s,
        &other_token,
        "/api/v1/orgs/other/audit-events?format=jsonl",
    )
    .await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/jsonl"));
    assert!(
        !jsonl.contains(corp_event) && !jsonl.contains("a.example"),
        "only other's events"
    );
    assert_eq!(audit_count(&c.s).await, before, "nothing written");
}
both!(
    other_orgs_cursors_and_events_are_refused,
    other_orgs_cursors_and_events_are_refused
);

/// The page in headless Chromium: an admin signs in, searches, opens an event.
async fn the_page_in_a_browser(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    add_domains(&c, &["seen.example"]).await;
    let browser = crate::common::browser::Browser::start().await;
    // corp.test signs in through corp's IdP; the admin's Nulab account takes the password form.
    browser.goto(&c.s.url("/signin?with=password")).await;
    browser.fill("input[name=email]", "admin@corp.test").await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser.click("main form button[type=submit]").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    browser.goto(&c.s.url("/admin/corp/audit")).await;
    browser.fill("input[name=action]", "domain.added").await;
    browser.click("form.filters button[type=submit]").await;
    let mut rows = serde_json::Value::Null;
    for _ in 0..50 {
        rows = browser
            .script("return document.querySelectorAll('table.audit-events tbody tr').length")
            .await;
        if browser.current_url().await.contains("action=domain.added") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, json!(1), "one domain.added event");
    browser.click("table.audit-events tbody tr a").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        browser
            .current_url()
            .await
            .contains("/admin/corp/audit/events/")
    );
    let page = browser.source().await;
    assert!(
        page.contains("seen.example") && page.contains("(api token)"),
        "{page}"
    );
    browser.quit().await;
}
both!(the_page_in_a_browser, the_page_in_a_browser);
