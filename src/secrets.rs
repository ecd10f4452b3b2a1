//! Random secrets and their stored form: tokens are shown once and kept only as SHA-256 hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// A fresh random token of 256 bits, URL-safe base64 without padding, behind `prefix`.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a token: lowercase hex SHA-256.
pub fn hash_token(token: &str) -> String {
    let digest = openssl::sha::sha256(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two secrets.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

/// What identifies the version of each key file in `paths` (inode, size, modification time;
/// `None` for a missing file): a key ring reloads when this changes, e.g. after a rotation by
/// this or another instance.
pub type FileStamp = Vec<Option<(u64, u64, i64, i64)>>;

/// The [`FileStamp`] of `paths` now.
pub fn file_stamp(paths: &[std::path::PathBuf]) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hash_stably() {
        let a = new_token("np_");
        let b = new_token("np_");
        assert!(a.starts_with("np_"));
        assert_eq!(a.len(), 3 + 43);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(hash_token("abc").len(), 64);
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
