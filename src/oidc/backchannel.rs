//! OpenID Connect Back-Channel Logout 1.0: when a sign-in ends (a sign-out here, at the IdP or
//! at a product), each product that received a code in it and registered a
//! `backchannel_logout_uri` is sent a logout token naming the account (`sub`) and the sign-in
//! (`sid`). Deliveries are queued in the ending transaction and posted by a background job
//! (retried with backoff, like the email outbox), so no sign-out waits on a product. The URI is
//! checked like every URL this server fetches (public addresses only outside development mode).

use std::time::Duration;

use sqlx::Row;
use tokio::task::JoinHandle;

use super::store;
use crate::AppState;
use crate::db::Tx;
use crate::ids::AccountId;

/// The event a logout token carries.
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Deliveries tried at most; then the row is marked failed.
pub const MAX_ATTEMPTS: i64 = 8;
/// How long a delivery attempt may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claimed delivery is left to the instance that claimed it.
const CLAIM_MS: i64 = 60_000;

/// Ends the product grants of a sign-in (tokens revoked, codes burnt) and queues a logout
/// token for each product of it with a back-channel URI. Returns how many were queued.
pub async fn end_sign_in(
    tx: &mut Tx,
    sign_in_id: &str,
    account: AccountId,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let products = store::end_sign_in(tx, sign_in_id, now).await?;
    let mut queued = 0;
    for client_id in products {
        let Some(client) = store::client_by_id(&mut **tx, &client_id).await? else {
            continue;
        };
        if client.backchannel_logout_uri.is_none() {
            continue;
        }
        sqlx::query(
            "INSERT INTO backchannel_logouts (id, client_id, account_id, sign_in_id, status, \
             attempts, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(client_id)
        .bind(account.to_string())
        .bind(sign_in_id.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// The claims of a logout token (Back-Channel Logout 1.0 §2.4): no `nonce`, the event, and
/// both `sub` and `sid`.
pub fn logout_token_claims(
    issuer: &str,
    client_id: &str,
    account: &str,
    sign_in_id: &str,
    now_ms: i64,
) -> serde_json::Map<String, serde_json::Value> {
    let now = now_ms / 1000;
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": account,
        "sid": sign_in_id,
        "events": { LOGOUT_EVENT: {} },
    });
    match claims {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

struct Due {
    id: String,
    client_id: String,
    account_id: String,
    sign_in_id: String,
    attempts: i64,
    next_attempt_at: i64,
}

/// Posts the deliveries that are due; returns how many were delivered.
pub async fn deliver_due(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.now_ms();
    let rows = sqlx::query(
        "SELECT id, client_id, account_id, sign_in_id, attempts, next_attempt_at \
         FROM backchannel_logouts WHERE status = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT 20",
    )
    .bind(now)
    .fetch_all(state.db.pool())
    .await?;
    let mut delivered = 0;
    for row in rows {
        let due = Due {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            account_id: row.try_get("account_id")?,
            sign_in_id: row.try_get("sign_in_id")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
        };
        // Claim it: another instance that read the same row finds it moved on.
        let claimed = sqlx::query(
            "UPDATE backchannel_logouts SET next_attempt_at = $3 \
             WHERE id = $1 AND next_attempt_at = $2 AND status = 'pending'",
        )
        .bind(due.id.clone())
        .bind(due.next_attempt_at)
        .bind(now + CLAIM_MS)
        .execute(&mut *state.db.write().await?)
        .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        let outcome = post(state, &due, now).await;
        finish(state, &due, outcome, now).await?;
        delivered += 1;
    }
    Ok(delivered)
}

/// Posts one logout token; `Err` says why it failed, never what the product answered.
async fn post(state: &AppState, due: &Due, now: i64) -> Result<(), String> {
    let client = store::client_by_id(state.db.pool(), &due.client_id)
        .await
        .map_err(|_| "the product could not be read".to_string())?
        .ok_or("the product was deleted")?;
    let uri = client
        .backchannel_logout_uri
        .ok_or("the product no longer has a back-channel logout URI")?;
    let url = url::Url::parse(&uri).map_err(|_| "the URI is not valid".to_string())?;
    let addrs = crate::net::check_url(&url, state.config.dev, TIMEOUT)
        .await
        .map_err(|why| format!("the back-channel logout URI was refused: {why}"))?;
    let claims = logout_token_claims(
        &state.base_url(),
        &due.client_id,
        &due.account_id,
        &due.sign_in_id,
        now,
    );
    let token = state
        .oidc_keys
        .sign_typed(claims, "logout+jwt")
        .map_err(|_| "the logout token could not be signed".to_string())?;
    let http = crate::net::pinned_client(&url, &addrs, TIMEOUT)
        .map_err(|_| "no HTTP client could be built".to_string())?;
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &token)
        .finish();
    let response = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "the request timed out".to_string()
            } else {
                "the product could not be reached".to_string()
            }
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "the product answered {}",
            response.status().as_u16()
        ))
    }
}

/// Records the outcome: sent, or retried after 30 s, 1, 2, 4 ... minutes, failed at the last.
async fn finish(
    state: &AppState,
    due: &Due,
    outcome: Result<(), String>,
    now: i64,
) -> anyhow::Result<()> {
    let attempts = due.attempts + 1;
    let query = match outcome {
        Ok(()) => sqlx::query(
            "UPDATE backchannel_logouts SET status = 'sent', attempts = $2, sent_at = $3, \
             last_error = NULL WHERE id = $1",
        )
        .bind(due.id.clone())
        .bind(attempts)
        .bind(now),
        Err(why) => {
            tracing::warn!(product = %due.client_id, error = %why, attempts, "back-channel logout failed");
            let status = if attempts >= MAX_ATTEMPTS {
                "failed"
            } else {
                "pending"
            };
            sqlx::query(
                "UPDATE backchannel_logouts SET status = $2, attempts = $3, next_attempt_at = $4, \
                 last_error = $5 WHERE id = $1",
            )
            .bind(due.id.clone())
            .bind(status)
            .bind(attempts)
            .bind(now + 30_000 * (1_i64 << (attempts - 1).min(10)))
            .bind(why)
        }
    };
    query.execute(&mut *state.db.write().await?).await?;
    Ok(())
}

/// The delivery job: polls as often as the email outbox.
pub fn spawn(state: &AppState) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let poll = Duration::from_millis(state.config.outbox_poll_ms.max(10));
        loop {
            if let Err(err) = deliver_due(&state).await {
                tracing::warn!(error = %err, "back-channel logout delivery failed");
            }
            tokio::time::sleep(poll).await;
        }
    })
}
