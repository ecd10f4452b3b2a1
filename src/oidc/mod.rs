//! The OpenID Connect provider the products (Backlog, Cacoo, Typetalk, ...) sign users in with:
//! products as registered clients, the authorization code flow with PKCE, RS256 ID tokens,
//! opaque short-lived access tokens, rotated refresh tokens, userinfo, JWKS, discovery and
//! RP-initiated logout.

pub mod authorize;
pub mod backchannel;
pub mod clients;
pub mod endpoints;
pub mod keys;
pub mod refresh;
pub mod store;
pub mod token;
mod token_limit;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::task::JoinHandle;

use crate::AppState;
use crate::accounts::{Account, AccountKind};

/// Lifetime of an authorization code.
pub const CODE_TTL_MS: i64 = 60_000;
/// Lifetime of an access token and of an ID token.
pub const ACCESS_TTL_MS: i64 = 10 * 60_000;
/// How long a parked authorization request waits for the sign-in to finish.
pub const PARKED_TTL_MS: i64 = 30 * 60_000;
/// Scopes this provider knows; others are ignored.
pub const SCOPES: &[&str] = &["openid", "email", "profile", "offline_access"];

/// Whether `verifier` (RFC 7636 §4.1) hashes to `challenge` with S256.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()));
    crate::secrets::same(&computed, challenge)
}

/// Whether `challenge` has the shape of an S256 challenge (43 base64url characters).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The organization slug of a managed account (the `org` claim).
pub async fn org_claim<'c>(
    exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
    account: &Account,
) -> Result<Option<String>, sqlx::Error> {
    match (account.kind, account.org_id) {
        (AccountKind::Managed, Some(org)) => {
            Ok(crate::orgs::store::by_id(exec, org).await?.map(|o| o.slug))
        }
        _ => Ok(None),
    }
}

/// Whether the space-separated `scope` holds `wanted`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// The claims about the account that `scope` releases (userinfo, and the ID token).
pub fn account_claims(
    account: &Account,
    org: Option<&str>,
    scope: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), account.id.to_string().into());
    if has_scope(scope, "email") {
        claims.insert("email".into(), account.email.clone().into());
        claims.insert("email_verified".into(), account.email_verified.into());
    }
    if has_scope(scope, "profile") {
        claims.insert("name".into(), account.name.clone().into());
    }
    if let Some(org) = org {
        claims.insert("org".into(), org.into());
    }
    claims
}

/// What an ID token says about one sign-in.
pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub account: &'a Account,
    pub org: Option<&'a str>,
    pub scope: &'a str,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub nonce: Option<&'a str>,
    pub now: i64,
}

/// The claims of an ID token (OIDC Core §2).
pub fn id_token_claims(input: &IdTokenInput<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = account_claims(input.account, input.org, input.scope);
    let secs = |ms: i64| ms.div_euclid(1000);
    claims.insert("iss".into(), input.issuer.into());
    claims.insert("aud".into(), input.client_id.into());
    claims.insert("iat".into(), secs(input.now).into());
    claims.insert("exp".into(), secs(input.now + ACCESS_TTL_MS).into());
    claims.insert("auth_time".into(), secs(input.auth_time).into());
    claims.insert("amr".into(), serde_json::json!(input.amr));
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    claims
}

/// Starts the job that deletes expired requests, codes and tokens (hourly).
pub fn spawn_cleanup(state: &AppState) -> JoinHandle<()> {
    let db = state.db.clone();
    let clock = state.clock.clone();
    tokio::spawn(async move {
        loop {
            let result = async {
                let mut tx = db.begin().await?;
                store::delete_expired(&mut tx, clock.now_ms()).await?;
                tx.commit().await
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "OIDC cleanup failed");
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_follows_rfc_7636() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_s256_challenge(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(
            !pkce_matches(challenge, challenge),
            "the challenge is not a verifier"
        );
        assert!(!pkce_matches("short", challenge));
        assert!(!is_s256_challenge("plain-text-challenge"));
    }
}
