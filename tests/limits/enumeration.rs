//! No answer tells whether an account exists: the sign-in routing, the password form, the
//! password pause and adding a member answer an address with a Nulab account, an address
//! without one and a managed account of another organization alike (status, page or body,
//! `Retry-After`, and the emails sent).

use serde_json::json;

use super::{PASSWORD, sign_in};
use crate::both;
use crate::common::{self, Backend, TestServer, hidden_value};

/// The three kinds of address, all on one domain (so routing cannot tell them apart by it).
const NULAB: &str = "nora@corp.test";
const NONE: &str = "ghost@corp.test";
const MANAGED: &str = "mia@corp.test";

/// A page with what always differs taken out: the address itself, the CSRF token, and the
/// digits of times (each address is tried at its own moment).
fn normalized(page: &str, email: &str) -> String {
    let page = match hidden_value(page, "csrf") {
        Some(csrf) => page.replace(&csrf, "CSRF"),
        None => page.to_string(),
    };
    page.replace(email, "EMAIL")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

/// Everything an address gets back from the sign-in page, the password form (ten wrong
/// passwords, then the pause) and the emails sent to it meanwhile.
async fn answers(s: &TestServer, email: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let emails = format!("outbox WHERE to_addr = '{email}'");
    let emails_before = s.count(&emails).await;
    let browser = s.client();
    let page = s.url("/signin");
    let res = common::post_form(
        &browser,
        &page,
        &s.url("/signin/identify"),
        &[("identifier", email), ("next", "/account")],
    )
    .await;
    seen.push(format!("identify {}", res.status()));
    seen.push(normalized(&res.text().await.unwrap(), email));
    for _ in 0..10 {
        let (status, retry, page) = sign_in(s, email, "wrong password!").await;
        seen.push(format!("{status} {retry:?} {}", normalized(&page, email)));
    }
    let (status, retry, page) = sign_in(s, email, PASSWORD).await;
    let retry: i64 = retry.expect("Retry-After").parse().unwrap();
    // Whole seconds to the pause's end: 900, or 899 when a second turned in between.
    assert!((899..=900).contains(&retry), "{retry}");
    seen.push(format!("{status} {}", normalized(&page, email)));
    let sent = s.count(&emails).await - emails_before;
    seen.push(format!("emails sent {sent}"));
    seen
}

async fn sign_in_alike(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.account("ada@example.com", "Ada", PASSWORD).await;
    let org = s.org("corp", &admin).await;
    s.verified_domain(&org, "corp.test").await;
    let token = s.token(&org).await;
    let (status, body) = common::api(
        &s.client(),
        reqwest::Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(json!({"email": MANAGED, "name": "Mia", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    s.account(NULAB, "Nora", PASSWORD).await;
    let before = s.count("outbox").await;
    let nulab = answers(&s, NULAB).await;
    assert!(nulab[1].contains("name=\"password\""), "the password form");
    assert_eq!(nulab.last().unwrap(), "emails sent 0");
    assert_eq!(answers(&s, NONE).await, nulab, "no account");
    assert_eq!(answers(&s, MANAGED).await, nulab, "a managed account");
    assert_eq!(s.count("outbox").await, before, "nobody was emailed");
}
both!(
    sign_in_and_its_pause_answer_alike_whether_or_not_an_account_exists,
    sign_in_alike
);

async fn invite_alike(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.account("ada@example.com", "Ada", PASSWORD).await;
    let corp = s.org("corp", &admin).await;
    s.verified_domain(&corp, "corp.test").await;
    let corp_token = s.token(&corp).await;
    let (status, _) = common::api(
        &s.client(),
        reqwest::Method::POST,
        s.url("/api/v1/orgs/corp/managed-accounts"),
        &corp_token,
        Some(json!({"email": MANAGED, "name": "Mia", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    s.account(NULAB, "Nora", PASSWORD).await;
    // Another organization invites each address.
    let other = s.account("oscar@example.com", "Oscar", PASSWORD).await;
    let other_org = s.org("other", &other).await;
    let token = s.token(&other_org).await;
    let mut answers = Vec::new();
    for email in [NULAB, NONE, MANAGED] {
        let emails = format!("outbox WHERE to_addr = '{email}'");
        let emails_before = s.count(&emails).await;
        let (status, body) = common::api(
            &s.client(),
            reqwest::Method::POST,
            s.url("/api/v1/orgs/other/members"),
            &token,
            Some(json!({"email": email, "role": "member"})),
        )
        .await;
        let mail = s.last_mail(email, "member.invitation").await;
        answers.push((
            status,
            body["status"].clone(),
            body["role"].clone(),
            body.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            mail.subject.replace(email, "EMAIL"),
            s.count(&emails).await - emails_before,
        ));
    }
    assert_eq!(answers[0].0, 201);
    assert_eq!(answers[1], answers[0], "no account");
    assert_eq!(
        answers[2], answers[0],
        "a managed account of another organization"
    );
}
both!(
    adding_a_member_answers_alike_whether_or_not_an_account_exists,
    invite_alike
);
