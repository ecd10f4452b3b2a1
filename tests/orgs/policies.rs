//! An organization has power only over its managed accounts and the members who accepted its
//! invitation, and only inside that organization: the attack of a stranger organization, and
//! "SSO required" and the session lifetime gating only the organization's admin area for a
//! Nulab-account admin, who can always reach their own account and leave.

use super::*;
use common::post_form;
use reqwest::Method;

const HOUR: i64 = 3_600_000;
const SSO_REQUIRED: &str = r#"{"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": false}"#;

/// Eve's organization `evil`: Eve has a second factor (so it may require SSO), invites
/// `victim@example.com` as an admin, requires SSO and a one-hour session lifetime.
async fn stranger_org(s: &TestServer) -> (nulab_pass::orgs::Org, String) {
    let eve = s.account("eve@example.com", "Eve", PASSWORD).await;
    let evil = s.org("evil", &eve).await;
    s.enroll_totp("eve@example.com").await;
    let token = token_for(s, &evil).await;
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/evil/members"),
        &token,
        Some(json!({"email": "victim@example.com", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let policy: Value = serde_json::from_str(SSO_REQUIRED).unwrap();
    let (status, body) = api(
        &s.client(),
        Method::PUT,
        s.url("/api/v1/orgs/evil/password-policy"),
        &token,
        Some(policy),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api(
        &s.client(),
        Method::PUT,
        s.url("/api/v1/orgs/evil/session-settings"),
        &token,
        Some(json!({"session_lifetime_hours": 1})),
    )
    .await;
    assert_eq!(status, 200);
    (evil, token)
}

/// Signs in with the password form; returns the browser and where it was sent.
async fn password_sign_in(s: &TestServer, email: &str) -> (reqwest::Client, u16, String) {
    let browser = s.client();
    let res = post_form(
        &browser,
        &s.url("/signin"),
        &s.url("/signin"),
        &[
            ("email", email),
            ("password", PASSWORD),
            ("next", "/account"),
        ],
    )
    .await;
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (browser, res.status().as_u16(), location)
}

async fn status_of(browser: &reqwest::Client, url: String) -> u16 {
    browser.get(url).send().await.unwrap().status().as_u16()
}

async fn stranger_attack(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.account("victim@example.com", "Victim", PASSWORD).await;
    let (evil, _) = stranger_org(&s).await;
    let mails = s.count("outbox").await;
    let evil_events = s
        .rows(&format!(
            "SELECT action FROM audit_events WHERE org_id = '{}' ORDER BY occurred_at, id",
            evil.id
        ))
        .await;

    // The victim signs in with the password as always: no second factor asked, nothing told.
    let (browser, status, location) = password_sign_in(&s, "victim@example.com").await;
    assert_eq!((status, location.as_str()), (303, "/account"));
    assert_eq!(s.count("outbox").await, mails, "no notice to anyone");
    let evil_after = s
        .rows(&format!(
            "SELECT action FROM audit_events WHERE org_id = '{}' ORDER BY occurred_at, id",
            evil.id
        ))
        .await;
    assert_eq!(
        evil_after, evil_events,
        "evil's log learns nothing of the sign-in"
    );
    let html = browser
        .get(s.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("You are not a member of any organization"),
        "{html}"
    );
    assert!(
        html.contains("id=\"invitations\""),
        "the invitation waits for an answer"
    );
    assert_eq!(
        status_of(&browser, s.url("/admin/evil/members")).await,
        404,
        "no role before accepting"
    );
    // evil's one-hour lifetime does not apply to the victim's session.
    s.state.clock.advance_ms(2 * HOUR);
    assert_eq!(status_of(&browser, s.url("/account")).await, 200);
    assert_eq!(s.count("memberships").await, 1, "only Eve's");
}
both!(
    a_stranger_organization_cannot_lock_anyone_out,
    stranger_attack
);

async fn member_policies(backend: Backend) {
    let s = TestServer::start(backend).await;
    let victim = s.account("victim@example.com", "Victim", PASSWORD).await;
    let (evil, _) = stranger_org(&s).await;
    // The victim accepts; evil's rules now gate evil's admin area for them, and nothing else.
    let (browser, _, _) = password_sign_in(&s, "victim@example.com").await;
    let html = browser
        .get(s.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let accept = common::link_in(&html, "/account/invitations/").unwrap();
    assert_eq!(
        post_form(&browser, &s.url("/account"), &s.url(&accept), &[])
            .await
            .status(),
        303
    );
    let mails = s.count("outbox").await;
    let (browser, status, location) = password_sign_in(&s, "victim@example.com").await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/account"),
        "still signs in without a second factor"
    );
    let html = browser
        .get(s.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("/account/orgs/evil/leave"),
        "sees evil and can leave it"
    );
    let res = browser
        .get(s.url("/admin/evil/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("two-step verification"));
    assert_eq!(s.count("outbox").await, mails, "no notice");

    // With a second factor the admin area opens: audited in evil and emailed to Eve, once.
    let secret = s.enroll_totp("victim@example.com").await;
    let (browser, status, location) = password_sign_in(&s, "victim@example.com").await;
    assert_eq!((status, location.as_str()), (303, "/signin/two-step"));
    let code = s.totp_code(&secret);
    let res = post_form(
        &browser,
        &s.url("/signin/two-step"),
        &s.url("/signin/two-step"),
        &[("code", &code)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(status_of(&browser, s.url("/admin/evil/members")).await, 200);
    assert_eq!(status_of(&browser, s.url("/admin/evil/members")).await, 200);
    assert_eq!(s.count("outbox").await, mails + 1);
    s.last_mail("eve@example.com", "account.break_glass_signed_in")
        .await;
    // Past evil's one-hour lifetime: evil's admin area asks for a new sign-in; the rest stays.
    s.state.clock.advance_ms(HOUR + 60_000);
    let res = browser
        .get(s.url("/admin/evil/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin?next=")
    );
    assert_eq!(status_of(&browser, s.url("/account")).await, 200);
    // Signing in again in the same browser is a new break-glass entry, told again.
    let res = post_form(
        &browser,
        &s.url("/signin"),
        &s.url("/signin"),
        &[
            ("email", "victim@example.com"),
            ("password", PASSWORD),
            ("next", "/admin/evil/members"),
        ],
    )
    .await;
    assert_eq!(res.headers()["location"], "/signin/two-step");
    let code = s.totp_code(&secret);
    let res = post_form(
        &browser,
        &s.url("/signin/two-step"),
        &s.url("/signin/two-step"),
        &[("code", &code)],
    )
    .await;
    assert_eq!(res.headers()["location"], "/admin/evil/members");
    assert_eq!(status_of(&browser, s.url("/admin/evil/members")).await, 200);
    assert_eq!(s.count("outbox").await, mails + 2);

    // And the victim leaves evil.
    let res = post_form(
        &browser,
        &s.url("/account"),
        &s.url("/account/orgs/evil/leave"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let role = nulab_pass::orgs::store::role_of(s.db().pool(), evil.id, victim.id)
        .await
        .unwrap();
    assert_eq!(role, None);
    assert_eq!(s.audit_actions(1).await, ["member.left"]);
}
both!(
    org_policies_gate_only_that_org_for_a_nulab_account,
    member_policies
);
