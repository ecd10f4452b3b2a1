//! The floor (`--floor`): the same load against a server that does nothing but what no SSO
//! sign-in can skip, so that the ratio a real server could reach on this machine is measured,
//! not guessed. It is this tool run again as its own process (`--floor-serve`), with the
//! server's runtime (one async worker per core) and allocator. It answers the ACS POST by
//! reading the form as the ACS does and verifying the response exactly as the bare
//! verification does ([`crate::callgrind::verify`]), then setting the continue cookie and
//! redirecting; and the continue GET by redirecting to `/account`. No database, no session,
//! no audit event, no tracing, no replay cache.
//!
//! With `--floor-writes each|grouped` (PostgreSQL only) the ACS POST also makes the writes no
//! durable, audited, replay-protected sign-in can skip (the replay cache, the audit chain head,
//! the audit event, the browser session) before it redirects: the floor of a server with a
//! database. `each` sends each sign-in's writes as one statement
//! (`scripts/pg_floor/one_statement.sql`); `grouped` hands them to one task that sends all the
//! sign-ins waiting as one statement (the same, for any number of sign-ins), the next as soon
//! as the last has committed: group commit.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nulab_pass::saml::{Connection, SpUrls};

/// Starts the floor server on `base`'s port for `connection` and waits until it answers.
pub async fn spawn(
    url: &str,
    connection: &Connection,
    base: &str,
    log: &Path,
    writes: Option<&str>,
) -> Child {
    let log = crate::log_file(log);
    let child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--floor-serve")
        .args(writes.map(|w| format!("--floor-writes={w}")))
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
    /// With `--floor-writes`: where the ACS POST writes each sign-in.
    writes: Option<Writes>,
}

enum Writes {
    Each(sqlx::PgPool),
    /// The group committer's queue.
    Grouped(tokio::sync::mpsc::UnboundedSender<Queued>),
}

/// A sign-in waiting for the group committer: its ID, and where to say whether it committed.
type Queued = (String, tokio::sync::oneshot::Sender<bool>);

/// Sign-ins' writes in one statement (`scripts/pg_floor/one_statement.sql`, for any number of
/// sign-ins, with the values bound): `$1` holds one ID per sign-in, used for its assertion,
/// event, session and sign-in.
const WRITES: &str = "WITH input AS ( \
    SELECT id, n FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) \
  ), replay AS ( \
    INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) \
      SELECT $2, id, $3 FROM input \
  ), head AS ( \
    INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ($4, $5, 'genesis') \
      ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + $5, hash = $6 \
      RETURNING seq, hash \
  ), event AS ( \
    INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, actor_id, \
        actor_label, target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, \
        hash) \
      SELECT input.id, $4, $7, 'sso.signin.succeeded', 'account', $8, $8, 'saml_connection', \
        $9, '127.0.0.1', NULL, $10, $4, head.seq - $5 + input.n, head.hash, $6 \
      FROM head, input \
  ) \
  INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at) \
    SELECT input.id || input.id, $8, input.id, $10, $3 FROM input";

/// Writes the sign-ins `ids` in one statement.
async fn write(pool: &sqlx::PgPool, connection: &Connection, ids: &[String]) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    sqlx::query(WRITES)
        .bind(ids)
        .bind(connection.idp_entity_id.as_str())
        .bind(now + 300_000)
        .bind(connection.org_id.to_string())
        .bind(ids.len() as i64)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(now)
        .bind("floor@load.test")
        .bind(connection.id.to_string())
        .bind(r#"{"idp_initiated":true}"#)
        .execute(pool)
        .await
        .is_ok()
}

/// The group committer: takes every sign-in waiting, writes them in one statement, answers
/// each, and starts again.
async fn commit_groups(
    pool: sqlx::PgPool,
    connection: Connection,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        let ids: Vec<String> = group.iter().map(|(id, _)| id.clone()).collect();
        let ok = write(&pool, &connection, &ids).await;
        for (_, done) in group {
            let _ = done.send(ok);
        }
    }
}

/// The `--floor-serve` process: serves until killed.
pub fn serve(connection: Connection, base: &str, url: &str, writes: Option<&str>) {
    let sp = connection.sp_urls(base);
    let id = connection.id.to_string();
    let bind = base.trim_start_matches("http://").to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let pool = || async {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .expect("--floor-writes needs the PostgreSQL backend")
        };
        let writes = match writes {
            Some("each") => Some(Writes::Each(pool().await)),
            Some(_) => {
                let (queue, receiver) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(commit_groups(pool().await, connection.clone(), receiver));
                Some(Writes::Grouped(queue))
            }
            None => None,
        };
        let floor = Arc::new(Floor {
            continue_path: format!("/sso/{id}/continue"),
            connection,
            sp,
            writes,
        });
        let app = Router::new()
            .route("/readyz", get(|| async { "ready" }))
            .route("/sso/{id}/acs", post(acs_post))
            .route("/sso/{id}/continue", get(continue_get))
            .with_state(floor);
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// The form is read as the ACS reads it ([`nulab_pass::saml::form::field`]).
async fn acs_post(State(floor): State<Arc<Floor>>, body: Bytes) -> Response {
    let Some(response) = nulab_pass::saml::form::field(&body, "SAMLResponse") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if crate::callgrind::verify(&response, &floor.connection, &floor.sp).is_err() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let handle = uuid::Uuid::new_v4().simple().to_string();
    let written = match &floor.writes {
        None => true,
        Some(Writes::Each(pool)) => {
            write(pool, &floor.connection, std::slice::from_ref(&handle)).await
        }
        Some(Writes::Grouped(queue)) => {
            let (done, committed) = tokio::sync::oneshot::channel();
            queue.send((handle.clone(), done)).is_ok() && committed.await.unwrap_or(false)
        }
    };
    if !written {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
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
