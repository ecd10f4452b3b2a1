//! Retention (pruning behind a checkpoint, the chain still verifying) and the webhook (signed
//! deliveries in order after the endpoint was down, the test button and delivery log, private
//! addresses refused outside development mode).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::HeaderMap;
use reqwest::Method;
use serde_json::{Value, json};

use super::viewer::{PASSWORD, audit_count, call, corp};
use crate::both;
use crate::common::{Backend, TestServer, post_form, steady_port};
use nulab_pass::audit::{chain, retention};
use nulab_pass::clock::DAY_MS;

async fn add_domain(s: &TestServer, token: &str, name: &str) {
    let (status, body) = call(
        s,
        token,
        Method::POST,
        "/api/v1/orgs/corp/domains",
        Some(json!({ "domain": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn retention_prunes_behind_a_checkpoint(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    let (s, org_id) = (&c.s, c.org.id.to_string());
    // Bad periods are refused and change nothing.
    for days in [0, 29, 3651, -5] {
        let (status, body) = call(
            s,
            &c.token,
            Method::PUT,
            "/api/v1/orgs/corp/audit-settings",
            Some(json!({ "retention_days": days })),
        )
        .await;
        assert_eq!(status, 400, "{days}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("retention_days:")
        );
    }
    assert_eq!(s.count("audit_settings").await, 0);
    let (status, body) = call(
        s,
        &c.token,
        Method::PUT,
        "/api/v1/orgs/corp/audit-settings",
        Some(json!({ "retention_days": 30 })),
    )
    .await;
    assert_eq!(
        (status, body["retention_days"].as_i64()),
        (200, Some(30)),
        "{body}"
    );
    assert!(s.audited("audit.retention_changed").await);

    add_domain(s, &c.token, "old.example").await;
    let old = s.count("audit_events").await;
    s.state.clock.advance_ms(31 * DAY_MS);
    add_domain(s, &c.token, "new.example").await;

    let pruned = retention::prune_all(s.db(), s.state.clock.now_ms())
        .await
        .unwrap();
    let ours = pruned
        .iter()
        .find(|p| p.chain == org_id)
        .expect("corp's chain pruned");
    let remaining = s
        .rows(&format!(
            "SELECT action FROM audit_events WHERE chain = '{org_id}'"
        ))
        .await;
    assert!(remaining.contains(&"audit.events_pruned".to_string()));
    assert!(ours.events >= 3, "{ours:?}");
    let details = s
        .rows(&format!(
            "SELECT details FROM audit_events WHERE chain = '{org_id}' AND action = 'domain.added'"
        ))
        .await;
    assert_eq!(details.len(), 1, "only the new domain's event is left");
    assert!(details[0].contains("new.example"));
    assert!(old > 0);

    let holds = chain::verify(s.db(), &org_id).await.unwrap();
    assert!(holds.broken.is_none(), "{holds:?}");
    assert_eq!(holds.checkpoint_seq, Some(ours.through_seq));
    // The checkpoint cannot be changed, and events after it still cannot be deleted.
    assert!(
        sqlx::query("DELETE FROM audit_checkpoints")
            .execute(s.db().pool())
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_events")
            .execute(s.db().pool())
            .await
            .is_err()
    );
    // A second run finds nothing more to prune.
    let again = retention::prune_all(s.db(), s.state.clock.now_ms())
        .await
        .unwrap();
    assert!(again.iter().all(|p| p.chain != org_id), "{again:?}");
}
both!(
    retention_prunes_behind_a_checkpoint,
    retention_prunes_behind_a_checkpoint
);

/// What the receiver got: (headers, body) per request.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn receive(
    AxState(got): AxState<Received>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    got.lock().unwrap().push((headers, body));
    "ok"
}

/// A receiver on `port` (127.0.0.1) that records every POST to `/hook`.
async fn receiver(port: u16, got: Received) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(got);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

async fn wait_for(got: &Received, n: usize) -> Vec<(HeaderMap, String)> {
    for _ in 0..300 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got.lock().unwrap().clone()
}

/// The endpoint is down: events wait (the actions do not), then arrive in order, none lost,
/// each signed; the page's test button and delivery log show it.
async fn webhook_delivers_in_order_after_downtime(backend: Backend) {
    let c = corp(TestServer::start_with(backend, |config| config.dev = true).await).await;
    let s = &c.s;
    let port = steady_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, body) = call(
        s,
        &c.token,
        Method::PUT,
        "/api/v1/orgs/corp/audit-settings",
        Some(json!({ "webhook_url": url })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));

    for name in ["a.example", "b.example", "c.example"] {
        add_domain(s, &c.token, name).await;
    }
    // Down: attempts fail and are logged; nothing is delivered, the actions went through.
    for _ in 0..100 {
        if s.count("audit_webhook_deliveries").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, settings) = call(
        s,
        &c.token,
        Method::GET,
        "/api/v1/orgs/corp/audit-settings",
        None,
    )
    .await;
    assert_eq!(settings["deliveries"][0]["outcome"], "failed", "{settings}");
    assert!(
        settings["webhook_last_error"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );

    let got: Received = Arc::default();
    let server = receiver(port, got.clone()).await;
    s.state.clock.advance_ms(2 * 3_600_000); // past any backoff
    let head: (i64,) = sqlx::query_as("SELECT seq FROM audit_chain_heads WHERE chain = $1")
        .bind(c.org.id.to_string())
        .fetch_one(s.db().pool())
        .await
        .unwrap();
    let first: (i64,) = sqlx::query_as(
        "SELECT seq FROM audit_events WHERE chain = $1 AND action = 'audit.webhook_configured'",
    )
    .bind(c.org.id.to_string())
    .fetch_one(s.db().pool())
    .await
    .unwrap();
    let expected = (head.0 - first.0 + 1) as usize;
    let received = wait_for(&got, expected).await;
    assert!(
        received.len() >= expected,
        "{} of {expected}",
        received.len()
    );
    let events: Vec<Value> = received
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let want: Vec<i64> = (first.0..first.0 + seqs.len() as i64).collect();
    assert_eq!(seqs, want, "in order, none lost, none twice");
    assert_eq!(events[0]["action"], "audit.webhook_configured");
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e["action"] == "domain.added")
        .map(|e| e["details"]["txt_name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["a.example", "b.example", "c.example"]);
    for (headers, body) in &received {
        let ts = headers["x-nulab-pass-timestamp"].to_str().unwrap();
        let expected = nulab_pass::audit::webhook::signature(&secret, ts.parse().unwrap(), body);
        assert_eq!(
            headers["x-nulab-pass-signature"].to_str().unwrap(),
            expected
        );
    }

    // The page: the test button delivers a signed test event and the log shows it.
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let res = post_form(
        &admin,
        &s.url("/admin/corp/audit"),
        &s.url("/admin/corp/audit/webhook/test"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let page = admin
        .get(s.url("/admin/corp/audit"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("The test event was delivered"), "{page}");
    assert!(page.contains("test event") && page.contains("delivered"));
    let test = got
        .lock()
        .unwrap()
        .iter()
        .any(|(_, b)| b.contains("\"type\":\"test\""));
    assert!(test, "the receiver got the test event");
    assert!(s.audited("audit.webhook_tested").await);
    let res = post_form(
        &admin,
        &s.url("/admin/corp/audit"),
        &s.url("/admin/corp/audit/webhook/remove"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(s.audited("audit.webhook_removed").await);
    assert_eq!(s.count("audit_webhooks").await, 0);
    server.abort();
}
both!(
    webhook_delivers_in_order_after_downtime,
    webhook_delivers_in_order_after_downtime
);

/// Outside development mode a URL on a private or loopback address is refused, and nothing
/// changes.
async fn private_webhook_urls_are_refused(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    let s = &c.s;
    let before = audit_count(s).await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.0.0.5/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        "http://hooks.example.com/hook",
        "not a url",
    ] {
        let (status, body) = call(
            s,
            &c.token,
            Method::PUT,
            "/api/v1/orgs/corp/audit-settings",
            Some(json!({ "webhook_url": url, "retention_days": 90 })),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("webhook_url_refused")),
            "{url}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("webhook_url:")
        );
    }
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let res = post_form(
        &admin,
        &s.url("/admin/corp/audit"),
        &s.url("/admin/corp/audit/webhook"),
        &[("webhook_url", "https://127.0.0.1/hook")],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("not a public address"));
    assert_eq!(s.count("audit_webhooks").await, 0);
    assert_eq!(
        s.count("audit_settings").await,
        0,
        "the retention in the same request was not applied"
    );
    assert_eq!(audit_count(s).await, before, "nothing audited");
}
both!(
    private_webhook_urls_are_refused,
    private_webhook_urls_are_refused
);

/// Removing the webhook when there is none (`"webhook_url": ""`, which schemathesis sent) is
/// what a PUT asks to hold already: 200, no event, nothing changed, and the retention sent
/// beside it applied.
async fn removing_no_webhook_changes_nothing(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    let s = &c.s;
    let before = audit_count(s).await;
    let (status, body) = call(
        s,
        &c.token,
        Method::PUT,
        "/api/v1/orgs/corp/audit-settings",
        Some(json!({ "webhook_url": "" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["webhook_secret"].is_null(), "{body}");
    assert_eq!(s.count("audit_webhooks").await, 0);
    assert_eq!(audit_count(s).await, before, "nothing audited");
    assert!(!s.audited("audit.webhook_removed").await);
    let (status, body) = call(
        s,
        &c.token,
        Method::PUT,
        "/api/v1/orgs/corp/audit-settings",
        Some(json!({ "webhook_url": " ", "retention_days": 90 })),
    )
    .await;
    assert_eq!(
        (status, body["retention_days"].as_i64()),
        (200, Some(90)),
        "{body}"
    );
    assert_eq!(s.count("audit_webhooks").await, 0);
    assert!(!s.audited("audit.webhook_removed").await);
}
both!(
    removing_no_webhook_changes_nothing,
    removing_no_webhook_changes_nothing
);
