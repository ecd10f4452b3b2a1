//! Encrypted assertions (XML Encryption 1.1): the content key is unwrapped with RSA-OAEP by one
//! of the SP's encryption keys (two during a rollover), the assertion decrypted with AES-GCM
//! (128/256) or AES-CBC (128/192/256). RSA PKCS#1 v1.5 key transport is refused (padding
//! oracles). The plaintext must be one standalone `saml:Assertion` document; whether it must be
//! signed itself is the caller's rule.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libxml::readonly::RoNode;
use openssl::md::Md;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};

use super::acs::{Reason, Rejection};
use super::xml::{ASSERTION, DSIG, NoNsProperty, child, children, is, text};

pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

/// Content encryption algorithms this SP decrypts (advertised in its metadata).
pub const CONTENT_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
];
/// Key transport algorithms this SP accepts (advertised in its metadata).
pub const KEY_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
];

fn refused(detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::DecryptionFailed, detail)
}

fn cipher_value(node: RoNode) -> Result<Vec<u8>, Rejection> {
    let value = child(node, XENC, "CipherData")
        .and_then(|d| child(d, XENC, "CipherValue"))
        .map(text)
        .ok_or_else(|| refused("no CipherValue"))?;
    let compact: String = value.split_whitespace().collect();
    STANDARD
        .decode(compact)
        .map_err(|_| refused("a CipherValue is not base64"))
}

fn algorithm(node: RoNode) -> String {
    child(node, XENC, "EncryptionMethod")
        .and_then(|m| m.get_property_no_ns("Algorithm"))
        .unwrap_or_default()
}

fn digest(uri: Option<String>) -> Result<&'static openssl::md::MdRef, Rejection> {
    match uri.as_deref() {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => Ok(Md::sha1()),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => Ok(Md::sha256()),
        Some("http://www.w3.org/2001/04/xmldsig-more#sha384") => Ok(Md::sha384()),
        Some("http://www.w3.org/2001/04/xmlenc#sha512") => Ok(Md::sha512()),
        Some(other) => Err(refused(format!("unsupported OAEP digest {other}"))),
    }
}

fn mgf(uri: Option<String>) -> Result<&'static openssl::md::MdRef, Rejection> {
    match uri.as_deref() {
        None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => Ok(Md::sha1()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => Ok(Md::sha256()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha384") => Ok(Md::sha384()),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => Ok(Md::sha512()),
        Some(other) => Err(refused(format!("unsupported OAEP mask function {other}"))),
    }
}

/// Unwraps the content key of `encrypted_key` with `key`.
fn unwrap_key(encrypted_key: RoNode, key: &PKey<Private>) -> Result<Vec<u8>, Rejection> {
    let method = child(encrypted_key, XENC, "EncryptionMethod")
        .ok_or_else(|| refused("an EncryptedKey names no method"))?;
    let uri = method.get_property_no_ns("Algorithm").unwrap_or_default();
    let digest_uri =
        child(method, DSIG, "DigestMethod").and_then(|d| d.get_property_no_ns("Algorithm"));
    let (oaep_md, mgf_md) = match uri.as_str() {
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p" => (digest(digest_uri)?, Md::sha1()),
        "http://www.w3.org/2009/xmlenc11#rsa-oaep" => (
            digest(digest_uri)?,
            mgf(child(method, XENC11, "MGF").and_then(|m| m.get_property_no_ns("Algorithm")))?,
        ),
        "http://www.w3.org/2001/04/xmlenc#rsa-1_5" => {
            return Err(refused(
                "RSA PKCS#1 v1.5 key transport is refused; configure RSA-OAEP at the IdP",
            ));
        }
        other => return Err(refused(format!("unsupported key transport {other:?}"))),
    };
    let wrapped = cipher_value(encrypted_key)?;
    let fail = |_| refused("the content key could not be unwrapped with the SP's key");
    let mut ctx = PkeyCtx::new(key).map_err(fail)?;
    ctx.decrypt_init().map_err(fail)?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(fail)?;
    ctx.set_rsa_oaep_md(oaep_md).map_err(fail)?;
    ctx.set_rsa_mgf1_md(mgf_md).map_err(fail)?;
    let mut out = Vec::new();
    ctx.decrypt_to_vec(&wrapped, &mut out).map_err(fail)?;
    Ok(out)
}

/// Decrypts content encrypted with `uri` under `key`.
fn decrypt_content(uri: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Rejection> {
    let fail = |_| refused("the assertion could not be decrypted");
    let gcm = match uri {
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => Some(Cipher::aes_128_gcm()),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => Some(Cipher::aes_256_gcm()),
        _ => None,
    };
    if let Some(cipher) = gcm {
        // IV (12 bytes) || ciphertext || tag (16 bytes).
        if data.len() < 28 || key.len() != cipher.key_len() {
            return Err(refused("the GCM data or key has the wrong length"));
        }
        let (iv, rest) = data.split_at(12);
        let (ciphertext, tag) = rest.split_at(rest.len() - 16);
        return openssl::symm::decrypt_aead(cipher, key, Some(iv), &[], ciphertext, tag)
            .map_err(fail);
    }
    let cipher = match uri {
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => Cipher::aes_128_cbc(),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => Cipher::aes_192_cbc(),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => Cipher::aes_256_cbc(),
        other => return Err(refused(format!("unsupported content encryption {other:?}"))),
    };
    if data.len() < 32 || !data.len().is_multiple_of(16) || key.len() != cipher.key_len() {
        return Err(refused("the CBC data or key has the wrong length"));
    }
    let (iv, ciphertext) = data.split_at(16);
    let mut crypter = Crypter::new(cipher, Mode::Decrypt, key, Some(iv)).map_err(fail)?;
    crypter.pad(false);
    let mut out = vec![0; ciphertext.len() + 16];
    let mut n = crypter.update(ciphertext, &mut out).map_err(fail)?;
    n += crypter.finalize(&mut out[n..]).map_err(fail)?;
    out.truncate(n);
    // XML Encryption padding: the last byte says how many bytes of padding there are.
    let pad = usize::from(*out.last().ok_or_else(|| refused("empty plaintext"))?);
    if pad == 0 || pad > 16 || pad > out.len() {
        return Err(refused("the assertion could not be decrypted"));
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

/// Decrypts the one `EncryptedAssertion` of the document `xml` with the first of `keys` that
/// unwraps its content key, and returns the assertion as a standalone document.
pub fn assertion(xml: &str, keys: &[&PKey<Private>]) -> Result<String, Rejection> {
    let unreadable = || refused("the encrypted assertion could not be read");
    let doc = super::xml::parse_strict(xml).ok_or_else(unreadable)?;
    let root = doc.get_root_readonly().ok_or_else(unreadable)?;
    let encrypted = if is(root, ASSERTION, "EncryptedAssertion") {
        root
    } else {
        match children(root, ASSERTION, "EncryptedAssertion").as_slice() {
            [one] => *one,
            _ => return Err(unreadable()),
        }
    };
    let data = child(encrypted, XENC, "EncryptedData").ok_or_else(unreadable)?;
    // The EncryptedKey sits in the EncryptedData's KeyInfo or beside the EncryptedData.
    let mut encrypted_keys: Vec<RoNode> = child(data, DSIG, "KeyInfo")
        .map(|k| children(k, XENC, "EncryptedKey"))
        .unwrap_or_default();
    encrypted_keys.extend(children(encrypted, XENC, "EncryptedKey"));
    if encrypted_keys.is_empty() {
        return Err(refused("the encrypted assertion carries no EncryptedKey"));
    }
    let mut last = refused("none of the SP's encryption keys unwraps the content key");
    let content_key = encrypted_keys
        .iter()
        .flat_map(|ek| keys.iter().map(move |k| (*ek, *k)))
        .find_map(|(ek, key)| match unwrap_key(ek, key) {
            Ok(k) => Some(k),
            Err(e) => {
                last = e;
                None
            }
        })
        .ok_or(last)?;
    let plaintext = decrypt_content(&algorithm(data), &content_key, &cipher_value(data)?)?;
    let plaintext = String::from_utf8(plaintext)
        .map_err(|_| refused("the decrypted assertion is not UTF-8"))?;
    let standalone = super::xml::parse_strict(&plaintext)
        .and_then(|d| d.get_root_readonly().map(|r| is(r, ASSERTION, "Assertion")))
        .unwrap_or(false);
    if !standalone {
        return Err(refused(
            "the decrypted content is not one Assertion element that stands alone",
        ));
    }
    Ok(plaintext)
}

/// Encrypts `assertion_xml` for `recipient` (RSA-OAEP, and AES-256-GCM or AES-128-CBC): the
/// mock IdP's side, for tests and integrators.
pub fn encrypt(
    assertion_xml: &str,
    recipient: &openssl::x509::X509,
    gcm: bool,
) -> anyhow::Result<String> {
    let (cipher, uri, iv_len) = if gcm {
        (Cipher::aes_256_gcm(), CONTENT_ALGORITHMS[1], 12)
    } else {
        (Cipher::aes_128_cbc(), CONTENT_ALGORITHMS[2], 16)
    };
    let mut key = vec![0u8; cipher.key_len()];
    let mut iv = vec![0u8; iv_len];
    openssl::rand::rand_bytes(&mut key)?;
    openssl::rand::rand_bytes(&mut iv)?;
    let mut data = iv.clone();
    if gcm {
        let mut tag = [0u8; 16];
        data.extend(openssl::symm::encrypt_aead(
            cipher,
            &key,
            Some(&iv),
            &[],
            assertion_xml.as_bytes(),
            &mut tag,
        )?);
        data.extend(tag);
    } else {
        let mut plain = assertion_xml.as_bytes().to_vec();
        let pad = 16 - plain.len() % 16;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let mut crypter = Crypter::new(cipher, Mode::Encrypt, &key, Some(&iv))?;
        crypter.pad(false);
        let mut out = vec![0; plain.len() + 16];
        let n = crypter.update(&plain, &mut out)?;
        let m = crypter.finalize(&mut out[n..])?;
        out.truncate(n + m);
        data.extend(out);
    }
    let public = recipient.public_key()?;
    let mut ctx = PkeyCtx::new(&public)?;
    ctx.encrypt_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
    ctx.set_rsa_oaep_md(Md::sha1())?;
    ctx.set_rsa_mgf1_md(Md::sha1())?;
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&key, &mut wrapped)?;
    Ok(format!(
        "<saml:EncryptedAssertion xmlns:saml=\"{ASSERTION}\"><xenc:EncryptedData xmlns:xenc=\"{XENC}\" Type=\"http://www.w3.org/2001/04/xmlenc#Element\">\
         <xenc:EncryptionMethod Algorithm=\"{uri}\"/><ds:KeyInfo xmlns:ds=\"{DSIG}\"><xenc:EncryptedKey>\
         <xenc:EncryptionMethod Algorithm=\"{}\"><ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/></xenc:EncryptionMethod>\
         <xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>\
         <xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>",
        KEY_ALGORITHMS[1],
        STANDARD.encode(wrapped),
        STANDARD.encode(data),
    ))
}
