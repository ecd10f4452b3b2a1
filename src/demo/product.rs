//! "Backlog (demo)": a small product that signs its users in through nulab-pass exactly as a
//! real one does (see `client`), and shows who is signed in: `sub`, `email`, `org`, `amr`.
//! Its sign-ins live in memory; its cookies have names of their own because browsers share
//! cookies between ports of one host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::client::{Claims, Client, Pending};

/// The product's display name.
pub const DISPLAY_NAME: &str = "Backlog (demo)";
/// The product's registered name (a product name is lowercase).
pub const PRODUCT_NAME: &str = "backlog-demo";
const STATE_COOKIE: &str = "backlog_demo_state";
const SESSION_COOKIE: &str = "backlog_demo_session";
/// Requests in flight kept at most (older ones are dropped).
const MAX_PENDING: usize = 1000;

/// The product's own state.
pub struct Product {
    client: Client,
    /// The product's URL, without a trailing slash.
    url: String,
    pending: Mutex<HashMap<String, Pending>>,
    /// Session cookie → the verified claims and the raw ID token.
    sessions: Mutex<HashMap<String, (Claims, String)>>,
}

impl Product {
    pub fn new(client: Client, url: &str) -> Arc<Product> {
        Arc::new(Product {
            client,
            url: url.trim_end_matches('/').to_string(),
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }
}

/// The product's routes.
pub fn router(product: Arc<Product>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/signout", post(signout))
        .route("/style.css", get(style))
        .with_state(product)
}

fn esc(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {DISPLAY_NAME}</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
         <body><header><strong>{DISPLAY_NAME}</strong> <span>a product that signs in through nulab-pass</span></header>\
         <main>{body}</main></body></html>",
        title = esc(title)
    )
}

fn cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

async fn home(State(product): State<Arc<Product>>, headers: HeaderMap) -> Html<String> {
    let signed_in = crate::web::cookie_value(&headers, SESSION_COOKIE).and_then(|sid| {
        let sessions = product.sessions.lock().expect("sessions lock");
        sessions.get(&sid).map(|(claims, _)| claims.clone())
    });
    let body = match signed_in {
        None => "<h1>Welcome</h1><p>Sign in with your organization's account.</p>\
                 <p><a class=\"button\" id=\"sign-in\" href=\"/login\">Sign in with nulab-pass</a></p>"
            .to_string(),
        Some(claims) => signed_in_body(&claims),
    };
    Html(page("Home", &body))
}

fn signed_in_body(claims: &Claims) -> String {
    let row =
        |k: &str, v: &str| format!("<tr><th>{k}</th><td id=\"claim-{k}\">{}</td></tr>", esc(v));
    format!(
        "<h1>Signed in</h1><p>nulab-pass handed this user to the product with a verified ID token.</p>\
         <table>{}{}{}{}{}</table>\
         <form method=\"post\" action=\"/signout\"><button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
        row("sub", &claims.sub),
        row("email", claims.email.as_deref().unwrap_or("")),
        row("name", claims.name.as_deref().unwrap_or("")),
        row("org", claims.org.as_deref().unwrap_or("")),
        row("amr", &claims.amr.join(" ")),
    )
}

async fn login(State(product): State<Arc<Product>>) -> Response {
    let (url, pending) = product.client.authorization_request();
    let state = pending.state.clone();
    {
        let mut all = product.pending.lock().expect("pending lock");
        if all.len() >= MAX_PENDING {
            all.clear();
        }
        all.insert(state.clone(), pending);
    }
    let set = cookie(STATE_COOKIE, &state, 600);
    ([(header::SET_COOKIE, set)], Redirect::to(&url)).into_response()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn failure(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in did not complete</h1><p class=\"error\">{}</p><p><a href=\"/\">Back</a></p>",
        esc(message)
    );
    (status, Html(page("Sign-in failed", &body))).into_response()
}

async fn callback(
    State(product): State<Arc<Product>>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    if let Some(error) = q.error {
        let text = format!("{error}: {}", q.error_description.unwrap_or_default());
        return failure(StatusCode::BAD_REQUEST, &text);
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "the answer has no code or no state",
        );
    };
    // The state must be this browser's own request (its cookie), and used once.
    let ours = crate::web::cookie_value(&headers, STATE_COOKIE).is_some_and(|c| c == state);
    let pending = product.pending.lock().expect("pending lock").remove(&state);
    let Some(pending) = pending.filter(|_| ours) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "this sign-in was not started in this browser, or was already used",
        );
    };
    match product.client.finish(&code, &pending).await {
        Ok(signed_in) => {
            let sid = crate::secrets::new_token("");
            product
                .sessions
                .lock()
                .expect("sessions lock")
                .insert(sid.clone(), signed_in);
            let headers = AppendHeaders([
                (header::SET_COOKIE, cookie(SESSION_COOKIE, &sid, 8 * 3600)),
                (header::SET_COOKIE, cookie(STATE_COOKIE, "", 0)),
            ]);
            (headers, Redirect::to("/")).into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "the demo product could not finish a sign-in");
            failure(StatusCode::BAD_GATEWAY, &format!("{err:#}"))
        }
    }
}

async fn signout(State(product): State<Arc<Product>>, headers: HeaderMap) -> Response {
    let ended = crate::web::cookie_value(&headers, SESSION_COOKIE)
        .and_then(|sid| product.sessions.lock().expect("sessions lock").remove(&sid));
    let clear = [(header::SET_COOKIE, cookie(SESSION_COOKIE, "", 0))];
    match ended {
        Some((_, id_token)) => {
            let after = format!("{}/", product.url);
            (
                clear,
                Redirect::to(&product.client.end_session_url(&id_token, &after)),
            )
                .into_response()
        }
        None => (clear, Redirect::to("/")).into_response(),
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        "body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}\
         header{background:#42ce9f;color:#fff;padding:12px 20px}header span{opacity:.85;margin-left:8px}\
         main{max-width:640px;margin:32px auto;padding:0 16px}\
         table{border-collapse:collapse;width:100%;margin:16px 0}th,td{text-align:left;padding:8px;border-bottom:1px solid #dde}\
         td{font-family:ui-monospace,monospace;word-break:break-all}\
         .button,button{display:inline-block;background:#1d2433;color:#fff;padding:10px 16px;border:0;border-radius:6px;text-decoration:none;font-size:1rem;cursor:pointer}\
         .error{color:#b00020}",
    )
        .into_response()
}
