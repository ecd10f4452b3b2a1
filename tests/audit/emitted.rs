//! Flows whose audit events no other test asserted, each run through the real server: an
//! account's own changes (email, leaving an organization, the second factor), the password
//! policy, IdP connection administration and a failed metadata refresh.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::json;

use super::viewer::{PASSWORD, call, corp};
use crate::both;
use crate::common::{Backend, TestServer, post_form};

/// A Nulab account's own changes: it joins and leaves an org, turns on two-step verification
/// (its next password sign-in stops at the second factor), turns it off, changes its email.
async fn account_changes_are_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    let token = s.token(&org).await;
    s.account("nia@mail.test", "Nia", PASSWORD).await;
    let nia = s
        .invite_and_accept("corp", &token, "nia@mail.test", PASSWORD, "member")
        .await;
    let res = post_form(
        &nia,
        &s.url("/account"),
        &s.url("/account/orgs/corp/leave"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(s.audited("member.left").await);

    let secret = s.enroll_totp("nia@mail.test").await;
    let browser = s.client();
    let res = post_form(
        &browser,
        &s.url("/signin"),
        &s.url("/signin"),
        &[
            ("email", "nia@mail.test"),
            ("password", PASSWORD),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin/two-step")
    );
    assert!(s.audited("account.password_verified").await);

    let code = s.totp_code(&secret);
    let res = post_form(
        &nia,
        &s.url("/account/two-step"),
        &s.url("/account/two-step/remove"),
        &[("password", PASSWORD), ("code", &code)],
    )
    .await;
    assert!(
        res.status().is_redirection() || res.status() == 200,
        "{}",
        res.status()
    );
    assert!(s.audited("account.totp_removed").await);

    let res = post_form(
        &nia,
        &s.url("/account/email"),
        &s.url("/account/email"),
        &[("email", "nia@new.test"), ("password", PASSWORD)],
    )
    .await;
    assert!(
        res.status().is_redirection() || res.status() == 200,
        "{}",
        res.status()
    );
    assert!(s.audited("account.email_change_requested").await);
    assert!(
        !s.audited("account.email_changed").await,
        "not before the new address is confirmed"
    );
    let mail = s.last_mail("nia@new.test", "account.verify_email").await;
    let link = crate::common::link_in(&mail.body_text, &s.url("/verify-email?token="))
        .expect("confirmation link");
    assert_eq!(nia.get(&link).send().await.unwrap().status(), 200);
    assert!(s.audited("account.email_changed").await);
}
both!(account_changes_are_audited, account_changes_are_audited);

/// The password policy and an IdP connection's whole life, through the API.
async fn settings_and_connections_are_audited(backend: Backend) {
    let c = corp(TestServer::start(backend).await).await;
    let s = &c.s;
    assert!(s.audited("saml_connection.created").await);
    assert!(
        s.audited("subscription.seats_changed").await,
        "the seats fixture sets seats"
    );
    let org_id = c.org.id.to_string();
    let mark = s
        .rows(&format!(
            "SELECT CAST(MAX(seq) AS TEXT) FROM audit_events WHERE chain = '{org_id}'"
        ))
        .await;
    let (status, body) = call(s, &c.token, Method::PUT, "/api/v1/orgs/corp/password-policy", Some(json!({"min_length": 14, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": true}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.audited("password_policy.changed").await);
    let path = format!(
        "/api/v1/orgs/corp/saml-connections/{}",
        c.connection["id"].as_str().unwrap()
    );
    let (status, body) = call(
        s,
        &c.token,
        Method::PATCH,
        &path,
        Some(json!({"name": "Renamed IdP"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(s.audited("saml_connection.updated").await);
    let (status, body) = call(s, &c.token, Method::DELETE, &path, None).await;
    assert!(status == 200 || status == 204, "{status}: {body}");
    assert!(s.audited("saml_connection.deleted").await);
    // Every event of these admin API calls has the API token as its actor.
    let actors = s
        .rows(&format!(
            "SELECT actor_type || ' ' || COALESCE(actor_id, '-') FROM audit_events \
             WHERE chain = '{org_id}' AND seq > {}",
            mark[0]
        ))
        .await;
    assert_eq!(actors.len(), 3, "{actors:?}");
    assert!(actors[0].starts_with("api_token "), "{actors:?}");
    assert!(actors.iter().all(|a| a == &actors[0]), "{actors:?}");
}
both!(
    settings_and_connections_are_audited,
    settings_and_connections_are_audited
);

/// Metadata published on loopback (development mode) that later fails to load: the refresh
/// job records the failure.
async fn failed_metadata_refresh_is_audited(backend: Backend) {
    let s = TestServer::start_with(backend, |config| config.dev = true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = nulab_pass::mock_idp::MockIdp::generate(
        &format!("{base}/metadata"),
        &format!("{base}/sso"),
    )
    .unwrap();
    let served = Arc::new(Mutex::new(Some(idp.metadata_xml())));
    let shared = served.clone();
    let app = axum::Router::new().route(
        "/metadata",
        axum::routing::get(move || {
            let xml = shared.lock().unwrap().clone();
            async move {
                match xml {
                    Some(xml) => (axum::http::StatusCode::OK, xml),
                    None => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let admin = s.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    let token = s.token(&org).await;
    let (status, body) = call(
        &s,
        &token,
        Method::POST,
        "/api/v1/orgs/corp/saml-connections",
        Some(json!({"metadata_url": format!("{base}/metadata")})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    *served.lock().unwrap() = None;
    s.state.clock.advance_ms(25 * 3600 * 1000);
    nulab_pass::saml::jobs::pass(&s.state).await.unwrap();
    assert!(s.audited("saml_connection.metadata_refresh_failed").await);
}
both!(
    failed_metadata_refresh_is_audited,
    failed_metadata_refresh_is_audited
);
