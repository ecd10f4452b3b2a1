//! Billing per managed account through the real server on SQLite and PostgreSQL: the
//! subscription API, seat changes with proration and idempotency keys, bad input and races
//! that change nothing, over-seats, and invoices written across simulated periods.

mod common;
#[path = "billing/legacy.rs"]
mod legacy;
#[path = "billing/periods.rs"]
mod periods;
#[path = "billing/yearly.rs"]
mod yearly;

use common::{Backend, TestServer, api};
use nulab_pass::billing::{self, Status};
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) struct World {
    pub server: TestServer,
    pub org: nulab_pass::orgs::Org,
    pub token: String,
    pub http: reqwest::Client,
}

pub(crate) async fn world(backend: Backend) -> World {
    world_with(TestServer::start(backend).await).await
}

pub(crate) async fn world_with(server: TestServer) -> World {
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    server.verified_domain(&org, "corp.test").await;
    let token = server.token(&org).await;
    let http = server.client();
    World {
        server,
        org,
        token,
        http,
    }
}

impl World {
    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        api(&self.http, method, self.server.url(path), &self.token, body).await
    }

    pub(crate) async fn put_seats(&self, body: Value, key: Option<&str>) -> (u16, Value, bool) {
        let mut req = self
            .http
            .put(self.server.url("/api/v1/orgs/corp/subscription"))
            .bearer_auth(&self.token)
            .json(&body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let replayed = res.headers().contains_key("idempotent-replayed");
        (status, res.json().await.unwrap(), replayed)
    }

    /// Makes the subscription active (as the operator does from the payment system).
    pub(crate) async fn activate(&self) {
        self.set_status(Status::Active).await;
    }

    /// Sets the status the payment system reports, as the operator does.
    pub(crate) async fn set_status(&self, status: Status) {
        let s = &self.server;
        let mut tx = s.db().begin().await.unwrap();
        billing::plan::set_status(
            &mut tx,
            s.state.clock.now_ms(),
            &self.org,
            status,
            &s.state.config.billing,
            &s.base,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    pub(crate) async fn managed(&self, n: usize) {
        for i in 0..n {
            let (status, body) = self
                .api(
                    Method::POST,
                    "/api/v1/orgs/corp/managed-accounts",
                    Some(json!({"email": format!("m{i}@corp.test"), "name": format!("M{i}")})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }

    /// Everything billing writes, row by row, to show that nothing changed.
    pub(crate) async fn snapshot(&self) -> Vec<Vec<String>> {
        let s = &self.server;
        vec![
            s.rows("SELECT slug || ':' || seats FROM orgs ORDER BY slug")
                .await,
            s.rows(
                "SELECT status || ':' || period || ':' || period_start || ':' || \
                 COALESCE(CAST(scheduled_seats AS TEXT), '-') || ':' || \
                 COALESCE(scheduled_period, '-') FROM subscriptions ORDER BY org_id",
            )
            .await,
            s.rows("SELECT id || ':' || amount FROM billing_charges ORDER BY id")
                .await,
            s.rows("SELECT number FROM invoices ORDER BY number").await,
            s.rows("SELECT key FROM billing_idempotency ORDER BY key")
                .await,
            vec![s.count("audit_events").await.to_string()],
        ]
    }
}

async fn subscription_of_a_new_org(backend: Backend) {
    let w = world(backend).await;
    let (status, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(status, 200, "{sub}");
    assert_eq!(sub["status"], "trial");
    assert_eq!(sub["seats"], 5, "a new organization has 5 trial seats");
    assert_eq!(
        (
            sub["managed_accounts"].as_i64(),
            sub["reserved"].as_i64(),
            sub["free"].as_i64()
        ),
        (Some(0), Some(0), Some(5))
    );
    assert_eq!(sub["period"], "monthly");
    assert_eq!(sub["price_per_seat"]["formatted"], "$8.00");
    assert_eq!(sub["next_invoice"]["total"]["amount"], 4000);
    w.managed(2).await;
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(
        (sub["managed_accounts"].as_i64(), sub["free"].as_i64()),
        (Some(2), Some(3))
    );
    // During the trial a change applies at once without a charge.
    let (status, body, _) = w.put_seats(json!({"seats": 7}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change"]["change"], "trial_change");
    assert_eq!(body["subscription"]["seats"], 7);
    assert_eq!(w.server.count("billing_charges").await, 0);
    assert_eq!(
        w.server.audit_actions(1).await,
        ["subscription.seats_changed"]
    );
}
both!(
    a_new_organization_starts_with_trial_seats,
    subscription_of_a_new_org
);

async fn bad_seats(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    w.managed(3).await;
    let before = w.snapshot().await;
    for (body, status, code) in [
        (json!({"seats": 1.5}), 400, "invalid_seats"),
        (json!({"seats": -1}), 400, "invalid_seats"),
        (json!({"seats": "ten"}), 400, "invalid_seats"),
        (json!({"seats": 1_000_001}), 400, "invalid_seats"),
        (json!({"seats": 1e30}), 400, "invalid_seats"),
        (json!({"seats": 0}), 400, "seats_below_minimum"),
        (json!({"seats": 2}), 409, "seats_below_usage"),
        (json!({"seats": 5, "extra": 1}), 400, "invalid_body"),
        (json!({}), 400, "nothing_to_change"),
        (json!({"seats": null}), 400, "invalid_seats"),
    ] {
        for path in ["/api/v1/orgs/corp/subscription/preview", "put"] {
            let (got, reply) = if path == "put" {
                let (s, r, _) = w.put_seats(body.clone(), Some("k-bad")).await;
                (s, r)
            } else {
                w.api(Method::POST, path, Some(body.clone())).await
            };
            assert_eq!(
                (got, reply["error"].as_str()),
                (status, Some(code)),
                "{body} {path}: {reply}"
            );
        }
    }
    // An integer beyond any machine type.
    for path in ["preview", ""] {
        let url = w
            .server
            .url(&format!("/api/v1/orgs/corp/subscription/{path}"));
        let req = if path.is_empty() {
            w.http.put(url.trim_end_matches('/'))
        } else {
            w.http.post(url)
        };
        let res = req
            .bearer_auth(&w.token)
            .header("content-type", "application/json")
            .body(r#"{"seats": 99999999999999999999999}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_seats");
    }
    assert_eq!(w.snapshot().await, before);
    // A pending migration request reserves a seat: 3 managed + 1 pending = 4.
    w.server.account("nia@corp.test", "Nia", PASSWORD).await;
    w.server.add_member(&w.org, "nia@corp.test", "member").await;
    let (s, r) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/migrations",
            Some(json!({"emails": ["nia@corp.test"]})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let before = w.snapshot().await;
    let (status, reply, _) = w.put_seats(json!({"seats": 3}), None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("seats_below_usage"))
    );
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("below 4") && message.contains("1 pending"),
        "{message}"
    );
    assert_eq!(w.snapshot().await, before);
    // A bad Idempotency-Key is refused before anything happens.
    let (status, reply, _) = w
        .put_seats(json!({"seats": 9}), Some(&"x".repeat(300)))
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
    assert_eq!(w.snapshot().await, before);
}
both!(bad_seat_numbers_are_refused_and_change_nothing, bad_seats);

async fn proration(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    let s = &w.server;
    let mut actions = s.audit_actions(2).await;
    actions.sort();
    assert_eq!(actions, ["invoice.issued", "subscription.status_changed"]);
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    let (start, end) = (
        sub["period_start"].as_i64().unwrap(),
        sub["period_end"].as_i64().unwrap(),
    );
    let day = 86_400_000;
    // Ten days into the period: the rest of it, counting today, is charged.
    s.state.clock.advance_ms(10 * day);
    let now = s.state.clock.now_ms();
    let days_left = (end - (now - now.rem_euclid(day))) / day;
    let period_days = (end - start) / day;
    let expected = (3 * 800 * days_left * 2 + period_days) / (2 * period_days);
    let (status, preview) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/subscription/preview",
            Some(json!({"seats": 8})),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["change"], "increase");
    assert_eq!(preview["charge"]["days"], days_left);
    assert_eq!(preview["charge"]["period_days"], period_days);
    assert_eq!(preview["charge"]["amount"]["amount"], expected);
    assert_eq!(
        s.count("billing_charges").await,
        0,
        "a preview changes nothing"
    );
    let (status, done, _) = w.put_seats(json!({"seats": 8}), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["subscription"]["seats"], 8);
    assert_eq!(done["change"]["charge"]["amount"]["amount"], expected);
    assert_eq!(
        s.rows("SELECT CAST(amount AS TEXT) FROM billing_charges")
            .await,
        [expected.to_string()]
    );
    // Fewer seats wait for the next period; the current number stays.
    let (status, done, _) = w.put_seats(json!({"seats": 6}), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["change"]["change"], "decrease");
    assert_eq!(done["change"]["effective_at"], end);
    assert_eq!(
        (
            done["subscription"]["seats"].as_i64(),
            done["subscription"]["scheduled_seats"].as_i64()
        ),
        (Some(8), Some(6))
    );
    assert_eq!(done["subscription"]["next_invoice"]["seats"], 6);
    let mut actions = s.audit_actions(2).await;
    actions.sort();
    assert_eq!(
        actions,
        [
            "subscription.seats_change_scheduled",
            "subscription.seats_changed"
        ]
    );
    // Back to 8: the reduction is withdrawn.
    let (_, done, _) = w.put_seats(json!({"seats": 8}), None).await;
    assert_eq!(done["change"]["change"], "cancel_scheduled");
    assert_eq!(done["subscription"]["scheduled_seats"], Value::Null);
    assert_eq!(
        s.audit_actions(1).await,
        ["subscription.scheduled_change_cancelled"]
    );
}
both!(
    adding_seats_charges_to_the_day_and_reducing_waits,
    proration
);

async fn idempotency(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    let (status, first, replayed) = w.put_seats(json!({"seats": 9}), Some("change-1")).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let audit = w.server.count("audit_events").await;
    let (status, again, replayed) = w.put_seats(json!({"seats": 9}), Some("change-1")).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first, "the retry gets the first answer");
    assert_eq!(w.server.count("billing_charges").await, 1);
    assert_eq!(w.server.count("audit_events").await, audit);
    let before = w.snapshot().await;
    let (status, reply, _) = w.put_seats(json!({"seats": 12}), Some("change-1")).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(w.snapshot().await, before);
    // Parallel retries of one new key: one change.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (http, url, token) = (
            w.http.clone(),
            w.server.url("/api/v1/orgs/corp/subscription"),
            w.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            http.put(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "change-2")
                .json(&json!({"seats": 11}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(w.server.count("billing_charges").await, 2);
    assert_eq!(
        w.server
            .rows("SELECT CAST(seats AS TEXT) FROM orgs WHERE slug = 'corp'")
            .await,
        ["11"]
    );
}
both!(a_retried_change_with_the_same_key_changes_once, idempotency);

async fn concurrent(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    let mut tasks = Vec::new();
    for target in [7, 9, 11, 13, 15, 17, 19, 21] {
        let (http, url, token) = (
            w.http.clone(),
            w.server.url("/api/v1/orgs/corp/subscription"),
            w.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let res = http
                .put(url)
                .bearer_auth(token)
                .json(&json!({"seats": target}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Serialised: each charge starts where the one before ended, from 5 up to the highest
    // number reached; what came after a higher one is a scheduled reduction.
    let chain: Vec<(i64, i64)> =
        sqlx::query_as("SELECT seats_from, seats_to FROM billing_charges ORDER BY seats_from")
            .fetch_all(w.server.db().pool())
            .await
            .unwrap();
    assert_eq!(chain.first().map(|c| c.0), Some(5), "{chain:?}");
    for pair in chain.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "{chain:?}");
    }
    let seats = w
        .server
        .rows("SELECT CAST(seats AS TEXT) FROM orgs WHERE slug = 'corp'")
        .await;
    assert_eq!(seats, [chain.last().unwrap().1.to_string()]);
    assert_eq!(
        chain.last().unwrap().1,
        21,
        "the highest number was applied at once"
    );
}
both!(concurrent_plan_changes_are_serialised, concurrent);

async fn over_seats(backend: Backend) {
    let w = world(backend).await;
    w.managed(4).await;
    // A legacy import billed 2 seats: the organization is over seats.
    let s = &w.server;
    let mut tx = s.db().begin().await.unwrap();
    billing::legacy::import_org_wide(
        &mut tx,
        s.state.clock.now_ms(),
        &w.org,
        2,
        &s.state.config.billing,
        &s.base,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(
        (sub["over_seats"].as_bool(), sub["free"].as_i64()),
        (Some(true), Some(0))
    );
    let (status, reply) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "x@corp.test", "name": "X"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("no_free_seats"))
    );
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("/admin/corp/billing"),
        "{reply}"
    );
    s.account("nia@corp.test", "Nia", PASSWORD).await;
    s.add_member(&w.org, "nia@corp.test", "member").await;
    let (_, r) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/migrations",
            Some(json!({"emails": ["nia@corp.test"]})),
        )
        .await;
    assert_eq!(r["results"][0]["error"], "no_free_seats", "{r}");
    assert!(
        r["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("billing page"),
        "{r}"
    );
    // Everything else goes on: SSO settings, the members' sign-in.
    let (status, _) = w
        .api(Method::GET, "/api/v1/orgs/corp/saml-connections", None)
        .await;
    assert_eq!(status, 200);
    let (status, log) = w
        .api(Method::GET, "/api/v1/orgs/corp/audit-events", None)
        .await;
    assert_eq!(status, 200, "the audit log stays readable: {log}");
    let (status, _) = w
        .api(Method::PUT, "/api/v1/orgs/corp/password-policy", Some(json!({"min_length": 14, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": true})))
        .await;
    assert_eq!(status, 200);
    s.signed_in("admin@corp.test", PASSWORD).await;
    // Adding seats is always allowed, even while over seats.
    let (status, body, _) = w.put_seats(json!({"seats": 3}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change"]["change"], "increase");
}
both!(
    over_seats_blocks_only_new_managed_accounts_and_requests,
    over_seats
);
