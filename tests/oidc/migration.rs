//! A product keeps seeing the same user across a migration: the OIDC `sub` of a Nulab account
//! that signed in with its password is the `sub` of the managed account it became, signing in
//! through the organization's IdP.

use super::sso::{connect_mock_idp, sign_in_through_idp};
use super::*;
use common::{link_in, post_form};

const SAM: &str = "sam@corp.test";

async fn same_sub(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    // corp has a verified domain and seats; sam is a Nulab-account member on that domain.
    let token = corp_org(s, 5).await;
    s.account(SAM, "Sam", PASSWORD).await;
    s.invite_and_accept("corp", &token, SAM, PASSWORD, "member")
        .await;

    // Before: the product signs sam in with the password and keeps the `sub`.
    let (_, before, old_tokens) = w.sign_in_to_backlog(SAM, PASSWORD).await;
    let sub = before["sub"].as_str().expect("sub").to_string();
    assert_eq!(sub, account_id(s, SAM).await);
    assert_eq!(before["email"], SAM);
    let (status, info) = w.userinfo(&old_tokens.access).await;
    assert_eq!((status, info["sub"].as_str()), (200, Some(sub.as_str())));

    // The admin asks; sam agrees through the emailed link with the password, as a browser would.
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/migrations"),
        &token,
        Some(json!({"emails": [SAM]})),
    )
    .await;
    assert_eq!((status, &body["requested"]), (200, &json!(1)), "{body}");
    let mail = s.last_mail(SAM, "migration.requested").await;
    let link = link_in(&mail.body_text, &s.url("/migration/")).expect("consent link");
    let browser = s.client();
    let res = post_form(
        &browser,
        &link,
        &format!("{link}/accept"),
        &[("password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("now a managed account"));

    // The migration ended the product's tokens: the product has to sign sam in again.
    assert_eq!(w.userinfo(&old_tokens.access).await.0, 401);
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &old_tokens.refresh),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // After: the managed account signs in to the product through the org's IdP.
    let (idp, connection) = connect_mock_idp(s, &token).await;
    let product = w.backlog().await;
    let (after, tokens) = sign_in_through_idp(&w, &product, &idp, &connection, SAM).await;
    assert_eq!(after["amr"], json!(["saml"]), "signed in through SSO");
    assert_eq!(after["org"], "corp", "now a managed account of corp");
    assert_eq!(after["sub"], sub.as_str(), "the product sees the same user");
    assert_eq!(after["email"], SAM, "the email is unchanged");
    let (status, info) = w.userinfo(&tokens.access).await;
    assert_eq!((status, info["sub"].as_str()), (200, Some(sub.as_str())));
    assert_eq!(info["email"], SAM);
}
both!(
    the_oidc_sub_is_the_same_before_and_after_migration,
    same_sub
);
