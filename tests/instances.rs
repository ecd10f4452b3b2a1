//! Several instances on one PostgreSQL: two `nulab-pass serve` processes (the real binary)
//! sharing only the database and the key folder, behind one base URL as a load balancer would
//! put them. An SP-initiated sign-in started on one completes on the other; the same response
//! replayed to the first is refused; a sign-in outlives the instance it happened on; every
//! email of the outbox is delivered exactly once and the billing job invoices a period once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nulab_pass::db::Db;
use nulab_pass::mock_idp::{MockIdp, ResponseSpec};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use common::smtp::SmtpSink;
use common::{Backend, api, fixture, fresh_db, steady_port};

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");
const PASSWORD: &str = "correct horse battery";
/// Invitations sent through the two instances, half each.
const INVITES: usize = 30;

/// One instance: the binary listening on its own port, configured with the shared base URL.
struct Instance {
    child: Child,
    addr: String,
}

impl Instance {
    async fn start(db_url: &str, port: u16, base: &str, smtp: &str, certs: &Path) -> Instance {
        let bind = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["serve", "--bind", &bind])
            .env("NULAB_PASS_DATABASE_URL", db_url)
            .env("NULAB_PASS_BASE_URL", base)
            .env("NULAB_PASS_SMTP_URL", smtp)
            .env("NULAB_PASS_OUTBOX_POLL_MS", "20")
            .env("NULAB_PASS_BILLING_POLL_MS", "20")
            .env("NULAB_PASS_CERTS_DIR", certs)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nulab-pass serve");
        let addr = format!("http://{bind}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            let ready = http.get(format!("{addr}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return Instance { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the instance did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.addr)
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("kill the instance");
    }
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(db.pool())
        .await
        .expect(sql);
    row.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgresql() {
    let testdb = fresh_db(Backend::Postgres).await;
    let db = testdb.db.clone();
    let now = nulab_pass::clock::Clock::default().now_ms();
    let hash = nulab_pass::accounts::password::hash(PASSWORD)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let admin = fixture::account(&mut tx, now, "admin@corp.test", "Admin", &hash).await;
    let org = fixture::org(&mut tx, now, "corp", &admin).await;
    tx.commit().await.unwrap();
    fixture::domain(&db, now, &org, "corp.test", "verified").await;
    fixture::seats(&db, now, &org, 10).await;
    let token = fixture::token(&db, now, &org).await;

    // Two instances behind one address: the first creates the keys, the second reads them.
    let sink = SmtpSink::start().await;
    let certs = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (steady_port(), steady_port());
    let base = format!("http://127.0.0.1:{port_a}");
    let a = Instance::start(&testdb.url, port_a, &base, &sink.url(), certs.path()).await;
    let b = Instance::start(&testdb.url, port_b, &base, &sink.url(), certs.path()).await;
    let http = reqwest::Client::new();
    for path in ["/oauth/jwks", "/.well-known/openid-configuration"] {
        let one = http
            .get(a.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let other = http
            .get(b.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(one, other, "{path}: both instances serve the same keys");
    }

    // A managed account and a connection, made through different instances.
    let (status, _) = api(
        &http,
        Method::POST,
        a.url("/api/v1/orgs/corp/managed-accounts"),
        &token,
        Some(json!({"email": "mia@corp.test", "name": "Mia"})),
    )
    .await;
    assert_eq!(status, 201);
    let idp = MockIdp::generate(
        "https://idp.corp.test/metadata",
        "https://idp.corp.test/sso",
    )
    .unwrap();
    let (status, connection) = api(
        &http,
        Method::POST,
        b.url("/api/v1/orgs/corp/saml-connections"),
        &token,
        Some(json!({"metadata_xml": idp.metadata_xml(), "name": "Mock IdP"})),
    )
    .await;
    assert_eq!(status, 201, "{connection}");

    let browser = sign_in_across(&a, &b, &idp, &connection, &db).await;
    emails_and_jobs_once(&a, &b, &token, &db, &sink, &org).await;

    // A dies: the browser's sign-in lives on in the database, and B sends what is asked of it.
    a.kill().await;
    let page = browser.get(b.url("/account")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("mia@corp.test"));
    let (status, _) = api(
        &http,
        Method::POST,
        b.url("/api/v1/orgs/corp/members"),
        &token,
        Some(json!({"email": "late@example.com"})),
    )
    .await;
    assert_eq!(status, 201);
    each_email_once(&db, &sink).await;
    drop(b);
}

/// Started on A, completed on B; replayed to A, refused; the browser signed in on both.
async fn sign_in_across(
    a: &Instance,
    b: &Instance,
    idp: &MockIdp,
    connection: &Value,
    db: &Db,
) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = connection["id"].as_str().unwrap();
    let res = browser
        .get(a.url(&format!("/sso/{id}/login")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to_idp = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let query: HashMap<String, String> = to_idp.query_pairs().into_owned().collect();
    let request = nulab_pass::saml::mock_idp_server::read_request(&query["SAMLRequest"]).unwrap();
    let spec = ResponseSpec::new(
        "mia@corp.test",
        connection["acs_url"].as_str().unwrap(),
        connection["sp_entity_id"].as_str().unwrap(),
        Some(&request.id),
    );
    let response = idp.response_b64(&spec).unwrap();
    let form = [
        ("SAMLResponse", response.as_str()),
        ("RelayState", query["RelayState"].as_str()),
    ];
    let acs = format!("/sso/{id}/acs");
    let res = browser.post(b.url(&acs)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303, "the sign-in started on A completes on B");
    for instance in [a, b] {
        let page = browser.get(instance.url("/account")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("mia@corp.test"));
    }
    let sessions = scalar(db, "SELECT COUNT(*) FROM sessions").await;
    let res = browser.post(a.url(&acs)).form(&form).send().await.unwrap();
    assert_ne!(
        res.status(),
        303,
        "the same response replayed to A is refused"
    );
    let failed = scalar(db, "SELECT COUNT(*) FROM audit_events WHERE action = 'sso.signin.failed' AND details LIKE '%replayed%'").await;
    assert_eq!(failed, 1, "the replay is audited with its reason");
    assert_eq!(
        scalar(db, "SELECT COUNT(*) FROM sessions").await,
        sessions,
        "no session from the replay"
    );
    assert_eq!(
        scalar(
            db,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'sso.signin.succeeded'"
        )
        .await,
        1
    );
    browser
}

/// Invitations through both instances: each email arrives exactly once; the billing job of
/// both instances invoices the first period once. Then A is killed and B still delivers.
async fn emails_and_jobs_once(
    a: &Instance,
    b: &Instance,
    token: &str,
    db: &Db,
    sink: &SmtpSink,
    org: &nulab_pass::orgs::Org,
) {
    let http = reqwest::Client::new();
    for i in 0..INVITES {
        let instance = if i % 2 == 0 { a } else { b };
        let (status, body) = api(
            &http,
            Method::POST,
            instance.url("/api/v1/orgs/corp/members"),
            token,
            Some(json!({"email": format!("guest{i}@example.com")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut tx = db.begin().await.unwrap();
    let config = nulab_pass::Config::with_database("sqlite::memory:");
    let now = nulab_pass::clock::Clock::default().now_ms();
    nulab_pass::billing::plan::set_status(
        &mut tx,
        now,
        org,
        nulab_pass::billing::Status::Active,
        &config.billing,
        "http://127.0.0.1",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    for _ in 0..600 {
        if scalar(db, "SELECT COUNT(*) FROM invoices").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    each_email_once(db, sink).await;
    // Both billing jobs saw the period start; one invoice was written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM invoices").await, 1);
}

/// A database that drops the server's connections while they sit idle in its pool (a restart,
/// a proxy's idle timeout) costs no request: a connection idle for `db::PING_IDLE_AFTER` is
/// pinged before it is used and replaced when the ping fails. (Without that ping the first
/// statement after the drop fails: the connection was last checked when it came back to the
/// pool, before the drop.) On the pool alone: a server's jobs would use up the dropped
/// connections first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_while_idle_are_replaced() {
    let testdb = fresh_db(Backend::Postgres).await;
    let db = testdb.db.clone();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(db.pool().acquire().await.unwrap());
    }
    drop(held);
    let admin = Db::connect(&testdb.url).await.unwrap();
    let ended = scalar(
        &admin,
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS ended",
    )
    .await;
    admin.close().await;
    assert!(ended >= 4, "the pool's connections were ended: {ended}");
    tokio::time::sleep(nulab_pass::db::PING_IDLE_AFTER + Duration::from_millis(100)).await;
    for _ in 0..8 {
        assert_eq!(scalar(&db, "SELECT COUNT(*) FROM orgs").await, 0);
    }
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// Waits until the outbox is sent, then checks that each of its emails arrived exactly once.
async fn each_email_once(db: &Db, sink: &SmtpSink) {
    let unsent = "SELECT COUNT(*) FROM outbox WHERE status <> 'sent'";
    for _ in 0..600 {
        if scalar(db, unsent).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scalar(db, unsent).await, 0, "every email sent");
    let outbox: Vec<(String,)> = sqlx::query_as("SELECT id FROM outbox")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert!(outbox.len() >= INVITES, "{}", outbox.len());
    let mut arrived: HashMap<String, usize> = HashMap::new();
    for message in sink.messages() {
        let id = message.header("Message-ID").expect("Message-ID");
        let id = id
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default();
        *arrived.entry(id.to_string()).or_default() += 1;
    }
    for (id,) in &outbox {
        assert_eq!(arrived.get(id), Some(&1), "email {id} arrived exactly once");
    }
    assert_eq!(sink.messages().len(), outbox.len(), "nothing else arrived");
}
