//! Refresh tokens: issued only for `offline_access`, and every refresh asks again whether the
//! sign-in may still reach the product. A refused refresh revokes the grant and answers
//! `invalid_grant`; other grants are untouched.

use super::*;

/// A refresh of `refresh` as the product does it through the library: `Ok` with the new refresh
/// token, or the OAuth error code.
async fn refresh_with(w: &World, refresh: &str) -> Result<String, String> {
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    match status {
        200 => Ok(body["refresh_token"]
            .as_str()
            .expect("a new refresh token")
            .to_string()),
        _ => Err(body["error"].as_str().unwrap_or_default().to_string()),
    }
}

/// The live (unrevoked) tokens of the grant `refresh` belongs to.
async fn live_in_grant(s: &TestServer, refresh: &str) -> i64 {
    let hash = nulab_pass::secrets::hash_token(refresh);
    let row: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM oidc_tokens WHERE revoked_at IS NULL AND grant_id = \
         (SELECT grant_id FROM oidc_tokens WHERE token_hash = $1)",
    )
    .bind(hash)
    .fetch_one(s.db().pool())
    .await
    .unwrap();
    row.0
}

/// The reasons of the `oidc.refresh_refused` events, oldest first.
async fn refusals(s: &TestServer) -> Vec<String> {
    s.rows(
        "SELECT details FROM audit_events WHERE action = 'oidc.refresh_refused' \
         ORDER BY occurred_at, id",
    )
    .await
    .iter()
    .map(|d| {
        serde_json::from_str::<Value>(d).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect()
}

async fn offline_access(backend: Backend) {
    let w = world(backend).await;
    let (status, discovery) = api(
        &w.http,
        Method::GET,
        w.server.url("/.well-known/openid-configuration"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        discovery["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("offline_access")),
        "{discovery}"
    );

    // Without offline_access: an ID token and an access token, no refresh token.
    let product = w.backlog().await;
    let browser = w.server.client();
    let started = start_with_scopes(&product, &["email"], &[]);
    let callback = through_sign_in(&w.server, &browser, &started.url, ADA, PASSWORD).await;
    let response = product
        .exchange_code(AuthorizationCode::new(callback["code"].clone()))
        .unwrap()
        .set_pkce_verifier(started.verifier)
        .request_async(&w.http)
        .await
        .expect("token exchange");
    assert!(response.refresh_token().is_none());
    assert!(response.id_token().is_some());
    let access = response.access_token().secret().clone();
    assert_eq!(w.userinfo(&access).await.0, 200);
    let stored = w
        .server
        .rows("SELECT kind FROM oidc_tokens ORDER BY kind")
        .await;
    assert_eq!(stored, ["access"], "no refresh token is stored either");

    // With it (the same browser, no new sign-in): a refresh token that rotates.
    let started = start(&product, &[]);
    let (status, location) = get(&browser, &started.url).await;
    assert_eq!(status, 303);
    let tokens = w
        .exchange(&product, &params(&location)["code"], started.verifier)
        .await;
    assert!(
        tokens
            .response
            .scopes()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "offline_access"))
    );
    let next = refresh_with(&w, &tokens.refresh).await.expect("refreshed");
    assert_ne!(next, tokens.refresh);
    assert!(refresh_with(&w, &next).await.is_ok());
}
both!(refresh_tokens_need_offline_access, offline_access);

/// Kim (managed, corp) and the admin (a Nulab account of corp) each signed in to backlog.
async fn signed_in_pair(w: &World) -> (Tokens, Tokens) {
    let (_, _, kim) = w.sign_in_to_backlog("kim@corp.test", PASSWORD).await;
    let (_, _, admin) = w.sign_in_to_backlog("admin@corp.test", PASSWORD).await;
    (kim, admin)
}

/// Kim's refresh is refused with `invalid_grant` and revokes the grant; the admin's grant (a
/// Nulab account: no organization's policy applies to it) refreshes as before.
async fn refused(w: &World, kim: (&str, &str), admin: &Tokens, reason: &str) {
    let (kim_refresh, kim_access) = kim;
    let s = &w.server;
    let others_before = s
        .rows("SELECT token_hash FROM oidc_tokens WHERE revoked_at IS NULL AND account_id <> (SELECT id FROM accounts WHERE email_norm = 'kim@corp.test') ORDER BY token_hash")
        .await;
    assert_eq!(
        refresh_with(w, kim_refresh).await,
        Err("invalid_grant".into())
    );
    assert_eq!(live_in_grant(s, kim_refresh).await, 0, "{reason}");
    assert_eq!(w.userinfo(kim_access).await.0, 401, "{reason}");
    assert_eq!(refusals(s).await.last().map(String::as_str), Some(reason));
    let others_after = s
        .rows("SELECT token_hash FROM oidc_tokens WHERE revoked_at IS NULL AND account_id <> (SELECT id FROM accounts WHERE email_norm = 'kim@corp.test') ORDER BY token_hash")
        .await;
    assert_eq!(others_before, others_after, "no other grant changed");
    assert!(refresh_with(w, &admin.refresh).await.is_ok(), "{reason}");
    // Refused once, refused for good: the grant stays revoked.
    assert_eq!(
        refresh_with(w, kim_refresh).await,
        Err("invalid_grant".into())
    );
}

async fn rechecks(backend: Backend) {
    let w = world(backend).await;
    let s = &w.server;
    let token = corp_org(s, 5).await;
    managed_account(s, &token, "kim@corp.test", "Kim").await;
    let org = nulab_pass::orgs::store::by_slug(s.db().pool(), "corp")
        .await
        .unwrap()
        .unwrap();
    let set_sso_required = |on: bool| {
        let db = s.db().clone();
        let now = s.state.clock.now_ms();
        async move {
            let mut tx = db.begin().await.unwrap();
            let policy = nulab_pass::accounts::policy::PasswordPolicy {
                password_sign_in: !on,
                ..Default::default()
            };
            nulab_pass::accounts::store::set_policy(&mut tx, org.id, &policy, now)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };

    // "SSO required" after a password sign-in.
    let (kim, admin) = signed_in_pair(&w).await;
    set_sso_required(true).await;
    refused(&w, (&kim.refresh, &kim.access), &admin, "sso_required").await;
    set_sso_required(false).await;

    // The domain lapsed.
    let (kim, admin) = signed_in_pair(&w).await;
    let domain_status = |status: &'static str| {
        let db = s.db().clone();
        async move {
            sqlx::query("UPDATE domains SET status = $1 WHERE domain = 'corp.test'")
                .bind(status)
                .execute(db.pool())
                .await
                .unwrap();
        }
    };
    domain_status("lapsed").await;
    refused(
        &w,
        (&kim.refresh, &kim.access),
        &admin,
        "domain_not_verified",
    )
    .await;
    domain_status("verified").await;

    // The organization shortened its session lifetime below the grant's age.
    let (kim, admin) = signed_in_pair(&w).await;
    let hours = |h: i64| {
        let url = s.url("/api/v1/orgs/corp/session-settings");
        let token = token.clone();
        let http = s.client();
        async move {
            let body = json!({"session_lifetime_hours": h});
            let (status, _) = api(&http, Method::PUT, url, &token, Some(body)).await;
            assert_eq!(status, 200);
        }
    };
    s.state.clock.advance_ms(2 * 3_600_000);
    let (status, body, _) = w
        .token_raw(
            Some(&w.backlog),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &kim.refresh),
            ],
        )
        .await;
    assert_eq!(status, 200, "two hours into a 12-hour lifetime: {body}");
    let (kim_refresh, kim_access) = (
        body["refresh_token"].as_str().unwrap(),
        body["access_token"].as_str().unwrap(),
    );
    hours(1).await;
    refused(
        &w,
        (kim_refresh, kim_access),
        &admin,
        "session_lifetime_over",
    )
    .await;
    hours(12).await;

    // Suspended, then deleted: the account's grants end.
    let (kim, admin) = signed_in_pair(&w).await;
    let kim_id = account_id(s, "kim@corp.test").await;
    let (status, _) = api(
        &s.client(),
        Method::POST,
        s.url(&format!(
            "/api/v1/orgs/corp/managed-accounts/{kim_id}/suspend"
        )),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        refresh_with(&w, &kim.refresh).await,
        Err("invalid_grant".into())
    );
    assert_eq!(w.userinfo(&kim.access).await.0, 401);
    assert!(refresh_with(&w, &admin.refresh).await.is_ok());
    // A status changed behind the server's back is caught by the refresh itself.
    let (status, _) = api(
        &s.client(),
        Method::POST,
        s.url(&format!(
            "/api/v1/orgs/corp/managed-accounts/{kim_id}/reactivate"
        )),
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (kim, admin) = signed_in_pair(&w).await;
    sqlx::query("UPDATE accounts SET status = 'suspended' WHERE id = $1")
        .bind(kim_id.clone())
        .execute(s.db().pool())
        .await
        .unwrap();
    refused(&w, (&kim.refresh, &kim.access), &admin, "account_inactive").await;
    assert_eq!(
        refusals(s).await,
        [
            "sso_required",
            "domain_not_verified",
            "session_lifetime_over",
            "account_inactive"
        ]
    );
    assert!(s.audited("oidc.refresh_refused").await);
}
both!(every_refresh_rechecks_the_account_and_its_org, rechecks);
