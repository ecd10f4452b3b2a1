//! The bodies of the fuzz targets, shared by the libFuzzer targets (`fuzz/fuzz_targets/`, run
//! with cargo-fuzz) and the smoke run of the test suite (`tests/fuzz_smoke.rs`, seeds and
//! deterministic mutations on the stable toolchain). Each must never panic on any input; the
//! targets that go through the router also must never answer 5xx.
#![allow(dead_code)]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nulab_pass::audit::{Actor, RequestMeta};
use nulab_pass::ids::{OrgId, SamlConnectionId};
use nulab_pass::mock_idp::{MockIdp, ResponseSpec};
use nulab_pass::saml::{Connection, ConnectionSettings, SpUrls, metadata};
use tower::ServiceExt;

pub const IDP_ENTITY: &str = "https://idp.fuzz.test/metadata";
pub const BASE: &str = "https://pass.fuzz.test";
/// The AuthnRequest the fuzzed responses answer.
pub const REQUEST_ID: &str = "_fuzz-request-0001";
pub const REDIRECT_URI: &str = "https://product.fuzz.test/callback";
const CONNECTION: &str = "6f1c0a52-2a8e-4d4e-9a49-1f5b3c0d2e11";
const CLIENT_ID: &str = "fuzz-product";
const ORG: &str = "0c7d3f1e-5b7a-4c2e-8f90-3a1b2c4d5e6f";

/// The targets, by name (the file names under `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: [&str; 5] = [
    "saml_response",
    "idp_metadata",
    "oidc_authorize",
    "oidc_token",
    "csv_import",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "saml_response" => saml_response(data),
        "idp_metadata" => idp_metadata(data),
        "oidc_authorize" => oidc_authorize(data),
        "oidc_token" => oidc_token(data),
        "csv_import" => csv_import(data),
        _ => panic!("no fuzz target {name}"),
    }
}

/// An SSO connection to the fuzz IdP, whose key pair is the test-only pair in `fuzz/keys/`.
pub struct Saml {
    pub idp: MockIdp,
    pub connection: Connection,
    pub sp: SpUrls,
}

pub fn saml() -> &'static Saml {
    static SAML: OnceLock<Saml> = OnceLock::new();
    SAML.get_or_init(|| {
        // From the service's tests the manifest is the repository's; from cargo-fuzz, fuzz/'s.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = if root.join("fuzz").is_dir() {
            root.join("fuzz/keys")
        } else {
            root.join("keys")
        };
        let keys = nulab_pass::saml::keys::load_or_create(&dir, "idp", "fuzz IdP (test only)")
            .expect("the fuzz IdP's key pair");
        let idp = MockIdp::with_keys(IDP_ENTITY, "https://idp.fuzz.test/sso", keys);
        let meta = metadata::parse(&idp.metadata_xml(), None).expect("the fuzz IdP's metadata");
        let connection = Connection {
            id: SamlConnectionId::parse(CONNECTION).expect("id"),
            org_id: OrgId::parse(ORG).expect("id"),
            name: "Fuzz IdP".into(),
            idp_entity_id: meta.entity_id,
            sso_redirect_url: meta.sso_redirect,
            sso_post_url: meta.sso_post,
            slo_url: None,
            slo_response_url: None,
            certificates: meta.certificates,
            want_authn_requests_signed: false,
            metadata_xml: String::new(),
            metadata_url: None,
            metadata_fetched_at: None,
            metadata_error: None,
            settings: ConnectionSettings::defaults(false),
            expiry_warnings: Default::default(),
            created_at: 0,
            updated_at: 0,
        };
        let sp = connection.sp_urls(BASE);
        Saml {
            idp,
            connection,
            sp,
        }
    })
}

/// A response the fuzz IdP signs for `email`, answering `REQUEST_ID`: the seed shape.
pub fn saml_seed(email: &str, adjust: impl FnOnce(&mut ResponseSpec)) -> String {
    let s = saml();
    let mut spec = ResponseSpec::new(email, &s.sp.acs_url, &s.sp.sp_entity_id, Some(REQUEST_ID));
    adjust(&mut spec);
    s.idp.response_xml(&spec).expect("a signed response")
}

/// SAMLResponse handling as the ACS does it: the pre-scan (libxml2's strict tree and its
/// gates), then signature verification through samael/xmlsec and the reading of the signed
/// assertion.
pub fn saml_response(data: &[u8]) {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let s = saml();
    let Ok(outline) = nulab_pass::saml::outline::scan(xml) else {
        return;
    };
    let _ =
        nulab_pass::saml::acs::verify(xml, outline, &s.connection, &s.sp, Some(&[REQUEST_ID]), &[]);
}

/// IdP metadata import: with and without an entity ID to pick.
pub fn idp_metadata(data: &[u8]) {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = metadata::parse(xml, None);
    let _ = metadata::parse(xml, Some(IDP_ENTITY));
}

/// A server (router, SQLite database) with an organization `fuzz` (verified domain
/// `fuzz.test`, 1,000 seats), an API token and a registered product.
pub struct App {
    pub runtime: tokio::runtime::Runtime,
    pub router: axum::Router,
    pub token: String,
    pub client_id: String,
    pub client_secret: String,
    _dir: tempfile::TempDir,
}

pub fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (router, token, client_id, client_secret) = runtime.block_on(build(dir.path()));
        App {
            runtime,
            router,
            token,
            client_id,
            client_secret,
            _dir: dir,
        }
    })
}

async fn build(dir: &std::path::Path) -> (axum::Router, String, String, String) {
    let url = format!("sqlite://{}", dir.join("fuzz.db").display());
    let db = nulab_pass::db::Db::connect(&url).await.expect("database");
    db.migrate().await.expect("schema");
    let mut config = nulab_pass::Config::with_database(&url);
    config.base_url = Some(BASE.parse().expect("url"));
    config.certs_dir = dir.join("certs");
    // Rate limits out of the way: past the token endpoint's limit every fuzzed request would
    // get the same 429 before its parameters are read.
    let open = nulab_pass::config::Rate {
        max: 1_000_000,
        window_ms: 1000,
    };
    let limits = &mut config.limits;
    for rate in [
        &mut limits.sign_in_per_account,
        &mut limits.sign_in_per_address,
        &mut limits.token_per_client,
        &mut limits.token_per_address,
        &mut limits.email_per_address,
        &mut limits.email_per_recipient,
        &mut limits.sso_login_per_address,
        &mut limits.acs_failures_per_address,
    ] {
        *rate = open;
    }
    nulab_pass::oidc::keys::ensure(&config.certs_dir).expect("keys");
    let clock = nulab_pass::clock::Clock::default();
    let now = clock.now_ms();
    let mut tx = db.begin().await.expect("begin");
    let new = nulab_pass::accounts::NewAccount {
        email: nulab_pass::accounts::Email::parse("admin@fuzz.test").expect("email"),
        name: "Admin".into(),
        password_hash: "not a hash: nobody signs in".into(),
        email_verified: true,
    };
    let meta = RequestMeta::default();
    let admin = nulab_pass::accounts::sign_up(&mut tx, now, new, &Actor::Operator, &meta, BASE)
        .await
        .expect("admin");
    let slug = nulab_pass::orgs::OrgSlug::parse("fuzz").expect("slug");
    let org = nulab_pass::orgs::create(
        &mut tx,
        now,
        &slug,
        "Fuzz",
        &admin,
        1000,
        &Actor::Operator,
        &meta,
    )
    .await
    .expect("org");
    sqlx::query(
        "INSERT INTO domains (id, org_id, domain, status, token, created_at, token_issued_at, \
         verified_at, next_check_at, updated_at) VALUES ($1, $2, 'fuzz.test', 'verified', 't', $3, $3, $3, $4, $3)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(org.id.to_string())
    .bind(now)
    .bind(now + 365 * 86_400_000)
    .execute(&mut *tx)
    .await
    .expect("domain");
    let scope = nulab_pass::orgs::AdminScope::operator(org);
    let (_, token) = nulab_pass::api_tokens::create_with(
        &mut tx,
        now,
        &scope,
        &nulab_pass::api_tokens::NewToken::full("fuzz"),
    )
    .await
    .expect("token");
    let product = nulab_pass::oidc::clients::create(
        &mut tx,
        now,
        "fuzz-product",
        &[REDIRECT_URI.to_string()],
        &[],
        None,
        &Actor::Operator,
    )
    .await
    .expect("product");
    // A fixed id, so that the seeds kept in the corpus name this product in every run.
    sqlx::query("UPDATE oidc_clients SET id = $1 WHERE id = $2")
        .bind(CLIENT_ID)
        .bind(&product.client_id)
        .execute(&mut *tx)
        .await
        .expect("client id");
    tx.commit().await.expect("commit");
    let state = nulab_pass::AppState::new(db, config, clock);
    (
        nulab_pass::app(state),
        token,
        CLIENT_ID.to_string(),
        product.client_secret,
    )
}

/// Sends `request` through the router; a 5xx is a finding.
fn send(request: Request<Body>) {
    let app = app();
    let what = format!("{} {}", request.method(), request.uri().path());
    let response = app
        .runtime
        .block_on(app.router.clone().oneshot(request))
        .expect("the router answers");
    assert!(
        response.status() < StatusCode::INTERNAL_SERVER_ERROR,
        "{what} answered {}",
        response.status()
    );
}

/// `data` as a query string: bytes outside the unreserved set and `&=%+` percent-encoded, so
/// every input is a valid URI and reaches the parameter parser.
fn as_query(data: &[u8]) -> String {
    let mut out = String::new();
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~&=%+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The OpenID Connect authorize endpoint: the fuzzed bytes as the query of a GET and as the
/// form body of a POST.
pub fn oidc_authorize(data: &[u8]) {
    let get = Request::get(format!("/oauth/authorize?{}", as_query(data)))
        .body(Body::empty())
        .expect("request");
    send(get);
    let post = Request::post("/oauth/authorize")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(data.to_vec()))
        .expect("request");
    send(post);
}

/// The token endpoint: the fuzzed bytes as its form body, with the product's credentials.
pub fn oidc_token(data: &[u8]) {
    use base64::Engine;
    let app = app();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", app.client_id, app.client_secret));
    let post = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(Body::from(data.to_vec()))
        .expect("request");
    send(post);
}

/// CSV import: the parser alone, then the whole import through the API.
pub fn csv_import(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nulab_pass::managed::csv::parse(text);
    }
    let post = Request::post("/api/v1/orgs/fuzz/managed-accounts/import")
        .header(header::CONTENT_TYPE, "text/csv")
        .header(header::AUTHORIZATION, format!("Bearer {}", app().token))
        .body(Body::from(data.to_vec()))
        .expect("request");
    send(post);
}

/// The seeds of each target: valid inputs of every shape the fuzzer should start from.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=openid%20email&state=s1&nonce=n1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        app().client_id,
        url::form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>()
    );
    let strings: Vec<String> = match name {
        "saml_response" => vec![
            saml_seed("mia@fuzz.test", |_| {}),
            saml_seed("mia@fuzz.test", |s| s.name_id = None),
        ],
        "idp_metadata" => vec![saml().idp.metadata_xml()],
        "oidc_authorize" => vec![query, "prompt=none&max_age=0&response_mode=query".into()],
        "oidc_token" => vec![
            format!("grant_type=authorization_code&code=abc&redirect_uri={REDIRECT_URI}&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "grant_type=refresh_token&refresh_token=nprt_x&scope=openid".into(),
        ],
        "csv_import" => vec![
            "email,name,role\nann@fuzz.test,Ann,member\n\"bo@fuzz.test\",\"Bo, \"\"B\"\"\",admin\r\n".into(),
            "email,name\nx@other.test,X\n".into(),
        ],
        _ => panic!("no fuzz target {name}"),
    };
    strings.into_iter().map(String::into_bytes).collect()
}
