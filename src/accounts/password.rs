//! Password hashing with argon2id. Hashing costs tens of milliseconds of CPU, so it runs on the
//! blocking pool, never on the async workers.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};

/// Hashing or verifying could not run.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password to a PHC string (`$argon2id$...`).
pub async fn hash(password: &str) -> Result<String, HashError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Whether `password` matches the stored PHC string. A malformed stored hash is an error.
pub async fn verify(password: &str, stored: &str) -> Result<bool, HashError> {
    let password = password.to_string();
    let stored = stored.to_string();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| HashError(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| HashError(e.to_string()))?
}

/// Spends the time of one verification without a stored hash (unknown email).
pub async fn burn(password: &str) -> Result<(), HashError> {
    hash(password).await.map(|_| ())
}
