//! Shared fixtures: a fresh database (SQLite file or PostgreSQL database), the real server on a
//! loopback port, an HTTP client with a cookie jar, an SMTP sink, and small page helpers.
#![allow(dead_code)]

pub mod browser;
pub mod routes;
pub mod smtp;

use std::net::SocketAddr;
use std::sync::Arc;

use nulab_pass::clock::Clock;
use nulab_pass::db::Db;
use nulab_pass::{AppState, Config, accounts};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per database: `both!(name, body)` makes `name::sqlite` and
/// `name::postgres`, where `body` is `async fn(Backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::common::Backend::Postgres).await
            }
        }
    };
}

/// A new, empty, migrated database; the guard keeps a SQLite file's folder alive.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn fresh_db(backend: Backend) -> TestDb {
    let (url, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            (
                format!("sqlite://{}", dir.path().join("test.db").display()),
                Some(dir),
            )
        }
        Backend::Postgres => {
            let admin = std::env::var("NULAB_PASS_TEST_POSTGRES_URL").expect(
                "NULAB_PASS_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
            );
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin_db = Db::connect(&admin).await.expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(admin_db.pool())
                .await
                .expect("create test database");
            admin_db.close().await;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .expect("database URL");
            (format!("{base}/{name}"), None)
        }
    };
    let db = Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    TestDb { db, url, _dir: dir }
}

/// The real server on 127.0.0.1 with a fresh database.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub testdb: Arc<TestDb>,
    task: tokio::task::JoinHandle<()>,
    jobs: Vec<tokio::task::JoinHandle<()>>,
    _certs: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with a configuration adjusted by `adjust` (e.g. an SMTP URL).
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let testdb = Arc::new(fresh_db(backend).await);
        Self::start_on(testdb, adjust).await
    }

    /// Another instance on this server's database (its own listener, clock, jobs and keys),
    /// the way several instances behind a load balancer share one PostgreSQL.
    pub async fn another_instance(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on(self.testdb.clone(), adjust).await
    }

    async fn start_on(testdb: Arc<TestDb>, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::with_database(&testdb.url);
        config.bind = addr;
        config.base_url = Some(format!("http://{addr}").parse().expect("url"));
        config.outbox_poll_ms = 50;
        // Keys generated at first start go to a folder of this test only.
        let certs = tempfile::tempdir().expect("certs dir");
        config.certs_dir = certs.path().to_path_buf();
        adjust(&mut config);
        let state = AppState::new(testdb.db.clone(), config, Clock::default());
        let jobs = nulab_pass::jobs::spawn_all(&state).expect("jobs");
        let app =
            nulab_pass::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestServer {
            base: format!("http://{addr}"),
            addr,
            state,
            testdb,
            task,
            jobs,
            _certs: certs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// A browser-like client: cookie jar, no automatic redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// The admin API's OpenAPI document, as the server publishes it.
    pub async fn openapi(&self) -> serde_json::Value {
        self.client()
            .get(self.url("/api/v1/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("openapi json")
    }

    /// Creates a Nulab account with a verified email directly (as the operator CLI does).
    pub async fn account(&self, email: &str, name: &str, password: &str) -> accounts::Account {
        let hash = accounts::password::hash(password).await.expect("hash");
        let mut tx = self.db().begin().await.expect("begin");
        let account =
            fixture::account(&mut tx, self.state.clock.now_ms(), email, name, &hash).await;
        tx.commit().await.expect("commit");
        account
    }

    /// Creates an organization with `admin` as its admin.
    pub async fn org(&self, slug: &str, admin: &accounts::Account) -> nulab_pass::orgs::Org {
        let mut tx = self.db().begin().await.expect("begin");
        let org = fixture::org(&mut tx, self.state.clock.now_ms(), slug, admin).await;
        tx.commit().await.expect("commit");
        org
    }

    /// Adds the existing account `email` to `org` as `role` (`admin` or `member`) the way the
    /// operator's `nulab-pass org add-member` does: directly, without an invitation.
    pub async fn add_member(&self, org: &nulab_pass::orgs::Org, email: &str, role: &str) {
        fixture::add_member(self.db(), self.state.clock.now_ms(), org, email, role).await;
    }

    /// An admin invites `email` to `org_slug` through the API with `token`, and the invitee,
    /// signed in with `password`, accepts it on the account page: a member by consent.
    /// Returns the invitee's signed-in browser.
    pub async fn invite_and_accept(
        &self,
        org_slug: &str,
        token: &str,
        email: &str,
        password: &str,
        role: &str,
    ) -> reqwest::Client {
        let (status, body) = api(
            &self.client(),
            reqwest::Method::POST,
            self.url(&format!("/api/v1/orgs/{org_slug}/members")),
            token,
            Some(serde_json::json!({"email": email, "role": role})),
        )
        .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (201, Some("invited")),
            "{body}"
        );
        let id = body["invitation_id"]
            .as_str()
            .expect("invitation id")
            .to_string();
        let browser = self.signed_in(email, password).await;
        let res = post_form(
            &browser,
            &self.url("/account"),
            &self.url(&format!("/account/invitations/{id}/accept")),
            &[],
        )
        .await;
        assert_eq!(res.status(), 303, "the invitation is accepted");
        browser
    }

    /// A signed-in browser for an existing account.
    pub async fn signed_in(&self, email: &str, password: &str) -> reqwest::Client {
        let client = self.client();
        let csrf = csrf_of(&client, &self.url("/signin")).await;
        let res = client
            .post(self.url("/signin"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", email),
                ("password", password),
                ("next", "/account"),
            ])
            .send()
            .await
            .expect("sign in");
        assert_eq!(res.status(), 303, "sign-in should redirect");
        client
    }

    /// Every row of a one-column text query, in order (to show that nothing changed, row by row).
    pub async fn rows(&self, sql: &str) -> Vec<String> {
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(self.db().pool())
            .await
            .expect("rows");
        rows.into_iter().map(|(r,)| r).collect()
    }

    /// Counts rows of a table (to show that nothing changed).
    pub async fn count(&self, table: &str) -> i64 {
        let row: (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(self.db().pool())
                .await
                .expect("count");
        row.0
    }

    /// Asserts that every organization's kept seat count (`orgs.seats_used`, which triggers
    /// keep) is the number of its active and suspended managed accounts, counted.
    pub async fn assert_seats_counted(&self) {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT o.slug, o.seats_used, (SELECT COUNT(*) FROM accounts a WHERE a.org_id = o.id \
             AND a.kind = 'managed' AND a.status IN ('active', 'suspended')) FROM orgs o \
             ORDER BY o.slug",
        )
        .fetch_all(self.db().pool())
        .await
        .expect("seats used");
        assert!(!rows.is_empty(), "no organization to check");
        for (slug, kept, counted) in rows {
            assert_eq!(kept, counted, "seats used of {slug}: kept, counted");
        }
    }

    /// Whether an audit event with `action` was written (to prove that a flow emits it).
    pub async fn audited(&self, action: &str) -> bool {
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events WHERE action = $1")
            .bind(action.to_string())
            .fetch_one(self.db().pool())
            .await
            .expect("audit count");
        row.0 > 0
    }

    /// The actions of the newest audit events, newest first.
    pub async fn audit_actions(&self, limit: i64) -> Vec<String> {
        nulab_pass::audit::store::recent(self.db().pool(), None, limit)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        for job in &self.jobs {
            job.abort();
        }
    }
}

/// Loads a page and returns its CSRF token (the session cookie lands in the client's jar).
/// The body of the page at `url`, as `client` gets it.
pub async fn page_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
}

pub async fn csrf_of(client: &reqwest::Client, url: &str) -> String {
    let html = page_text(client, url).await;
    hidden_value(&html, "csrf").unwrap_or_else(|| panic!("no csrf field on {url}"))
}

/// The value of the cookie `name` that `res` sets, if it sets one.
pub fn set_cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// The `value` of the first `<input name="{name}" ...>` in `html`.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

/// The first URL in `text` that starts with `prefix`.
pub fn link_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    Some(rest[..end].replace("&amp;", "&"))
}

impl TestServer {
    /// Marks `domain` verified for `org` directly in the database (the domain tests prove the
    /// DNS path; here it is a fixture).
    pub async fn verified_domain(&self, org: &nulab_pass::orgs::Org, domain: &str) {
        self.domain_row(org, domain, "verified").await;
    }

    /// Adds a domain row of `org` in any status (`pending`, `verified`, `lapsed`, `expired`).
    pub async fn domain_row(&self, org: &nulab_pass::orgs::Org, domain: &str, status: &str) {
        fixture::domain(self.db(), self.state.clock.now_ms(), org, domain, status).await;
    }

    /// Sets the subscribed seats as the operator would.
    pub async fn seats(&self, org: &nulab_pass::orgs::Org, seats: i64) {
        fixture::seats(self.db(), self.state.clock.now_ms(), org, seats).await;
    }

    /// An API token of `org`.
    pub async fn token(&self, org: &nulab_pass::orgs::Org) -> String {
        fixture::token(self.db(), self.state.clock.now_ms(), org).await
    }

    /// An operator token of `org` with only `scopes` (space-separated) and the default expiry.
    pub async fn scoped_token(&self, org: &nulab_pass::orgs::Org, scopes: &str) -> String {
        let scope = nulab_pass::orgs::AdminScope::operator(org.clone());
        let new = nulab_pass::api_tokens::NewToken {
            name: format!("tests ({scopes})"),
            scopes: nulab_pass::api_tokens::Scopes::parse(scopes).expect("scopes"),
            expires_in_days: nulab_pass::api_tokens::DEFAULT_DAYS,
        };
        let mut tx = self.db().begin().await.expect("begin");
        let now = self.state.clock.now_ms();
        let (_, secret) = nulab_pass::api_tokens::create_with(&mut tx, now, &scope, &new)
            .await
            .expect("token");
        tx.commit().await.expect("commit");
        secret
    }

    /// A token that the admin signed in to `browser` creates on the tokens page of `slug`, with
    /// `scopes`; returns the secret shown once.
    pub async fn admin_token(
        &self,
        browser: &reqwest::Client,
        slug: &str,
        scopes: &[&str],
    ) -> String {
        let page = self.url(&format!("/admin/{slug}/api-tokens"));
        let mut fields = vec![("name", "made by an admin")];
        fields.extend(scopes.iter().map(|s| ("scope", *s)));
        let res = post_form(browser, &page, &page, &fields).await;
        assert_eq!(res.status(), 200, "token created");
        let html = res.text().await.expect("page");
        let marker = "id=\"new-token\">";
        let start = html.find(marker).expect("new token shown") + marker.len();
        let end = html[start..].find('<').expect("end of token");
        html[start..start + end].to_string()
    }

    /// The newest outbox message of `kind` to `to`.
    pub async fn last_mail(&self, to: &str, kind: &str) -> nulab_pass::mail::store::OutboxMessage {
        nulab_pass::mail::store::recent(self.db().pool(), 500)
            .await
            .expect("outbox")
            .into_iter()
            .find(|m| m.to_addr.eq_ignore_ascii_case(to) && m.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} email to {to}"))
    }
}

/// Sends a JSON API request and returns the status and the parsed body (`Null` when empty).
pub async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("api request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, value)
}

/// Posts a form with the CSRF token of `page` (loaded first) and returns the response.
pub async fn post_form(
    client: &reqwest::Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = csrf_of(client, page).await;
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    client
        .post(action)
        .form(&all)
        .send()
        .await
        .expect("post form")
}

impl TestServer {
    /// Turns on two-step verification (TOTP) for the account with `email` directly, as if it had
    /// enrolled on its account page; returns the base32 secret.
    pub async fn enroll_totp(&self, email: &str) -> String {
        let account = accounts::store::by_email(
            self.db().pool(),
            &accounts::Email::parse(email).expect("email"),
        )
        .await
        .expect("account")
        .expect("account exists");
        let secret = accounts::totp::new_secret();
        let now = self.state.clock.now_ms();
        let mut tx = self.db().begin().await.expect("begin");
        let sealed = self.state.totp_key.seal(account.id, &secret).expect("seal");
        nulab_pass::sign_in::store::put_pending_totp(&mut tx, account.id, &sealed, now)
            .await
            .expect("totp");
        assert!(
            nulab_pass::sign_in::store::confirm_totp(&mut tx, account.id, now, 0)
                .await
                .expect("confirm")
        );
        tx.commit().await.expect("commit");
        secret
    }

    /// The code an authenticator app shows now (on the server's clock) for `secret`.
    pub fn totp_code(&self, secret: &str) -> String {
        accounts::totp::code_at(secret, self.state.clock.now_ms()).expect("code")
    }
}

/// A free loopback port below Linux's ephemeral range (32768 and up), for a server started as its
/// own process or one that stops and listens again on the same port: no outgoing connection of a
/// test running alongside can take it in between.
pub fn steady_port() -> u16 {
    for _ in 0..100 {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// The mock IdP answers an SP-initiated sign-in for `email`: `to_idp` is the server's redirect to
/// the IdP (with `SAMLRequest` and `RelayState`); the signed response goes to the connection's ACS
/// in `browser`, whose answer is returned.
pub async fn idp_answers(
    browser: &reqwest::Client,
    to_idp: &str,
    idp: &nulab_pass::mock_idp::MockIdp,
    connection: &serde_json::Value,
    email: &str,
) -> reqwest::Response {
    let query: std::collections::HashMap<String, String> = url::Url::parse(to_idp)
        .expect("redirect to the IdP")
        .query_pairs()
        .into_owned()
        .collect();
    let request = nulab_pass::saml::mock_idp_server::read_request(&query["SAMLRequest"])
        .expect("a SAML request");
    let acs = connection["acs_url"].as_str().expect("acs_url");
    let spec = nulab_pass::mock_idp::ResponseSpec::new(
        email,
        acs,
        connection["sp_entity_id"].as_str().expect("sp_entity_id"),
        Some(&request.id),
    );
    let response = idp.response_b64(&spec).expect("signed response");
    browser
        .post(acs)
        .form(&[
            ("SAMLResponse", response.as_str()),
            ("RelayState", query["RelayState"].as_str()),
        ])
        .send()
        .await
        .expect("post to the ACS")
}

/// Fixtures on a bare database, for tests that also run the server as its own process.
pub mod fixture {
    use nulab_pass::audit::{Actor, RequestMeta};
    use nulab_pass::db::{Db, Tx};
    use nulab_pass::{accounts, orgs};

    /// A Nulab account with a verified email (so no verification link is emailed) and the given
    /// password hash.
    pub async fn account(
        tx: &mut Tx,
        now: i64,
        email: &str,
        name: &str,
        hash: &str,
    ) -> accounts::Account {
        let new = accounts::NewAccount {
            email: accounts::Email::parse(email).expect("email"),
            name: name.to_string(),
            password_hash: hash.to_string(),
            email_verified: true,
        };
        accounts::sign_up(
            tx,
            now,
            new,
            &Actor::Operator,
            &RequestMeta::default(),
            "http://127.0.0.1",
        )
        .await
        .expect("create account")
    }

    /// An organization named "Test Org" with `admin` as its admin.
    pub async fn org(tx: &mut Tx, now: i64, slug: &str, admin: &accounts::Account) -> orgs::Org {
        let slug = orgs::OrgSlug::parse(slug).expect("slug");
        orgs::create(
            tx,
            now,
            &slug,
            "Test Org",
            admin,
            nulab_pass::config::DEFAULT_TRIAL_SEATS,
            &Actor::Operator,
            &RequestMeta::default(),
        )
        .await
        .expect("create org")
    }

    /// Adds `email` to `org` as `role` the way `nulab-pass org add-member` does.
    pub async fn add_member(db: &Db, now: i64, org: &orgs::Org, email: &str, role: &str) {
        let scope = orgs::AdminScope::operator(org.clone());
        let role = orgs::Role::parse(role).expect("admin or member");
        let mut tx = db.begin().await.expect("begin");
        orgs::add_member(&mut tx, now, &scope, email, role)
            .await
            .expect("add member");
        tx.commit().await.expect("commit");
    }

    /// A domain row of `org` in any status (`pending`, `verified`, `lapsed`, `expired`).
    pub async fn domain(db: &Db, now: i64, org: &orgs::Org, domain: &str, status: &str) {
        sqlx::query(
            "INSERT INTO domains (id, org_id, domain, status, token, created_at, token_issued_at, \
             verified_at, next_check_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $6)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(org.id.to_string())
        .bind(domain.to_string())
        .bind(status.to_string())
        .bind(format!("fixture-{}", uuid::Uuid::new_v4().simple()))
        .bind(now)
        .bind((status == "verified").then_some(now))
        .bind(now + 365 * 24 * 3600 * 1000)
        .execute(db.pool())
        .await
        .expect("domain fixture");
    }

    /// The subscribed seats, set as the operator would (`nulab-pass org seats`).
    pub async fn seats(db: &Db, now: i64, org: &orgs::Org, seats: i64) {
        let config = nulab_pass::Config::with_database("sqlite::memory:");
        let mut tx = db.begin().await.expect("begin");
        nulab_pass::billing::plan::operator_set(
            &mut tx,
            now,
            org,
            seats,
            &config.billing,
            "http://127.0.0.1",
        )
        .await
        .expect("seats");
        tx.commit().await.expect("commit");
    }

    /// An operator API token of `org` with every scope, living the longest allowed (a year), so
    /// that tests which move the clock months ahead keep their token.
    pub async fn token(db: &Db, now: i64, org: &orgs::Org) -> String {
        let scope = orgs::AdminScope::operator(org.clone());
        let mut tx = db.begin().await.expect("begin");
        let new = nulab_pass::api_tokens::NewToken {
            expires_in_days: nulab_pass::api_tokens::MAX_DAYS,
            ..nulab_pass::api_tokens::NewToken::full("tests")
        };
        let (_, secret) = nulab_pass::api_tokens::create_with(&mut tx, now, &scope, &new)
            .await
            .expect("token");
        tx.commit().await.expect("commit");
        secret
    }
}
