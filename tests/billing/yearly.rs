//! Switching between monthly and yearly billing through the API and the page: at once during
//! the trial, otherwise from the next period (the job turns it and invoices the year); and the
//! states in which changes are refused (cancelled) or still taken (past due).

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::common::{Backend, TestServer, post_form};
use crate::{PASSWORD, World, world, world_with};
use nulab_pass::billing::Status;

const DAY: i64 = 86_400_000;

async fn subscription(w: &World) -> Value {
    let (status, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(status, 200, "{sub}");
    sub
}

async fn wait_for_invoices(w: &World, n: i64) {
    for _ in 0..400 {
        if w.server.count("invoices").await >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the job did not write invoice {n}");
}

async fn monthly_to_yearly(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.billing.poll_ms = 20).await;
    let w = world_with(server).await;
    let s = &w.server;
    w.activate().await;
    wait_for_invoices(&w, 1).await;
    let end = subscription(&w).await["period_end"].as_i64().unwrap();
    // The preview says when and for how much, and changes nothing.
    let before = w.snapshot().await;
    let (status, p) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/subscription/preview",
            Some(json!({"period": "yearly"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["change"], "unchanged", "the seats stay: {p}");
    let pc = &p["period_change"];
    assert_eq!(
        (pc["change"].as_str(), pc["effective_at"].as_i64()),
        (Some("next_period"), Some(end))
    );
    assert_eq!(pc["price_per_seat"]["formatted"], "$80.00");
    assert_eq!(w.snapshot().await, before);
    // Asked with a key, retried: one change.
    for _ in 0..2 {
        let (status, done, _) = w.put_seats(json!({"period": "yearly"}), Some("y-1")).await;
        assert_eq!(status, 200, "{done}");
    }
    let sub = subscription(&w).await;
    assert_eq!(
        (sub["period"].as_str(), sub["scheduled_period"].as_str()),
        (Some("monthly"), Some("yearly"))
    );
    assert_eq!(sub["next_invoice"]["seats_amount"]["amount"], 5 * 8000);
    assert_eq!(
        s.audit_actions(1).await,
        ["subscription.period_change_scheduled"]
    );
    // Asking for the current period withdraws it; asking again schedules it again.
    let (_, done, _) = w.put_seats(json!({"period": "monthly"}), None).await;
    assert_eq!(done["change"]["period_change"]["change"], "withdrawn");
    assert_eq!(done["subscription"]["scheduled_period"], Value::Null);
    assert_eq!(
        s.audit_actions(1).await,
        ["subscription.scheduled_change_cancelled"]
    );
    w.put_seats(json!({"period": "yearly"}), None).await;
    // The period turns: the invoice is for a year at the yearly price.
    s.state.clock.advance_ms(end - s.state.clock.now_ms() + DAY);
    wait_for_invoices(&w, 2).await;
    let (_, inv) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-000002", None)
        .await;
    assert_eq!(inv["period"], "yearly", "{inv}");
    assert_eq!(
        (inv["lines"][0]["quantity"].as_i64(), inv["total"].as_i64()),
        (Some(5), Some(5 * 8000))
    );
    let days = (inv["period_end"].as_i64().unwrap() - inv["period_start"].as_i64().unwrap()) / DAY;
    assert!(days == 365 || days == 366, "a year: {days} days");
    let changed: Vec<String> = s
        .rows("SELECT actor_type || ':' || details FROM audit_events WHERE action = 'subscription.period_changed'")
        .await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].starts_with("system:") && changed[0].contains("\"to\":\"yearly\""));
    let sub = subscription(&w).await;
    assert_eq!(
        (sub["period"].as_str(), sub["scheduled_period"].as_str()),
        (Some("yearly"), None)
    );
    // Seats added during a year are prorated over the year.
    let (status, done, _) = w.put_seats(json!({"seats": 7}), None).await;
    assert_eq!(status, 200, "{done}");
    let charge = &done["change"]["charge"];
    assert_eq!(charge["period_days"].as_i64(), Some(days));
    let expected = (2 * 8000 * charge["days"].as_i64().unwrap() + days / 2) / days;
    assert!(
        (charge["amount"]["amount"].as_i64().unwrap() - expected).abs() <= 1,
        "{charge}"
    );
}
both!(
    monthly_billing_turns_yearly_at_the_next_period,
    monthly_to_yearly
);

async fn trial(backend: Backend) {
    let w = world(backend).await;
    let (status, done, _) = w.put_seats(json!({"period": "yearly"}), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["change"]["period_change"]["change"], "now");
    let sub = &done["subscription"];
    assert_eq!(sub["period"], "yearly");
    assert_eq!(sub["next_invoice"]["date"], sub["trial_ends_at"]);
    assert_eq!(sub["next_invoice"]["seats_amount"]["amount"], 5 * 8000);
    assert_eq!(
        w.server.audit_actions(1).await,
        ["subscription.period_changed"]
    );
    let details = w
        .server
        .rows("SELECT details FROM audit_events WHERE action = 'subscription.period_changed'")
        .await;
    assert_eq!(details.len(), 1);
    assert!(details[0].contains("\"effective\":\"now\""), "{details:?}");
    // Seats and period in one request.
    let (status, done, _) = w
        .put_seats(json!({"seats": 6, "period": "monthly"}), None)
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (
            done["subscription"]["seats"].as_i64(),
            done["subscription"]["period"].as_str()
        ),
        (Some(6), Some("monthly"))
    );
}
both!(a_trial_switches_its_period_at_once, trial);

async fn bad_periods(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    let before = w.snapshot().await;
    for (body, code) in [
        (json!({"period": "annual"}), "invalid_period"),
        (json!({"period": 12}), "invalid_period"),
        (json!({"period": null}), "invalid_period"),
        (json!({"seats": 6, "period": "weekly"}), "invalid_period"),
        (json!({}), "nothing_to_change"),
    ] {
        let (status, reply, _) = w.put_seats(body.clone(), None).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    assert_eq!(w.snapshot().await, before);
}
both!(bad_periods_are_refused_and_change_nothing, bad_periods);

async fn states(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    // Past due (unpaid): the organization can still add seats; the charge waits on the invoice.
    w.set_status(Status::PastDue).await;
    let (status, done, _) = w.put_seats(json!({"seats": 7}), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["change"]["change"], "increase");
    assert_eq!(done["subscription"]["status"], "past_due");
    // Cancelled: every change is refused, and nothing changes.
    w.set_status(Status::Cancelled).await;
    let before = w.snapshot().await;
    for body in [
        json!({"seats": 9}),
        json!({"seats": 6}),
        json!({"period": "yearly"}),
    ] {
        let (status, reply, _) = w.put_seats(body.clone(), Some("after-cancel")).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (409, Some("subscription_cancelled")),
            "{body}: {reply}"
        );
        let (status, reply) = w
            .api(
                Method::POST,
                "/api/v1/orgs/corp/subscription/preview",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (409, Some("subscription_cancelled"))
        );
    }
    assert_eq!(subscription(&w).await["next_invoice"], Value::Null);
    assert_eq!(w.snapshot().await, before);
    // A missing invoice is a JSON 404.
    let (status, reply) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-999999", None)
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("invoice_not_found"))
    );
}
both!(past_due_takes_changes_and_cancelled_refuses_them, states);

async fn page(backend: Backend) {
    let w = world(backend).await;
    w.activate().await;
    let s = &w.server;
    let browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let res = browser
        .get(s.url("/admin/corp/billing?period=yearly"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Billed yearly from the next period"),
        "{html}"
    );
    assert!(html.contains(r#"name="period" value="yearly""#), "{html}");
    assert!(
        !html.contains(r#"type="hidden" name="seats""#),
        "only the period is asked"
    );
    assert_eq!(
        s.count("audit_events WHERE action LIKE 'subscription.period%'")
            .await,
        0
    );
    let billing = s.url("/admin/corp/billing");
    let res = post_form(&browser, &billing, &billing, &[("period", "yearly")]).await;
    assert_eq!(res.status(), 303);
    let html = browser
        .get(&billing)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Done. Billed yearly from the next period"),
        "{html}"
    );
    assert!(
        html.contains("Scheduled: billed <strong>yearly</strong>"),
        "{html}"
    );
    let res = browser
        .get(s.url("/admin/corp/billing?period=weekly"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("is not"));
}
both!(an_admin_switches_to_yearly_in_the_browser, page);
