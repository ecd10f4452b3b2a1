//! Email ownership: an address is claimed only once it is confirmed. Unconfirmed sign-ups block
//! no one; confirming, or an organization's managed account, takes the address from them; an email
//! change keeps the confirmed address until the new one is confirmed, then tells the old one; and
//! a product sees `email_verified: true` only for a confirmed address.

use super::*;
use common::{link_in, post_form};

/// Signs up through the page; returns the browser (signed in as the new, unconfirmed account).
async fn sign_up(s: &TestServer, email: &str, name: &str, password: &str) -> reqwest::Client {
    let browser = s.client();
    let res = post_form(
        &browser,
        &s.url("/signup"),
        &s.url("/signup"),
        &[("email", email), ("name", name), ("password", password)],
    )
    .await;
    assert_eq!(res.status(), 200, "{email}");
    browser
}

/// Every confirmation link sent to `to`, oldest first.
async fn links_to(s: &TestServer, to: &str) -> Vec<String> {
    let prefix = s.url("/verify-email?token=");
    s.rows(&format!(
        "SELECT body_text FROM outbox WHERE to_addr = '{to}' AND kind = 'account.verify_email' \
         ORDER BY created_at"
    ))
    .await
    .iter()
    .map(|body| link_in(body, &prefix).expect("a link"))
    .collect()
}

/// The accounts naming `email`: id, whether confirmed, whether released; by creation.
async fn holders(s: &TestServer, email: &str) -> Vec<String> {
    s.rows(&format!(
        "SELECT id || ' ' || kind || ' ' || \
         CASE WHEN email_verified_at IS NULL THEN 'unconfirmed' ELSE 'confirmed' END || ' ' || \
         CASE WHEN email_released_at IS NULL THEN 'holds' ELSE 'released' END \
         FROM accounts WHERE email_norm = '{email}' ORDER BY created_at, id"
    ))
    .await
}

/// The `reason` and `claimed_by` of each `account.email_claim_lost` event about `account`.
async fn claims_lost(s: &TestServer, account: &str) -> Vec<(String, String)> {
    s.rows(&format!(
        "SELECT details FROM audit_events WHERE action = 'account.email_claim_lost' \
         AND target_id = '{account}' ORDER BY occurred_at"
    ))
    .await
    .iter()
    .map(|d| {
        let v: Value = serde_json::from_str(d).unwrap();
        (
            v["reason"].as_str().unwrap().to_string(),
            v["claimed_by"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

/// What a password sign-in answers (303 to `/account` when it signs in).
async fn password_sign_in(s: &TestServer, email: &str, password: &str) -> (u16, String) {
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
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (res.status().as_u16(), location)
}

async fn unconfirmed_addresses(backend: Backend) {
    let w = world(backend).await;
    first_to_confirm_takes_it(&w).await;
    managed_accounts_come_first(&w).await;
    assert!(w.server.audited("account.email_claim_lost").await);
}

/// Two unconfirmed sign-ups with one address: the one that confirms takes it.
async fn first_to_confirm_takes_it(w: &World) {
    let s = &w.server;
    // Mallory signs up with Vic's address and never confirms it; Vic signs up too. Neither
    // blocks the other.
    let mallory = sign_up(s, "vic@example.com", "Mallory", "mallory knows 12").await;
    s.state.clock.advance_ms(1000);
    sign_up(s, "vic@example.com", "Vic", PASSWORD).await;
    let rows = holders(s, "vic@example.com").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.ends_with("nulab unconfirmed holds")));
    let (mallory_id, vic_id) = (
        rows[0].split(' ').next().unwrap().to_string(),
        rows[1].split(' ').next().unwrap().to_string(),
    );
    let links = links_to(s, "vic@example.com").await;
    assert_eq!(links.len(), 2);
    // Unconfirmed, Vic reaches a product, which is told the address is not verified.
    let (_, claims, _) = w.sign_in_to_backlog("vic@example.com", PASSWORD).await;
    assert_eq!(
        (claims["sub"].as_str(), &claims["email_verified"]),
        (Some(vic_id.as_str()), &json!(false))
    );

    // Vic confirms: the address is Vic's, and Mallory's account loses its claim.
    assert_eq!(get(&w.http, &links[1]).await.0, 200);
    let rows = holders(s, "vic@example.com").await;
    assert_eq!(
        rows,
        [
            format!("{mallory_id} nulab unconfirmed released"),
            format!("{vic_id} nulab confirmed holds")
        ]
    );
    assert_eq!(
        claims_lost(s, &mallory_id).await,
        [("confirmed_by_another_account".to_string(), vic_id.clone())]
    );
    let (_, claims, _) = w.sign_in_to_backlog("vic@example.com", PASSWORD).await;
    assert_eq!(
        (claims["sub"].as_str(), &claims["email_verified"]),
        (Some(vic_id.as_str()), &json!(true))
    );
    // Mallory's session ended, and nothing of hers works any more: not her link (which changes
    // nothing), not her password.
    assert_eq!(get(&mallory, &s.url("/account")).await.0, 303);
    let before = (
        holders(s, "vic@example.com").await,
        s.count("audit_events").await,
    );
    let (status, _) = get(&w.http, &links[0]).await;
    assert!(status == 400 || status == 410, "{status}");
    assert_eq!(
        (
            holders(s, "vic@example.com").await,
            s.count("audit_events").await
        ),
        before
    );
    assert_ne!(
        password_sign_in(s, "vic@example.com", "mallory knows 12").await,
        (303, "/account".to_string())
    );
}

/// An organization's managed account takes an address from an unconfirmed sign-up, never
/// from a confirmed account.
async fn managed_accounts_come_first(w: &World) {
    let s = &w.server;
    // An organization's managed account takes precedence over an unconfirmed sign-up.
    let token = corp_org(s, 5).await;
    let sam = sign_up(s, "sam@corp.test", "Sam at home", "sam at home 12").await;
    assert_eq!(get(&sam, &s.url("/account")).await.0, 200);
    let unconfirmed = holders(s, "sam@corp.test").await[0]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    managed_account(s, &token, "sam@corp.test", "Sam").await;
    let managed = account_id(s, "sam@corp.test").await;
    assert_ne!(managed, unconfirmed);
    assert_eq!(
        holders(s, "sam@corp.test").await,
        [
            format!("{unconfirmed} nulab unconfirmed released"),
            format!("{managed} managed confirmed holds")
        ]
    );
    assert_eq!(
        claims_lost(s, &unconfirmed).await,
        [("managed_account".to_string(), managed.clone())]
    );
    assert_eq!(get(&sam, &s.url("/account")).await.0, 303, "signed out");
    let (_, claims, _) = w.sign_in_to_backlog("sam@corp.test", PASSWORD).await;
    assert_eq!(
        (claims["sub"].as_str(), claims["org"].as_str()),
        (Some(managed.as_str()), Some("corp"))
    );
    assert_eq!(claims["email_verified"], true);

    // A confirmed Nulab account keeps its address: the managed account is refused and nothing
    // changes (the organization migrates it instead).
    s.account("lee@corp.test", "Lee", PASSWORD).await;
    let before = (
        holders(s, "lee@corp.test").await,
        s.count("accounts").await,
        s.count("audit_events").await,
    );
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(json!({"email": "lee@corp.test", "name": "Lee", "password": PASSWORD})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("email_taken")));
    assert_eq!(
        (
            holders(s, "lee@corp.test").await,
            s.count("accounts").await,
            s.count("audit_events").await
        ),
        before
    );
}
both!(unconfirmed_addresses_block_no_one, unconfirmed_addresses);

/// Rows an email change must leave alone when refused.
async fn change_snapshot(s: &TestServer) -> (Vec<String>, i64, i64, i64) {
    (
        s.rows("SELECT email || ' ' || COALESCE(CAST(email_verified_at AS TEXT), '-') FROM accounts ORDER BY email_norm")
            .await,
        s.count("email_tokens").await,
        s.count("outbox").await,
        s.count("audit_events").await,
    )
}

async fn email_change(backend: Backend) {
    let w = world(backend).await;
    let (ada, report) = change_and_confirm(&w).await;
    report_the_change(&w, &ada, &report).await;
    assert!(w.server.audited("account.email_change_reported").await);
}

/// Ada changes her email to an address corp invited; returns her browser and the report link
/// the old address received.
async fn change_and_confirm(w: &World) -> (reqwest::Client, String) {
    let s = &w.server;
    let ada_id = account_id(s, ADA).await;
    s.account("bob@example.com", "Bob", PASSWORD).await;
    // corp invites the address Ada is about to move to.
    let token = corp_org(s, 5).await;
    let (status, _) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/members"),
        &token,
        Some(json!({"email": "ada@new.test", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201);
    let ada = s.signed_in(ADA, PASSWORD).await;
    let change = |email: &'static str, password: &'static str| {
        let ada = ada.clone();
        async move {
            let res = post_form(
                &ada,
                &s.url("/account/email"),
                &s.url("/account/email"),
                &[("email", email), ("password", password)],
            )
            .await;
            res.status().as_u16()
        }
    };

    // Refused requests change nothing.
    let before = change_snapshot(s).await;
    assert_eq!(change("ada@new.test", "not my password").await, 403);
    assert_eq!(change("ADA@example.com", PASSWORD).await, 400);
    assert_eq!(change("bob@example.com", PASSWORD).await, 409);
    assert_eq!(change("not an address", PASSWORD).await, 400);
    assert_eq!(change_snapshot(s).await, before);

    // The request: a link to the new address, and nothing else changes.
    assert_eq!(change("ada@new.test", PASSWORD).await, 200);
    assert!(s.audited("account.email_change_requested").await);
    assert_eq!(
        holders(s, "ada@example.com").await,
        [format!("{ada_id} nulab confirmed holds")]
    );
    assert!(holders(s, "ada@new.test").await.is_empty());
    let page = ada
        .get(s.url("/account/email"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Waiting for confirmation: <strong>ada@new.test</strong>"));
    let (_, claims, _) = w.sign_in_to_backlog(ADA, PASSWORD).await;
    assert_eq!(
        (&claims["email"], &claims["email_verified"]),
        (&json!(ADA), &json!(true))
    );
    let account_page = |browser: reqwest::Client| async move {
        browser
            .get(s.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        !account_page(ada.clone()).await.contains("/invitations/"),
        "an invitation to an unconfirmed address is not hers yet"
    );
    // The pending address blocks no one: another sign-up may name it.
    s.state.clock.advance_ms(1000);
    let other = sign_up(s, "ada@new.test", "Other", "another person 12").await;

    // Ada confirms: the address is hers, the other sign-up loses it, the old address is told.
    let link = links_to(s, "ada@new.test").await[0].clone();
    assert_eq!(get(&ada, &link).await.0, 200);
    assert!(s.audited("account.email_changed").await);
    let rows = holders(s, "ada@new.test").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0], format!("{ada_id} nulab confirmed holds"));
    assert!(rows[1].ends_with("nulab unconfirmed released"), "{rows:?}");
    assert_eq!(get(&other, &s.url("/account")).await.0, 303);
    let (_, claims, _) = w.sign_in_to_backlog("ada@new.test", PASSWORD).await;
    assert_eq!(
        (&claims["sub"], &claims["email"], &claims["email_verified"]),
        (&json!(ada_id), &json!("ada@new.test"), &json!(true))
    );
    assert!(
        account_page(ada.clone()).await.contains("/invitations/"),
        "the confirmed address brings its invitation"
    );
    let notice = s.last_mail(ADA, "account.email_changed").await;
    assert!(
        notice
            .body_text
            .contains("from ada@example.com to ada@new.test")
    );
    let report = link_in(
        &notice.body_text,
        &s.url("/account/email-change-report?token="),
    )
    .expect("a report link");

    (ada, report)
}

/// The old address reports the change: restored, a new password, every session ended; once.
async fn report_the_change(w: &World, ada: &reqwest::Client, report: &str) {
    let s = &w.server;
    let ada_id = account_id(s, "ada@new.test").await;
    // The old address reports it: restored, a new password, every session ended.
    let page = w.http.get(report).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Restore my address"));
    let reporter = s.client();
    let token_value = report.split("token=").nth(1).unwrap().to_string();
    let report_with = |password: &'static str, confirm: &'static str| {
        let (reporter, token_value) = (reporter.clone(), token_value.clone());
        async move {
            // The CSRF token comes from any page of the reporter's session.
            post_form(
                &reporter,
                &s.url("/signin"),
                &s.url("/account/email-change-report"),
                &[
                    ("token", &token_value),
                    ("password", password),
                    ("confirm", confirm),
                ],
            )
            .await
            .status()
            .as_u16()
        }
    };
    let before = change_snapshot(s).await;
    assert_eq!(
        report_with("a fresh secret 12", "a different one 12").await,
        400
    );
    assert_eq!(report_with("short", "short").await, 400);
    assert_eq!(change_snapshot(s).await, before);
    assert_eq!(
        report_with("a fresh secret 12", "a fresh secret 12").await,
        200
    );
    assert_eq!(
        holders(s, "ada@example.com").await,
        [format!("{ada_id} nulab confirmed holds")]
    );
    assert_eq!(get(ada, &s.url("/account")).await.0, 303, "signed out");
    assert_ne!(
        password_sign_in(s, ADA, PASSWORD).await,
        (303, "/account".to_string()),
        "the old password is gone"
    );
    assert_eq!(
        password_sign_in(s, ADA, "a fresh secret 12").await,
        (303, "/account".to_string())
    );
    // Once only.
    let before = change_snapshot(s).await;
    assert_eq!(
        report_with("another one 1234", "another one 1234").await,
        410
    );
    assert_eq!(change_snapshot(s).await, before);
}
both!(
    an_email_change_waits_for_the_new_address_and_tells_the_old,
    email_change
);
