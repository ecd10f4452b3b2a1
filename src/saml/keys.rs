//! Keys and certificates: the service provider's signing and encryption pairs in the certs
//! folder (generated at first start when absent, reloaded when the files change), and
//! self-signed pairs for the mock IdP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::secrets::{FileStamp, file_stamp};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

/// A private key and its certificate.
#[derive(Clone)]
pub struct KeyPair {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl KeyPair {
    /// The certificate as base64 DER (the form metadata carries).
    pub fn cert_base64(&self) -> anyhow::Result<String> {
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD.encode(self.cert.to_der()?))
    }
}

/// A new RSA-2048 key with a self-signed SHA-256 certificate valid from `from_days_ago` days
/// ago for `days` days.
pub fn self_signed(common_name: &str, from_days_ago: u32, days: u32) -> anyhow::Result<KeyPair> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let start = now - i64::from(from_days_ago) * 86_400;
    let not_before = Asn1Time::from_unix(start)?;
    let not_after = Asn1Time::from_unix(start + i64::from(days) * 86_400)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(KeyPair {
        key,
        cert: builder.build(),
    })
}

/// Loads `<dir>/<stem>-key.pem` and `<dir>/<stem>-cert.pem`, creating both when absent.
pub fn load_or_create(dir: &Path, stem: &str, common_name: &str) -> anyhow::Result<KeyPair> {
    let key_path = dir.join(format!("{stem}-key.pem"));
    let cert_path = dir.join(format!("{stem}-cert.pem"));
    if key_path.exists() && cert_path.exists() {
        let key = PKey::private_key_from_pem(&std::fs::read(&key_path)?)?;
        let cert = X509::from_pem(&std::fs::read(&cert_path)?)?;
        return Ok(KeyPair { key, cert });
    }
    std::fs::create_dir_all(dir)?;
    let pair = self_signed(common_name, 1, 3650)?;
    write_private(&key_path, &pair.key.private_key_to_pem_pkcs8()?)?;
    std::fs::write(&cert_path, pair.cert.to_pem()?)?;
    tracing::info!(path = %key_path.display(), "generated a new key pair");
    Ok(pair)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(bytes)?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, bytes)?;
        Ok(())
    }
}

/// The service provider's keys: the signing pair (AuthnRequests, metadata) and the encryption
/// pairs (the current one, then the operator's next one during a rollover; both are published
/// in SP metadata and both decrypt).
pub struct SpKeys {
    pub signing: KeyPair,
    pub encryption: Vec<KeyPair>,
}

const SIGNING: &str = "sp-signing";
const ENCRYPTION: &str = "sp-encryption";
const ENCRYPTION_NEXT: &str = "sp-encryption-next";

/// The SP keys of a certs folder, loaded once (created when absent) and reloaded when the files
/// change. It lives in the app state.
pub struct SpKeyRing {
    dir: PathBuf,
    loaded: RwLock<Option<(FileStamp, Arc<SpKeys>)>>,
}

impl SpKeyRing {
    pub fn new(dir: &Path) -> SpKeyRing {
        SpKeyRing {
            dir: dir.to_path_buf(),
            loaded: RwLock::new(None),
        }
    }

    fn stamp(&self) -> FileStamp {
        let paths: Vec<PathBuf> = [SIGNING, ENCRYPTION, ENCRYPTION_NEXT]
            .iter()
            .flat_map(|stem| {
                ["key", "cert"].map(|part| self.dir.join(format!("{stem}-{part}.pem")))
            })
            .collect();
        file_stamp(&paths)
    }

    /// The keys as the files are now.
    pub fn keys(&self) -> anyhow::Result<Arc<SpKeys>> {
        let now = self.stamp();
        if let Ok(guard) = self.loaded.read()
            && let Some((stamp, keys)) = guard.as_ref()
            && *stamp == now
        {
            return Ok(keys.clone());
        }
        let mut encryption = vec![load_or_create(
            &self.dir,
            ENCRYPTION,
            "nulab-pass SAML service provider (encryption)",
        )?];
        if self.dir.join(format!("{ENCRYPTION_NEXT}-key.pem")).exists() {
            encryption.push(load_or_create(&self.dir, ENCRYPTION_NEXT, "")?);
        }
        let keys = Arc::new(SpKeys {
            signing: load_or_create(&self.dir, SIGNING, "nulab-pass SAML service provider")?,
            encryption,
        });
        if let Ok(mut guard) = self.loaded.write() {
            *guard = Some((self.stamp(), keys.clone()));
        }
        Ok(keys)
    }
}
