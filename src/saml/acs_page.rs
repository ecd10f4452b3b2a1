//! The assertion consumer service over HTTP: reads the POSTed response (refusing an oversized
//! one itself, with a reason code and an audit event), checks it ([`super::outline`], then
//! [`super::acs::verify`] on the blocking pool), applies the account rules, and signs the
//! browser in or shows which rule failed.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use base64::Engine;
use tower_sessions::Session;

use super::acs::{self, Reason, Rejection, Verified};
use super::acs_result::{TestOutcome, audit_connection, facts, record_failure, refuse, test_page};
use super::pages::binding_value;
use super::{Connection, acs_grant, mapping, store};
use crate::AppState;
use crate::accounts::{self, Account, AccountKind, AccountStatus};
use crate::audit::{AuditAction, RequestMeta};
use crate::db::{Batch, Db, Opening, Tx};
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
/// transaction (verification needs its ID); [`admit`] spends it inside the transaction, so a
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

impl Refusal {
    /// Names the request this refusal answered (so that a "test connection" run shows it).
    fn answering(self, request: &Option<store::PendingRequest>) -> Self {
        match self {
            Refusal::Refused(r, None) => Refusal::Refused(r, request.clone()),
            other => other,
        }
    }
}

/// The decoded response of the POSTed form and its outline ([`super::outline::scan`]).
fn outline_of(body: &[u8]) -> Result<(String, super::outline::Scan), Rejection> {
    let encoded = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "SAMLResponse")
        .map(|(_, v)| v.split_whitespace().collect::<String>())
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

/// A response whose signatures and conditions hold, before the account rules.
struct Checked {
    verified: Verified,
    email: accounts::Email,
    request: Option<store::PendingRequest>,
}

/// Everything that needs no transaction: decoding, the outline, the request it answers, and
/// the signature check on the blocking pool.
async fn check(
    state: &AppState,
    connection: &std::sync::Arc<Connection>,
    body: &[u8],
    headers: &HeaderMap,
    now: i64,
) -> Result<Checked, Refusal> {
    let body = body.to_vec();
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

/// Everything the ACS decides, short of the session.
struct Admitted {
    account: Account,
    verified: Verified,
    request: Option<store::PendingRequest>,
}

/// The replay cache, the account rules, the domain rules and spending the request, in a
/// transaction they begin: their statements go to the database in one batch (one round trip
/// on SQLite, with the `BEGIN`), and their outcomes are judged in that order; a refusal rolls
/// all of them back. Admitted, the transaction stays open for the sign-in's writes.
async fn admit(
    db: &Db,
    connection: &Connection,
    checked: Checked,
    now: i64,
) -> Result<(Tx, Admitted), Refusal> {
    let Checked {
        verified,
        email,
        request,
    } = checked;
    let admitted = async {
        let mut batch = Batch::new();
        store::remember_in(
            &mut batch,
            &connection.idp_entity_id,
            &verified.assertion_id,
            verified.response_id.as_deref(),
            verified.valid_until,
        );
        let account_at = accounts::store::by_email_in(&mut batch, &email);
        let domain_at =
            crate::domains::email_domain_verified_in(&mut batch, connection.org_id, email.domain());
        let request_at = request
            .as_ref()
            .map(|r| store::use_request_in(&mut batch, &r.id, now));
        // A failed statement rolls the transaction back before the error comes here.
        let (mut tx, outcomes) = match db.begin_with(batch).await {
            Ok(begun) => begun,
            // Only the replay cache's insert can break a unique rule here.
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(refused(
                    Reason::Replayed,
                    format!(
                        "assertion {} or response {:?} was already accepted",
                        verified.assertion_id, verified.response_id
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let judged = async {
            let found = outcomes[account_at]
                .rows
                .first()
                .map(accounts::store::from_row)
                .transpose()?;
            let account = admit_account(found, connection, &email)
                .map_err(|(reason, detail)| refused(reason, detail))?;
            let verified_domain = !outcomes[domain_at].rows.is_empty();
            let request_spent = request_at.is_none_or(|at| outcomes[at].affected == 1);
            admit_domain(
                &mut tx,
                connection,
                &email,
                (account.created_at, verified_domain, request_spent),
                now,
            )
            .await?;
            Ok(account)
        }
        .await;
        match judged {
            Ok(account) => Ok((tx, account)),
            Err(refusal) => {
                tx.rollback().await?;
                Err(refusal)
            }
        }
    }
    .await
    .map_err(|r: Refusal| r.answering(&request))?;
    let (tx, account) = admitted;
    Ok((
        tx,
        Admitted {
            account,
            verified,
            request,
        },
    ))
}

/// The email's domain is verified for the organization (or the account is one of those an
/// organization brought in from before domain verification, during its transition) and routed
/// to this connection; the request was spent once. `found` holds the account's creation time,
/// whether the domain's statement found it verified, and whether the request's was the one
/// that spent it.
async fn admit_domain(
    tx: &mut Tx,
    connection: &Connection,
    email: &accounts::Email,
    found: (i64, bool, bool),
    now: i64,
) -> Result<(), Refusal> {
    let (created_at, verified, request_spent) = found;
    let org = connection.org_id;
    if !verified && !crate::domains::transition::allows(tx, org, created_at, now).await? {
        return Err(refused(
            Reason::DomainNotVerified,
            format!("{} is not verified for the organization", email.domain()),
        ));
    }
    if !connection.routes(email.domain()) {
        return Err(refused(
            Reason::DomainNotRouted,
            format!("{} is not among the connection's domains", email.domain()),
        ));
    }
    if !request_spent {
        return Err(refused(
            Reason::Replayed,
            "the request was already answered",
        ));
    }
    Ok(())
}

/// The active managed account of the connection's organization with this email, or why not.
fn admit_account(
    found: Option<Account>,
    connection: &Connection,
    email: &accounts::Email,
) -> Result<Account, (Reason, String)> {
    match found {
        None => Err((Reason::UnknownAccount, format!("no account uses {email}"))),
        Some(a) if a.kind == AccountKind::Nulab => {
            Err((Reason::NotManaged, format!("{email} is a Nulab account")))
        }
        Some(a) if a.org_id != Some(connection.org_id) => Err((
            Reason::UnknownAccount,
            format!("{email} is a managed account of another organization"),
        )),
        Some(a) if a.status == AccountStatus::Suspended => {
            Err((Reason::AccountSuspended, format!("{email} is suspended")))
        }
        Some(a) => Ok(a),
    }
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
    // An address whose posts keep failing waits, before anything is read or verified. Both
    // reads take one reading connection, given back before anything else.
    let buckets: Vec<_> = limits::Bucket::address(limits::Limit::AcsFailuresPerAddress, &meta)
        .into_iter()
        .collect();
    let connection = {
        let mut reading = state.db.pool().acquire().await?;
        if let Some(block) = limits::blocked_on(&mut reading, now, &buckets).await? {
            return Err(block.to_error(now));
        }
        match SamlConnectionId::parse(&id) {
            Some(id) => state.saml_connections.get(&mut reading, id).await?,
            None => None,
        }
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
    match admit(&state.db, &connection, checked, now).await {
        Ok((tx, admitted)) if admitted.request.as_ref().is_some_and(|r| r.is_test) => {
            post.tested(tx, admitted).await
        }
        Ok((tx, admitted)) => post.signed_in(tx, admitted).await,
        Err(Refusal::Failed(e)) => Err(e),
        Err(Refusal::Refused(rejection, request)) => post.refused(rejection, request).await,
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

    /// Signs the account in and sends the browser where the sign-in started; an IdP-initiated
    /// sign-in is parked until the browser comes back (see [`super::acs_grant`]).
    async fn signed_in(&self, tx: Tx, admitted: Admitted) -> Result<Response, AppError> {
        let verified = &admitted.verified;
        let grant = acs_grant::Grant {
            account_id: admitted.account.id,
            assertion_id: verified.assertion_id.clone(),
            name: mapping::display_name(verified, &self.connection.settings),
            subject: verified.name_id.clone().map(|name_id| super::slo::Subject {
                name_id,
                format: verified.name_id_format.clone(),
                name_qualifier: verified.name_qualifiers.0.clone(),
                sp_name_qualifier: verified.name_qualifiers.1.clone(),
            }),
            session_index: verified.session_index.clone(),
            session_until: verified.session_not_on_or_after,
            idp_initiated: admitted.request.is_none(),
        };
        let Some(request) = admitted.request else {
            return acs_grant::park(tx, self.state, self.connection, &grant, self.now).await;
        };
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
        Ok(Redirect::to(&request.return_to).into_response())
    }
}
