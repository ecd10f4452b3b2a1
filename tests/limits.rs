//! Rate limits through the real server on SQLite and PostgreSQL: each limit trips, answers 429
//! with `Retry-After` (pages a sentence, the API and the token endpoint a stable code), is
//! audited once when it starts, changes nothing while it holds, ends when its time is up and
//! backs off when it trips again; two instances on one database share the counts; sustained
//! attacks on an organization's accounts are told to its admins at most once per window; and
//! no answer of sign-in tells whether an account exists.

mod common;
#[path = "limits/enumeration.rs"]
mod enumeration;

use common::{Backend, TestServer, post_form};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";
const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

/// A password sign-in from a fresh browser: status, `Retry-After` and the page.
async fn sign_in(s: &TestServer, email: &str, password: &str) -> (u16, Option<String>, String) {
    let page = s.url("/signin");
    let fields = [
        ("email", email),
        ("password", password),
        ("next", "/account"),
    ];
    let res = post_form(&s.client(), &page, &page, &fields).await;
    let status = res.status().as_u16();
    let retry = retry_after(&res);
    (status, retry, res.text().await.unwrap())
}

/// Whether `Retry-After` says `secs`, or a second or two less (time passed since the block
/// started, on a busy machine).
pub fn waits(retry: Option<&str>, secs: i64) -> bool {
    retry
        .and_then(|r| r.parse::<i64>().ok())
        .is_some_and(|r| (secs - 2..=secs).contains(&r))
}

fn retry_after(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
}

/// The newest audit event with `action`: its details and address.
async fn last_event(s: &TestServer, action: &str) -> (serde_json::Value, Option<String>) {
    let events = nulab_pass::audit::store::recent(s.db().pool(), None, 50)
        .await
        .unwrap();
    let e = events
        .into_iter()
        .find(|e| e.action == action)
        .unwrap_or_else(|| panic!("no {action} event"));
    (e.details, e.ip)
}

/// What a refused request must leave alone: every audit event, every counter, every session.
async fn snapshot(s: &TestServer) -> (i64, Vec<String>, i64, i64) {
    (
        s.count("audit_events").await,
        s.rows("SELECT bucket || ' ' || key || ' ' || hits FROM rate_limits ORDER BY bucket, key")
            .await,
        s.count("sessions WHERE account_id IS NOT NULL").await,
        s.count("outbox").await,
    )
}

async fn address_waits(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.limits.sign_in_per_address = "3/1m".parse().unwrap();
    })
    .await;
    s.account(ADA, "Ada", PASSWORD).await;
    s.account(BOB, "Bob", PASSWORD).await;
    // Three wrong passwords from one address, for three different addresses typed.
    for email in [ADA, BOB, "ghost@example.com"] {
        assert_eq!(sign_in(&s, email, "wrong password!").await.0, 401);
    }
    // The fourth attempt is refused, even with Bob's right password: not checked, no session.
    let (status, retry, page) = sign_in(&s, BOB, PASSWORD).await;
    assert_eq!((status, retry.as_deref()), (429, Some("60")), "{page}");
    assert!(
        page.contains("Too many attempts: wait 1 minute and try again."),
        "{page}"
    );
    let (details, ip) = last_event(&s, "request.rate_limited").await;
    assert_eq!(details["limit"], "sign_in_per_address");
    assert_eq!(details["strikes"], 1);
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(s.count("sessions WHERE account_id IS NOT NULL").await, 0);
    // While the wait holds, a refused request changes nothing at all.
    let before = snapshot(&s).await;
    let (status, retry, _) = sign_in(&s, ADA, PASSWORD).await;
    assert!(
        status == 429 && waits(retry.as_deref(), 60),
        "{status} {retry:?}"
    );
    assert_eq!(snapshot(&s).await, before);
    // When it is over, the right password signs in.
    s.state.clock.advance_ms(61_000);
    assert_eq!(sign_in(&s, BOB, PASSWORD).await.0, 303);
    // Tripping again backs off: twice as long.
    for _ in 0..3 {
        assert_eq!(sign_in(&s, "ghost@example.com", "wrong").await.0, 401);
    }
    let (status, retry, _) = sign_in(&s, ADA, PASSWORD).await;
    assert_eq!((status, retry.as_deref()), (429, Some("120")));
    assert_eq!(last_event(&s, "request.rate_limited").await.0["strikes"], 2);
    s.state.clock.advance_ms(61_000);
    assert_eq!(sign_in(&s, ADA, PASSWORD).await.0, 429, "still backing off");
    s.state.clock.advance_ms(60_000);
    assert_eq!(sign_in(&s, ADA, PASSWORD).await.0, 303);
    // The clean-up job forgets counts whose windows, blocks and strikes have all passed.
    let now = s.state.clock.now_ms();
    assert!(s.count("rate_limits").await > 0);
    let forgotten = nulab_pass::limits::forget_stale(s.db(), now + 2 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(forgotten, 0, "a window may last up to seven days");
    nulab_pass::limits::forget_stale(s.db(), now + 8 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(s.count("rate_limits").await, 0);
}
both!(
    wrong_passwords_from_one_address_make_it_wait_with_rising_backoff,
    address_waits
);

async fn shared(backend: Backend) {
    let adjust = |c: &mut nulab_pass::Config| {
        c.limits.sign_in_per_address = "4/1m".parse().unwrap();
    };
    let a = TestServer::start_with(backend, adjust).await;
    let b = a.another_instance(adjust).await;
    a.account(ADA, "Ada", PASSWORD).await;
    for s in [&a, &b, &a, &b] {
        assert_eq!(sign_in(s, ADA, "wrong password!").await.0, 401);
    }
    // Four failures, two on each instance: the limit is reached on both.
    let (status, retry, _) = sign_in(&b, ADA, PASSWORD).await;
    assert_eq!((status, retry.as_deref()), (429, Some("60")));
    let (status, retry, _) = sign_in(&a, ADA, PASSWORD).await;
    assert!(
        status == 429 && waits(retry.as_deref(), 60),
        "{status} {retry:?}"
    );
    // One block, audited once, whichever instance saw the request that started it.
    let blocks = a
        .rows("SELECT action FROM audit_events WHERE action = 'request.rate_limited'")
        .await;
    assert_eq!(blocks.len(), 1);
    b.state.clock.advance_ms(61_000);
    assert_eq!(sign_in(&b, ADA, PASSWORD).await.0, 303);
}
both!(two_instances_on_one_database_share_the_counts, shared);

/// Ten wrong passwords for Mia and the pause they start (`minutes` long), then its end.
async fn pause(s: &TestServer, minutes: i64) {
    for _ in 0..10 {
        assert_eq!(sign_in(s, "mia@corp.test", "wrong password!").await.0, 401);
    }
    let (status, retry, page) = sign_in(s, "mia@corp.test", PASSWORD).await;
    let secs = (minutes * 60).to_string();
    assert_eq!(
        (status, retry.as_deref()),
        (429, Some(secs.as_str())),
        "{page}"
    );
    assert!(page.contains("is paused until"), "{page}");
    s.state.clock.advance_ms(minutes * 60_000 + 1000);
}

async fn alerts(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.account(ADA, "Ada", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    s.verified_domain(&org, "corp.test").await;
    let token = s.token(&org).await;
    let (status, body) = common::api(
        &s.client(),
        reqwest::Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(json!({"email": "mia@corp.test", "name": "Mia", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let alerts = || s.count("outbox WHERE kind = 'org.sign_in_attack'");
    pause(&s, 15).await;
    assert_eq!(alerts().await, 0);
    // The second pause in a row is an attack: the admin is told, and it is audited.
    pause(&s, 30).await;
    assert_eq!(alerts().await, 1);
    let mail = s.last_mail(ADA, "org.sign_in_attack").await;
    assert!(
        mail.subject.contains("Repeated sign-in attempts"),
        "{}",
        mail.subject
    );
    assert!(
        mail.body_text.contains("mia@corp.test"),
        "{}",
        mail.body_text
    );
    let (details, _) = last_event(&s, "org.sign_in_attack_notified").await;
    assert_eq!(
        (details["strikes"].as_i64(), details["admins"].as_i64()),
        (Some(2), Some(1))
    );
    // The third, within the hour: no second email.
    pause(&s, 60).await;
    assert_eq!(alerts().await, 1);
    // A further pause after the hour is told again.
    pause(&s, 60).await;
    assert_eq!(alerts().await, 2);
    // The right password after the pause signs in and ends the count.
    assert_eq!(sign_in(&s, "mia@corp.test", PASSWORD).await.0, 303);
}
both!(
    admins_are_told_of_sustained_attacks_at_most_once_an_hour,
    alerts
);

async fn token_endpoint(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.limits.token_per_client = "3/1m".parse().unwrap();
    })
    .await;
    let post = |client_id: &'static str| {
        let s = &s;
        async move {
            let res = s
                .client()
                .post(s.url("/oauth/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "guess"),
                    ("client_id", client_id),
                    ("client_secret", "guess"),
                ])
                .send()
                .await
                .unwrap();
            let retry = retry_after(&res);
            let status = res.status().as_u16();
            (
                status,
                retry,
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    // Three failures in a minute: the third starts the wait, which refuses the fourth.
    for _ in 0..3 {
        assert_eq!(post("backlog").await.0, 401);
    }
    let (status, retry, body) = post("backlog").await;
    assert!(
        status == 429 && waits(retry.as_deref(), 60),
        "{status} {retry:?} {body}"
    );
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        last_event(&s, "request.rate_limited").await.0["limit"],
        "token_per_client"
    );
    let before = snapshot(&s).await;
    assert_eq!(post("backlog").await.0, 429);
    assert_eq!(
        snapshot(&s).await,
        before,
        "a refused request changes nothing"
    );
    // Per product: another one from the same address goes on.
    assert_eq!(post("cacoo").await.0, 401);
    s.state.clock.advance_ms(61_000);
    assert_eq!(post("backlog").await.0, 401, "the wait is over");
}
both!(
    failed_token_requests_of_one_product_make_it_wait,
    token_endpoint
);

async fn sso_starts_and_acs_failures(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.limits.sso_login_per_address = "2/1m".parse().unwrap();
        c.limits.acs_failures_per_address = "2/1m".parse().unwrap();
    })
    .await;
    let id = uuid::Uuid::new_v4();
    let login = s.url(&format!("/sso/{id}/login"));
    for _ in 0..2 {
        assert_eq!(s.client().get(&login).send().await.unwrap().status(), 404);
    }
    let res = s.client().get(&login).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), retry_after(&res).as_deref()),
        (429, Some("60"))
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Too many attempts. Wait 1 minute")
    );
    assert_eq!(
        last_event(&s, "request.rate_limited").await.0["limit"],
        "sso_login_per_address"
    );
    // Failed ACS posts: the second failure starts the wait, the third is refused unread.
    let acs = s.url(&format!("/sso/{id}/acs"));
    let post = || {
        s.client()
            .post(&acs)
            .form(&[("SAMLResponse", "bm90IHNhbWw=")])
            .send()
    };
    for _ in 0..2 {
        let status = post().await.unwrap().status().as_u16();
        assert!((400..500).contains(&status) && status != 429, "{status}");
    }
    assert_eq!(
        last_event(&s, "request.rate_limited").await.0["limit"],
        "acs_failures_per_address"
    );
    let before = snapshot(&s).await;
    let res = post().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(waits(retry_after(&res).as_deref(), 60));
    assert_eq!(snapshot(&s).await, before, "no sso.signin.failed, no count");
    // A URL naming no connection at all waits the same.
    let nameless = s
        .client()
        .post(s.url("/sso/not-a-connection/acs"))
        .form(&[("SAMLResponse", "bm90IHNhbWw=")])
        .send()
        .await
        .unwrap();
    assert_eq!(nameless.status(), 429);
    assert_eq!(snapshot(&s).await, before);
    s.state.clock.advance_ms(61_000);
    assert_eq!(post().await.unwrap().status(), 404, "the wait is over");
}
both!(
    sso_starts_and_failed_acs_posts_from_one_address_wait,
    sso_starts_and_acs_failures
);

async fn email_actions(backend: Backend) {
    let s = TestServer::start_with(backend, |c| {
        c.limits.email_per_address = "2/1h".parse().unwrap();
        c.limits.email_per_recipient = "2/1h".parse().unwrap();
    })
    .await;
    // Sign-ups from one address: the second reaches the limit, the third gets 429 and makes no
    // account and sends no email.
    let signup = s.url("/signup");
    for n in 0..2 {
        let email = format!("new{n}@example.com");
        let fields = [
            ("email", email.as_str()),
            ("name", "New"),
            ("password", PASSWORD),
        ];
        let res = post_form(&s.client(), &signup, &signup, &fields).await;
        assert_eq!(res.status(), 200);
    }
    let before = snapshot(&s).await;
    let accounts = s.count("accounts").await;
    let fields = [
        ("email", "new2@example.com"),
        ("name", "New"),
        ("password", PASSWORD),
    ];
    let res = post_form(&s.client(), &signup, &signup, &fields).await;
    assert_eq!(res.status(), 429);
    assert!(waits(retry_after(&res).as_deref(), 3600));
    assert_eq!(s.count("accounts").await, accounts, "no account");
    assert_eq!(s.count("outbox").await, before.3, "no email");
    assert_eq!(
        last_event(&s, "request.rate_limited").await.0["limit"],
        "email_per_address"
    );
    // Invitations through the API: per recipient (an invitation and two resends), then 429
    // with the API's error body, and the invitation is not sent again.
    let admin = s.account(ADA, "Ada", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    let token = s.token(&org).await;
    let http = s.client();
    let call = |path: String, body: Option<serde_json::Value>| {
        common::api(&http, reqwest::Method::POST, s.url(&path), &token, body)
    };
    let (status, body) = call(
        "/api/v1/orgs/corp/members".into(),
        Some(json!({"email": "ivy@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let resend = format!(
        "/api/v1/orgs/corp/invitations/{}/resend",
        body["invitation_id"].as_str().unwrap()
    );
    assert_eq!(call(resend.clone(), None).await.0, 200);
    assert_eq!(call(resend.clone(), None).await.0, 200);
    let sent = s.count("outbox WHERE kind = 'member.invitation'").await;
    let (status, body) = call(resend.clone(), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert_eq!(
        s.count("outbox WHERE kind = 'member.invitation'").await,
        sent
    );
    let res = s
        .client()
        .post(s.url(&resend))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(waits(retry_after(&res).as_deref(), 3600));
}
both!(
    email_sending_requests_are_limited_per_address_and_per_recipient,
    email_actions
);
