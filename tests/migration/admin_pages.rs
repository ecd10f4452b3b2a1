//! The admin's pages for migration, through the running server as a browser without JavaScript
//! submits them: selecting members on the member list, the text filter with "all filtered", and
//! the lifetime of consent links. Bad input is answered clearly and changes nothing.

use super::*;
use crate::common::page_text;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The preview's row for `email`: the SSO connection that routes its domain, or the fallback.
fn preview_row(email: &str, connection: &str) -> String {
    format!("<tr><td>{email}</td><td>{connection}</td></tr>")
}

const NO_SSO: &str = "none: it keeps signing in with a password";

/// A hidden field of the preview's send form, which lists exactly who would be asked.
fn to_send(id: impl std::fmt::Display) -> String {
    format!("<input type=\"hidden\" name=\"account_id\" value=\"{id}\">")
}

async fn from_the_member_list(backend: Backend) {
    let w = world(backend, 5, &["ann", "bob"]).await;
    let s = &w.server;
    let (status, _) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &w.token,
        Some(json!({"email": "max@corp.test", "name": "Max"})),
    )
    .await;
    assert_eq!(status, 201);
    let outbox = s.count("outbox").await;
    let (ann, bob, max) = (
        w.account("ann@corp.test").await.id,
        w.account("bob@corp.test").await.id,
        w.account("max@corp.test").await.id,
    );
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let members = s.url("/admin/corp/members");
    let html = page_text(&admin, &members).await;
    assert!(
        html.contains("<form id=\"migrate\" method=\"post\" action=\"/admin/corp/migrations\"")
            && html.contains("Preview migration of selected"),
        "{html}"
    );
    // Nulab-account rows get a checkbox of that form; a managed account has nothing to migrate.
    let checkbox = |id| format!("name=\"account_id\" value=\"{id}\" form=\"migrate\"");
    assert!(html.contains(&checkbox(ann)) && html.contains(&checkbox(bob)));
    assert!(!html.contains(&checkbox(max)));

    // Checking ann and submitting shows the preview; nothing is sent.
    let migrations = s.url("/admin/corp/migrations");
    let ann_id = ann.to_string();
    let res = post_form(
        &admin,
        &members,
        &migrations,
        &[("step", "preview"), ("account_id", &ann_id)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("nothing has been sent yet")
            && html.contains("<strong>1</strong> will be asked")
            && html.contains(&preview_row("ann@corp.test", NO_SSO))
            && html.contains(&to_send(ann))
            && !html.contains(&to_send(bob)),
        "{html}"
    );
    // A forged selection of a managed account is refused with the reason, still nothing sent.
    let max_id = max.to_string();
    let res = post_form(
        &admin,
        &members,
        &migrations,
        &[("step", "preview"), ("account_id", &max_id)],
    )
    .await;
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<strong>0</strong> will be asked")
            && html.contains("not a Nulab-account member of this organization"),
        "{html}"
    );
    // The button without a checked row says what to do.
    let res = post_form(&admin, &members, &migrations, &[("step", "preview")]).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Select at least one account")
    );
    assert_eq!(
        s.count("migration_requests").await,
        0,
        "a preview sends nothing"
    );
    assert_eq!(s.count("outbox").await, outbox, "nothing emailed");
    // A member who is not an admin sees neither the list nor the preview.
    let bob_browser = s.signed_in("bob@corp.test", PASSWORD).await;
    assert_eq!(
        bob_browser.get(&members).send().await.unwrap().status(),
        403
    );
    let csrf = common::csrf_of(&bob_browser, &s.url("/account")).await;
    let res = bob_browser
        .post(&migrations)
        .form(&[
            ("csrf", csrf.as_str()),
            ("step", "send"),
            ("account_id", &ann_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(s.count("migration_requests").await, 0);
}
both!(
    admins_select_members_for_migration_on_the_member_list,
    from_the_member_list
);

/// Previews "all eligible members" under the filter `q`; the page's status and text.
async fn preview_all_status(
    admin: &reqwest::Client,
    page: &str,
    action: &str,
    q: &str,
) -> (u16, String) {
    let fields = [("step", "preview"), ("all", "1"), ("q", q)];
    let res = post_form(admin, page, action, &fields).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Previews "all eligible members" under the filter `q`, which selects someone.
async fn preview_all(admin: &reqwest::Client, page: &str, action: &str, q: &str) -> String {
    let (status, html) = preview_all_status(admin, page, action, q).await;
    assert_eq!(status, 200, "{html}");
    html
}

async fn all_filtered(backend: Backend) {
    let w = world(backend, 5, &["ann", "anna", "bob"]).await;
    let s = &w.server;
    // zed is a member on a domain corp has not verified.
    s.account("zed@elsewhere.test", "Zed", PASSWORD).await;
    w.add_to("corp", "zed@elsewhere.test").await;
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let html = page_text(&admin, &s.url("/admin/corp/migrations?q=ANN")).await;
    assert!(
        html.contains("<td>ann@corp.test</td>")
            && html.contains("<td>anna@corp.test</td>")
            && !html.contains("bob@corp.test")
            && !html.contains("zed@elsewhere.test"),
        "the filter ignores case: {html}"
    );
    assert!(html.contains("<input type=\"hidden\" name=\"q\" value=\"ANN\">"));
    assert!(html.contains("all eligible members matching"));
    let by_domain = page_text(&admin, &s.url("/admin/corp/migrations?q=elsewhere.test")).await;
    assert!(
        by_domain.contains("zed@elsewhere.test") && !by_domain.contains("<td>ann@corp.test</td>")
    );

    // "All" takes every eligible candidate that matches the filter, and only those.
    let page = s.url("/admin/corp/migrations?q=ANN");
    let action = s.url("/admin/corp/migrations");
    let html = preview_all(&admin, &page, &action, "ANN").await;
    let (ann, anna, bob, adm) = (
        w.account("ann@corp.test").await.id,
        w.account("anna@corp.test").await.id,
        w.account("bob@corp.test").await.id,
        w.account("admin@corp.test").await.id,
    );
    assert!(
        html.contains("<strong>2</strong> will be asked")
            && html.contains(&to_send(ann))
            && html.contains(&to_send(anna))
            && !html.contains(&to_send(bob))
            && !html.contains(&to_send(adm)),
        "{html}"
    );
    assert!(html.contains(&preview_row("ann@corp.test", NO_SSO)));
    // The filter only has an ineligible member: nothing to preview, and the page says so.
    let (status, html) = preview_all_status(&admin, &page, &action, "elsewhere").await;
    assert_eq!(status, 400);
    assert!(html.contains("Select at least one account"), "{html}");
    // With an SSO connection for corp.test the preview names it per account.
    let idp = MockIdp::generate(
        "https://idp.corp.test/metadata",
        "https://idp.corp.test/sso",
    )
    .unwrap();
    let (status, _) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/corp/saml-connections"),
        &w.token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Mock IdP"})),
    )
    .await;
    assert_eq!(status, 201);
    let html = preview_all(&admin, &page, &action, "bob").await;
    assert!(
        html.contains("<strong>1</strong> will be asked")
            && html.contains(&preview_row("bob@corp.test", "Mock IdP")),
        "{html}"
    );
    assert_eq!(
        s.count("migration_requests").await,
        0,
        "previews send nothing"
    );

    // Sending "all filtered" asks exactly the filtered members.
    let res = post_form(
        &admin,
        &page,
        &action,
        &[("step", "send"), ("all", "1"), ("q", "ann")],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, list) = api(
        &s.client(),
        Method::GET,
        s.url("/api/v1/orgs/corp/migrations"),
        &w.token,
        None,
    )
    .await;
    let mut asked: Vec<&str> = list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    asked.sort();
    assert_eq!(asked, ["ann@corp.test", "anna@corp.test"]);
}
both!(
    all_filtered_selects_every_eligible_member_matching_the_filter,
    all_filtered
);

async fn link_lifetime(backend: Backend) {
    let w = world(backend, 5, &["ann"]).await;
    let s = &w.server;
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let page = s.url("/admin/corp/migrations");
    let settings = s.url("/admin/corp/migration-settings");
    let field = |days: &str| format!("name=\"link_days\" min=\"1\" max=\"30\" value=\"{days}\"");
    let html = page_text(&admin, &page).await;
    assert!(html.contains(&field("14")), "the default: {html}");
    let token = w.token.as_str();
    let stored = || async move {
        let (status, body) = api(
            &s.client(),
            Method::GET,
            s.url("/api/v1/orgs/corp/migration-settings"),
            token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        body["link_days"].as_i64().unwrap()
    };
    let audited = || async move {
        s.audit_actions(1000)
            .await
            .iter()
            .filter(|a| *a == "migration.settings_changed")
            .count()
    };

    let res = post_form(&admin, &page, &settings, &[("link_days", " 30 ")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/admin/corp/migrations");
    let html = page_text(&admin, &page).await;
    assert!(
        html.contains("stay valid for 30 day(s)") && html.contains(&field("30")),
        "{html}"
    );
    assert_eq!(stored().await, 30);
    assert_eq!(audited().await, 1);

    for bad in ["0", "31", "-2", "7.5", "two", ""] {
        let res = post_form(&admin, &page, &settings, &[("link_days", bad)]).await;
        assert_eq!(res.status(), 400, "{bad:?}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("the link lifetime must be between 1 and 30 days")
                && html.contains(&field(bad)),
            "{bad:?}: {html}"
        );
        assert_eq!(stored().await, 30, "{bad:?} changed nothing");
        assert_eq!(audited().await, 1, "{bad:?} audited nothing");
    }

    // Requests sent from now on use the new lifetime.
    let id = w.ask_one("ann@corp.test").await;
    let request = w.request(&id).await;
    assert_eq!(
        request["expires_at"].as_i64().unwrap() - request["requested_at"].as_i64().unwrap(),
        30 * DAY_MS
    );
}
both!(
    the_consent_link_lifetime_is_set_on_the_migrations_page,
    link_lifetime
);

async fn from_a_csv_file(backend: Backend) {
    let w = world(backend, 1, &["ann", "bob"]).await;
    let s = &w.server;
    let admin = s.signed_in("admin@corp.test", PASSWORD).await;
    let page = s.url("/admin/corp/migrations");
    let html = page_text(&admin, &page).await;
    assert!(
        html.contains("enctype=\"multipart/form-data\""),
        "the upload form"
    );
    let csrf = common::hidden_value(&html, "csrf").expect("csrf");
    let upload = s.url(&format!("/admin/corp/migrations/upload?csrf={csrf}"));
    let send = |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("emails.csv"),
        );
        admin.post(&upload).multipart(form).send()
    };
    let (ann, bob) = (
        w.account("ann@corp.test").await.id,
        w.account("bob@corp.test").await.id,
    );
    // A header row, quotes and a second column; one seat free, so bob waits; nobody is no member.
    let csv = "email,name\n\"ann@corp.test\",Ann\r\nbob@corp.test,Bob\nnobody@corp.test,No\n";
    let res = send(csv.as_bytes().to_vec()).await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("nothing has been sent yet")
            && html.contains("<strong>1</strong> will be asked")
            && html.contains(&to_send(ann))
            && !html.contains(&to_send(bob)),
        "{html}"
    );
    assert!(
        html.contains("bob@corp.test: no free seat")
            && html.contains("nobody@corp.test: not a Nulab-account member"),
        "{html}"
    );
    // Bad files: not UTF-8, no addresses, no file, no CSRF token. Nothing is created.
    let outbox = s.count("outbox").await;
    for (bytes, expected) in [
        (vec![0xff, 0xfe, 0x00, 0x40], "must be UTF-8 text"),
        (
            b"email\nnot an address\n".to_vec(),
            "names no email addresses",
        ),
    ] {
        let res = send(bytes).await.unwrap();
        assert_eq!(res.status(), 400);
        let text = res.text().await.unwrap();
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let res = admin
        .post(&upload)
        .multipart(reqwest::multipart::Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Choose a file"));
    let res = admin
        .post(page.as_str().to_owned() + "/upload")
        .multipart(reqwest::multipart::Form::new().text("file", csv))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no CSRF token");
    assert_eq!(
        s.count("migration_requests").await,
        0,
        "a preview sends nothing"
    );
    assert_eq!(s.count("outbox").await, outbox, "nothing emailed");
}
both!(
    a_csv_file_of_emails_is_previewed_before_anything_is_sent,
    from_a_csv_file
);
