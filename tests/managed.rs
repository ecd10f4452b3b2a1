//! Managed accounts through the real server: their whole life through the API and the pages,
//! the password policy, the seat limit under concurrency, CSV import, and every bad input the
//! issue names (each asserting the error and that nothing changed).

mod common;

use common::{Backend, TestServer, api, link_in, post_form};
use reqwest::Method;
use serde_json::json;

const ADMIN_PASSWORD: &str = "correct horse battery";

struct Fixture {
    server: TestServer,
    org: nulab_pass::orgs::Org,
    token: String,
    http: reqwest::Client,
}

async fn fixture(backend: Backend, seats: i64) -> Fixture {
    let server = TestServer::start(backend).await;
    let admin = server
        .account("admin@corp.test", "Admin", ADMIN_PASSWORD)
        .await;
    let org = server.org("corp", &admin).await;
    server.verified_domain(&org, "corp.test").await;
    server.seats(&org, seats).await;
    let token = server.token(&org).await;
    let http = server.client();
    Fixture {
        server,
        org,
        token,
        http,
    }
}

const SNAPSHOT: [&str; 4] = [
    "SELECT id || '|' || email || '|' || name || '|' || kind || '|' || COALESCE(org_id, '-') \
     || '|' || status || '|' || COALESCE(password_hash, '-') || '|' \
     || CAST(must_change_password AS TEXT) || '|' || CAST(updated_at AS TEXT) || '|' \
     || CAST(sessions_valid_after AS TEXT) AS r FROM accounts ORDER BY id",
    "SELECT org_id || '|' || account_id || '|' || role AS r FROM memberships \
     ORDER BY org_id, account_id",
    "SELECT id || '|' || action AS r FROM audit_events ORDER BY id",
    "SELECT id || '|' || kind || '|' || to_addr AS r FROM outbox ORDER BY id",
];

impl Fixture {
    async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        api(&self.http, method, self.server.url(path), &self.token, body).await
    }

    /// Rows that a refused request must leave alone.
    /// The whole rows of accounts and memberships, and the ids of audit events and emails: what
    /// a refused request must leave exactly as it was.
    async fn snapshot(&self) -> Vec<Vec<String>> {
        let s = &self.server;
        let mut tables = Vec::new();
        for sql in SNAPSHOT {
            tables.push(s.rows(sql).await);
        }
        tables
    }

    async fn follow_link_and_set(&self, link: &str, password: &str) -> reqwest::Response {
        let browser = self.server.client();
        // The form's token comes from the link page, or (once the link is dead) any page.
        let page = if browser.get(link).send().await.unwrap().status() == 200 {
            link.to_string()
        } else {
            self.server.url("/signin")
        };
        post_form(
            &browser,
            &page,
            &self.server.url("/password/set"),
            &[
                ("token", link.split("token=").nth(1).unwrap()),
                ("password", password),
                ("confirm", password),
            ],
        )
        .await
    }
}

async fn sign_in_status(
    server: &TestServer,
    email: &str,
    password: &str,
) -> (reqwest::Client, u16, String) {
    let browser = server.client();
    let res = post_form(
        &browser,
        &server.url("/signin"),
        &server.url("/signin"),
        &[("email", email), ("password", password)],
    )
    .await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = if status == 303 {
        location
    } else {
        res.text().await.unwrap()
    };
    (browser, status, body)
}

async fn activation(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;

    // Created through the API without a password: an activation link is emailed.
    let (status, created) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "Kim@Corp.test", "name": "Kim", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["password_set"], false);
    assert!(created["id"].as_str().is_some_and(|id| !id.is_empty()));
    let (_, seats) = f.api(Method::GET, "/api/v1/orgs/corp/seats", None).await;
    assert_eq!(seats, json!({"subscribed": 5, "used": 1}));
    let mail = s
        .last_mail("kim@corp.test", "managed_account.activation")
        .await;
    let link = link_in(&mail.body_text, &format!("{}/password/set?token=", s.base)).unwrap();

    // The policy is enforced on the activation page, then the link works once.
    let weak = f.follow_link_and_set(&link, "password1234").await;
    assert_eq!(weak.status(), 400);
    assert!(weak.text().await.unwrap().contains("most common passwords"));
    let ok = f.follow_link_and_set(&link, "violet mountain river").await;
    assert_eq!(ok.status(), 200);
    let again = f.follow_link_and_set(&link, "another fine password").await;
    assert_eq!(again.status(), 410);

    let (kim, status, location) = sign_in_status(s, "kim@corp.test", "violet mountain river").await;
    assert_eq!((status, location.as_str()), (303, "/account"));
    let page = kim
        .get(s.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("managed account") && page.contains("managed by your organization"));
}
both!(
    a_managed_account_is_activated_by_its_emailed_link,
    activation
);

/// kim@corp.test, created through the API and activated by its emailed link, signed in: its id
/// and the signed-in browser.
async fn active_kim(f: &Fixture) -> (String, reqwest::Client) {
    let s = &f.server;
    let (status, created) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "Kim@Corp.test", "name": "Kim", "role": "member"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let mail = s
        .last_mail("kim@corp.test", "managed_account.activation")
        .await;
    let link = link_in(&mail.body_text, &format!("{}/password/set?token=", s.base)).unwrap();
    let ok = f.follow_link_and_set(&link, "violet mountain river").await;
    assert_eq!(ok.status(), 200);
    let (kim, status, _) = sign_in_status(s, "kim@corp.test", "violet mountain river").await;
    assert_eq!(status, 303);
    (id, kim)
}

async fn whole_life(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;
    let (id, kim) = active_kim(&f).await;

    // Suspension ends the session at once and blocks sign-in.
    let (status, body) = f
        .api(
            Method::POST,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}/suspend"),
            None,
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("suspended")));
    assert_eq!(
        kim.get(s.url("/account")).send().await.unwrap().status(),
        303,
        "session ended"
    );
    let (_, status, body) = sign_in_status(s, "kim@corp.test", "violet mountain river").await;
    assert_eq!(status, 403);
    assert!(body.contains("suspended"));
    // The body is optional; JSON `null`, which the OpenAPI document allows, means no options.
    let (status, body) = f
        .api(
            Method::POST,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}/reactivate"),
            Some(serde_json::Value::Null),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    let (kim, status, _) = sign_in_status(s, "kim@corp.test", "violet mountain river").await;
    assert_eq!(status, 303);

    // Sign out everywhere.
    let (status, _) = f
        .api(
            Method::POST,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}/sign-out"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        kim.get(s.url("/account")).send().await.unwrap().status(),
        303
    );

    // A forced reset: sessions end, the old password now leads to the change page only.
    let (status, body) = f
        .api(
            Method::POST,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}/reset-password"),
            Some(json!({"force_change": true})),
        )
        .await;
    assert_eq!(
        (status, body["must_change_password"].as_bool()),
        (200, Some(true))
    );
    assert!(
        s.last_mail("kim@corp.test", "managed_account.password_reset")
            .await
            .body_text
            .contains("/password/set?token=")
    );
    let (kim, status, location) = sign_in_status(s, "kim@corp.test", "violet mountain river").await;
    assert_eq!((status, location.as_str()), (303, "/account/password"));
    assert_eq!(
        kim.get(s.url("/account")).send().await.unwrap().headers()["location"],
        "/account/password"
    );
    let res = post_form(
        &kim,
        &s.url("/account/password"),
        &s.url("/account/password"),
        &[
            ("current", "violet mountain river"),
            ("password", "a brand new secret"),
            ("confirm", "a brand new secret"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        kim.get(s.url("/account")).send().await.unwrap().status(),
        200
    );

    // Name, role and email (to another address on a verified domain) change.
    s.verified_domain(&f.org, "eu.corp.test").await;
    let (status, body) = f
        .api(
            Method::PATCH,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}"),
            Some(json!({"name": "Kim Lee", "role": "admin", "email": "kim@eu.corp.test"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["name"].as_str(),
            body["role"].as_str(),
            body["email"].as_str()
        ),
        (Some("Kim Lee"), Some("admin"), Some("kim@eu.corp.test"))
    );

    // Delete: a tombstone keeps the id, the seat frees, the email may be used again.
    let (status, _) = f
        .api(
            Method::DELETE,
            &format!("/api/v1/orgs/corp/managed-accounts/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        kim.get(s.url("/account")).send().await.unwrap().status(),
        303
    );
    let (_, status, _) = sign_in_status(s, "kim@eu.corp.test", "a brand new secret").await;
    assert_eq!(status, 401);
    let tombstone: (String, Option<String>) =
        sqlx::query_as("SELECT status, password_hash FROM accounts WHERE id = $1")
            .bind(&id)
            .fetch_one(s.db().pool())
            .await
            .unwrap();
    assert_eq!(tombstone, ("deleted".to_string(), None));
    let (_, seats) = f.api(Method::GET, "/api/v1/orgs/corp/seats", None).await;
    assert_eq!(seats["used"], 0);
    let (status, again) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "kim@eu.corp.test", "name": "Kim again"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_ne!(
        again["id"].as_str().unwrap(),
        id,
        "a new account gets a new id"
    );

    let actions = s.audit_actions(60).await;
    for expected in [
        "managed_account.created",
        "managed_account.activated",
        "managed_account.suspended",
        "managed_account.reactivated",
        "managed_account.signed_out_everywhere",
        "managed_account.password_reset",
        "account.password_changed",
        "managed_account.renamed",
        "managed_account.email_changed",
        "member.role_changed",
        "managed_account.deleted",
    ] {
        assert!(actions.iter().any(|a| a == expected), "missing {expected}");
    }
    s.assert_seats_counted().await;
}
both!(a_managed_account_lives_its_whole_life, whole_life);

async fn initial_password_and_policy(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;
    // Policy values out of range change nothing.
    let before = f.snapshot().await;
    for body in [
        json!({"min_length": 11, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": true}),
        json!({"min_length": 129, "require_three_classes": false, "reject_common": true, "max_age_days": null, "password_sign_in": true}),
        json!({"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": 0, "password_sign_in": true}),
        json!({"min_length": 12, "require_three_classes": false, "reject_common": true, "max_age_days": 4000, "password_sign_in": true}),
    ] {
        let (status, reply) = f
            .api(Method::PUT, "/api/v1/orgs/corp/password-policy", Some(body))
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("invalid_policy"))
        );
    }
    assert_eq!(f.snapshot().await, before);
    let (_, policy) = f
        .api(Method::GET, "/api/v1/orgs/corp/password-policy", None)
        .await;
    assert_eq!(policy["min_length"], 12);

    let strict = json!({"min_length": 16, "require_three_classes": true, "reject_common": true, "max_age_days": 90, "password_sign_in": true});
    let (status, _) = f
        .api(
            Method::PUT,
            "/api/v1/orgs/corp/password-policy",
            Some(strict),
        )
        .await;
    assert_eq!(status, 200);

    // Initial passwords are held to the policy, one rule at a time.
    let before = f.snapshot().await;
    for (password, fragment) in [
        ("Short1!", "at least 16 characters"),
        ("alllowercaseletters", "three of"),
        ("1234567890987654321", "most common"),
    ] {
        let (status, reply) = f
            .api(
                Method::POST,
                "/api/v1/orgs/corp/managed-accounts",
                Some(json!({"email": "ana@corp.test", "name": "Ana", "password": password})),
            )
            .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some("weak_password")),
            "{password}"
        );
        assert!(
            reply["message"].as_str().unwrap().contains(fragment),
            "{password}: {reply}"
        );
    }
    assert_eq!(f.snapshot().await, before);

    let (status, _) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(
                json!({"email": "ana@corp.test", "name": "Ana", "password": "Temporary-Pass-2026"}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    // The initial password must be changed at first sign-in, within the policy.
    let (ana, status, location) = sign_in_status(s, "ana@corp.test", "Temporary-Pass-2026").await;
    assert_eq!((status, location.as_str()), (303, "/account/password"));
    let res = post_form(
        &ana,
        &s.url("/account/password"),
        &s.url("/account/password"),
        &[
            ("current", "Temporary-Pass-2026"),
            ("password", "tooweak"),
            ("confirm", "tooweak"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = post_form(
        &ana,
        &s.url("/account/password"),
        &s.url("/account/password"),
        &[
            ("current", "Temporary-Pass-2026"),
            ("password", "Violet-Mountain-2026"),
            ("confirm", "Violet-Mountain-2026"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        ana.get(s.url("/account")).send().await.unwrap().status(),
        200
    );

    // After 90 days the password has expired: the next sign-in forces a change.
    s.state.clock.advance_ms(91 * 24 * 3600 * 1000);
    let (_, status, location) = sign_in_status(s, "ana@corp.test", "Violet-Mountain-2026").await;
    assert_eq!((status, location.as_str()), (303, "/account/password"));

    // With password sign-in switched off, managed accounts cannot use a password at all. (An
    // admin with a second factor keeps a password sign-in, or SSO could not be required.)
    s.enroll_totp("admin@corp.test").await;
    let off = json!({"min_length": 16, "require_three_classes": true, "reject_common": true, "max_age_days": null, "password_sign_in": false});
    assert_eq!(
        f.api(Method::PUT, "/api/v1/orgs/corp/password-policy", Some(off))
            .await
            .0,
        200
    );
    let (_, status, body) = sign_in_status(s, "ana@corp.test", "Violet-Mountain-2026").await;
    assert_eq!(status, 403);
    assert!(body.contains("does not allow signing in with a password"));
    assert!(
        s.audit_actions(5)
            .await
            .iter()
            .any(|a| a == "account.sign_in_failed")
    );
    // The admin (a Nulab account) still signs in with a password.
    assert_eq!(
        sign_in_status(s, "admin@corp.test", ADMIN_PASSWORD).await.1,
        303
    );
}
both!(
    initial_passwords_and_the_policy_are_enforced,
    initial_password_and_policy
);

async fn refused_creations(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;
    s.domain_row(&f.org, "pending.test", "pending").await;
    s.domain_row(&f.org, "lapsed.test", "lapsed").await;
    let other_admin = s.account("boss@other.test", "Boss", ADMIN_PASSWORD).await;
    let other = s.org("other", &other_admin).await;
    s.verified_domain(&other, "other.test").await;
    s.account("taken@corp.test", "Taken", ADMIN_PASSWORD).await;
    let before = f.snapshot().await;
    for (email, status, code) in [
        ("x@unverified.test", 409, "domain_not_verified"),
        ("x@pending.test", 409, "domain_not_verified"),
        ("x@lapsed.test", 409, "domain_not_verified"),
        ("x@other.test", 409, "domain_not_verified"),
        ("taken@corp.test", 409, "email_taken"),
        ("TAKEN@CORP.TEST", 409, "email_taken"),
        ("not-an-email", 400, "invalid_email"),
    ] {
        let (got, reply) = f
            .api(
                Method::POST,
                "/api/v1/orgs/corp/managed-accounts",
                Some(json!({"email": email, "name": "X"})),
            )
            .await;
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(code)),
            "{email}: {reply}"
        );
    }
    let (got, reply) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "y@corp.test", "name": "Y", "role": "owner"})),
        )
        .await;
    assert_eq!((got, reply["error"].as_str()), (400, Some("invalid_body")));
    assert_eq!(f.snapshot().await, before);
}
both!(managed_accounts_only_on_verified_domains, refused_creations);

async fn no_free_seat(backend: Backend) {
    let f = fixture(backend, 1).await;
    assert_eq!(
        f.api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "a@corp.test", "name": "A"}))
        )
        .await
        .0,
        201
    );
    let before = f.snapshot().await;
    let (status, reply) = f
        .api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "b@corp.test", "name": "B"})),
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (409, Some("no_free_seats"))
    );
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("1 of 1") && message.contains("billing page (/admin/corp/billing)"),
        "{message}"
    );
    assert_eq!(f.snapshot().await, before);
}
both!(no_account_beyond_the_seats, no_free_seat);

async fn concurrent_creations(backend: Backend) {
    let f = fixture(backend, 10).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = f.http.clone();
        let url = f.server.url("/api/v1/orgs/corp/managed-accounts");
        let token = f.token.clone();
        tasks.push(tokio::spawn(async move {
            api(
                &http,
                Method::POST,
                url,
                &token,
                Some(json!({"email": format!("u{i}@corp.test"), "name": format!("U{i}")})),
            )
            .await
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => created += 1,
            (409, reply) if reply["error"] == "no_free_seats" => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, refused), (10, 40));
    let managed: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM accounts WHERE kind = 'managed'")
        .fetch_one(f.server.db().pool())
        .await
        .unwrap();
    assert_eq!(managed.0, 10);
    f.server.assert_seats_counted().await;
}
both!(
    fifty_parallel_creations_fill_ten_seats_exactly,
    concurrent_creations
);

/// Every change that takes or frees a seat, made by hand-written SQL as another process or an
/// operator would: the organization's kept count follows each, and only those.
async fn seat_count_follows_every_change(backend: Backend) {
    let f = fixture(backend, 100).await;
    let s = &f.server;
    let admin = s.account("admin@other.test", "Other", ADMIN_PASSWORD).await;
    let other = s.org("other", &admin).await;
    let used = |org: &nulab_pass::orgs::Org| {
        let pool = s.db().pool().clone();
        let id = org.id;
        async move {
            nulab_pass::orgs::seats::used(&pool, id)
                .await
                .expect("seats used")
        }
    };
    let exec = |sql: String| {
        let pool = s.db().pool().clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("statement")
        }
    };
    let insert = |id: &str, kind: &str, org: Option<&str>, status: &str| {
        let org = org.map_or("NULL".to_string(), |o| format!("'{o}'"));
        format!(
            "INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, created_at, \
             updated_at) VALUES ('{id}', '{id}@corp.test', '{id}@corp.test', '{id}', '{kind}', \
             {org}, '{status}', 0, 0)"
        )
    };
    let (corp, oth) = (f.org.id.to_string(), other.id.to_string());
    assert_eq!((used(&f.org).await, used(&other).await), (0, 0));

    // Inserted: active and suspended managed accounts take a seat; deleted and self-managed don't.
    exec(insert("s1", "managed", Some(&corp), "active")).await;
    exec(insert("s2", "managed", Some(&corp), "suspended")).await;
    exec(insert("s3", "managed", Some(&corp), "deleted")).await;
    exec(insert("s4", "nulab", None, "active")).await;
    assert_eq!((used(&f.org).await, used(&other).await), (2, 0));

    let steps: [(&str, i64, i64); 9] = [
        // Between active and suspended: the seat stays taken.
        (
            "UPDATE accounts SET status = 'active' WHERE id = 's2'",
            2,
            0,
        ),
        // Deleted frees it; restored takes it again.
        (
            "UPDATE accounts SET status = 'deleted' WHERE id = 's1'",
            1,
            0,
        ),
        (
            "UPDATE accounts SET status = 'suspended' WHERE id = 's1'",
            2,
            0,
        ),
        // A self-managed account made managed (a migration) takes one.
        (
            "UPDATE accounts SET kind = 'managed', org_id = '{corp}' WHERE id = 's4'",
            3,
            0,
        ),
        // Moved to another organization: freed here, taken there.
        ("UPDATE accounts SET org_id = '{oth}' WHERE id = 's4'", 2, 1),
        // Any other column, and a change of a row that takes no seat: nothing moves.
        (
            "UPDATE accounts SET name = 'Renamed', last_sign_in_at = 5",
            2,
            1,
        ),
        ("UPDATE accounts SET org_id = '{oth}' WHERE id = 's3'", 2, 1),
        // Several rows in one statement.
        (
            "UPDATE accounts SET status = 'deleted' WHERE id IN ('s1', 's2', 's4')",
            0,
            0,
        ),
        // Several restored, one in each organization.
        (
            "UPDATE accounts SET status = 'active' WHERE id IN ('s1', 's4')",
            1,
            1,
        ),
    ];
    for (sql, in_corp, in_other) in steps {
        exec(sql.replace("{corp}", &corp).replace("{oth}", &oth)).await;
        assert_eq!(
            (used(&f.org).await, used(&other).await),
            (in_corp, in_other),
            "after {sql}"
        );
    }
    // Rows deleted outright: a counted one frees its seat, a deleted one frees nothing more.
    exec("DELETE FROM accounts WHERE id IN ('s1', 's3', 's4')".to_string()).await;
    assert_eq!((used(&f.org).await, used(&other).await), (0, 0));
    // The seats page and the seat rule read the same count.
    let (_, seats) = f.api(Method::GET, "/api/v1/orgs/corp/seats", None).await;
    assert_eq!(seats, json!({"subscribed": 100, "used": 0}));
    s.assert_seats_counted().await;
}
both!(
    seats_used_follow_every_change_of_a_row,
    seat_count_follows_every_change
);

/// Creations, suspensions, reactivations and deletions of one organization at the same time:
/// none of them waits on another for ever (on PostgreSQL the count's row lock comes after the
/// organization's, as the seat rule takes it), and the count ends exact.
async fn concurrent_seat_changes(backend: Backend) {
    let f = fixture(backend, 40).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, reply) = f
            .api(
                Method::POST,
                "/api/v1/orgs/corp/managed-accounts",
                Some(json!({"email": format!("c{i}@corp.test"), "name": format!("C{i}")})),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        ids.push(reply["id"].as_str().expect("id").to_string());
    }
    // Five of them suspended first, to be reactivated below.
    for id in &ids[..5] {
        let path = format!("/api/v1/orgs/corp/managed-accounts/{id}/suspend");
        assert_eq!(f.api(Method::POST, &path, None).await.0, 200);
    }
    let mut calls: Vec<(Method, String, Option<serde_json::Value>)> = Vec::new();
    for id in &ids[..5] {
        calls.push((
            Method::POST,
            format!("/api/v1/orgs/corp/managed-accounts/{id}/reactivate"),
            None,
        ));
    }
    for id in &ids[5..10] {
        calls.push((
            Method::POST,
            format!("/api/v1/orgs/corp/managed-accounts/{id}/suspend"),
            None,
        ));
    }
    for id in &ids[10..20] {
        calls.push((
            Method::DELETE,
            format!("/api/v1/orgs/corp/managed-accounts/{id}"),
            None,
        ));
    }
    for i in 0..10 {
        calls.push((
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts".to_string(),
            Some(json!({"email": format!("n{i}@corp.test"), "name": format!("N{i}")})),
        ));
    }
    let mut tasks = Vec::new();
    for (method, path, body) in calls {
        let http = f.http.clone();
        let url = f.server.url(&path);
        let token = f.token.clone();
        tasks.push(tokio::spawn(async move {
            let (status, reply) = api(&http, method, url, &token, body).await;
            (path, status, reply)
        }));
    }
    for t in tasks {
        let (path, status, reply) = t.await.unwrap();
        assert!(
            matches!(status, 200 | 201 | 204),
            "{path}: {status} {reply}"
        );
    }
    // 20 created, 10 deleted, 10 more created: 20 seats, the admin's own account self-managed.
    let (_, seats) = f.api(Method::GET, "/api/v1/orgs/corp/seats", None).await;
    assert_eq!(seats, json!({"subscribed": 40, "used": 20}));
    f.server.assert_seats_counted().await;
}
both!(
    seat_changes_at_the_same_time_end_with_an_exact_count,
    concurrent_seat_changes
);

async fn csv_import(backend: Backend) {
    let f = fixture(backend, 3).await;
    let csv = "email,name,role\n\
               a@corp.test,Ann,member\n\
               b@corp.test,\"Bo, Jr.\",admin\n\
               a@corp.test,Ann Again,member\n\
               broken-row\n\
               c@elsewhere.test,Cy,member\n\
               d@corp.test,Di,chief\n\
               e@corp.test,Ed,\n\
               f@corp.test,Fay,member\n";
    let res = f
        .http
        .post(f.server.url("/api/v1/orgs/corp/managed-accounts/import"))
        .bearer_auth(&f.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report: serde_json::Value = res.json().await.unwrap();
    let rows = report["rows"].as_array().unwrap();
    let outcome: Vec<(u64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["error"].as_str().unwrap_or("created"),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        vec![
            (2, "created"),
            (3, "created"),
            (4, "duplicate_row"),
            (5, "malformed_row"),
            (6, "domain_not_verified"),
            (7, "invalid_role"),
            (8, "created"),
            (9, "no_free_seats"),
        ]
    );
    assert_eq!(
        (report["created"].as_u64(), report["failed"].as_u64()),
        (Some(3), Some(5))
    );
    let managed: Vec<(String,)> =
        sqlx::query_as("SELECT email FROM accounts WHERE kind = 'managed' ORDER BY email")
            .fetch_all(f.server.db().pool())
            .await
            .unwrap();
    assert_eq!(
        managed.into_iter().map(|r| r.0).collect::<Vec<_>>(),
        vec!["a@corp.test", "b@corp.test", "e@corp.test"]
    );
    // A file without the header names is refused whole.
    let before = f.snapshot().await;
    let res = f
        .http
        .post(f.server.url("/api/v1/orgs/corp/managed-accounts/import"))
        .bearer_auth(&f.token)
        .body("a@corp.test,Ann\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = f
        .http
        .post(f.server.url("/api/v1/orgs/corp/managed-accounts/import"))
        .bearer_auth(&f.token)
        .body("email,name\n\"open,quote\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(f.snapshot().await, before);
    f.server.assert_seats_counted().await;
}
both!(csv_import_reports_each_row, csv_import);

async fn other_orgs_and_last_admin(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;
    let other_admin = s.account("boss@other.test", "Boss", ADMIN_PASSWORD).await;
    let other = s.org("other", &other_admin).await;
    s.verified_domain(&other, "other.test").await;
    s.seats(&other, 5).await;
    let other_token = s.token(&other).await;
    let (_, created) = api(
        &f.http,
        Method::POST,
        s.url("/api/v1/orgs/other/managed-accounts"),
        &other_token,
        Some(json!({"email": "x@other.test", "name": "X", "role": "admin"})),
    )
    .await;
    let foreign = created["id"].as_str().unwrap().to_string();

    // corp's token cannot see or act on other's managed account through corp's path.
    let before = f.snapshot().await;
    for (method, path) in [
        (
            Method::GET,
            format!("/api/v1/orgs/corp/managed-accounts/{foreign}"),
        ),
        (
            Method::POST,
            format!("/api/v1/orgs/corp/managed-accounts/{foreign}/suspend"),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/corp/managed-accounts/{foreign}"),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/corp/managed-accounts/{foreign}"),
        ),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"name": "Hijacked"}));
        let (status, reply) = f.api(method, &path, body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    // Nor through other's path.
    let (status, _) = f
        .api(
            Method::POST,
            &format!("/api/v1/orgs/other/managed-accounts/{foreign}/suspend"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(f.snapshot().await, before);

    // The last admin of "other" is this managed account: it can be neither deleted, demoted nor suspended.
    let before = f.snapshot().await;
    let mut tx = s.db().begin().await.unwrap();
    sqlx::query("DELETE FROM memberships WHERE account_id = $1")
        .bind(other_admin.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let snapshot = f.snapshot().await;
    for (method, path, body) in [
        (
            Method::DELETE,
            format!("/api/v1/orgs/other/managed-accounts/{foreign}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/orgs/other/managed-accounts/{foreign}/suspend"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/other/managed-accounts/{foreign}"),
            Some(json!({"role": "member"})),
        ),
    ] {
        let (status, reply) = api(&f.http, method, s.url(&path), &other_token, body).await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (409, Some("last_admin")),
            "{path}"
        );
    }
    assert_eq!(f.snapshot().await, snapshot);
    // Only the membership removed above changed since `before`.
    let mut expected = before;
    let after = f.snapshot().await;
    expected[1] = after[1].clone();
    assert_eq!(after, expected);
    s.assert_seats_counted().await;
}
both!(
    other_orgs_accounts_and_the_last_admin_are_protected,
    other_orgs_and_last_admin
);

async fn managed_users_cannot_change_email_or_leave(backend: Backend) {
    let f = fixture(backend, 5).await;
    let s = &f.server;
    assert_eq!(
        f.api(
            Method::POST,
            "/api/v1/orgs/corp/managed-accounts",
            Some(json!({"email": "mo@corp.test", "name": "Mo", "password": "Temporary-Pass-2026"}))
        )
        .await
        .0,
        201
    );
    let (mo, _, _) = sign_in_status(s, "mo@corp.test", "Temporary-Pass-2026").await;
    let res = post_form(
        &mo,
        &s.url("/account/password"),
        &s.url("/account/password"),
        &[
            ("current", "Temporary-Pass-2026"),
            ("password", "violet mountain river"),
            ("confirm", "violet mountain river"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let before = f.snapshot().await;
    let res = post_form(
        &mo,
        &s.url("/account"),
        &s.url("/account/email"),
        &[
            ("email", "mo@elsewhere.test"),
            ("password", "violet mountain river"),
        ],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("managed by your organization")
    );
    let res = post_form(
        &mo,
        &s.url("/account"),
        &s.url("/account/orgs/corp/leave"),
        &[],
    )
    .await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot leave"));
    assert_eq!(f.snapshot().await, before);
    let email: (String,) =
        sqlx::query_as("SELECT email FROM accounts WHERE email_norm = 'mo@corp.test'")
            .fetch_one(s.db().pool())
            .await
            .unwrap();
    assert_eq!(email.0, "mo@corp.test");

    // A Nulab account may do both.
    let nulab = s.account("nia@example.com", "Nia", ADMIN_PASSWORD).await;
    let mut tx = s.db().begin().await.unwrap();
    nulab_pass::orgs::store::insert_membership(
        &mut tx,
        f.org.id,
        nulab.id,
        nulab_pass::orgs::Role::Member,
        0,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (nia, _, _) = sign_in_status(s, "nia@example.com", ADMIN_PASSWORD).await;
    let res = post_form(
        &nia,
        &s.url("/account"),
        &s.url("/account/orgs/corp/leave"),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let res = post_form(
        &nia,
        &s.url("/account"),
        &s.url("/account/email"),
        &[("email", "nia@new.example"), ("password", ADMIN_PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(
        s.last_mail("nia@new.example", "account.verify_email")
            .await
            .body_text
            .contains("verify-email?token=")
    );
}
both!(
    managed_users_cannot_change_their_email_or_leave,
    managed_users_cannot_change_email_or_leave
);

async fn pages_run_the_life(backend: Backend) {
    let f = fixture(backend, 2).await;
    let s = &f.server;
    let admin = s.signed_in("admin@corp.test", ADMIN_PASSWORD).await;
    let members = s.url("/admin/corp/members");
    let page = admin
        .get(&members)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<strong>0</strong> of <strong>2</strong>"),
        "seats shown"
    );
    let res = post_form(
        &admin,
        &members,
        &s.url("/admin/corp/managed-accounts"),
        &[
            ("email", "pat@corp.test"),
            ("name", "Pat"),
            ("role", "member"),
            ("password", ""),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let page = admin
        .get(&members)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Managed account pat@corp.test created; an activation link was emailed.")
    );
    assert!(page.contains("<strong>1</strong> of <strong>2</strong>"));
    let id: (String,) =
        sqlx::query_as("SELECT id FROM accounts WHERE email_norm = 'pat@corp.test'")
            .fetch_one(s.db().pool())
            .await
            .unwrap();
    let account_page = s.url(&format!("/admin/corp/members/{}", id.0));
    let res = post_form(
        &admin,
        &account_page,
        &s.url(&format!("/admin/corp/managed-accounts/{}/suspend", id.0)),
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let page = admin
        .get(&account_page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("pat@corp.test is suspended") && page.contains("Reactivate"));
    // Filters by kind and status.
    let page = admin
        .get(format!("{members}?kind=managed&status=suspended"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("pat@corp.test") && !page.contains("admin@corp.test</td>"));
    // CSV upload through the page (multipart, token in the action URL).
    let csrf = common::csrf_of(&admin, &members).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text("email,name\nquinn@corp.test,Quinn\nray@corp.test,Ray\n")
            .file_name("people.csv"),
    );
    let res = admin
        .post(s.url(&format!("/admin/corp/managed-accounts/import?csrf={csrf}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report = res.text().await.unwrap();
    assert!(
        report.contains("1 created, 1 failed.") && report.contains("no_free_seats"),
        "{report}"
    );
    // The policy page refuses out-of-range values with the reason.
    let res = post_form(
        &admin,
        &s.url("/admin/corp/password-policy"),
        &s.url("/admin/corp/password-policy"),
        &[
            ("min_length", "8"),
            ("max_age_days", ""),
            ("reject_common", "1"),
            ("password_sign_in", "1"),
        ],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("between 12 and 128"));
    let res = post_form(
        &admin,
        &s.url("/admin/corp/password-policy"),
        &s.url("/admin/corp/password-policy"),
        &[
            ("min_length", "14"),
            ("max_age_days", "180"),
            ("reject_common", "1"),
            ("password_sign_in", "1"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, policy) = f
        .api(Method::GET, "/api/v1/orgs/corp/password-policy", None)
        .await;
    assert_eq!(
        (
            policy["min_length"].as_i64(),
            policy["max_age_days"].as_i64()
        ),
        (Some(14), Some(180))
    );
}
both!(admin_pages_run_a_managed_account, pages_run_the_life);
