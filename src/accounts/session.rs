//! The browser session of an account: starting one ([`start_session`]: a new session id, the
//! account, and the organization's session lifetime fixed at the start), and recognising it on
//! each request ([`SignedIn`]). The lifetime an organization sets is read here (its admin
//! settings live in `sign_in`).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use tower_sessions::Session;

use super::{Account, AccountKind, AccountStatus, store};
use crate::AppState;
use crate::db::{Batch, Db, Dialect, Outcome};
use crate::ids::OrgId;
use crate::web::error::AppError;
use crate::web::session;

const HOUR_MS: i64 = 3_600_000;

/// Starts the signed-in session of `account` (password, SAML or TOTP sign-in): a new session
/// id (no fixation), the account, how and when it signed in, and the end of the session from
/// the organization's lifetime.
pub async fn start_session(
    state: &AppState,
    session: &Session,
    account: &Account,
    method: session::SignInMethod,
) -> Result<(), AppError> {
    let sign_in_id = session::new_sign_in_id();
    let lifetime = lifetime_ms(&state.db, account).await?;
    start_sign_in(state, session, account, method, &sign_in_id, lifetime).await
}

/// [`start_session`] for a sign-in whose id the caller already recorded (an SSO sign-in keeps
/// what the IdP's LogoutRequest will name under it), with the session lifetime the caller read
/// ([`LifetimeRead`], in the transaction that recorded the sign-in: no round trip of its own on
/// the sign-in's path).
pub async fn start_sign_in(
    state: &AppState,
    session: &Session,
    account: &Account,
    method: session::SignInMethod,
    sign_in_id: &str,
    lifetime: Option<i64>,
) -> Result<(), AppError> {
    let now = state.clock.now_ms();
    session::sign_in(session, account, method, sign_in_id, now).await?;
    fix_until(session, now, now, lifetime).await?;
    Ok(())
}

/// The read of an account's session lifetime as one statement of a batch ([`lifetime_ms`]'s
/// rule), for a transaction that records a sign-in.
pub struct LifetimeRead(Option<usize>);

impl LifetimeRead {
    pub fn push(batch: &mut Batch, account: &Account) -> LifetimeRead {
        LifetimeRead(lifetime_org(account).map(|org| store::lifetime_hours_in(batch, org)))
    }

    /// The lifetime (ms) from the batch's outcomes, as [`lifetime_ms`] gives it.
    pub fn ms(&self, outcomes: &[Outcome]) -> Result<Option<i64>, sqlx::Error> {
        let hours = match self.0 {
            Some(at) => store::lifetime_hours_of(&outcomes[at])?,
            None => None,
        };
        Ok(hours_to_ms(hours))
    }
}

/// [`LifetimeRead`] for the accounts of several sign-ins recorded together: one statement for
/// all their organizations, none when no account is managed.
pub struct LifetimesRead(Option<usize>);

impl LifetimesRead {
    pub fn push<'a>(
        batch: &mut Batch,
        dialect: Dialect,
        accounts: impl IntoIterator<Item = &'a Account>,
    ) -> LifetimesRead {
        let mut orgs: Vec<OrgId> = accounts.into_iter().filter_map(lifetime_org).collect();
        orgs.sort_unstable();
        orgs.dedup();
        LifetimesRead((!orgs.is_empty()).then(|| store::lifetimes_hours_in(batch, dialect, &orgs)))
    }

    /// Each account's lifetime (ms), in the order given, as [`lifetime_ms`] gives it.
    pub fn ms<'a>(
        &self,
        outcomes: &[Outcome],
        accounts: impl IntoIterator<Item = &'a Account>,
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        let hours = match self.0 {
            Some(at) => store::lifetimes_hours_of(&outcomes[at])?,
            None => Default::default(),
        };
        Ok((accounts.into_iter())
            .map(|a| hours_to_ms(lifetime_org(a).and_then(|o| hours.get(&o.to_string()).copied())))
            .collect())
    }
}

/// The fixed lifetime (ms) of a new session of `account`: its organization's setting for a
/// managed account; `None` for a Nulab account and when the organization sets none (the
/// server's inactivity timeout then applies). A Nulab account's own session is never shortened
/// by an organization it joined: each organization's lifetime gates only its admin area
/// (`orgs::gate`).
pub async fn lifetime_ms(db: &Db, account: &Account) -> Result<Option<i64>, sqlx::Error> {
    let hours = match lifetime_org(account) {
        Some(org) => store::lifetime_hours(db.pool(), org).await?,
        None => None,
    };
    Ok(hours_to_ms(hours))
}

fn hours_to_ms(hours: Option<i64>) -> Option<i64> {
    hours.map(|h| h * HOUR_MS)
}

/// The organization whose session lifetime applies to `account`'s sessions: its own, for a
/// managed account ([`lifetime_ms`]).
fn lifetime_org(account: &Account) -> Option<OrgId> {
    match (account.kind, account.org_id) {
        (AccountKind::Managed, Some(org)) => Some(org),
        _ => None,
    }
}

/// Fixes the end of a session that signed in at `auth_at` from `lifetime` (0: no fixed end) and
/// returns it.
async fn fix_until(
    session: &Session,
    now: i64,
    auth_at: i64,
    lifetime: Option<i64>,
) -> Result<i64, AppError> {
    let until = match lifetime {
        Some(lifetime) => {
            let until = auth_at + lifetime;
            // The store's expiry is wall-clock time; the rule above uses the app clock.
            let left = time::Duration::milliseconds((until - now).max(0));
            session.set_expiry(Some(tower_sessions::Expiry::AtDateTime(
                time::OffsetDateTime::now_utc() + left,
            )));
            until
        }
        None => 0,
    };
    session.insert(session::SESSION_UNTIL_KEY, until).await?;
    Ok(until)
}

/// Applies the session lifetime once per sign-in (on the first request after it, for sign-ins
/// that other modules complete), then answers whether the session is still within it.
pub async fn session_alive(
    state: &AppState,
    session: &Session,
    account: &Account,
) -> Result<bool, AppError> {
    let now = state.clock.now_ms();
    let until = match session.get::<i64>(session::SESSION_UNTIL_KEY).await? {
        Some(until) => until,
        None => {
            let auth_at = session
                .get::<i64>(session::AUTH_AT_KEY)
                .await?
                .unwrap_or(now);
            let lifetime = lifetime_ms(&state.db, account).await?;
            fix_until(session, now, auth_at, lifetime).await?
        }
    };
    // Every sign-in of the account that started before the stamp has ended.
    let auth_at = session.get::<i64>(session::AUTH_AT_KEY).await?.unwrap_or(0);
    if auth_at < account.sessions_valid_after {
        return Ok(false);
    }
    Ok(until == 0 || now < until)
}

/// The signed-in, active account. Pages without one redirect to the sign-in page.
pub struct SignedIn {
    pub account: Account,
    pub session: Session,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
        let Some(id) = session::account_id(&session).await? else {
            return Err(AppError::SignInRequired { next });
        };
        match store::by_id(state.db.pool(), id).await? {
            Some(account) if account.status == AccountStatus::Active => {
                // The organization's session lifetime is over: sign in again.
                if !session_alive(state, &session, &account).await? {
                    session.flush().await?;
                    return Err(AppError::SignInRequired { next });
                }
                // A temporary or expired password: nothing else until it is changed.
                let must_change = session
                    .get::<bool>(session::MUST_CHANGE_KEY)
                    .await?
                    .unwrap_or(false);
                if must_change && !PASSWORD_CHANGE_PATHS.contains(&parts.uri.path()) {
                    return Err(AppError::RedirectTo("/account/password".to_string()));
                }
                Ok(SignedIn { account, session })
            }
            // Suspended or deleted since signing in: the session ends now.
            _ => {
                session.flush().await?;
                Err(AppError::SignInRequired { next })
            }
        }
    }
}

/// On pages anyone may open (`Option<SignedIn>`): the signed-in account when there is one, for
/// the header; the same checks, and nobody where the page would ask to sign in.
impl OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <SignedIn as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(signed_in) => Ok(Some(signed_in)),
            Err(AppError::SignInRequired { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Pages a user who must change their password may still open.
const PASSWORD_CHANGE_PATHS: &[&str] = &["/account/password", "/signout"];
