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
