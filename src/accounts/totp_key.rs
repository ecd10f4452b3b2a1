//! The key that seals TOTP secrets at rest. `certs/totp-secret-key` holds 32 random bytes
//! (base64), generated at first use when absent, like the other keys in that folder. A secret is
//! stored as `v1:` + base64(nonce ‖ ciphertext ‖ tag) of AES-256-GCM with a fresh 96-bit nonce and
//! the account id as associated data, so a copy of the database alone reveals no secret and a
//! sealed value moved to another account's row does not open. Values stored before sealing
//! (plain base32) are read as they are until [`TotpKey`]'s owner seals them at start-up
//! (`sign_in::store::seal_plaintext_totp`).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

use crate::ids::AccountId;

/// File name of the key in the certs folder.
pub const FILE: &str = "totp-secret-key";
/// Prefix of a sealed value.
const SEALED: &str = "v1:";
const NONCE: usize = 12;
const TAG: usize = 16;

/// The sealing key, loaded from (or created in) the certs folder on first use and kept.
pub struct TotpKey {
    path: PathBuf,
    key: RwLock<Option<[u8; 32]>>,
}

/// Why a stored secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the TOTP key file {0} cannot be used: {1}")]
    Key(String, String),
    #[error("a stored TOTP secret does not open with this key (another key, or a changed row)")]
    Open,
}

impl TotpKey {
    pub fn new(certs_dir: &Path) -> TotpKey {
        TotpKey {
            path: certs_dir.join(FILE),
            key: RwLock::new(None),
        }
    }

    fn key(&self) -> Result<[u8; 32], SealError> {
        if let Ok(guard) = self.key.read()
            && let Some(key) = *guard
        {
            return Ok(key);
        }
        let fail = |e: &dyn std::fmt::Display| {
            SealError::Key(self.path.display().to_string(), e.to_string())
        };
        if !self.path.exists() {
            let mut fresh = [0u8; 32];
            openssl::rand::rand_bytes(&mut fresh).map_err(|e| fail(&e))?;
            let text = format!("{}\n", STANDARD.encode(fresh));
            crate::secrets::write_new_file(&self.path, text.as_bytes()).map_err(|e| fail(&e))?;
            tracing::info!(path = %self.path.display(), "generated the TOTP secret key");
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| fail(&e))?;
        let bytes = STANDARD.decode(text.trim()).map_err(|e| fail(&e))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| fail(&"it must hold 32 bytes in base64"))?;
        if let Ok(mut guard) = self.key.write() {
            *guard = Some(key);
        }
        Ok(key)
    }

    /// The stored form of `secret` for `account`.
    pub fn seal(&self, account: AccountId, secret: &str) -> Result<String, SealError> {
        let key = self.key()?;
        let mut nonce = [0u8; NONCE];
        openssl::rand::rand_bytes(&mut nonce).map_err(|_| SealError::Open)?;
        let mut tag = [0u8; TAG];
        let aad = account.to_string();
        let sealed = encrypt_aead(
            Cipher::aes_256_gcm(),
            &key,
            Some(&nonce),
            aad.as_bytes(),
            secret.as_bytes(),
            &mut tag,
        )
        .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&tag);
        Ok(format!("{SEALED}{}", STANDARD.encode(out)))
    }

    /// The secret in `stored` (sealed, or plain from before sealing).
    pub fn open(&self, account: AccountId, stored: &str) -> Result<String, SealError> {
        let Some(body) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_string());
        };
        let key = self.key()?;
        let bytes = STANDARD.decode(body).map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE + TAG {
            return Err(SealError::Open);
        }
        let (nonce, rest) = bytes.split_at(NONCE);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG);
        let aad = account.to_string();
        let plain = decrypt_aead(
            Cipher::aes_256_gcm(),
            &key,
            Some(nonce),
            aad.as_bytes(),
            ciphertext,
            tag,
        )
        .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

/// Whether `stored` is a sealed value (not a secret from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_account() {
        let dir = tempfile::tempdir().unwrap();
        let key = TotpKey::new(dir.path());
        let ada = AccountId::new();
        let sealed = key.seal(ada, "JBSWY3DPEHPK3PXP").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(
            sealed,
            key.seal(ada, "JBSWY3DPEHPK3PXP").unwrap(),
            "fresh nonce"
        );
        assert_eq!(key.open(ada, &sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(
            key.open(AccountId::new(), &sealed).is_err(),
            "bound to the account"
        );
        let mut bent = sealed.clone().into_bytes();
        let last = bent.len() - 3;
        bent[last] = if bent[last] == b'A' { b'B' } else { b'A' };
        assert!(key.open(ada, &String::from_utf8(bent).unwrap()).is_err());
        // The same folder gives the same key (another instance, a restart); another does not.
        assert_eq!(
            TotpKey::new(dir.path()).open(ada, &sealed).unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
        let other = tempfile::tempdir().unwrap();
        assert!(TotpKey::new(other.path()).open(ada, &sealed).is_err());
        assert_eq!(
            key.open(ada, "JBSWY3DPEHPK3PXP").unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
    }
}
