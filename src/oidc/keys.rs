//! The ID-token signing keys: RSA keys as PEM files in the certs folder, generated at first start
//! when absent. `oidc-signing-key.pem` signs; `oidc-signing-key.previous.pem`, kept after a
//! rotation, stays in the JWKS so tokens signed before the rotation still verify. A [`KeyRing`]
//! in the app state holds the parsed keys; it looks at the files' metadata on each use (never
//! reading or parsing them again unless they changed), so every server instance sharing the
//! folder follows a rotation at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::alg::rsassa::{RsassaJwsSigner, RsassaJwsVerifier};
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::{self, JwtPayload};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

/// File name of the current signing key.
pub const CURRENT: &str = "oidc-signing-key.pem";
/// File name of the previous signing key (after a rotation).
pub const PREVIOUS: &str = "oidc-signing-key.previous.pem";
const BITS: u32 = 2048;

/// A signing key and its key id (the JWK thumbprint, RFC 7638).
pub struct SigningKey {
    pub kid: String,
    key: PKey<Private>,
    signer: RsassaJwsSigner,
    verifier: RsassaJwsVerifier,
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn generate_pem() -> anyhow::Result<Vec<u8>> {
    let rsa = Rsa::generate(BITS)?;
    Ok(PKey::from_rsa(rsa)?.private_key_to_pem_pkcs8()?)
}

/// Creates the current key when it is absent.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    let current = path(dir, CURRENT);
    if !current.exists() {
        crate::secrets::write_new_file(&current, &generate_pem()?)?;
        tracing::info!(path = %current.display(), "generated the OIDC signing key");
    }
    Ok(())
}

/// Rotation: the current key becomes the previous one (the older previous key is dropped) and a
/// new key signs from now on. Returns the new key id.
pub fn rotate(dir: &Path) -> anyhow::Result<String> {
    ensure(dir)?;
    let fresh = generate_pem()?;
    let staged = path(dir, &format!(".{}.next", uuid::Uuid::new_v4().simple()));
    crate::secrets::write_new_file(&staged, &fresh)?;
    std::fs::rename(path(dir, CURRENT), path(dir, PREVIOUS))?;
    std::fs::rename(&staged, path(dir, CURRENT))?;
    Ok(load_file(&path(dir, CURRENT))?.kid)
}

fn load_file(file: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read(file)?;
    let key = PKey::private_key_from_pem(&pem)?;
    let rsa = key.rsa()?;
    let kid = thumbprint(&rsa.n().to_vec(), &rsa.e().to_vec());
    let signer = RS256.signer_from_pem(&pem)?;
    let verifier = RS256.verifier_from_pem(key.public_key_to_pem()?)?;
    Ok(SigningKey {
        kid,
        key,
        signer,
        verifier,
    })
}

/// RFC 7638 thumbprint of an RSA public key.
fn thumbprint(n: &[u8], e: &[u8]) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e),
        URL_SAFE_NO_PAD.encode(n)
    );
    URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()))
}

/// The current key (generated first if absent).
pub fn current(dir: &Path) -> anyhow::Result<SigningKey> {
    ensure(dir)?;
    load_file(&path(dir, CURRENT))
}

/// The current key and, when there is one, the previous key.
pub fn all(dir: &Path) -> anyhow::Result<Vec<SigningKey>> {
    let mut keys = vec![current(dir)?];
    let previous = path(dir, PREVIOUS);
    if previous.exists() {
        keys.push(load_file(&previous)?);
    }
    Ok(keys)
}

/// The signing keys, loaded once and reloaded when the files change (a rotation by this or
/// another instance). Cheap to share: it lives in the app state behind an `Arc`.
pub struct KeyRing {
    dir: PathBuf,
    loaded: RwLock<Option<Loaded>>,
}

struct Loaded {
    stamp: Stamp,
    keys: Arc<Vec<SigningKey>>,
}

type Stamp = crate::secrets::FileStamp;

fn stamp(dir: &Path) -> Stamp {
    crate::secrets::file_stamp(&[path(dir, CURRENT), path(dir, PREVIOUS)])
}

impl KeyRing {
    pub fn new(dir: &Path) -> KeyRing {
        KeyRing {
            dir: dir.to_path_buf(),
            loaded: RwLock::new(None),
        }
    }

    /// The current key first, then the previous one when there is one.
    pub fn keys(&self) -> anyhow::Result<Arc<Vec<SigningKey>>> {
        let now = stamp(&self.dir);
        if let Ok(guard) = self.loaded.read()
            && let Some(loaded) = guard.as_ref()
            && loaded.stamp == now
            && now[0].is_some()
        {
            return Ok(loaded.keys.clone());
        }
        let keys = Arc::new(all(&self.dir)?);
        let stamp = stamp(&self.dir);
        if let Ok(mut guard) = self.loaded.write() {
            *guard = Some(Loaded {
                stamp,
                keys: keys.clone(),
            });
        }
        Ok(keys)
    }

    /// The JSON Web Key Set of the public halves.
    pub fn jwks(&self) -> anyhow::Result<serde_json::Value> {
        let keys = self
            .keys()?
            .iter()
            .map(|k| {
                let rsa = k.key.rsa()?;
                Ok(serde_json::json!({
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": k.kid,
                    "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
                    "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
                }))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(serde_json::json!({ "keys": keys }))
    }

    /// Signs `claims` as a JWT with the current key (RS256, `kid` in the header).
    pub fn sign(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<String> {
        self.sign_typed(claims, "JWT")
    }

    /// [`KeyRing::sign`] with an explicit `typ` header (`logout+jwt` for logout tokens).
    pub fn sign_typed(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
    ) -> anyhow::Result<String> {
        let keys = self.keys()?;
        let key = keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no OIDC signing key"))?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(key.kid.clone());
        let payload = JwtPayload::from_map(claims)?;
        Ok(jwt::encode_with_signer(&payload, &header, &key.signer)?)
    }

    /// The claims of a JWT this server signed (with the current or previous key), whatever its
    /// expiry; `None` when the signature does not verify.
    pub fn verify_own(
        &self,
        token: &str,
    ) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
        for key in self.keys()?.iter() {
            if let Ok((payload, _)) = jwt::decode_with_verifier(token, &key.verifier) {
                return Ok(Some(payload.claims_set().clone()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_rotated_and_all_listed() {
        let dir = tempfile_dir();
        ensure(&dir).unwrap();
        let first = current(&dir).unwrap().kid;
        ensure(&dir).unwrap();
        assert_eq!(current(&dir).unwrap().kid, first, "an existing key is kept");
        let ring = KeyRing::new(&dir);
        let token = ring
            .sign(serde_json::json!({"sub": "x"}).as_object().unwrap().clone())
            .unwrap();
        let second = rotate(&dir).unwrap();
        assert_ne!(first, second);
        let jwks = ring.jwks().unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, vec![second.as_str(), first.as_str()]);
        assert_eq!(
            ring.verify_own(&token).unwrap().unwrap()["sub"],
            "x",
            "signed before the rotation"
        );
        rotate(&dir).unwrap();
        assert!(
            ring.verify_own(&token).unwrap().is_none(),
            "two rotations later the key is gone"
        );
        assert!(ring.verify_own("not.a.jwt").unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("np-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
