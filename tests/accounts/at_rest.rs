//! Secrets at rest: the `sessions` table holds the SHA-256 of each session id, never the id the
//! browser's cookie carries, so a copy of the table signs no one in.

use super::*;

/// The value of the session cookie set by `res`, if any.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    crate::common::set_cookie_value(res, "nulab_pass_session")
}

fn sha256_hex(text: &str) -> String {
    nulab_pass::secrets::hash_token(text)
}

async fn session_ids_hashed(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    // A client without a jar: the cookie is carried by hand.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(server.url("/signin")).send().await.unwrap();
    let first = session_cookie(&page).expect("a session for the CSRF token");
    let csrf = common::hidden_value(&page.text().await.unwrap(), "csrf").unwrap();
    let res = client
        .post(server.url("/signin"))
        .header("cookie", format!("nulab_pass_session={first}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = session_cookie(&res).expect("a new session id at sign-in");
    assert_ne!(cookie, first);

    let stored = server.rows("SELECT id FROM sessions ORDER BY id").await;
    assert!(stored.contains(&sha256_hex(&cookie)), "{stored:?}");
    assert!(
        !stored.iter().any(|id| id == &cookie || id == &first),
        "no raw session id is stored"
    );

    let account = |value: String| {
        let client = client.clone();
        let url = server.url("/account");
        async move {
            client
                .get(url)
                .header("cookie", format!("nulab_pass_session={value}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(account(cookie.clone()).await, 200, "the cookie signs in");
    // What the table holds is useless as a cookie.
    let before = server.count("sessions").await;
    assert_eq!(
        account(sha256_hex(&cookie)).await,
        303,
        "a stored key is not a session"
    );
    assert_eq!(server.count("sessions").await, before);
}
both!(session_ids_are_stored_as_sha256_hashes, session_ids_hashed);

/// The stored TOTP secret of `email`.
async fn stored_secret(server: &TestServer, email: &str) -> String {
    server
        .rows(&format!(
            "SELECT t.secret FROM totp_credentials t JOIN accounts a ON a.id = t.account_id \
             WHERE a.email_norm = '{email}'"
        ))
        .await
        .pop()
        .expect("a TOTP row")
}

/// A password sign-in completed with the code of `secret`: where the browser lands.
async fn sign_in_with_code(server: &TestServer, email: &str, secret: &str) -> (u16, String) {
    let browser = server.client();
    let res = post_form(
        &browser,
        &server.url("/signin"),
        &server.url("/signin"),
        &[
            ("email", email),
            ("password", PASSWORD),
            ("next", "/account"),
        ],
    )
    .await;
    assert_eq!(res.headers()["location"], "/signin/two-step");
    let code = server.totp_code(secret);
    let res = post_form(
        &browser,
        &server.url("/signin/two-step"),
        &server.url("/signin/two-step"),
        &[("code", &code)],
    )
    .await;
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (res.status().as_u16(), location)
}

async fn totp_sealed(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    let ada = server.signed_in("ada@example.com", PASSWORD).await;
    let key_file = server.state.config.certs_dir.join("totp-secret-key");
    assert!(!key_file.exists(), "made at first use");

    // Enrolling through the page: the app's key is shown, the table holds it sealed.
    let page = ada
        .get(server.url("/account/two-step"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_string();
    let stored = stored_secret(&server, "ada@example.com").await;
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains(&secret));
    let key = std::fs::read_to_string(&key_file).expect("the key is in certs/");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .unwrap();
    assert_eq!(raw.len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let code = server.totp_code(&secret);
    let res = post_form(
        &ada,
        &server.url("/account/two-step"),
        &server.url("/account/two-step"),
        &[("password", PASSWORD), ("code", &code)],
    )
    .await;
    assert!(res.status().is_success() || res.status().is_redirection());
    assert_eq!(
        server
            .rows(
                "SELECT CAST(COUNT(*) AS TEXT) FROM totp_credentials WHERE confirmed_at IS NOT NULL"
            )
            .await,
        ["1"]
    );
    assert_eq!(stored_secret(&server, "ada@example.com").await, stored);
    server.state.clock.advance_ms(30_000);
    assert_eq!(
        sign_in_with_code(&server, "ada@example.com", &secret).await,
        (303, "/account".to_string())
    );

    // A secret stored before sealing (plain base32) is sealed at start-up and still works.
    let bob = server.account("bob@example.com", "Bob", PASSWORD).await;
    let plain = nulab_pass::accounts::totp::new_secret();
    sqlx::query(
        "INSERT INTO totp_credentials (account_id, secret, confirmed_at, last_step, created_at) \
         VALUES ($1, $2, 1, 0, 1)",
    )
    .bind(bob.id.to_string())
    .bind(plain.clone())
    .execute(server.db().pool())
    .await
    .unwrap();
    let ada_row = stored_secret(&server, "ada@example.com").await;
    let sealed =
        nulab_pass::sign_in::store::seal_plaintext_totp(server.db(), &server.state.totp_key)
            .await
            .unwrap();
    assert_eq!(sealed, 1);
    let bob_row = stored_secret(&server, "bob@example.com").await;
    assert!(bob_row.starts_with("v1:") && !bob_row.contains(&plain));
    assert_eq!(
        stored_secret(&server, "ada@example.com").await,
        ada_row,
        "a sealed secret is left alone"
    );
    let again =
        nulab_pass::sign_in::store::seal_plaintext_totp(server.db(), &server.state.totp_key)
            .await
            .unwrap();
    assert_eq!(again, 0);
    assert_eq!(stored_secret(&server, "bob@example.com").await, bob_row);
    assert_eq!(
        sign_in_with_code(&server, "bob@example.com", &plain).await,
        (303, "/account".to_string())
    );
}
both!(totp_secrets_are_sealed_at_rest, totp_sealed);

/// Waits until every outbox message is delivered.
async fn all_sent(server: &TestServer, n: usize) {
    for _ in 0..400 {
        let sent = server
            .rows("SELECT id FROM outbox WHERE status = 'sent'")
            .await
            .len();
        if sent == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the outbox was not delivered");
}

async fn links_redacted(backend: Backend) {
    let sink = common::smtp::SmtpSink::start().await;
    let url = sink.url();
    let server = TestServer::start_with(backend, |c| c.smtp_url = Some(url)).await;
    let client = server.client();
    let res = post_form(
        &client,
        &server.url("/signup"),
        &server.url("/signup"),
        &[
            ("email", "grace@example.com"),
            ("name", "Grace"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let prefix = format!("{}/verify-email?token=", server.base);
    // While it waits, the outbox holds what will be sent.
    let got = sink.wait_for(1, 20).await;
    let link = common::link_in(&got[0].text(), &prefix).expect("the link was delivered");
    all_sent(&server, 1).await;
    let token = link.strip_prefix(&prefix).unwrap();
    let row = server
        .rows("SELECT body_text || '|' || body_html FROM outbox")
        .await
        .pop()
        .unwrap();
    assert!(!row.contains(token), "no delivered token stays: {row}");
    assert!(row.contains(nulab_pass::mail::LINK_REMOVED), "{row}");
    assert!(row.contains("Confirm my email") && row.contains("Confirm your email"));
    assert_eq!(
        server
            .rows("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE kept_text IS NULL AND kept_html IS NULL AND redacted_at IS NOT NULL")
            .await,
        ["1"]
    );
    // The link itself still works: only its hash was ever stored with the account.
    assert_eq!(client.get(&link).send().await.unwrap().status(), 200);

    // A message without a single-use link is kept as it was sent.
    let before = server.rows("SELECT id FROM outbox").await;
    let admin = server.account("admin@corp.test", "Admin", PASSWORD).await;
    let org = server.org("corp", &admin).await;
    server.verified_domain(&org, "corp.test").await;
    let token = server.token(&org).await;
    let (status, body) = common::api(
        &server.client(),
        reqwest::Method::POST,
        server.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(serde_json::json!({"email": "kim@corp.test", "name": "Kim", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let got = sink.wait_for(2, 20).await;
    all_sent(&server, 2).await;
    assert!(got.iter().any(|m| m.rcpt_to == ["kim@corp.test"]));
    let kept = server
        .rows("SELECT body_text FROM outbox WHERE to_addr = 'kim@corp.test'")
        .await
        .pop()
        .unwrap();
    assert_eq!(before.len(), 1);
    assert!(kept.contains(&format!("{}/signin", server.base)));
    assert!(!kept.contains(nulab_pass::mail::LINK_REMOVED));
    assert_eq!(
        server
            .rows("SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE to_addr = 'kim@corp.test' AND redacted_at IS NULL")
            .await,
        ["1"]
    );

    // Development without SMTP: nothing is delivered, so /dev/mail still shows the live link.
    let dev = TestServer::start_with(backend, |c| c.dev = true).await;
    let browser = dev.client();
    post_form(
        &browser,
        &dev.url("/signup"),
        &dev.url("/signup"),
        &[
            ("email", "bob@example.com"),
            ("name", "Bob"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let page = dev
        .client()
        .get(dev.url("/dev/mail"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = common::link_in(&page, &format!("{}/verify-email?token=", dev.base))
        .expect("a live link before delivery")
        .replace("&amp;", "&");
    assert_eq!(dev.client().get(&link).send().await.unwrap().status(), 200);
}
both!(delivered_links_leave_the_outbox, links_redacted);
