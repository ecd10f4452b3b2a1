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

/// A fresh random token of 256 bits ([`new_token`]) behind the time it was made (`now_ms`, Unix
/// milliseconds, as 12 hex digits) and a dot; stored under its [`token_key`].
pub fn new_timed_token(now_ms: i64) -> String {
    format!("{:012x}.{}", now_ms.max(0), new_token(""))
}

/// The stored key of a token: its hash ([`hash_token`]), behind the time part of one made by
/// [`new_timed_token`]. Only the whole token finds its row (the hash is of all of it), and rows
/// keyed by timed tokens are written in time order, at the end of their index rather than at a
/// random page of it (on SQLite a page a row saved; README: Performance). The time is no
/// secret: it says when the token was made.
pub fn token_key(token: &str) -> String {
    match token.split_once('.') {
        Some((time, _)) if time.len() == 12 && time.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{time}.{}", hash_token(token))
        }
        _ => hash_token(token),
    }
}

/// The stored form of a token: lowercase hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex(&openssl::sha::sha256(token.as_bytes()))
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`; infallible, over openssl's SHA-256.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&openssl::sha::sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = openssl::sha::Sha256::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = openssl::sha::Sha256::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.finish());
    outer.finish()
}

/// Lowercase hex of `bytes`, two digits a byte from a table (a sign-in writes four digests this
/// way; formatting each byte cost about 0.1 M instructions a sign-in).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
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

/// Writes `bytes` to `target` only if no file is there (two instances starting at once keep
/// whichever file was written first), readable by the owner only.
pub fn write_new_file(target: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    // A hard link never replaces an existing file, unlike a rename.
    let linked = std::fs::hard_link(&tmp, target);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value gives the two lowercase digits formatting gives, in order.
    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let formatted: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), formatted);
        assert_eq!(hex(&[]), "");
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

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
    fn timed_tokens_are_keyed_in_time_order_by_the_whole_token() {
        let early = new_timed_token(1_700_000_000_000);
        let late = new_timed_token(1_700_000_000_001);
        assert_eq!(early.len(), 12 + 1 + 43);
        assert!(early.starts_with("018bcfe56800."), "{early}");
        assert!(token_key(&late) > token_key(&early));
        assert_eq!(
            token_key(&early),
            format!("018bcfe56800.{}", hash_token(&early))
        );
        // Another token behind the same time has another key; so has the same random part
        // behind another time.
        let (time, random) = early.split_once('.').unwrap();
        assert_ne!(
            token_key(&new_timed_token(1_700_000_000_000)),
            token_key(&early)
        );
        assert_ne!(
            token_key(&format!("018bcfe56801.{random}")),
            token_key(&early)
        );
        assert_eq!(time, "018bcfe56800");
        // A token without a time part (or with anything else before a dot) is keyed by its
        // hash alone.
        let plain = new_token("");
        assert_eq!(token_key(&plain), hash_token(&plain));
        assert_eq!(token_key("not-a-time.x"), hash_token("not-a-time.x"));
    }

    #[test]
    fn same_compares_whole_values() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
