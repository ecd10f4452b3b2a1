//! The operator's commands through the real binary, against the database of a running server:
//! `org seats` under the same rules as the API, and `billing import-legacy` with the saving the
//! billing page then offers.

use std::process::Stdio;

use reqwest::Method;
use serde_json::Value;
use tokio::process::Command;

use crate::both;
use crate::common::{Backend, TestServer};
use crate::{PASSWORD, world_with};

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");

async fn run(db_url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("NULAB_PASS_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run nulab-pass");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn operator(backend: Backend) {
    let w = world_with(TestServer::start(backend).await).await;
    let s = &w.server;
    let url = s.testdb.url.clone();
    w.managed(3).await;
    let (code, out, err) = run(
        &url,
        &["org", "seats", "--org", "corp", "--seats", "12", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (out["seats"].as_i64(), out["used"].as_i64()),
        (Some(12), Some(3))
    );
    assert_eq!(s.audit_actions(1).await, ["subscription.seats_changed"]);
    assert_eq!(
        s.count("billing_charges").await,
        0,
        "the operator's change has no charge"
    );
    // The same rules as the API: nothing changes.
    let before = w.snapshot().await;
    for (seats, says) in [
        ("2", "below 3"),
        ("0", "at least 1"),
        ("-4", "whole number"),
        ("99999999", "whole number"),
    ] {
        let seats = format!("--seats={seats}");
        let (code, _, err) = run(&url, &["org", "seats", "--org", "corp", &seats]).await;
        assert_ne!(code, 0, "{seats}");
        assert!(err.contains(says), "{seats}: {err}");
    }
    let (code, _, err) = run(&url, &["org", "seats", "--org", "corp", "--seats", "ten"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("invalid value"), "{err}");
    assert_eq!(w.snapshot().await, before);
    // A reduction applies at once for the operator.
    let (code, _, err) = run(&url, &["org", "seats", "--org", "corp", "--seats", "3"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        s.rows("SELECT CAST(seats AS TEXT) FROM orgs WHERE slug = 'corp'")
            .await,
        ["3"]
    );
}
both!(org_seats_goes_through_the_rules_of_the_api, operator);

async fn legacy_billing(backend: Backend) {
    let w = world_with(TestServer::start(backend).await).await;
    let s = &w.server;
    let url = s.testdb.url.clone();
    w.managed(3).await;
    let (code, out, err) = run(
        &url,
        &[
            "billing",
            "import-legacy",
            "--org",
            "corp",
            "--seats",
            "40",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (out["seats"].as_i64(), out["managed"].as_i64()),
        (Some(40), Some(3))
    );
    let mut actions = s.audit_actions(2).await;
    actions.sort();
    assert_eq!(actions, ["invoice.issued", "subscription.legacy_imported"]);
    let (_, sub) = w
        .api(Method::GET, "/api/v1/orgs/corp/subscription", None)
        .await;
    assert_eq!(
        (sub["status"].as_str(), sub["seats"].as_i64()),
        (Some("active"), Some(40))
    );
    let saving = &sub["legacy_saving"];
    assert_eq!(
        (
            saving["billed_seats"].as_i64(),
            saving["could_reduce_to"].as_i64()
        ),
        (Some(40), Some(3))
    );
    assert_eq!(saving["per_period"]["amount"], 37 * 800);
    // The page says so and offers a one-click preview; nothing is reduced without a confirmation.
    let browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let html = browser
        .get(s.url("/admin/corp/billing"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("was billed for every user: 40 seats")
            && html.contains("could reduce to <strong>3</strong>"),
        "{html}"
    );
    assert!(html.contains(r#"name="seats" value="3""#));
    let preview = browser
        .get(s.url("/admin/corp/billing?seats=3"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        preview.contains("Confirm the change to 3 seats")
            && preview.contains("$296.00 less each period"),
        "{preview}"
    );
    assert_eq!(
        s.rows("SELECT CAST(seats AS TEXT) FROM orgs WHERE slug = 'corp'")
            .await,
        ["40"]
    );
    // A correction is a credit note; the invoice itself never changes.
    let inv = s
        .rows("SELECT number || ':' || CAST(total AS TEXT) FROM invoices")
        .await;
    assert_eq!(inv, ["INV-000001:32000"]);
    let args = [
        "billing",
        "credit-note",
        "--org",
        "corp",
        "--invoice",
        "INV-000001",
        "--amount",
        "800",
        "--reason",
        "one seat too many",
    ];
    let (code, out, err) = run(&url, &args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "CN-000001 -$8.00");
    assert_eq!(s.audit_actions(1).await, ["credit_note.issued"]);
    let before = w.snapshot().await;
    for (invoice, amount, says) in [
        ("INV-000001", "32001", "between 1 and 32000"),
        ("INV-000404", "5", "no invoice"),
        ("INV-000001", "0", "between 1"),
    ] {
        let amount = format!("--amount={amount}");
        let args = [
            "billing",
            "credit-note",
            "--org",
            "corp",
            "--invoice",
            invoice,
            &amount,
            "--reason",
            "x",
        ];
        let (code, _, err) = run(&url, &args).await;
        assert_ne!(code, 0);
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(w.snapshot().await, before);
    assert_eq!(
        s.rows("SELECT number || ':' || CAST(total AS TEXT) FROM invoices ORDER BY number")
            .await,
        ["CN-000001:-800", "INV-000001:32000"]
    );
    // Unknown organization: a clear error.
    let (code, _, err) = run(
        &url,
        &["billing", "import-legacy", "--org", "nope", "--seats", "4"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("no organization nope"), "{err}");
}
both!(
    billing_import_legacy_keeps_seats_and_shows_the_saving,
    legacy_billing
);

/// One SSO sign-in of `email` through the mock IdP, from the connection's login URL.
async fn sso_sign_in(
    s: &TestServer,
    idp: &nulab_pass::mock_idp::MockIdp,
    connection: &Value,
    email: &str,
) -> (u16, String) {
    let browser = s.client();
    let login = connection["login_url"].as_str().unwrap();
    let res = browser.get(login).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = res.headers()["location"].to_str().unwrap().to_string();
    let res = crate::common::idp_answers(&browser, &to_idp, idp, connection, email).await;
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

async fn legacy_org(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.billing.poll_ms = 20).await;
    let w = world_with(server).await;
    let s = &w.server;
    // Ana's managed account predates domain verification: corp never verified old.test.
    s.verified_domain(&w.org, "old.test").await;
    let (status, _) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(serde_json::json!({"email": "ana@old.test", "name": "Ana"})),
        )
        .await;
    assert_eq!(status, 201);
    sqlx::query("DELETE FROM domains WHERE domain = 'old.test'")
        .execute(s.db().pool())
        .await
        .unwrap();
    let idp = nulab_pass::mock_idp::MockIdp::generate(
        "https://idp.corp.test/metadata",
        "https://idp.corp.test/sso",
    )
    .unwrap();
    let (status, connection) = w
        .api(
            Method::POST,
            "/api/v1/orgs/corp/saml-connections",
            Some(serde_json::json!({"metadata_xml": idp.metadata_xml(), "name": "Corp IdP"})),
        )
        .await;
    assert_eq!(status, 201, "{connection}");
    let (status, body) = sso_sign_in(s, &idp, &connection, "ana@old.test").await;
    assert_eq!(status, 403, "rule 1 before the import");
    assert!(body.contains("domain_not_verified"), "{body}");

    let url = s.testdb.url.clone();
    let (code, out, err) = run(&url, &["org", "import-legacy", "--org", "corp", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["days_left"], 60);
    assert_eq!(
        out["accounts"],
        serde_json::json!([{"email": "ana@old.test", "domain": "old.test"}])
    );
    assert_eq!(s.audit_actions(1).await, ["org.legacy_imported"]);
    let mail = s
        .last_mail("admin@corp.test", "billing.legacy_domains")
        .await;
    assert!(mail.subject.contains("within 60 days"), "{}", mail.subject);
    // During the transition she signs in; the domains page says who depends on what and how long.
    let (status, body) = sso_sign_in(s, &idp, &connection, "ana@old.test").await;
    assert_eq!(status, 303, "{body}");
    let browser = s.signed_in("admin@corp.test", PASSWORD).await;
    let page = browser
        .get(s.url("/admin/corp/domains"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<td>ana@old.test</td><td>old.test</td>") && page.contains("60 more days"),
        "{page}"
    );
    // A week later the admins are reminded.
    s.state.clock.advance_ms(8 * 86_400_000);
    for _ in 0..400 {
        if s.count("outbox WHERE kind = 'billing.legacy_domains_reminder'")
            .await
            > 0
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let reminder = s
        .last_mail("admin@corp.test", "billing.legacy_domains_reminder")
        .await;
    assert!(
        reminder.subject.starts_with("Reminder:"),
        "{}",
        reminder.subject
    );
    let reminded = s
        .rows("SELECT action FROM audit_events WHERE action = 'org.legacy_domains_reminded'")
        .await;
    assert_eq!(reminded, ["org.legacy_domains_reminded"]);
    // When the period ends, rule 1 applies to her as to everyone.
    s.state.clock.advance_ms(53 * 86_400_000);
    let (status, body) = sso_sign_in(s, &idp, &connection, "ana@old.test").await;
    assert_eq!(status, 403);
    assert!(body.contains("domain_not_verified"), "{body}");
    // Unknown organization: a clear error.
    let (code, _, err) = run(&url, &["org", "import-legacy", "--org", "nope"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no organization nope"), "{err}");
}
both!(org_import_legacy_gives_a_transition_then_rule_1, legacy_org);
