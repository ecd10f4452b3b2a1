//! The IdP certificates' public keys as xmlsec verifies with them, loaded once per process:
//! loading a key from a certificate runs OpenSSL 3's decoders, which cost about twice the
//! signature check itself (docs/performance.md, "Keys loaded once").

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{CertificateDer, VerificationKey};

use super::metadata::Certificate;

/// Most certificates whose keys are kept loaded; past it the keys start again empty (memory
/// stays bounded).
const MAX_KEYS: usize = 10_000;

/// The keys of the certificates this process has verified with, by the certificate's base64
/// DER, shared by every connection and request that names the same certificate. Keyed by the
/// certificate's own bytes, so a changed certificate is a new entry and an entry never needs
/// invalidating.
static KEYS: LazyLock<Mutex<HashMap<String, Arc<VerificationKey>>>> =
    LazyLock::new(Default::default);

/// The loaded key of `certificate`, loading it on first use; `None` when it cannot be loaded.
pub fn key_of(certificate: &Certificate) -> Option<Arc<VerificationKey>> {
    let cached = KEYS
        .lock()
        .ok()
        .and_then(|keys| keys.get(&certificate.der_base64).cloned());
    if cached.is_some() {
        return cached;
    }
    let der = STANDARD.decode(&certificate.der_base64).ok()?;
    let key = Arc::new(VerificationKey::from_certificate(&CertificateDer::from(der)).ok()?);
    if let Ok(mut keys) = KEYS.lock() {
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(certificate.der_base64.clone(), key.clone());
    }
    Some(key)
}
