//! SSO in process, with criterion: verifying a response (response-signed and both-signed: the
//! outline and the signature check, as the ACS runs them), an IdP-initiated sign-in through the
//! router (the ACS POST and the browser's return to `/sso/{id}/continue`), and the token
//! endpoint's code exchange. SQLite always; PostgreSQL too when NULAB_PASS_TEST_POSTGRES_URL is
//! set. Run: `cargo bench --bench sso` (`-- --quick` for a short run).

#[path = "common/sso.rs"]
mod fixture;

/// The server's allocator (`src/main.rs`), the C libraries' too, so that what is measured here
/// allocates as it does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use nulab_pass::db::Db;
use nulab_pass::saml::mock_idp_mint::{MintArgs, MintSigning};
use nulab_pass::saml::{acs, outline};
use nulab_pass::{AppState, Config};
use tower::ServiceExt;

const BASE: &str = "http://127.0.0.1:8080";

/// One database with the fixture and the app over it.
struct Bench {
    label: &'static str,
    rt: tokio::runtime::Runtime,
    state: AppState,
    fixture: fixture::Fixture,
    next: std::sync::atomic::AtomicUsize,
    _dirs: Vec<tempfile::TempDir>,
}

const ACCOUNTS: usize = 1_000;

fn setup(label: &'static str, url: Option<String>) -> Bench {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let certs = tempfile::tempdir().expect("certs dir");
    let url = url.unwrap_or_else(|| format!("sqlite://{}", data.path().join("bench.db").display()));
    let (state, fixture) = rt.block_on(async {
        let db = Db::connect(&url).await.expect("connect");
        db.migrate().await.expect("migrate");
        let fixture = fixture::seed(&db, certs.path(), BASE, ACCOUNTS).await;
        let mut config = Config::with_database(&url);
        config.base_url = Some(BASE.parse().expect("url"));
        config.certs_dir = certs.path().to_path_buf();
        (
            AppState::new(db, config, nulab_pass::clock::Clock::default()),
            fixture,
        )
    });
    Bench {
        label,
        rt,
        state,
        fixture,
        next: 0.into(),
        _dirs: vec![data, certs],
    }
}

/// A fresh PostgreSQL database under the server of NULAB_PASS_TEST_POSTGRES_URL.
fn postgres_url() -> Option<String> {
    let admin = std::env::var("NULAB_PASS_TEST_POSTGRES_URL").ok()?;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    rt.block_on(async {
        let db = Db::connect(&admin).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(db.pool())
            .await
            .expect("create database");
        db.close().await;
    });
    Some(format!("{}/{name}", admin.rsplit_once('/')?.0))
}

impl Bench {
    /// `count` unique IdP-initiated responses, for the fixture's accounts in turn.
    fn mint(&self, count: usize, signing: MintSigning) -> Vec<String> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut all = Vec::with_capacity(count);
        while all.len() < count {
            let first = self.next.load(Ordering::Relaxed) % ACCOUNTS;
            let batch = (count - all.len()).min(ACCOUNTS - first);
            self.next.fetch_add(batch, Ordering::Relaxed);
            let args = MintArgs {
                count: batch,
                acs: self.fixture.acs_url.clone(),
                audience: self.fixture.audience.clone(),
                email: fixture::EMAIL_TEMPLATE.into(),
                first,
                signing,
                in_response_to: None,
                out: None,
            };
            all.extend(self.fixture.idp.mint(&args, threads).expect("mint"));
        }
        all
    }
}

fn verify_benches(c: &mut Criterion, b: &Bench) {
    let sp = b.fixture.connection.sp_urls(BASE);
    for (name, signing) in [
        ("response-signed", MintSigning::Response),
        ("both-signed", MintSigning::Both),
    ] {
        let xml: Vec<String> = b
            .mint(200, signing)
            .iter()
            .map(|r| {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(r).unwrap())
                    .unwrap()
            })
            .collect();
        let mut i = 0;
        c.bench_function(&format!("verify/{name}"), |bench| {
            bench.iter(|| {
                i = (i + 1) % xml.len();
                let scan = outline::scan(&xml[i]).expect("outline");
                acs::verify(&xml[i], scan, &b.fixture.connection, &sp, None, &[]).expect("valid")
            })
        });
    }
}

fn form(response: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", response)
        .finish()
}

/// The ACS POST of an IdP-initiated response: parked; returns the cookie that binds it.
async fn post_acs(app: &axum::Router, id: &str, response: &str) -> String {
    let post = Request::post(format!("/sso/{id}/acs"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form(response)))
        .expect("request");
    let res = app.clone().oneshot(post).await.expect("acs");
    assert_eq!(res.status(), 303, "the ACS parks the sign-in");
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nulab_pass_sso_continue="))
        .and_then(|c| c.split(';').next())
        .expect("continue cookie")
        .to_string()
}

/// The browser back at `/sso/{id}/continue` with the cookie: signed in.
async fn come_back(app: &axum::Router, id: &str, cookie: &str) {
    let back = Request::get(format!("/sso/{id}/continue"))
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(back).await.expect("continue");
    assert_eq!(res.headers()[header::LOCATION], "/account", "signed in");
}

/// One IdP-initiated sign-in through the router: the ACS parks it, the browser comes back.
async fn sign_in(app: &axum::Router, id: &str, response: &str) {
    let cookie = post_acs(app, id, response).await;
    come_back(app, id, &cookie).await;
}

fn acs_benches(c: &mut Criterion, b: &Bench) {
    let app = nulab_pass::app(b.state.clone());
    let id = b.fixture.connection.id.to_string();
    c.bench_function(
        &format!("acs/{}/idp-initiated sign-in, both-signed", b.label),
        |bench| {
            bench.iter_custom(|iters| {
                let responses = b.mint(iters as usize, MintSigning::Both);
                b.rt.block_on(async {
                    let start = Instant::now();
                    for r in &responses {
                        sign_in(&app, &id, r).await;
                    }
                    start.elapsed()
                })
            })
        },
    );
}

/// A product and codes issued to it for `user0@load.test`, exchanged at `/oauth/token`.
fn token_benches(c: &mut Criterion, b: &Bench) {
    let app = nulab_pass::app(b.state.clone());
    let redirect = "https://product.load.test/callback";
    let (client, account) = b.rt.block_on(async {
        let mut tx = b.state.db.begin().await.expect("begin");
        let client = nulab_pass::oidc::clients::create(
            &mut tx,
            0,
            "load-product",
            &[redirect.to_string()],
            &[],
            None,
            &nulab_pass::audit::Actor::Operator,
        )
        .await
        .expect("product");
        tx.commit().await.expect("commit");
        let email = nulab_pass::accounts::Email::parse(&fixture::email(0)).expect("email");
        let account = nulab_pass::accounts::store::by_email(b.state.db.pool(), &email)
            .await
            .expect("read")
            .expect("account");
        (client, account)
    });
    let verifier = "a-code-verifier-of-at-least-forty-three-characters-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()));
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", client.client_id, client.client_secret));
    c.bench_function(&format!("token/{}/authorization_code", b.label), |bench| {
        bench.iter_custom(|iters| {
            b.rt.block_on(async {
                let now = b.state.clock.now_ms();
                let mut codes = Vec::new();
                let mut tx = b.state.db.begin().await.expect("begin");
                for _ in 0..iters {
                    let code = nulab_pass::secrets::new_token("");
                    let row = nulab_pass::oidc::store::CodeRow {
                        id: uuid::Uuid::new_v4().to_string(),
                        client_id: client.client_id.clone(),
                        account_id: account.id,
                        redirect_uri: redirect.into(),
                        scope: "openid email profile".into(),
                        nonce: Some("n".into()),
                        code_challenge: challenge.clone(),
                        auth_time: now,
                        amr: vec!["saml".into()],
                        grant_expires_at: now + 3_600_000,
                        expires_at: now + 600_000,
                        used_at: None,
                        sign_in_id: None,
                    };
                    let hash = nulab_pass::secrets::hash_token(&code);
                    nulab_pass::oidc::store::insert_code(&mut tx, &hash, &row, now)
                        .await
                        .expect("code");
                    codes.push(code);
                }
                tx.commit().await.expect("commit");
                let start = Instant::now();
                for code in codes {
                    let body = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "authorization_code")
                        .append_pair("code", &code)
                        .append_pair("redirect_uri", redirect)
                        .append_pair("code_verifier", verifier)
                        .finish();
                    let req = Request::post("/oauth/token")
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .header(header::AUTHORIZATION, format!("Basic {basic}"))
                        .body(Body::from(body))
                        .expect("request");
                    let res = app.clone().oneshot(req).await.expect("token");
                    assert_eq!(res.status(), 200, "tokens issued");
                }
                start.elapsed()
            })
        })
    });
}

/// Statements sent to the database, counted from sqlx's `sqlx::query` events.
static STATEMENTS: AtomicUsize = AtomicUsize::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    }
}

fn count_statements() {
    use tracing_subscriber::layer::SubscriberExt;
    let only = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::TRACE);
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        CountStatements,
        only,
    ));
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
}

/// Prints the calls to the database IdP-initiated sign-ins make: the ACS POST and the continue
/// GET apart, fewest and most of five. On PostgreSQL their transactions add BEGIN and COMMIT; on
/// SQLite those are statement text, counted where they are sent alone.
fn round_trips(b: &Bench) {
    let app = nulab_pass::app(b.state.clone());
    let id = b.fixture.connection.id.to_string();
    let responses = b.mint(6, MintSigning::Both);
    b.rt.block_on(async {
        sign_in(&app, &id, &responses[0]).await;
        let mut counts = Vec::new();
        for r in &responses[1..] {
            let before = STATEMENTS.load(Ordering::Relaxed);
            let cookie = post_acs(&app, &id, r).await;
            let posted = STATEMENTS.load(Ordering::Relaxed);
            come_back(&app, &id, &cookie).await;
            let after = STATEMENTS.load(Ordering::Relaxed);
            counts.push((posted - before, after - posted));
        }
        counts.sort();
        println!(
            "{}: statements per IdP-initiated sign-in (ACS POST + continue GET): {:?} .. {:?}",
            b.label,
            counts[0],
            counts[counts.len() - 1]
        );
    });
}

fn benches(c: &mut Criterion) {
    count_statements();
    let mut backends = vec![setup("SQLite", None)];
    if let Some(url) = postgres_url() {
        backends.push(setup("PostgreSQL", Some(url)));
    }
    verify_benches(c, &backends[0]);
    for b in &backends {
        round_trips(b);
        acs_benches(c, b);
        token_benches(c, b);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
}

criterion_group! { name = sso; config = config(); targets = benches }
criterion_main!(sso);
