//! Two organizations on one server: `alpha` (A), whose admin attacks, and `bravo` (B), with
//! something of every kind (domains, members, managed accounts, invitations, migration
//! requests, an SSO connection, API tokens, audit events, an invoice), made fresh for each
//! route that names one so a control request that deletes it spoils nothing else.

use std::sync::atomic::{AtomicUsize, Ordering};

use nulab_pass::mock_idp::MockIdp;
use reqwest::Method;
use serde_json::json;

use super::REFUSED;
use crate::common::routes::Route;
use crate::common::{Backend, TestServer, api, csrf_of, idp_answers};

const PASSWORD: &str = "correct horse battery";

/// Strings of B's data that A's answers must never contain (B's addresses and domains).
const B_MARKERS: [&str; 3] = ["bravo.test", "bravo-people.test", "Bravo IdP"];

/// Who sends a request: a signed-in browser (with its CSRF token) or an API token.
pub enum Who {
    Browser(reqwest::Client, String),
    Token(String),
}

pub struct World {
    pub server: TestServer,
    pub backend: Backend,
    pub b_org: nulab_pass::orgs::Org,
    a_admin: Who,
    a_token: Who,
    b_admin: Who,
    b_token: Who,
    b_member: Who,
    b_managed: Who,
    b_secret: String,
    hash: String,
    next: AtomicUsize,
    pub invoice: String,
}

impl World {
    pub async fn build(backend: Backend) -> World {
        let server = TestServer::start(backend).await;
        let ada = server.account("ada@alpha.example", "Ada", PASSWORD).await;
        let a_org = server.org("alpha", &ada).await;
        let bea = server
            .account("bea@bravo-people.test", "Bea", PASSWORD)
            .await;
        let b_org = server.org("bravo", &bea).await;
        server.verified_domain(&a_org, "alpha.example").await;
        server.verified_domain(&b_org, "bravo.test").await;
        server.seats(&b_org, 200).await;
        server
            .account("bob@bravo-people.test", "Bob", PASSWORD)
            .await;
        server
            .add_member(&b_org, "bob@bravo-people.test", "member")
            .await;
        let a_secret = server.token(&a_org).await;
        let b_secret = server.token(&b_org).await;
        let hash = nulab_pass::accounts::password::hash(PASSWORD)
            .await
            .unwrap();
        let mut w = World {
            a_admin: browser(&server, "ada@alpha.example").await,
            b_admin: browser(&server, "bea@bravo-people.test").await,
            b_member: browser(&server, "bob@bravo-people.test").await,
            b_managed: Who::Token(String::new()),
            a_token: Who::Token(a_secret),
            b_token: Who::Token(b_secret.clone()),
            b_secret,
            hash,
            next: AtomicUsize::new(0),
            invoice: String::new(),
            server,
            backend,
            b_org,
        };
        w.b_managed = w.managed_browser().await;
        w.invoice = w.invoice_number().await;
        w
    }

    pub fn a_admin(&self) -> &Who {
        &self.a_admin
    }
    pub fn a_token(&self) -> &Who {
        &self.a_token
    }
    pub fn b_admin(&self) -> &Who {
        &self.b_admin
    }
    pub fn b_token(&self) -> &Who {
        &self.b_token
    }
    pub fn b_member(&self) -> &Who {
        &self.b_member
    }
    pub fn b_managed(&self) -> &Who {
        &self.b_managed
    }

    /// A managed account of B (`mia@bravo.test`, a member) signed in through B's IdP.
    async fn managed_browser(&self) -> Who {
        let s = &self.server;
        let idp = MockIdp::generate(
            "https://idp.bravo.test/metadata",
            "https://idp.bravo.test/sso",
        )
        .unwrap();
        let connection = self
            .b_api_ok(
                Method::POST,
                "/saml-connections",
                json!({"metadata_xml": idp.metadata_xml(), "name": "Bravo IdP"}),
            )
            .await;
        self.b_api_ok(
            Method::POST,
            "/managed-accounts",
            json!({"email": "mia@bravo.test", "name": "Mia"}),
        )
        .await;
        let client = s.client();
        let res = client
            .get(connection["login_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let to_idp = res.headers()["location"].to_str().unwrap().to_string();
        let res = idp_answers(&client, &to_idp, &idp, &connection, "mia@bravo.test").await;
        assert_eq!(res.status(), 303, "mia signs in through SSO");
        let csrf = csrf_of(&client, &s.url("/account")).await;
        Who::Browser(client, csrf)
    }

    /// The first invoice of B (its subscription turned active, the billing job run once).
    async fn invoice_number(&self) -> String {
        let s = &self.server;
        let mut tx = s.db().begin().await.unwrap();
        nulab_pass::billing::plan::set_status(
            &mut tx,
            s.state.clock.now_ms(),
            &self.b_org,
            nulab_pass::billing::Status::Active,
            &s.state.config.billing,
            &s.base,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        nulab_pass::billing::jobs::run_once(&s.state).await.unwrap();
        let numbers = s
            .rows(&format!(
                "SELECT number FROM invoices WHERE org_id = '{}'",
                self.b_org.id
            ))
            .await;
        numbers.first().expect("B has an invoice").clone()
    }

    /// B's API with B's token; the call must succeed. Returns the body.
    pub async fn b_api_ok(
        &self,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let url = self.server.url(&format!("/api/v1/orgs/bravo{path}"));
        let (status, body) = api(
            &self.server.client(),
            method,
            url,
            &self.b_secret,
            Some(body),
        )
        .await;
        assert!(status < 300, "{path}: {status} {body}");
        body
    }

    fn n(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    async fn id_of(&self, sql: &str) -> String {
        self.server
            .rows(sql)
            .await
            .pop()
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// A new pending domain of B; its id.
    pub async fn domain(&self) -> String {
        let name = format!("d{}.bravo.test", self.n());
        self.server.domain_row(&self.b_org, &name, "pending").await;
        self.id_of(&format!("SELECT id FROM domains WHERE domain = '{name}'"))
            .await
    }

    /// A new Nulab-account member of B; its account id.
    pub async fn member(&self) -> String {
        let email = format!("u{}@bravo-people.test", self.n());
        let s = &self.server;
        let mut tx = s.db().begin().await.unwrap();
        let account = crate::common::fixture::account(
            &mut tx,
            s.state.clock.now_ms(),
            &email,
            "U",
            &self.hash,
        )
        .await;
        tx.commit().await.unwrap();
        s.add_member(&self.b_org, &email, "member").await;
        account.id.to_string()
    }

    /// A new managed account of B; its id.
    pub async fn managed(&self) -> String {
        let email = format!("m{}@bravo.test", self.n());
        let body = self
            .b_api_ok(
                Method::POST,
                "/managed-accounts",
                json!({"email": email, "name": "M"}),
            )
            .await;
        body["id"].as_str().expect("managed account id").to_string()
    }

    /// A new invitation of B (to an address without an account); its id.
    pub async fn invitation(&self) -> String {
        let email = format!("i{}@bravo-people.test", self.n());
        let body = self
            .b_api_ok(
                Method::POST,
                "/members",
                json!({"email": email, "role": "member"}),
            )
            .await;
        body["invitation_id"]
            .as_str()
            .expect("invitation id")
            .to_string()
    }

    /// A new pending migration request of B; its id.
    pub async fn migration(&self) -> String {
        let email = format!("n{}@bravo.test", self.n());
        let s = &self.server;
        let mut tx = s.db().begin().await.unwrap();
        let account = crate::common::fixture::account(
            &mut tx,
            s.state.clock.now_ms(),
            &email,
            "N",
            &self.hash,
        )
        .await;
        tx.commit().await.unwrap();
        s.add_member(&self.b_org, &email, "member").await;
        let body = self
            .b_api_ok(Method::POST, "/migrations", json!({"emails": [email]}))
            .await;
        assert_eq!(body["requested"], 1, "{body}");
        self.id_of(&format!(
            "SELECT id FROM migration_requests WHERE account_id = '{}'",
            account.id
        ))
        .await
    }

    /// A new SSO connection of B; its id.
    pub async fn connection(&self) -> String {
        let n = self.n();
        let idp = MockIdp::generate(
            &format!("https://idp{n}.bravo.test/metadata"),
            "https://idp.bravo.test/sso",
        )
        .unwrap();
        let body = self
            .b_api_ok(
                Method::POST,
                "/saml-connections",
                json!({"metadata_xml": idp.metadata_xml(), "name": "Bravo IdP"}),
            )
            .await;
        body["id"].as_str().expect("connection id").to_string()
    }

    /// A new API token of B; its id.
    pub async fn api_token(&self) -> String {
        let secret = self.server.token(&self.b_org).await;
        let hash = nulab_pass::secrets::hash_token(&secret);
        self.id_of(&format!(
            "SELECT id FROM api_tokens WHERE token_hash = '{hash}'"
        ))
        .await
    }

    /// B's audit webhook (never due, so the sender leaves it alone), set again if removed.
    pub async fn webhook(&self) {
        let now = self.server.state.clock.now_ms();
        sqlx::query(
            "INSERT INTO audit_webhooks (org_id, url, secret, delivered_seq, next_attempt_at, \
             created_at, updated_at) VALUES ($1, 'https://hooks.bravo.test/audit', 'whsec', 0, $2, $3, $3) \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(self.b_org.id.to_string())
        .bind(now + 365 * 86_400_000)
        .bind(now)
        .execute(self.server.db().pool())
        .await
        .unwrap();
    }

    /// An audit event of B; its id.
    pub async fn event(&self) -> String {
        self.id_of(&format!(
            "SELECT id FROM audit_events WHERE org_id = '{}' ORDER BY seq LIMIT 1",
            self.b_org.id
        ))
        .await
    }

    /// Sends `route`'s method to `path` as `who` (a form with the CSRF token for a browser, JSON
    /// for a token); returns the status and the body.
    pub async fn send(&self, who: &Who, route: &Route, path: &str) -> (u16, String) {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let url = self.server.url(path);
        let req = match who {
            Who::Browser(client, csrf) => {
                let req = client.request(method.clone(), url);
                if method == Method::GET {
                    req
                } else {
                    req.header("x-csrf-token", csrf)
                        .form(&super::fill::form_body(route))
                }
            }
            Who::Token(secret) => {
                let req = self
                    .server
                    .client()
                    .request(method.clone(), url)
                    .bearer_auth(secret);
                if method == Method::GET {
                    req
                } else {
                    req.json(&super::fill::json_body(route))
                }
            }
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }

    /// `who` is refused (401, 403 or 404) at `path`, sees nothing of B and changes nothing.
    pub async fn refused(&self, who: &Who, route: &Route, path: &str, label: &str) {
        let before = self.snapshot().await;
        let (status, body) = self.send(who, route, path).await;
        assert!(
            REFUSED.contains(&status),
            "{label}: {} {path} answered {status}: {body:.300}",
            route.method
        );
        self.assert_nothing_of_b(route, &body);
        assert_eq!(
            self.snapshot().await,
            before,
            "{label}: {} {path} changed something",
            route.method
        );
    }

    pub fn assert_nothing_of_b(&self, route: &Route, body: &str) {
        for marker in B_MARKERS {
            assert!(
                !body.contains(marker),
                "{} {}: the answer shows {marker}: {body:.300}",
                route.method,
                route.path
            );
        }
    }

    /// The row count of every table (but browser sessions) and the newest `updated_at` of
    /// those that have one: equal snapshots mean nothing was added, removed or changed.
    pub async fn snapshot(&self) -> Vec<String> {
        let (tables, updated) = match self.backend {
            Backend::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
                "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name = 'updated_at'",
            ),
            Backend::Postgres => (
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '_sqlx%' ORDER BY tablename",
                "SELECT table_name::text FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'updated_at'",
            ),
        };
        let updated = self.server.rows(updated).await;
        let mut parts = Vec::new();
        for table in self.server.rows(tables).await {
            if table == "sessions" {
                continue;
            }
            let latest = if updated.contains(&table) {
                "CAST(COALESCE(MAX(updated_at), 0) AS TEXT)"
            } else {
                "''"
            };
            parts.push(format!(
                "SELECT '{table}: ' || CAST(COUNT(*) AS TEXT) || ' ' || {latest} FROM {table}"
            ));
        }
        let mut out = self.server.rows(&parts.join(" UNION ALL ")).await;
        out.sort();
        out
    }
}

async fn browser(server: &TestServer, email: &str) -> Who {
    let client = server.signed_in(email, PASSWORD).await;
    let csrf = csrf_of(&client, &server.url("/account")).await;
    Who::Browser(client, csrf)
}
