//! Migration never leaves another organization without an admin: asking is refused while the
//! account is the only admin of another organization, and a request made before it became so
//! stops with the reason on the consent page, the admin's Migrations page and the API; nothing
//! changes until someone else is an admin there.

use super::*;

async fn last_admin_elsewhere(backend: Backend) {
    let w = world(backend, 5, &["sam"]).await;
    let s = &w.server;
    // sam founds "side", so sam is its only admin.
    let sam = w.account("sam@corp.test").await;
    let side = s.org("side", &sam).await;
    let (status, body) = w.ask(json!({"emails": ["sam@corp.test"]})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["results"][0]["error"], "last_admin_elsewhere",
        "{body}"
    );
    assert!(
        body["results"][0]["message"]
            .as_str()
            .unwrap()
            .contains("only admin of another organization")
    );
    assert_eq!(s.count("migration_requests").await, 0);

    // With a second admin in side, the request goes out; then that admin leaves side.
    s.account("ivy@side.test", "Ivy", PASSWORD).await;
    s.add_member(&side, "ivy@side.test", "admin").await;
    let id = w.ask_one("sam@corp.test").await;
    let link = w.link("sam@corp.test").await;
    let ivy = s.signed_in("ivy@side.test", PASSWORD).await;
    let res = post_form(
        &ivy,
        &s.url("/account"),
        &s.url("/account/orgs/side/leave"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);

    // The consent page says why agreeing must wait, and offers no agreement.
    let html = s
        .client()
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("you are the only admin of <strong>Test Org</strong>"),
        "{html}"
    );
    assert!(!html.contains(&format!("{}/accept", link.trim_start_matches(&s.base))));
    let memberships = s
        .rows("SELECT org_id || ':' || account_id || ':' || role FROM memberships ORDER BY 1")
        .await;
    // Agreeing anyway (a stale page) is refused with the reason; nothing changes.
    let (status, html) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 409, "{html}");
    assert!(
        html.contains("only admin of another organization"),
        "{html}"
    );
    w.assert_unchanged("sam@corp.test").await;
    assert_eq!(
        s.rows("SELECT org_id || ':' || account_id || ':' || role FROM memberships ORDER BY 1")
            .await,
        memberships
    );
    let request = w.request(&id).await;
    assert_eq!(
        (request["status"].as_str(), request["failure"].as_str()),
        (Some("pending"), Some("last_admin_elsewhere"))
    );
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let page = admin
        .get(s.url("/admin/corp/migrations"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("pending (last_admin_elsewhere)"), "{page}");
    s.last_mail("admin@corp.test", "migration.admins_failed")
        .await;

    // Once ivy is an admin of side again, sam agrees and side keeps ivy.
    s.add_member(&side, "ivy@side.test", "admin").await;
    let (status, _) = w.agree(&link, PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(w.account("sam@corp.test").await.kind, AccountKind::Managed);
    assert_eq!(
        nulab_pass::orgs::store::count_admins(s.db().pool(), side.id)
            .await
            .unwrap(),
        1
    );
}
both!(
    migration_never_leaves_another_org_without_an_admin,
    last_admin_elsewhere
);
