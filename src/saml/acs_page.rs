//! The assertion consumer service over HTTP: reads the POSTed response (refusing an oversized
//! one itself, with a reason code and an audit event), checks it ([`super::outline`], then
//! [`super::acs::verify`] on the blocking pool), applies the account rules, and signs the
//! browser in or shows which rule failed.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use base64::Engine;
use tower_sessions::Session;

use super::acs::{self, Reason, Rejection};
use super::acs_result::{TestOutcome, audit_connection, facts, record_failure, refuse, test_page};
use super::admit::{self, Admitted, Checked};
use super::pages::binding_value;
use super::{Connection, acs_grant, store};
use crate::AppState;
use crate::accounts::Account;
use crate::audit::{AuditAction, RequestMeta};
use crate::db::{Batch, Opening, Tx};
use crate::ids::SamlConnectionId;
use crate::limits;
use crate::secrets;
use crate::web::error::AppError;
use crate::web::extract::ClientMeta;

/// The ACS. It reads the body itself, up to [`acs::MAX_BODY`], so that an oversized response
/// is refused with its own reason and an audit event rather than by a generic limit.
pub fn routes() -> Router<AppState> {
    Router::new().route("/sso/{id}/acs", post(acs_post))
}
/// The request this response answers, when it is one this browser started. Read before the
/// transaction (verification needs its ID); [`admit::admit`] spends it inside the transaction, so a
/// concurrent answer to the same request still loses.
async fn pending_request(
    state: &AppState,
    connection: &Connection,
    in_response_to: Option<&str>,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<store::PendingRequest>, Refusal> {
    let Some(irt) = in_response_to else {
        return if connection.settings.allow_idp_initiated {
            Ok(None)
        } else {
            Err(refused(
                Reason::Unsolicited,
                "the response answers no request, and IdP-initiated sign-in is off",
            ))
        };
    };
    let request = match store::request(state.db.pool(), irt).await? {
        Some(r) if r.connection_id == connection.id.to_string() => r,
        _ => {
            return Err(refused(
                Reason::UnknownRequest,
                format!("InResponseTo {irt} is not a request of this connection"),
            ));
        }
    };
    if request.used_at.is_some() {
        return Err(refused(
            Reason::Replayed,
            "the request was already answered",
        ));
    }
    if request.expires_at <= now {
        return Err(refused(
            Reason::ExpiredRequest,
            "the request is older than 10 minutes",
        ));
    }
    let binding = binding_value(headers).map(|v| secrets::hash_token(&v));
    if !binding.is_some_and(|b| secrets::same(&b, &request.binding_hash)) {
        return Err(refused(
            Reason::OtherBrowser,
            "the request was started in another browser (binding cookie missing or different)",
        ));
    }
    Ok(Some(request))
}

/// The POSTed form, at most [`acs::MAX_BODY`] bytes: a larger body is refused as soon as its
/// declared length or the bytes read pass the limit, without reading the rest.
async fn read_body(body: Body) -> Result<Bytes, Rejection> {
    axum::body::to_bytes(body, acs::MAX_BODY)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Rejection::new(
                    Reason::TooLarge,
                    format!("more than {} bytes came", acs::MAX_BODY),
                )
            } else {
                Rejection::new(Reason::Malformed, "the request body could not be read")
            }
        })
}

/// Why the ACS signs nobody in: the response was refused (a reason for the page and the audit
/// log, with the request it answered), or this service failed (a 5xx with an error id, never
/// blamed on the response).
enum Refusal {
    Refused(Rejection, Option<store::PendingRequest>),
    Failed(AppError),
}

fn refused(reason: Reason, detail: impl Into<String>) -> Refusal {
    Refusal::Refused(Rejection::new(reason, detail), None)
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Refusal::Failed(e.into())
    }
}

/// The decoded response of the POSTed form and its outline ([`super::outline::scan`]).
fn outline_of(body: &[u8]) -> Result<(String, super::outline::Scan), Rejection> {
    let encoded = super::form::field(body, "SAMLResponse")
        .ok_or_else(|| Rejection::new(Reason::Malformed, "no SAMLResponse field"))?;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Rejection::new(Reason::Malformed, "SAMLResponse is not base64 of UTF-8 XML")
        })?;
    let outline = super::outline::scan(&xml)?;
    Ok((xml, outline))
}

/// Everything that needs no transaction: decoding, the outline, the request it answers, and
/// the signature check on the blocking pool.
async fn check(
    state: &AppState,
    connection: &std::sync::Arc<Connection>,
    body: &Bytes,
    headers: &HeaderMap,
    now: i64,
) -> Result<Checked, Refusal> {
    let body = body.clone();
    let (xml, outline) = super::cpu::run(move || outline_of(&body))
        .await
        .map_err(|e| Refusal::Failed(e.into()))?
        .map_err(|r| Refusal::Refused(r, None))?;
    let request = pending_request(
        state,
        connection,
        outline.in_response_to.as_deref(),
        headers,
        now,
    )
    .await?;
    let ids: Option<Vec<String>> = request.as_ref().map(|r| vec![r.id.clone()]);
    let sp = connection.sp_urls(&state.base_url());
    let conn = connection.clone();
    // Only an encrypted response needs the SP's keys (and their files looked at).
    let sp_keys = if outline.encrypted_assertions > 0 {
        Some(
            state
                .sp_keys
                .keys()
                .map_err(|e| Refusal::Failed(e.into()))?,
        )
    } else {
        None
    };
    let verified = super::cpu::run(move || {
        let refs: Option<Vec<&str>> = ids.as_ref().map(|v| v.iter().map(String::as_str).collect());
        let keys: Vec<_> = sp_keys
            .iter()
            .flat_map(|k| k.encryption.iter().map(|pair| &pair.key))
            .collect();
        acs::verify(&xml, outline, &conn, &sp, refs.as_deref(), &keys)
    })
    .await
    .map_err(|e| Refusal::Failed(e.into()))?
    .map_err(|r| Refusal::Refused(r, request.clone()))?;
    let email =
        acs::email_of(&verified, connection).map_err(|r| Refusal::Refused(r, request.clone()))?;
    Ok(Checked {
        verified,
        email,
        request,
    })
}

/// The connection's version, read with the address's block ([`limits::blocked_beside`]).
static VERSION_BESIDE: LazyLock<limits::Beside> =
    LazyLock::new(|| limits::Beside::new(store::VERSION));

/// The connection the ACS URL names (`None`: no such connection), unless the client's address is
/// blocked (`Err`). The block and the connection's version are one statement, on one reading
/// connection given back before anything else.
async fn connection_unless_blocked(
    state: &AppState,
    id: &str,
    meta: &RequestMeta,
    now: i64,
) -> Result<Result<Option<Arc<Connection>>, limits::Blocked>, sqlx::Error> {
    let bucket = limits::Bucket::address(limits::Limit::AcsFailuresPerAddress, meta);
    let mut reading = state.db.read().await?;
    let found = match SamlConnectionId::parse(id) {
        None => {
            let buckets: Vec<_> = bucket.into_iter().collect();
            match limits::blocked_on(&mut reading, now, &buckets).await? {
                Some(block) => Err(block),
                None => Ok(None),
            }
        }
        Some(id) => {
            let (block, version) = limits::blocked_beside(
                &mut reading,
                now,
                bucket.as_ref(),
                &VERSION_BESIDE,
                id.to_string(),
            )
            .await?;
            match block {
                Some(block) => Err(block),
                None => {
                    let connections = &state.saml_connections;
                    Ok(connections.of_version(&mut reading, id, version).await?)
                }
            }
        }
    };
    reading.done();
    Ok(found)
}

async fn acs_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    session: Session,
    headers: HeaderMap,
    ClientMeta(meta): ClientMeta,
    body: Body,
) -> Result<Response, AppError> {
    let now = state.clock.now_ms();
    // An address whose posts keep failing waits, before anything is read or verified.
    let connection = match connection_unless_blocked(&state, &id, &meta, now).await? {
        Ok(connection) => connection,
        Err(block) => return Err(block.to_error(now)),
    };
    let Some(connection) = connection else {
        let rejection = Rejection::new(Reason::UnknownConnection, format!("connection {id}"));
        record_failure(&state, None, &rejection, &meta, now).await?;
        return refuse(Reason::UnknownConnection, None).await;
    };
    let post = Post {
        state: &state,
        session: &session,
        connection: &connection,
        meta: &meta,
        now,
    };
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(rejection) => {
            let mut page = post.refused(rejection, None).await?;
            // The rest of the body is never read: the client must not reuse this connection.
            page.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return Ok(page);
        }
    };
    // CPU work (decoding, parsing, the signature check) happens before the transaction opens:
    // on SQLite the transaction holds the database's write lock.
    let checked = match check(&state, &connection, &body, &headers, now).await {
        Ok(checked) => checked,
        Err(Refusal::Failed(e)) => return Err(e),
        Err(Refusal::Refused(rejection, request)) => return post.refused(rejection, request).await,
    };
    let Some(request) = checked.request.clone() else {
        // IdP-initiated: admitted and parked with the others arriving at the time.
        let arrival = admit::Arrival {
            connection: connection.clone(),
            verified: checked.verified,
            email: checked.email,
            now,
        };
        return match state.arrivals.submit(arrival).await? {
            Ok(handle) => acs_grant::parked_response(&state, &connection, &handle),
            Err(rejection) => post.refused(rejection, None).await,
        };
    };
    match admit::admit(&state.db, &connection, checked, now).await? {
        Ok((tx, admitted)) if request.is_test => post.tested(tx, admitted).await,
        Ok((tx, admitted)) => post.signed_in(tx, admitted, &request.return_to).await,
        Err((rejection, request)) => post.refused(rejection, request).await,
    }
}

/// One ACS request: what each way of answering it needs.
struct Post<'a> {
    state: &'a AppState,
    session: &'a Session,
    connection: &'a Connection,
    meta: &'a RequestMeta,
    now: i64,
}

impl Post<'_> {
    /// Audits the refusal and shows which rule failed (on the test page for a test run).
    async fn refused(
        &self,
        rejection: Rejection,
        request: Option<store::PendingRequest>,
    ) -> Result<Response, AppError> {
        let (state, connection) = (self.state, self.connection);
        record_failure(state, Some(connection), &rejection, self.meta, self.now).await?;
        if request.as_ref().is_some_and(|r| r.is_test) {
            let outcome = TestOutcome {
                outcome: "The sign-in would be refused.",
                code: Some(rejection.reason.code()),
                detail: rejection.detail,
                facts: Vec::new(),
            };
            return test_page(state, self.session, connection, outcome).await;
        }
        refuse(
            rejection.reason,
            request.as_ref().map(|r| r.return_to.as_str()),
        )
        .await
    }

    /// An event of this connection with `account` as the actor.
    async fn audit(
        &self,
        tx: &mut Tx,
        account: &Account,
        action: AuditAction,
        details: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let actor = account.actor();
        audit_connection(
            tx,
            self.connection,
            action,
            &actor,
            self.meta,
            self.now,
            details,
        )
        .await
    }

    /// A test run that would sign the account in: audited, no session.
    async fn tested(&self, mut tx: Tx, admitted: Admitted) -> Result<Response, AppError> {
        let account = &admitted.account;
        let details = serde_json::json!({ "outcome": "success", "email": account.email });
        self.audit(&mut tx, account, AuditAction::SsoTestCompleted, details)
            .await?;
        tx.commit().await?;
        let outcome = TestOutcome {
            outcome: "The sign-in works: this account would be signed in.",
            code: None,
            detail: String::new(),
            facts: facts(&admitted.verified, Some(account), self.connection),
        };
        test_page(self.state, self.session, self.connection, outcome).await
    }

    /// Signs the account in and sends the browser to `return_to`, where its request started
    /// (an IdP-initiated sign-in is parked instead: [`super::admit::Arrivals`]).
    async fn signed_in(
        &self,
        tx: Tx,
        admitted: Admitted,
        return_to: &str,
    ) -> Result<Response, AppError> {
        let grant = admit::grant_of(
            &admitted.account,
            &admitted.verified,
            self.connection,
            false,
        );
        acs_grant::finish(
            self.state,
            self.session,
            Opening::Open(tx),
            self.connection,
            &admitted.account,
            &grant,
            self.meta,
            serde_json::json!({}),
            Batch::new(),
            |_| true,
        )
        .await?;
        Ok(Redirect::to(return_to).into_response())
    }
}
