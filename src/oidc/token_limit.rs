//! The token endpoint's rate limits: failed requests are counted per product (the client id a
//! request names, authenticated or not) and per client address; past either limit the endpoint
//! answers 429 `rate_limited` with `Retry-After` before looking at the request.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::token::OAuthError;
use crate::AppState;
use crate::audit::RequestMeta;
use crate::limits::{self, Blocked, Bucket, Limit};

/// The counters of a token request: the client id it names (Basic credentials, else the
/// body's `client_id`) and the client address.
fn buckets(meta: &RequestMeta, headers: &HeaderMap, body: &[u8]) -> Vec<Bucket> {
    let from_basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|d| d.split_once(':').map(|(id, _)| id.to_string()));
    let client_id = from_basic.or_else(|| {
        super::authorize::parse_params(body)
            .ok()
            .and_then(|p| p.get("client_id").cloned())
    });
    let mut buckets: Vec<Bucket> = client_id
        .filter(|id| !id.is_empty())
        .map(|id| {
            Bucket::new(
                Limit::TokenPerClient,
                id.chars().take(200).collect::<String>(),
            )
        })
        .into_iter()
        .collect();
    buckets.extend(Bucket::address(Limit::TokenPerAddress, meta));
    buckets
}

/// Runs `answer` unless a limit holds (then 429); a 4xx answer is counted.
pub(super) async fn limited(
    state: &AppState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    body: &[u8],
    answer: impl std::future::Future<Output = Response>,
) -> Response {
    let now = state.clock.now_ms();
    let buckets = buckets(meta, headers, body);
    match limits::blocked(&state.db, now, &buckets).await {
        Ok(Some(block)) => return super::token::no_store(refused(&block, now)),
        Ok(None) => {}
        Err(e) => return OAuthError::from(e).into_response(),
    }
    let response = answer.await;
    if !response.status().is_client_error() {
        return response;
    }
    match count(state, now, &buckets, meta).await {
        Ok(()) => response,
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// Counts a failed request in its own transaction.
async fn count(
    state: &AppState,
    now: i64,
    buckets: &[Bucket],
    meta: &RequestMeta,
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    limits::count(&mut tx, &state.config.limits, now, buckets, meta).await?;
    tx.commit().await
}

/// 429 in the token endpoint's error format (RFC 6749 section 5.2), with `Retry-After`.
fn refused(block: &Blocked, now: i64) -> Response {
    let secs = block.retry_after_secs(now);
    let description = format!(
        "too many failed token requests: wait {} and try again",
        limits::wait_words(secs)
    );
    let body = serde_json::json!({ "error": "rate_limited", "error_description": description });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    response
}
