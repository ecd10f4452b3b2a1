//! Email through the outbox and a real SMTP server on loopback: delivered once, kept while SMTP
//! is down, delivered when it is back, never twice; and the development mail page.

mod common;

use common::smtp::SmtpSink;
use common::{Backend, TestServer, csrf_of, link_in};

const PASSWORD: &str = "correct horse battery";

async fn sign_up(server: &TestServer, email: &str) {
    let client = server.client();
    let csrf = csrf_of(&client, &server.url("/signup")).await;
    let res = client
        .post(server.url("/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("name", "Someone"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn pending(server: &TestServer) -> i64 {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(server.db().pool())
        .await
        .unwrap();
    row.0
}

async fn delivered_with_text_and_html(backend: Backend) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let server = TestServer::start_with(backend, |c| {
        c.smtp_url = Some(url);
        c.mail_from = "nulab-pass <no-reply@pass.example>".into();
    })
    .await;
    sign_up(&server, "grace@example.com").await;
    let got = sink.wait_for(1, 20).await;
    let mail = &got[0];
    assert_eq!(mail.rcpt_to, vec!["grace@example.com".to_string()]);
    assert!(
        mail.header("From")
            .unwrap()
            .contains("no-reply@pass.example")
    );
    assert!(
        mail.header("Subject")
            .unwrap()
            .contains("Confirm your email")
    );
    let message_id = mail.header("Message-ID").unwrap();
    assert!(message_id.ends_with("@127.0.0.1>"), "{message_id}");
    // Both parts carry the same working link.
    let link = link_in(
        &mail.text(),
        &format!("{}/verify-email?token=", server.base),
    )
    .expect("link in text part");
    assert_eq!(
        link_in(
            &mail.html(),
            &format!("{}/verify-email?token=", server.base)
        )
        .as_deref(),
        Some(link.as_str())
    );
    let res = server.client().get(&link).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Marked sent once, with the time.
    let row: (String, i64, Option<i64>) =
        sqlx::query_as("SELECT status, attempts, sent_at FROM outbox")
            .fetch_one(server.db().pool())
            .await
            .unwrap();
    assert_eq!(row.0, "sent");
    assert_eq!(row.1, 1);
    assert!(row.2.is_some());
}
both!(email_is_delivered_over_smtp, delivered_with_text_and_html);

async fn smtp_down_then_back(backend: Backend) {
    let mut sink = SmtpSink::start().await;
    let url = sink.url();
    sink.stop();
    let server = TestServer::start_with(backend, |c| c.smtp_url = Some(url)).await;
    for i in 0..5 {
        sign_up(&server, &format!("user{i}@example.com")).await;
    }
    // While SMTP is down the messages wait in the outbox and record the failed attempts.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM outbox WHERE attempts > 0 AND last_error IS NOT NULL",
        )
        .fetch_one(server.db().pool())
        .await
        .unwrap();
        if row.0 == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempts were not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending(&server).await, 5);
    assert!(sink.messages().is_empty());

    // SMTP comes back: skip the backoff wait by moving the clock, and every message arrives once.
    sink.restart().await;
    server.state.clock.advance_ms(20 * 60 * 1000);
    let got = sink.wait_for(5, 30).await;
    // Once every row is marked sent no sender picks it up again: then count what arrived.
    wait_all_sent(server.db(), 5).await;
    let got_later = sink.messages();
    assert_eq!(got_later.len(), 5, "no message sent twice");
    let mut recipients: Vec<String> = got.iter().map(|m| m.rcpt_to[0].clone()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        (0..5)
            .map(|i| format!("user{i}@example.com"))
            .collect::<Vec<_>>()
    );
    assert_eq!(pending(&server).await, 0);
    let sent: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
        .fetch_one(server.db().pool())
        .await
        .unwrap();
    assert_eq!(sent.0, 5);
}
both!(email_waits_while_smtp_is_down, smtp_down_then_back);

/// Waits until `n` outbox rows are marked sent and none is claimed by a sender (20 s at most).
async fn wait_all_sent(db: &nulab_pass::db::Db, n: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row: (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN status <> 'sent' THEN 1 ELSE 0 END), 0) FROM outbox",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        if row == (n, 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not settle: {row:?} (sent, not sent)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn two_senders_share_the_outbox(backend: Backend) {
    // Two server instances on one database, as behind a load balancer: each message once.
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let first = TestServer::start(backend).await;
    for i in 0..20 {
        sign_up(&first, &format!("bulk{i}@example.com")).await;
    }
    let state = first.state.clone();
    let mut config = (*state.config).clone();
    config.smtp_url = Some(url);
    config.outbox_poll_ms = 10;
    let a = nulab_pass::AppState::new(state.db.clone(), config.clone(), state.clock.clone());
    let b = nulab_pass::AppState::new(state.db.clone(), config, state.clock.clone());
    let jobs_a = nulab_pass::jobs::spawn_all(&a).unwrap();
    let jobs_b = nulab_pass::jobs::spawn_all(&b).unwrap();
    sink.wait_for(20, 30).await;
    wait_all_sent(&state.db, 20).await;
    for job in jobs_a.into_iter().chain(jobs_b) {
        job.abort();
    }
    let mut recipients: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m.rcpt_to[0].clone())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(sink.messages().len(), 20);
    assert_eq!(recipients.len(), 20);
}
both!(
    two_senders_deliver_each_message_once,
    two_senders_share_the_outbox
);

async fn dev_page_only_in_dev_mode(backend: Backend) {
    let plain = TestServer::start(backend).await;
    sign_up(&plain, "ada@example.com").await;
    assert_eq!(
        plain
            .client()
            .get(plain.url("/dev/mail"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        pending(&plain).await,
        1,
        "without SMTP the message stays in the outbox"
    );

    let dev = TestServer::start_with(backend, |c| c.dev = true).await;
    sign_up(&dev, "bob@example.com").await;
    let page = dev
        .client()
        .get(dev.url("/dev/mail"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bob@example.com") && page.contains("Confirm your email"));
    assert!(link_in(&page, &format!("{}/verify-email?token=", dev.base)).is_some());
}
both!(
    dev_mail_page_exists_only_in_dev_mode,
    dev_page_only_in_dev_mode
);
