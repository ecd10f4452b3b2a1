//! The running server across simulated billing periods (the clock moves, the job turns them):
//! invoices with their lines and sequential numbers, a scheduled reduction that stops at the
//! seats in use, and the billing page in the browser with its downloads.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::common::{Backend, TestServer, post_form};
use crate::{PASSWORD, World, world_with};

const DAY: i64 = 86_400_000;

async fn wait_for_invoices(w: &World, n: i64) {
    for _ in 0..400 {
        if w.server.count("invoices").await >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the job did not write invoice {n}");
}

async fn periods(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.billing.poll_ms = 20;
        c.billing.tax_basis_points = 1000;
    })
    .await;
    let w = world_with(server).await;
    w.activate().await;
    let s = &w.server;
    // The first period is invoiced at once: 5 seats × $8.00 + 10% tax.
    wait_for_invoices(&w, 1).await;
    let (_, list) = w.api(Method::GET, "/api/v1/orgs/corp/invoices", None).await;
    assert_eq!(list["items"][0]["number"], "INV-000001");
    assert_eq!(list["items"][0]["total"], 4400);
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    let end = sub["period_end"].as_i64().unwrap();
    // 3 seats added today are charged now and billed on the next invoice.
    let (status, done, _) = w.put_seats(json!({"seats": 8}), None).await;
    assert_eq!(status, 200, "{done}");
    let charge = done["change"]["charge"]["amount"]["amount"]
        .as_i64()
        .unwrap();
    let charge_id = s.rows("SELECT id FROM billing_charges").await.remove(0);
    // The period turns.
    s.state
        .clock
        .advance_ms(end - s.state.clock.now_ms() + 3_600_000);
    wait_for_invoices(&w, 2).await;
    let (status, inv) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-000002", None)
        .await;
    assert_eq!(status, 200, "{inv}");
    let lines = inv["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{inv}");
    assert_eq!(
        (lines[0]["quantity"].as_i64(), lines[0]["amount"].as_i64()),
        (Some(8), Some(6400))
    );
    assert_eq!(lines[1]["source"], format!("charge:{charge_id}"));
    assert_eq!(lines[1]["amount"], charge);
    assert_eq!(lines[2]["source"], "tax");
    let subtotal = 6400 + charge;
    let tax = (subtotal * 1000 * 2 + 10_000) / 20_000;
    assert_eq!(
        (
            inv["subtotal"].as_i64(),
            inv["tax"].as_i64(),
            inv["total"].as_i64()
        ),
        (Some(subtotal), Some(tax), Some(subtotal + tax))
    );
    // The charge's line leads to the audit event that made it.
    let made: Vec<String> = s
        .rows(&format!(
            "SELECT action FROM audit_events WHERE details LIKE '%{charge_id}%' ORDER BY occurred_at"
        ))
        .await;
    assert_eq!(made, ["subscription.seats_changed", "invoice.issued"]);
    // A reduction to 2 is scheduled, but 4 managed accounts exist when the period turns.
    let (_, done, _) = w.put_seats(json!({"seats": 2}), None).await;
    assert_eq!(done["change"]["change"], "decrease");
    w.managed(4).await;
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    let end = sub["period_end"].as_i64().unwrap();
    s.state.clock.advance_ms(end - s.state.clock.now_ms() + DAY);
    wait_for_invoices(&w, 3).await;
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(
        (sub["seats"].as_i64(), sub["scheduled_seats"].as_i64()),
        (Some(4), None)
    );
    let mail = s
        .last_mail("admin@corp.test", "billing.reduction_stopped")
        .await;
    assert!(
        mail.subject.contains("stopped at 4 seats"),
        "{}",
        mail.subject
    );
    let (_, inv) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-000003", None)
        .await;
    assert_eq!(inv["lines"][0]["quantity"], 4);
    assert_eq!(
        s.rows("SELECT number FROM invoices ORDER BY number").await,
        ["INV-000001", "INV-000002", "INV-000003"]
    );
    // Invoices never change.
    for sql in [
        "UPDATE invoices SET total = 0",
        "DELETE FROM invoice_lines",
        "DELETE FROM invoices",
    ] {
        let refused = sqlx::query(sql).execute(s.db().pool()).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    assert_eq!(s.count("invoice_lines").await, 2 + 3 + 2);
}
both!(the_running_server_invoices_each_period, periods);

async fn page(backend: Backend) {
    let w = world_with(TestServer::start(backend).await).await;
    w.activate().await;
    let s = &w.server;
    let browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let billing = s.url("/admin/corp/billing");
    let html = browser
        .get(&billing)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"href="/admin/corp/billing" aria-current="page""#),
        "in the admin navigation"
    );
    assert!(html.contains(r#"<strong id="seats">5</strong>"#), "{html}");
    assert!(html.contains("<svg") && html.contains(r#"class="seats" points=""#));
    assert!(html.contains("INV-000001"));
    // The preview shows the change and its charge before anything happens.
    let preview = browser
        .get(format!("{billing}?seats=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    let preview = preview.text().await.unwrap();
    assert!(
        preview.contains("Confirm the change to 10 seats"),
        "{preview}"
    );
    assert!(preview.contains("Charge now: 5 ×"), "{preview}");
    assert_eq!(s.count("billing_charges").await, 0);
    // Bad input: a clear message and nothing changed.
    let before = w.snapshot().await;
    for bad in ["abc", "-3", "2.5", "0"] {
        let res = post_form(&browser, &billing, &billing, &[("seats", bad)]).await;
        assert_eq!(res.status(), 400, "{bad}");
        let body = res.text().await.unwrap();
        assert!(body.contains("role=\"alert\""), "{bad}: {body}");
    }
    assert_eq!(w.snapshot().await, before);
    let res = post_form(&browser, &billing, &billing, &[("seats", "10")]).await;
    assert_eq!(res.status(), 303);
    let html = browser
        .get(&billing)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Done. 5 more seats from today"), "{html}");
    assert!(html.contains(r#"<strong id="seats">10</strong>"#));
    // The invoice: printable page, CSV, PDF; another organization's admin cannot read it.
    let page = browser
        .get(s.url("/admin/corp/billing/invoices/INV-000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Invoice INV-000001"));
    let csv = browser
        .get(s.url("/admin/corp/billing/invoices/INV-000001/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("number,kind,organization,")
            && csv.contains("INV-000001,invoice,Test Org,"),
        "{csv}"
    );
    assert!(csv.contains(",5,8.00,40.00,subscription:"), "{csv}");
    let pdf = browser
        .get(s.url("/admin/corp/billing/invoices/INV-000001/pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-") && pdf.windows(10).any(|w| w == b"INV-000001"));
    let missing = browser
        .get(s.url("/admin/corp/billing/invoices/INV-999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let stranger = s.account("eve@else.test", "Eve", PASSWORD).await;
    s.org("else", &stranger).await;
    let eve = s.signed_in("eve@else.test", PASSWORD).await;
    let res = eve
        .get(s.url("/admin/corp/billing/invoices/INV-000001/pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let (status, _): (u16, Value) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-000001", None)
        .await;
    assert_eq!(status, 200);
}
both!(an_admin_sees_and_changes_the_plan_in_the_browser, page);

async fn trial_end(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.billing.poll_ms = 20).await;
    let w = world_with(server).await;
    let s = &w.server;
    w.managed(2).await;
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    let ends = sub["trial_ends_at"].as_i64().unwrap();
    assert_eq!(s.count("invoices").await, 0, "no invoice during the trial");
    s.state
        .clock
        .advance_ms(ends - s.state.clock.now_ms() + 60_000);
    wait_for_invoices(&w, 1).await;
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, actor_type FROM audit_events WHERE action IN ('subscription.activated', 'invoice.issued') ORDER BY action",
    )
    .fetch_all(s.db().pool())
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            ("invoice.issued".to_string(), "system".to_string()),
            ("subscription.activated".to_string(), "system".to_string())
        ]
    );
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(
        (sub["status"].as_str(), sub["seats"].as_i64()),
        (Some("active"), Some(5)),
        "the seats stay"
    );
    let (_, inv) = w
        .api(Method::GET, "/api/v1/orgs/corp/invoices/INV-000001", None)
        .await;
    assert_eq!(
        (inv["lines"][0]["quantity"].as_i64(), inv["total"].as_i64()),
        (Some(5), Some(4000))
    );
}
both!(a_trial_ends_in_an_active_invoiced_subscription, trial_end);
