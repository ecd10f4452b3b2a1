//! The demo product's OpenID Connect client: what any product does to sign its users in through
//! nulab-pass (the README's worked example follows this code). Discovery, an authorization
//! request with PKCE (S256), `state` and `nonce`, the token call with the product's secret
//! (`client_secret_basic`), and the ID token's checks: RS256 signature by a key of the JWKS,
//! `iss`, `aud`, `exp` and `nonce`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::RS256;
use josekit::jwt;
use serde::Deserialize;

/// What the product reads from `/.well-known/openid-configuration`.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: String,
}

/// A registered product: its id, its secret and its redirect URI.
#[derive(Clone)]
pub struct Client {
    pub discovery: Discovery,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    http: reqwest::Client,
}

/// What the browser's request carries until it comes back: kept by the product, never sent.
#[derive(Clone, Debug)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// The claims of a verified ID token that the demo shows.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Claims {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub org: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
}

/// The random values of one request: 256 bits each, URL-safe base64.
fn random() -> String {
    crate::secrets::new_token("")
}

/// The PKCE S256 challenge: BASE64URL(SHA-256(verifier)) (RFC 7636 §4.2).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let res = http.get(url).send().await?;
    anyhow::ensure!(
        res.status().is_success(),
        "GET {url}: HTTP {}",
        res.status()
    );
    Ok(serde_json::from_slice(&res.bytes().await?)?)
}

impl Client {
    /// Reads the provider's discovery document at `issuer`.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Discovery = get_json(&http, &url).await?;
        anyhow::ensure!(
            discovery.issuer == issuer,
            "the discovery document names another issuer"
        );
        Ok(Client {
            discovery,
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_uri: redirect_uri.to_string(),
            http,
        })
    }

    /// A new authorization request: where to send the browser, and what to keep until it
    /// comes back.
    pub fn authorization_request(&self) -> (String, Pending) {
        let pending = Pending {
            state: random(),
            nonce: random(),
            code_verifier: random(),
        };
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &code_challenge(&pending.code_verifier))
            .append_pair("code_challenge_method", "S256")
            .finish();
        (
            format!("{}?{query}", self.discovery.authorization_endpoint),
            pending,
        )
    }

    /// Exchanges the code for tokens and returns the verified ID token's claims and the raw
    /// ID token (kept for the sign-out request's `id_token_hint`).
    pub async fn finish(&self, code: &str, pending: &Pending) -> anyhow::Result<(Claims, String)> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &pending.code_verifier),
        ];
        let res = self
            .http
            .post(&self.discovery.token_endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .send()
            .await?;
        let status = res.status();
        let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)?;
        anyhow::ensure!(
            status.is_success(),
            "the token endpoint answered {status}: {body}"
        );
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the token response has no id_token"))?;
        let claims = self.verify_id_token(id_token, &pending.nonce).await?;
        Ok((claims, id_token.to_string()))
    }

    /// Fetches the JWKS and checks the ID token with it ([`check_id_token`]).
    pub async fn verify_id_token(&self, id_token: &str, nonce: &str) -> anyhow::Result<Claims> {
        let jwks: serde_json::Value = get_json(&self.http, &self.discovery.jwks_uri).await?;
        let expected = Expected {
            issuer: &self.discovery.issuer,
            client_id: &self.client_id,
            nonce,
        };
        check_id_token(id_token, &jwks, &expected, std::time::SystemTime::now())
    }

    /// RP-initiated sign-out: ends the sign-in at nulab-pass, then back to `after`.
    pub fn end_session_url(&self, id_token: &str, after: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &self.client_id)
            .append_pair("post_logout_redirect_uri", after)
            .finish();
        format!("{}?{query}", self.discovery.end_session_endpoint)
    }
}

/// What an ID token must say to be this product's answer to this browser's request.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// The ID token checks of OpenID Connect Core §3.1.3.7: the RS256 signature by the key of `jwks`
/// that the header's `kid` names, then `iss`, `aud`, `exp` (at `now`) and `nonce`.
pub fn check_id_token(
    id_token: &str,
    jwks: &serde_json::Value,
    expected: &Expected<'_>,
    now: std::time::SystemTime,
) -> anyhow::Result<Claims> {
    let header = jwt::decode_header(id_token)?;
    let kid = header
        .claim("kid")
        .and_then(|k| k.as_str())
        .ok_or_else(|| anyhow::anyhow!("the ID token names no key"))?;
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| anyhow::anyhow!("no key {kid} in the JWKS"))?;
    let jwk = Jwk::from_bytes(serde_json::to_vec(key)?)?;
    // The verifier is RS256's: a token whose header names another algorithm ("none", HS256) is
    // refused before any signature is looked at.
    let verifier = RS256.verifier_from_jwk(&jwk)?;
    let (payload, _) = jwt::decode_with_verifier(id_token, &verifier)?;
    anyhow::ensure!(
        payload.issuer() == Some(expected.issuer),
        "the ID token's issuer is not this provider"
    );
    let audience = payload.audience().unwrap_or_default();
    anyhow::ensure!(
        audience.contains(&expected.client_id),
        "the ID token is for another product"
    );
    anyhow::ensure!(
        payload.expires_at().is_some_and(|exp| exp > now),
        "the ID token has expired"
    );
    let nonce = payload.claim("nonce").and_then(|n| n.as_str());
    anyhow::ensure!(
        nonce == Some(expected.nonce),
        "the ID token answers another request (nonce)"
    );
    Ok(serde_json::from_value(serde_json::Value::Object(
        payload.into(),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::keys::{KeyRing, ensure};

    const ISS: &str = "http://127.0.0.1:8080";
    type Change = fn(&mut serde_json::Value);
    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    fn new_ring() -> (tempfile::TempDir, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path()).unwrap();
        let ring = KeyRing::new(dir.path());
        (dir, ring)
    }

    fn claims(
        change: impl FnOnce(&mut serde_json::Value),
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut c = serde_json::json!({
            "iss": ISS, "aud": "product-1", "sub": "acc-1", "email": "alice@acme.test",
            "org": "acme", "amr": ["saml"], "nonce": "n-1", "iat": NOW, "exp": NOW + 600,
        });
        change(&mut c);
        c.as_object().unwrap().clone()
    }

    fn check(token: &str, jwks: &serde_json::Value) -> anyhow::Result<Claims> {
        let expected = Expected {
            issuer: ISS,
            client_id: "product-1",
            nonce: "n-1",
        };
        check_id_token(token, jwks, &expected, at(NOW + 1))
    }

    #[test]
    fn a_good_id_token_passes_and_every_broken_one_is_refused() {
        let (_dir, ring) = new_ring();
        let jwks = ring.jwks().unwrap();
        let good = check(&ring.sign(claims(|_| {})).unwrap(), &jwks).unwrap();
        assert_eq!(
            (good.sub.as_str(), good.org.as_deref(), good.amr.as_slice()),
            ("acc-1", Some("acme"), &["saml".to_string()][..])
        );
        let broken: [(&str, Change); 5] = [
            ("another issuer", |c| c["iss"] = "http://evil.test".into()),
            ("another product", |c| c["aud"] = "product-2".into()),
            ("expired", |c| c["exp"] = NOW.into()),
            ("another nonce", |c| c["nonce"] = "n-2".into()),
            ("no nonce", |c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        ];
        for (why, change) in broken {
            let token = ring.sign(claims(change)).unwrap();
            assert!(check(&token, &jwks).is_err(), "{why} must be refused");
        }
    }

    #[test]
    fn a_forged_or_unsigned_id_token_is_refused() {
        let (_dir, ring) = new_ring();
        let jwks = ring.jwks().unwrap();
        let token = ring.sign(claims(|_| {})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Another payload under the real signature.
        let other = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims(|c| c["sub"] = "acc-2".into())).unwrap());
        assert!(check(&format!("{}.{other}.{}", parts[0], parts[2]), &jwks).is_err());
        // "alg": "none" with the real key id.
        let kid = jwks["keys"][0]["kid"].as_str().unwrap();
        let none =
            URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "none", "kid": kid}).to_string());
        assert!(check(&format!("{none}.{}.", parts[1]), &jwks).is_err());
        // Signed by a key the JWKS does not hold.
        let (_other_dir, stranger) = new_ring();
        assert!(check(&stranger.sign(claims(|_| {})).unwrap(), &jwks).is_err());
    }

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
