//! Crash safety: the real server process is killed (SIGKILL) in the middle of a batch of 1,000
//! migration requests, and again in the middle of a batch of acceptances while an email is half
//! delivered. After each restart every request is either fully done or not started, and in the
//! end every email of the outbox has arrived at the SMTP server exactly once.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nulab_pass::accounts::{self, AccountKind};
use nulab_pass::clock::Clock;
use nulab_pass::db::Db;
use nulab_pass::orgs::{self, AdminScope, Role};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::common::smtp::SmtpSink;
use crate::common::{Backend, fixture, fresh_db, hidden_value, link_in};

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");
const PASSWORD: &str = "correct horse battery";
/// Members asked in one batch.
const MEMBERS: usize = 1000;
/// Of them, how many accept in the batch of acceptances (they are also members of `other`).
const ACCEPTING: usize = 200;
/// Acceptances completed before the kill.
const KILL_AFTER: i64 = 50;

/// The server binary on a fixed loopback port, so links stay valid across restarts.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(db_url: &str, port: u16, smtp_url: &str, certs: &Path) -> Server {
        let bind = format!("127.0.0.1:{port}");
        let base = format!("http://{bind}");
        let child = Command::new(BIN)
            .args(["serve", "--bind", &bind])
            .env("NULAB_PASS_DATABASE_URL", db_url)
            .env("NULAB_PASS_BASE_URL", &base)
            .env("NULAB_PASS_SMTP_URL", smtp_url)
            .env("NULAB_PASS_OUTBOX_POLL_MS", "50")
            .env("NULAB_PASS_CERTS_DIR", certs)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nulab-pass serve");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Server { child, base };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server did not become ready");
    }

    /// SIGKILL: no shutdown, no flush, no goodbye.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill the server");
    }
}

/// Whether the server is inside a write transaction on `org` right now: it holds SQLite's write
/// lock, or PostgreSQL's row lock on the organization (taken by a request batch until commit).
async fn writing(probe: &Db, backend: Backend, org: &orgs::Org) -> bool {
    match backend {
        Backend::Sqlite => {
            let mut conn = probe.pool().acquire().await.expect("probe connection");
            sqlx::query("PRAGMA busy_timeout = 0")
                .execute(&mut *conn)
                .await
                .expect("pragma");
            match sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
                Ok(_) => {
                    sqlx::query("ROLLBACK")
                        .execute(&mut *conn)
                        .await
                        .expect("rollback");
                    false
                }
                Err(err) if err.to_string().contains("locked") => true,
                Err(err) => panic!("probe: {err}"),
            }
        }
        Backend::Postgres => {
            match sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE NOWAIT")
                .bind(org.id.to_string())
                .fetch_optional(probe.pool())
                .await
            {
                Ok(_) => false,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => true,
                Err(err) => panic!("probe: {err}"),
            }
        }
    }
}

async fn scalar(db: &Db, sql: &str, bind: Option<&str>) -> i64 {
    let query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.to_string()));
    let query = match bind {
        Some(b) => query.bind(b.to_string()),
        None => query,
    };
    query.fetch_one(db.pool()).await.expect(sql).0
}

/// Agrees on the consent page with the password, as a browser without JavaScript would. An error
/// means the server went away mid-way.
async fn accept(link: &str) -> Result<u16, reqwest::Error> {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = browser.get(link).send().await?.text().await?;
    let csrf = hidden_value(&page, "csrf").unwrap_or_default();
    let res = browser
        .post(format!("{link}/accept"))
        .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
        .send()
        .await?;
    Ok(res.status().as_u16())
}

/// A member's request is either completed with every effect, or pending with none.
async fn assert_all_or_nothing(
    db: &Db,
    corp: &orgs::Org,
    account: &accounts::Account,
) -> &'static str {
    let id = account.id.to_string();
    let statuses: Vec<(String,)> =
        sqlx::query_as("SELECT status FROM migration_requests WHERE account_id = $1")
            .bind(id.clone())
            .fetch_all(db.pool())
            .await
            .expect("requests");
    assert_eq!(statuses.len(), 1, "one request for {}", account.email);
    let now = accounts::store::by_id(db.pool(), account.id)
        .await
        .expect("account")
        .expect("still there");
    let orgs: Vec<String> = orgs::store::orgs_of(db.pool(), account.id)
        .await
        .expect("orgs")
        .into_iter()
        .map(|(o, _)| o.slug.to_string())
        .collect();
    let accepted = scalar(
        db,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'migration.accepted' AND target_id = $1",
        Some(&id),
    )
    .await;
    let confirmed = scalar(
        db,
        "SELECT COUNT(*) FROM outbox WHERE kind = 'migration.completed' AND to_addr = $1",
        Some(&account.email),
    )
    .await;
    assert_eq!(now.id, account.id);
    assert_eq!(now.email, account.email);
    match statuses[0].0.as_str() {
        "completed" => {
            assert_eq!(now.kind, AccountKind::Managed, "{}", account.email);
            assert_eq!(now.org_id, Some(corp.id));
            assert_eq!(orgs, ["corp"], "other memberships ended");
            assert_eq!((accepted, confirmed), (1, 1), "audited and emailed once");
            "completed"
        }
        "pending" => {
            assert_eq!(now.kind, AccountKind::Nulab, "{}", account.email);
            assert_eq!(now.org_id, None);
            let mut orgs = orgs;
            orgs.sort();
            assert_eq!(orgs, ["corp", "other"], "memberships untouched");
            assert_eq!((accepted, confirmed), (0, 0), "nothing audited or emailed");
            "pending"
        }
        other => panic!("{}: unexpected status {other}", account.email),
    }
}

async fn crash(backend: Backend) {
    let testdb = fresh_db(backend).await;
    let db = testdb.db.clone();
    let probe = Db::connect(&testdb.url).await.expect("probe pool");
    let now = Clock::default().now_ms();
    let hash = accounts::password::hash(PASSWORD).await.expect("hash");

    // corp (1,000 Nulab-account members on its verified domain, 1,000 seats) and other.
    let mut tx = db.begin().await.expect("begin");
    let admin = fixture::account(&mut tx, now, "admin@corp.test", "Admin", &hash).await;
    let corp = fixture::org(&mut tx, now, "corp", &admin).await;
    let boss = fixture::account(&mut tx, now, "boss@other.test", "Boss", &hash).await;
    let other = fixture::org(&mut tx, now, "other", &boss).await;
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let email = format!("user{i:04}@corp.test");
        members.push(fixture::account(&mut tx, now, &email, "User", &hash).await);
        let orgs_of_member: &[&orgs::Org] = if i < ACCEPTING {
            &[&corp, &other]
        } else {
            &[&corp]
        };
        for org in orgs_of_member {
            let scope = AdminScope::operator((*org).clone());
            orgs::add_member(&mut tx, now, &scope, &email, Role::Member)
                .await
                .expect("member");
        }
    }
    tx.commit().await.expect("commit");
    fixture::domain(&db, now, &corp, "corp.test", "verified").await;
    fixture::seats(&db, now, &corp, MEMBERS as i64).await;
    let token = fixture::token(&db, now, &corp).await;

    let sink = SmtpSink::start().await;
    let certs = tempfile::tempdir().expect("certs");
    let port = crate::common::steady_port();
    let smtp_url = sink.url();
    let start = || Server::start(&testdb.url, port, &smtp_url, certs.path());
    let ids: Vec<String> = members.iter().map(|a| a.id.to_string()).collect();
    let ask = |base: String| {
        let body = json!({ "account_ids": ids });
        let token = token.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/api/v1/orgs/corp/migrations"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
        }
    };

    // 1. Killed in the middle of the batch of 1,000 requests: nothing of it exists.
    let server = start().await;
    let batch = tokio::spawn(ask(server.base.clone()));
    let mut held = 0;
    while held < 5 {
        held = if writing(&probe, backend, &corp).await {
            held + 1
        } else {
            0
        };
        assert!(!batch.is_finished(), "the batch ended before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().await;
    assert!(
        batch.await.expect("task").is_err(),
        "the killed server never answered"
    );
    for (table_sql, what) in [
        ("SELECT COUNT(*) FROM migration_requests", "requests"),
        (
            "SELECT COUNT(*) FROM outbox WHERE kind LIKE 'migration.%'",
            "emails",
        ),
        (
            "SELECT COUNT(*) FROM audit_events WHERE action = 'migration.requested'",
            "audit events",
        ),
    ] {
        assert_eq!(scalar(&probe, table_sql, None).await, 0, "no {what}");
    }

    // 2. After a restart the same batch goes through whole.
    let server = start().await;
    let res = ask(server.base.clone()).await.expect("batch");
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["requested"], MEMBERS, "{}", body["results"][0]);
    assert_eq!(
        scalar(
            &probe,
            "SELECT COUNT(*) FROM migration_requests WHERE status = 'pending'",
            None
        )
        .await,
        MEMBERS as i64
    );
    // The links come from the mailboxes: once a message is delivered, the outbox keeps it
    // without its single-use link.
    let prefix = format!("{}/migration/", server.base);
    let mut links: HashMap<String, String> = HashMap::new();
    for _ in 0..1800 {
        links = sink
            .messages()
            .iter()
            .filter_map(|m| Some((m.rcpt_to.first()?.clone(), link_in(&m.text(), &prefix)?)))
            .collect();
        if links.len() >= MEMBERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(links.len(), MEMBERS, "one email per request");

    // 3. Killed in the middle of a batch of acceptances, while an email is half delivered.
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    let mut acceptances = tokio::task::JoinSet::new();
    for account in &members[..ACCEPTING] {
        let link = links[&account.email].clone();
        let permits = permits.clone();
        acceptances.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("permit");
            accept(&link).await
        });
    }
    let completed_sql = "SELECT COUNT(*) FROM migration_requests WHERE status = 'completed'";
    for _ in 0..600 {
        if scalar(&probe, completed_sql, None).await >= KILL_AFTER {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.hold_next(60).await;
    server.kill().await;
    acceptances.abort_all();
    let completed = scalar(&probe, completed_sql, None).await;
    assert!(
        (KILL_AFTER..ACCEPTING as i64).contains(&completed),
        "killed mid-batch: {completed} of {ACCEPTING} completed"
    );
    eprintln!("{backend:?}: killed with {completed} of {ACCEPTING} acceptances completed");
    let mut tally: HashMap<&str, i64> = HashMap::new();
    for account in &members[..ACCEPTING] {
        *tally
            .entry(assert_all_or_nothing(&probe, &corp, account).await)
            .or_default() += 1;
    }
    assert_eq!(tally.get("completed").copied(), Some(completed));
    assert_eq!(
        nulab_pass::orgs::seats::used(probe.pool(), corp.id)
            .await
            .expect("seats"),
        completed,
        "a seat per completed migration"
    );

    // 4. After a restart the rest accept, and every email arrives exactly once.
    sink.release();
    let _server = start().await;
    for account in &members[..ACCEPTING] {
        let status: (String,) =
            sqlx::query_as("SELECT status FROM migration_requests WHERE account_id = $1")
                .bind(account.id.to_string())
                .fetch_one(probe.pool())
                .await
                .expect("status");
        if status.0 == "pending" {
            assert_eq!(accept(&links[&account.email]).await.expect("accept"), 200);
        }
    }
    for account in &members[..ACCEPTING] {
        assert_eq!(
            assert_all_or_nothing(&probe, &corp, account).await,
            "completed"
        );
    }
    // The message held at the kill waits out its lease (a minute), then goes.
    let unsent = "SELECT COUNT(*) FROM outbox WHERE status <> 'sent'";
    for _ in 0..1800 {
        if scalar(&probe, unsent, None).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scalar(&probe, unsent, None).await, 0, "every email sent");
    let outbox: Vec<(String,)> = sqlx::query_as("SELECT id FROM outbox")
        .fetch_all(probe.pool())
        .await
        .expect("outbox");
    let mut arrived: HashMap<String, usize> = HashMap::new();
    for message in sink.messages() {
        let id = message
            .header("Message-ID")
            .expect("Message-ID")
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        *arrived.entry(id).or_default() += 1;
    }
    assert!(outbox.len() > MEMBERS + 2 * ACCEPTING, "{}", outbox.len());
    for (id,) in &outbox {
        assert_eq!(arrived.get(id), Some(&1), "email {id} arrived exactly once");
    }
    assert_eq!(sink.messages().len(), outbox.len(), "nothing else arrived");
    eprintln!("{backend:?}: {} emails, each arrived once", outbox.len());
    probe.close().await;
}
crate::both!(
    a_killed_server_leaves_each_request_done_or_not_started_and_each_email_sent_once,
    crash
);
