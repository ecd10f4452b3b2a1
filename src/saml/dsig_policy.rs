//! What XML Signature may ask of the verifier: the allow-lists of canonicalization methods,
//! reference transforms, signature and digest algorithms, and their enforcement inside xmlsec.
//!
//! A `ds:Reference` names the transforms the verifier runs over the referenced data while it
//! computes the digest, i.e. before the signature is known to be good. xmlsec applies whatever
//! it finds in its global transform registry (XSLT, XPath filters, XPointer, HMAC, ...), and
//! samael creates its signature contexts without restricting them. So [`harden`] rewrites that
//! registry, once, right after xmlsec's own initialisation: it keeps exactly the transforms
//! listed here. Every `ds:Transform`, `ds:CanonicalizationMethod`, `ds:SignatureMethod` and
//! `ds:DigestMethod` is resolved against that registry when xmlsec reads the signature, so a
//! URI outside the list fails there ("transform not found") before any transform is created or
//! run, whichever code path built the context. The ACS's outline check refuses the same URIs
//! earlier with a reason code ([`super::outline`]); this is the backstop that does not depend
//! on that check having seen what libxml2 sees.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

/// The enveloped-signature transform.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Canonicalization methods real IdPs use: exclusive C14N and C14N 1.0 / 1.1, each with and
/// without comments.
pub const CANONICALIZATION: &[&str] = &[
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
];

/// RSA signatures with SHA-256 or stronger, and the matching digests.
pub const STRONG_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// RSA-SHA1 and SHA-1: only for a connection whose admin explicitly allowed them.
pub const SHA1_ALGORITHMS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2000/09/xmldsig#sha1",
];

/// Whether `uri` may be a `ds:Transform` of a Reference.
pub fn transform_allowed(uri: &str) -> bool {
    uri == ENVELOPED || CANONICALIZATION.contains(&uri)
}

/// Whether `uri` may be a SignatureMethod or DigestMethod (never an HMAC).
pub fn algorithm_allowed(uri: &str, allow_sha1: bool) -> bool {
    STRONG_ALGORITHMS.contains(&uri) || (allow_sha1 && SHA1_ALGORITHMS.contains(&uri))
}

/// Every URI that stays in xmlsec's registry. SHA-1 stays registered because a connection may
/// allow it; the per-connection check above refuses it everywhere else.
fn registry_allow_list() -> impl Iterator<Item = &'static str> {
    std::iter::once(ENVELOPED)
        .chain(CANONICALIZATION.iter().copied())
        .chain(STRONG_ALGORITHMS.iter().copied())
        .chain(SHA1_ALGORITHMS.iter().copied())
}

/// `xmlSecTransformUsageAny`.
const USAGE_ANY: c_uint = 0xFFFF;

#[link(name = "xmlsec1")]
unsafe extern "C" {
    fn xmlSecTransformIdsGet() -> *mut c_void;
    fn xmlSecTransformIdListFindByHref(
        list: *mut c_void,
        href: *const u8,
        usage: c_uint,
    ) -> *mut c_void;
    fn xmlSecPtrListEmpty(list: *mut c_void);
    fn xmlSecPtrListAdd(list: *mut c_void, item: *mut c_void) -> c_int;
    fn xmlSecErrorsSetCallback(callback: ErrorsCallback);
}

/// `xmlSecErrorsCallback`: file, line, function, error object, error subject, reason, message.
type ErrorsCallback = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *const c_char,
    *const c_char,
    *const c_char,
    c_int,
    *const c_char,
);

/// xmlsec's reports of why a check failed, as `debug` events of the `xmlsec` target instead of
/// xmlsec's default, a raw line on standard error for every failed signature. The refusal itself
/// is the ACS's reason code and audit event; this is the detail behind it. The texts go out as
/// escaped (`Debug`) values: they can hold element names from the response.
unsafe extern "C" fn xmlsec_error(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    object: *const c_char,
    subject: *const c_char,
    reason: c_int,
    message: *const c_char,
) {
    // SAFETY: xmlsec passes NUL-terminated strings or null, valid for the call.
    let text = |p: *const c_char| {
        if p.is_null() {
            Default::default()
        } else {
            unsafe { CStr::from_ptr(p) }.to_string_lossy()
        }
    };
    tracing::debug!(
        target: "xmlsec",
        func = ?text(func),
        object = ?text(object),
        subject = ?text(subject),
        reason,
        detail = ?text(message),
        "xmlsec reported an error"
    );
}

/// Why xmlsec could not be restricted; verification is then refused, never run unrestricted.
#[derive(Clone, Debug, thiserror::Error)]
#[error("xmlsec's transform registry could not be restricted: {0}")]
pub struct HardenError(&'static str);

/// Restricts xmlsec's transform registry to the allow-lists, once per process. Safe to call
/// from every verification: after the first call it only reads the stored outcome.
pub fn harden() -> Result<(), HardenError> {
    static OUTCOME: OnceLock<Result<(), HardenError>> = OnceLock::new();
    OUTCOME.get_or_init(restrict_registry).clone()
}

/// Whether xmlsec still knows `uri` as a transform (after [`harden`]: only allowed ones).
pub fn registered(uri: &str) -> bool {
    let Ok(href) = CString::new(uri) else {
        return false;
    };
    // SAFETY: the registry is a static list owned by xmlsec, initialised by `init_xmlsec`;
    // the look-up only reads it.
    unsafe {
        !xmlSecTransformIdListFindByHref(xmlSecTransformIdsGet(), href.as_ptr().cast(), USAGE_ANY)
            .is_null()
    }
}

fn restrict_registry() -> Result<(), HardenError> {
    init_xmlsec()?;
    // SAFETY: runs once (OnceLock), after samael's one-time xmlsec initialisation and before
    // any verification of ours. The list holds pointers to static transform klasses, which
    // emptying the list does not free (the id list has no destructor).
    unsafe {
        let registry = xmlSecTransformIdsGet();
        if registry.is_null() {
            return Err(HardenError("no registry"));
        }
        let mut keep = Vec::new();
        for uri in registry_allow_list() {
            let href = CString::new(uri).map_err(|_| HardenError("bad URI"))?;
            let id = xmlSecTransformIdListFindByHref(registry, href.as_ptr().cast(), USAGE_ANY);
            if id.is_null() {
                return Err(HardenError("an allowed transform is not available"));
            }
            if !keep.contains(&id) {
                keep.push(id);
            }
        }
        xmlSecPtrListEmpty(registry);
        for id in keep {
            if xmlSecPtrListAdd(registry, id) < 0 {
                return Err(HardenError("re-adding a transform failed"));
            }
        }
        xmlSecErrorsSetCallback(xmlsec_error);
    }
    Ok(())
}

/// Makes samael initialise xmlsec (it does so once per process, behind its own lock, on the
/// first key load) by loading a throwaway certificate; the document holds no signature, so
/// nothing is verified.
fn init_xmlsec() -> Result<(), HardenError> {
    use samael::crypto::{CertificateDer, CryptoProvider, XmlSec};
    let der = throwaway_certificate().map_err(|_| HardenError("no certificate to load"))?;
    let _ = XmlSec::verify_signed_xml("<init/>", &CertificateDer::from(der), None);
    Ok(())
}

fn throwaway_certificate() -> Result<Vec<u8>, openssl::error::ErrorStack> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut builder = openssl::x509::X509::builder()?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(openssl::asn1::Asn1Time::days_from_now(0)?.as_ref())?;
    builder.set_not_after(openssl::asn1::Asn1Time::days_from_now(1)?.as_ref())?;
    builder.sign(&key, openssl::hash::MessageDigest::sha256())?;
    builder.build().to_der()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_keeps_only_the_allow_list() {
        harden().unwrap();
        for uri in registry_allow_list() {
            assert!(registered(uri), "{uri} stays available");
        }
        for refused in [
            "http://www.w3.org/TR/1999/REC-xslt-19991116",
            "http://www.w3.org/TR/1999/REC-xpath-19991116",
            "http://www.w3.org/2002/06/xmldsig-filter2",
            "http://www.w3.org/2000/09/xmldsig#base64",
            "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
        ] {
            assert!(!registered(refused), "{refused} is gone from xmlsec");
        }
    }

    #[test]
    fn xmlsec_reports_reach_the_log_not_standard_error() {
        harden().unwrap();
        let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let captured = captured.clone();
            move || CapturedLine(captured.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(writer)
            .finish();
        let signed = r##"<a ID="x"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#x"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/></ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AA==</ds:SignatureValue></ds:Signature></a>"##;
        let der = throwaway_certificate().unwrap();
        use samael::crypto::{CertificateDer, CryptoProvider, XmlSec};
        let outcome = tracing::subscriber::with_default(subscriber, || {
            XmlSec::verify_signed_xml(signed, &CertificateDer::from(der), None)
        });
        assert!(outcome.is_err(), "a signature by no key never verifies");
        let log = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
        assert!(log.contains("xmlsec reported an error"), "{log}");
        assert!(log.contains("xmlsec"), "{log}");
    }

    struct CapturedLine(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLine {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn allow_lists() {
        assert!(transform_allowed(ENVELOPED));
        assert!(transform_allowed("http://www.w3.org/2001/10/xml-exc-c14n#"));
        assert!(!transform_allowed(
            "http://www.w3.org/TR/1999/REC-xslt-19991116"
        ));
        assert!(algorithm_allowed(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            false
        ));
        assert!(!algorithm_allowed(
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            false
        ));
        assert!(algorithm_allowed(
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            true
        ));
        assert!(!algorithm_allowed(
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
            true
        ));
    }
}
