//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1, 30-second steps, six
//! digits, as every authenticator app computes them. Secrets travel as RFC 4648 base32.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use rand::RngCore;

/// Length of a step in seconds.
pub const STEP_SECONDS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps before and after the current one that are still accepted (clock drift).
pub const DRIFT_STEPS: i64 = 1;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh 160-bit secret (the size RFC 4226 recommends), base32 without padding.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    base32_encode(&bytes)
}

/// RFC 4648 base32 without padding.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes base32, ignoring case, spaces and padding; `None` on any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = ALPHABET
            .iter()
            .position(|&a| a as char == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The time step that contains Unix millisecond `ms`.
pub fn step_at(ms: i64) -> i64 {
    ms.div_euclid(1000).div_euclid(STEP_SECONDS)
}

/// The code of `step` for the raw key (RFC 4226 dynamic truncation).
pub fn code_for_step(key: &[u8], step: i64) -> Option<String> {
    let pkey = PKey::hmac(key).ok()?;
    let mut signer = Signer::new(MessageDigest::sha1(), &pkey).ok()?;
    signer.update(&step.to_be_bytes()).ok()?;
    let mac = signer.sign_to_vec().ok()?;
    let offset = usize::from(mac.last()? & 0x0f);
    let slice = mac.get(offset..offset + 4)?;
    let value = u32::from_be_bytes([slice[0] & 0x7f, slice[1], slice[2], slice[3]]);
    Some(format!(
        "{:0width$}",
        value % 10u32.pow(DIGITS),
        width = DIGITS as usize
    ))
}

/// The current code of a base32 secret at Unix millisecond `ms` (what an authenticator shows).
pub fn code_at(secret: &str, ms: i64) -> Option<String> {
    code_for_step(&base32_decode(secret)?, step_at(ms))
}

/// The step whose code `code` is, within the allowed drift around `ms`, if any. Codes are
/// compared in constant time.
pub fn matching_step(secret: &str, code: &str, ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let key = base32_decode(secret)?;
    let now = step_at(ms);
    (now - DRIFT_STEPS..=now + DRIFT_STEPS).find(|&step| {
        code_for_step(&key, step).is_some_and(|expected| crate::secrets::same(&expected, &code))
    })
}

/// The `otpauth://` URI authenticator apps import (often as a QR code).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// The `otpauth://` URI as a QR code for authenticator apps to scan: an SVG image as a `data:`
/// URL (the page's Content-Security-Policy allows `data:` images, and an `<img>` carries its
/// text alternative). `None` only if the URI were too long for a QR code.
pub fn qr_data_url(uri: &str) -> Option<String> {
    use base64::Engine;
    use qrcode::render::svg;
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(image)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_image() {
        use base64::Engine;
        let uri = otpauth_uri("nulab-pass", "ada@example.com", "JBSWY3DPEHPK3PXP");
        let url = qr_data_url(&uri).unwrap();
        let b64 = url.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let svg = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
        // The same URI gives the same image; another gives another.
        assert_eq!(qr_data_url(&uri), Some(url.clone()));
        assert_ne!(qr_data_url(&format!("{uri}x")), Some(url));
    }

    #[test]
    fn rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890"; six-digit codes are the last
        // six digits of the eight-digit values given there.
        let secret = base32_encode(b"12345678901234567890");
        for (seconds, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(&secret, seconds * 1000).unwrap(), eight[2..]);
        }
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("not base32!").is_none());
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(base32_decode(&secret).unwrap().len(), 20);
    }

    #[test]
    fn drift_is_one_step_either_way() {
        let secret = new_secret();
        let now = 1_700_000_000_000;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(matching_step(&secret, &code, now), Some(step_at(now)));
        assert!(matching_step(&secret, &code, now + 30_000).is_some());
        assert!(matching_step(&secret, &code, now + 61_000).is_none());
        assert!(matching_step(&secret, "12345", now).is_none());
        assert!(matching_step(&secret, "abcdef", now).is_none());
    }
}
