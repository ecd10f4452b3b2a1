//! Membership by invitation: invite (API and page), the no-enumeration answer, the invitee's
//! link and account page, accept and decline, resend, revoke and expiry, and every refusal
//! changing nothing; and the rule that an invitation has no effect until it is accepted.

use super::*;
use common::{link_in, post_form};
use reqwest::Method;

/// Memberships, invitations by status, and the number of audit events: what must not move
/// when something is refused.
async fn snapshot(s: &TestServer) -> (Vec<String>, Vec<String>, i64) {
    (
        s.rows("SELECT org_id || ':' || account_id || ':' || role FROM memberships ORDER BY 1")
            .await,
        s.rows("SELECT email || ':' || status FROM invitations ORDER BY 1")
            .await,
        s.count("audit_events").await,
    )
}

async fn invite(s: &TestServer, token: &str, email: &str, role: &str) -> (u16, Value) {
    api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/acme/members"),
        token,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

/// The link of the newest invitation emailed to `email`.
async fn invitation_link(s: &TestServer, email: &str) -> String {
    let mail = s.last_mail(email, "member.invitation").await;
    link_in(&mail.body_text, &s.url("/invitations/")).expect("link in the email")
}

async fn answer(s: &TestServer, browser: &reqwest::Client, id: &str, what: &str) -> (u16, String) {
    let res = post_form(
        browser,
        &s.url("/account"),
        &s.url(&format!("/account/invitations/{id}/{what}")),
        &[],
    )
    .await;
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn page(browser: &reqwest::Client, url: &str) -> (u16, String) {
    let res = browser.get(url).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn no_enumeration(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ada = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("acme", &ada).await;
    let token = token_for(&s, &org).await;
    s.account("bob@example.com", "Bob", PASSWORD).await;
    let eve = s.account("eve@example.com", "Eve", PASSWORD).await;
    s.org("other", &eve).await;
    // bob has an account; ghost has none; eve's account administers another organization.
    let mut shapes = Vec::new();
    for email in ["bob@example.com", "ghost@example.com", "eve@example.com"] {
        let (status, body) = invite(&s, &token, email, "admin").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (201, Some("invited")),
            "{body}"
        );
        let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        shapes.push(keys);
        assert!(body.get("account_id").is_none() && body.get("name").is_none());
    }
    assert!(shapes.windows(2).all(|w| w[0] == w[1]), "{shapes:?}");
    assert_eq!(s.count("memberships").await, 2, "nobody joined");
    // Each address got the same kind of email with a link; the list shows the invitations.
    for email in ["bob@example.com", "ghost@example.com", "eve@example.com"] {
        let mail = s.last_mail(email, "member.invitation").await;
        assert!(
            mail.body_text.contains("Sign up with it"),
            "one text for everyone"
        );
    }
    let (_, list) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/acme/members?status=invited"),
        &token,
        None,
    )
    .await;
    let invited: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        invited,
        ["bob@example.com", "eve@example.com", "ghost@example.com"]
    );
    let (_, all) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/acme/members"),
        &token,
        None,
    )
    .await;
    let statuses: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["active", "invited", "invited", "invited"],
        "{all}"
    );
    let actions = s.audit_actions(3).await;
    assert!(actions.iter().all(|a| a == "member.invited"), "{actions:?}");
    // A second invitation to an open address, and a current member, are refused.
    let before = snapshot(&s).await;
    for (email, code) in [
        ("BOB@example.com", "already_invited"),
        ("ada@example.com", "already_member"),
        ("not an email", "invalid_email"),
    ] {
        let (status, body) = invite(&s, &token, email, "member").await;
        assert_eq!(body["error"], code, "{email}: {body}");
        assert!(status == 409 || status == 400);
    }
    assert_eq!(snapshot(&s).await, before, "nothing changed");
}
both!(
    adding_a_member_answers_the_same_for_every_address,
    no_enumeration
);

async fn accept_and_decline(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ada = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("acme", &ada).await;
    let token = token_for(&s, &org).await;
    let bob = s.account("bob@example.com", "Bob", PASSWORD).await;
    s.account("cy@example.com", "Cy", PASSWORD).await;
    let (_, body) = invite(&s, &token, "bob@example.com", "admin").await;
    let bob_invitation = body["invitation_id"].as_str().unwrap().to_string();
    invite(&s, &token, "cy@example.com", "member").await;

    // The link: signed out it asks to sign in; signed in as bob it offers accept and decline.
    let link = invitation_link(&s, "bob@example.com").await;
    let (status, html) = page(&s.client(), &link).await;
    assert_eq!(status, 200);
    assert!(html.contains("Sign in with bob@example.com") && !html.contains("/accept"));
    let bob_browser = s.signed_in("bob@example.com", PASSWORD).await;
    let (_, html) = page(&bob_browser, &link).await;
    assert!(
        html.contains(&format!("/account/invitations/{bob_invitation}/accept")),
        "{html}"
    );
    // Someone else signed in sees why they cannot answer, and cannot answer by id either.
    let cy_browser = s.signed_in("cy@example.com", PASSWORD).await;
    let (_, html) = page(&cy_browser, &link).await;
    assert!(html.contains("this invitation is for bob@example.com") && !html.contains("/accept"));
    let before = snapshot(&s).await;
    let (status, _) = answer(&s, &cy_browser, &bob_invitation, "accept").await;
    assert_eq!(status, 404);
    assert_eq!(snapshot(&s).await, before);

    // Bob's account page lists it; he accepts and is an admin.
    let (_, html) = page(&bob_browser, &s.url("/account")).await;
    assert!(html.contains("id=\"invitations\"") && html.contains("Test Org"));
    assert_eq!(
        answer(&s, &bob_browser, &bob_invitation, "accept").await.0,
        303
    );
    let role = nulab_pass::orgs::store::role_of(s.db().pool(), org.id, bob.id)
        .await
        .unwrap();
    assert_eq!(role, Some(nulab_pass::orgs::Role::Admin));
    assert_eq!(s.audit_actions(1).await, ["member.invitation_accepted"]);
    // Single use: the link and the id are spent.
    let before = snapshot(&s).await;
    let (status, html) = page(&bob_browser, &link).await;
    assert_eq!(status, 410);
    assert!(html.contains("already answered"));
    assert_eq!(
        answer(&s, &bob_browser, &bob_invitation, "decline").await.0,
        410
    );
    assert_eq!(snapshot(&s).await, before);

    // Cy declines from the account page: nothing but the invitation changes.
    let (_, html) = page(&cy_browser, &s.url("/account")).await;
    let decline = link_in(&html, "/account/invitations/")
        .unwrap()
        .replace("/accept", "/decline");
    let res = post_form(&cy_browser, &s.url("/account"), &s.url(&decline), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(s.count("memberships").await, 2);
    assert_eq!(s.audit_actions(1).await, ["member.invitation_declined"]);
    let (_, list) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/acme/members"),
        &token,
        None,
    )
    .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "no open invitation left: {list}"
    );
}
both!(invitees_accept_or_decline_once, accept_and_decline);

async fn refusals(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ada = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("acme", &ada).await;
    let token = token_for(&s, &org).await;
    // A managed account of another organization (corp) is invited: it cannot accept (it
    // belongs to corp alone).
    let boss = s.account("boss@corp.test", "Boss", PASSWORD).await;
    let corp = s.org("corp", &boss).await;
    s.verified_domain(&corp, "corp.test").await;
    s.seats(&corp, 2).await;
    let corp_token = token_for(&s, &corp).await;
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &corp_token,
        Some(json!({"email": "mia@corp.test", "name": "Mia", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mia_id = body["id"].as_str().unwrap().to_string();
    let (_, body) = invite(&s, &token, "mia@corp.test", "member").await;
    let mia_invitation = body["invitation_id"].as_str().unwrap().to_string();
    // An account that signed up with an address it never confirmed.
    let new = s.client();
    let csrf = common::csrf_of(&new, &s.url("/signup")).await;
    new.post(s.url("/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "new@example.com"),
            ("name", "New"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let (_, body) = invite(&s, &token, "new@example.com", "admin").await;
    let new_invitation = body["invitation_id"].as_str().unwrap().to_string();

    sqlx::query("UPDATE accounts SET must_change_password = 0 WHERE email_norm = 'mia@corp.test'")
        .execute(s.db().pool())
        .await
        .unwrap();
    let mia = s.signed_in("mia@corp.test", PASSWORD).await;
    let (_, html) = page(&mia, &s.url("/account")).await;
    assert!(
        !html.contains("id=\"invitations\""),
        "a managed account is offered nothing"
    );
    s.account("cy@example.com", "Cy", PASSWORD).await;
    let (_, body) = invite(&s, &token, "cy@example.com", "member").await;
    let cy_invitation = body["invitation_id"].as_str().unwrap().to_string();
    s.account("dan@example.com", "Dan", PASSWORD).await;
    let (_, body) = invite(&s, &token, "dan@example.com", "member").await;
    let dan_invitation = body["invitation_id"].as_str().unwrap().to_string();
    let dan = s.signed_in("dan@example.com", PASSWORD).await;

    let before = snapshot(&s).await;
    let (status, html) = answer(&s, &mia, &mia_invitation, "accept").await;
    assert_eq!(status, 403);
    assert!(html.contains("belongs to its organization"), "{html}");
    // Nor can its email leave corp's verified domains: not by itself, not by corp's admin.
    let res = post_form(
        &mia,
        &s.url("/account"),
        &s.url("/account/email"),
        &[("email", "mia@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 403);
    let (status, body) = api(
        &s.client(),
        Method::PATCH,
        s.url(&format!("/api/v1/orgs/corp/managed-accounts/{mia_id}")),
        &corp_token,
        Some(json!({"email": "mia@example.com"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("domain_not_verified")),
        "{body}"
    );
    let (status, html) = answer(&s, &new, &new_invitation, "accept").await;
    assert_eq!(status, 403);
    assert!(html.contains("Confirm your email"), "{html}");
    let (status, _) = answer(&s, &new, "not-a-uuid", "accept").await;
    assert_eq!(status, 404);
    let (status, _) = page(&s.client(), &s.url("/invitations/forged-token")).await;
    assert_eq!(status, 404);
    // A revoked invitation and an expired one no longer work.
    let (status, _) = api(
        &s.client(),
        Method::DELETE,
        s.url(&format!("/api/v1/orgs/acme/invitations/{dan_invitation}")),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let revoked = snapshot(&s).await;
    let (status, html) = answer(&s, &dan, &dan_invitation, "accept").await;
    assert_eq!(status, 410);
    assert!(html.contains("withdrawn (revoked)"), "{html}");
    let (status, body) = api(
        &s.client(),
        Method::DELETE,
        s.url(&format!("/api/v1/orgs/acme/invitations/{dan_invitation}")),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("invitation_closed"))
    );
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url(&format!(
            "/api/v1/orgs/corp/invitations/{new_invitation}/resend"
        )),
        &corp_token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("invitation_not_found")),
        "another org's invitation"
    );
    assert_eq!(snapshot(&s).await, revoked);
    s.state.clock.advance_ms(8 * 24 * 3_600_000);
    let cy = s.signed_in("cy@example.com", PASSWORD).await;
    let before_expired = snapshot(&s).await;
    let (status, html) = answer(&s, &cy, &cy_invitation, "accept").await;
    assert_eq!(status, 410);
    assert!(html.contains("has expired"), "{html}");
    assert_eq!(snapshot(&s).await, before_expired);
    assert!(before.1.iter().any(|r| r == "dan@example.com:pending"));
    assert!(revoked.1.iter().any(|r| r == "dan@example.com:revoked"));
    assert_eq!(before.0, revoked.0, "no membership changed");
}
both!(invitations_that_cannot_be_accepted_change_nothing, refusals);

async fn resend_revoke_expire(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ada = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("acme", &ada).await;
    let token = token_for(&s, &org).await;
    s.account("bob@example.com", "Bob", PASSWORD).await;
    let (_, body) = invite(&s, &token, "bob@example.com", "member").await;
    let id = body["invitation_id"].as_str().unwrap().to_string();
    let first = invitation_link(&s, "bob@example.com").await;
    // Resent: a new link; the old one is dead.
    s.state.clock.advance_ms(1000);
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url(&format!("/api/v1/orgs/acme/invitations/{id}/resend")),
        &token,
        None,
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("invited")),
        "{body}"
    );
    let second = invitation_link(&s, "bob@example.com").await;
    assert_ne!(first, second);
    assert_eq!(page(&s.client(), &first).await.0, 404);
    assert_eq!(page(&s.client(), &second).await.0, 200);
    assert_eq!(s.audit_actions(1).await, ["member.invitation_resent"]);
    // Expiry: the job marks it expired (audited); the list says so; the link says so.
    s.state.clock.advance_ms(7 * 24 * 3_600_000 + 1);
    // The job runs every minute; run it now (whichever run gets there first expires it once).
    nulab_pass::orgs::invitations::expire_due(s.db(), s.state.clock.now_ms())
        .await
        .unwrap();
    let expired = s
        .rows("SELECT actor_label FROM audit_events WHERE action = 'member.invitation_expired'")
        .await;
    assert_eq!(expired, ["invitations.expiry"]);
    assert_eq!(s.audit_actions(1).await, ["member.invitation_expired"]);
    let (_, list) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/acme/members?status=invited"),
        &token,
        None,
    )
    .await;
    assert_eq!(list["items"][0]["status"], "invitation_expired");
    let (status, html) = page(&s.client(), &second).await;
    assert_eq!(status, 410);
    assert!(html.contains("expired"));
    // The admin page resends it, then revokes it.
    let admin = s.signed_in("ada@example.com", PASSWORD).await;
    let members = s.url("/admin/acme/members");
    let res = post_form(
        &admin,
        &members,
        &s.url(&format!("/admin/acme/invitations/{id}/resend")),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, html) = page(&admin, &members).await;
    assert!(
        html.contains("sent again") && html.contains("<td>invited</td>"),
        "{html}"
    );
    let third = invitation_link(&s, "bob@example.com").await;
    let res = post_form(
        &admin,
        &members,
        &s.url(&format!("/admin/acme/invitations/{id}/revoke")),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(page(&s.client(), &third).await.0, 410);
    assert_eq!(s.audit_actions(1).await, ["member.invitation_revoked"]);
    let (_, html) = page(&admin, &members).await;
    assert!(!html.contains("id=\"invitations\""));
    // The operator adds bob directly after a new invitation: it becomes the membership.
    invite(&s, &token, "bob@example.com", "member").await;
    s.add_member(&org, "bob@example.com", "admin").await;
    assert_eq!(
        s.rows("SELECT status FROM invitations ORDER BY created_at")
            .await,
        ["revoked", "accepted"]
    );
    assert_eq!(s.audit_actions(1).await, ["member.added"]);
}
both!(
    invitations_are_resent_revoked_and_expire,
    resend_revoke_expire
);

async fn parallel(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ada = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("acme", &ada).await;
    let token = token_for(&s, &org).await;
    s.account("bob@example.com", "Bob", PASSWORD).await;
    // Eight parallel invitations of one address: one is made, the others are refused.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, token) = (
            s.client(),
            s.url("/api/v1/orgs/acme/members"),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            api(
                &client,
                Method::POST,
                url,
                &token,
                Some(json!({"email": "bob@example.com"})),
            )
            .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(
            status == 201 || body["error"] == "already_invited",
            "{status} {body}"
        );
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1);
    assert_eq!(s.count("invitations").await, 1);
    // Eight parallel acceptances in one browser: one membership, one event.
    let id = s.rows("SELECT id FROM invitations").await.remove(0);
    let bob = s.signed_in("bob@example.com", PASSWORD).await;
    let csrf = common::csrf_of(&bob, &s.url("/account")).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (bob, url, csrf) = (
            bob.clone(),
            s.url(&format!("/account/invitations/{id}/accept")),
            csrf.clone(),
        );
        tasks.push(tokio::spawn(async move {
            bob.post(url)
                .form(&[("csrf", csrf.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [303, 410, 410, 410, 410, 410, 410, 410]);
    assert_eq!(s.count("memberships").await, 2);
    let accepted = s
        .rows("SELECT action FROM audit_events WHERE action = 'member.invitation_accepted'")
        .await;
    assert_eq!(accepted.len(), 1);
}
both!(parallel_invitations_and_answers_decide_once, parallel);
