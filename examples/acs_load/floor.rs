//! The floor (`--floor`): the same load against a server that does nothing but what no SSO
//! sign-in can skip, so that the ratio a real server could reach on this machine is measured,
//! not guessed. It is this tool run again as its own process (`--floor-serve`), with the
//! server's runtime (one async worker per core) and allocator. It answers the ACS POST by
//! decoding the form and verifying the response exactly as the bare verification does
//! ([`crate::callgrind::verify`]), then setting the continue cookie and redirecting; and the
//! continue GET by redirecting to `/account`. No database, no session, no audit event, no
//! tracing, no replay cache.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nulab_pass::saml::{Connection, SpUrls};

/// Starts the floor server on `base`'s port for `connection` and waits until it answers.
pub async fn spawn(url: &str, connection: &Connection, base: &str, log: &Path) -> Child {
    let log = crate::log_file(log);
    let child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--floor-serve")
        .args(["--database-url", url])
        .args(["--connection-id", &connection.id.to_string()])
        .args(["--base", base])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the floor server");
    crate::wait_ready(base).await;
    child
}

struct Floor {
    connection: Connection,
    sp: SpUrls,
    continue_path: String,
}

/// The `--floor-serve` process: serves until killed.
pub fn serve(connection: Connection, base: &str) {
    let sp = connection.sp_urls(base);
    let id = connection.id.to_string();
    let floor = Arc::new(Floor {
        continue_path: format!("/sso/{id}/continue"),
        connection,
        sp,
    });
    let app = Router::new()
        .route("/readyz", get(|| async { "ready" }))
        .route("/sso/{id}/acs", post(acs_post))
        .route("/sso/{id}/continue", get(continue_get))
        .with_state(floor);
    let bind = base.trim_start_matches("http://").to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

#[derive(serde::Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
}

async fn acs_post(State(floor): State<Arc<Floor>>, Form(form): Form<AcsForm>) -> Response {
    if crate::callgrind::verify(&form.saml_response, &floor.connection, &floor.sp).is_err() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let handle = uuid::Uuid::new_v4().simple().to_string();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&floor.continue_path).expect("path"),
    );
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "nulab_pass_sso_continue={handle}; Path=/sso; HttpOnly; SameSite=Lax"
        ))
        .expect("cookie"),
    );
    (StatusCode::SEE_OTHER, headers).into_response()
}

async fn continue_get(headers: HeaderMap) -> Response {
    let has_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.contains("nulab_pass_sso_continue="));
    if !has_cookie {
        return StatusCode::BAD_REQUEST.into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/account")]).into_response()
}
