//! Reading SAML with libxml2, the parser xmlsec verifies with: a strict parse (no recovery,
//! no network, no entity substitution) and the few tree helpers the ACS's readers share.

use libxml::parser::{Parser, ParserOptions};
use libxml::readonly::RoNode;
use libxml::tree::Document;

pub const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Parses `xml` strictly; `None` when it is not well-formed.
pub fn parse_strict(xml: &str) -> Option<Document> {
    let options = ParserOptions {
        recover: false,
        no_net: true,
        ..ParserOptions::default()
    };
    Parser::default()
        .parse_string_with_options(xml, options)
        .ok()
}

/// The text of an element (its descendants' text, trimmed).
pub fn text(node: RoNode) -> String {
    node.get_content().trim().to_string()
}

/// Child elements named `name` in namespace `ns`.
pub fn children(node: RoNode, ns: &str, name: &str) -> Vec<RoNode> {
    child_elements(node).filter(|c| is(*c, ns, name)).collect()
}

/// The child elements of `node`, in document order (no list is built).
pub fn child_elements(node: RoNode) -> impl Iterator<Item = RoNode> {
    std::iter::successors(node.get_first_element_child(), |n| {
        n.get_next_element_sibling()
    })
}

/// The child nodes of `node` of any kind, in document order (no list is built).
pub fn child_nodes(node: RoNode) -> impl Iterator<Item = RoNode> {
    std::iter::successors(node.get_first_child(), |n| n.get_next_sibling())
}

/// The local name of `node` as libxml2 holds it, without a copy (empty when it has none, or
/// when it is not UTF-8, which a strict parse does not let through).
pub fn local_name(node: &RoNode) -> &str {
    // SAFETY: a node's name is a NUL-terminated string owned by its document (or the parser's
    // dictionary, which the document keeps), and every node read here belongs to a document
    // that outlives the borrow of the node.
    unsafe { borrowed((*node.node_ptr()).name) }.unwrap_or_default()
}

/// The namespace URI of `node`, without a copy.
pub fn namespace(node: &RoNode) -> Option<&str> {
    // SAFETY: as in `local_name`: the namespace and its URI belong to the node's document.
    unsafe {
        let ns = (*node.node_ptr()).ns;
        if ns.is_null() {
            return None;
        }
        borrowed((*ns).href)
    }
}

/// # Safety
/// `text` is null or a NUL-terminated string that lives at least as long as `'a`.
unsafe fn borrowed<'a>(text: *const u8) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    // SAFETY: given by the caller.
    let bytes = unsafe { std::ffi::CStr::from_ptr(text.cast()) }.to_bytes();
    std::str::from_utf8(bytes).ok()
}

pub fn is(node: RoNode, ns: &str, name: &str) -> bool {
    local_name(&node) == name && namespace(&node) == Some(ns)
}

pub fn child(node: RoNode, ns: &str, name: &str) -> Option<RoNode> {
    child_elements(node).find(|c| is(*c, ns, name))
}

pub trait NoNsProperty {
    fn get_property_no_ns(self, name: &str) -> Option<String>;
}

impl NoNsProperty for RoNode {
    /// An attribute without a namespace (`xmlGetNoNsProp`): `foo:ID` is not `ID`.
    fn get_property_no_ns(self, name: &str) -> Option<String> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: the node belongs to a live document; libxml2 returns a copy we free.
        unsafe {
            let value = libxml::bindings::xmlGetNoNsProp(self.node_ptr(), name.as_ptr().cast());
            if value.is_null() {
                return None;
            }
            let owned = std::ffi::CStr::from_ptr(value.cast())
                .to_string_lossy()
                .into_owned();
            libc_free(value.cast());
            Some(owned)
        }
    }
}

unsafe extern "C" {
    #[link_name = "free"]
    fn libc_free(ptr: *mut std::ffi::c_void);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed readers give what libxml2's copying ones give: local names without their
    /// prefix, namespaces as resolved (a default one, a prefixed one, none), children in order.
    #[test]
    fn names_and_namespaces_are_read_in_place() {
        let doc = parse_strict(concat!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><!-- c -->"#,
            r#"<Subject/>text<saml:NameID xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#,
            r#"<Bare xmlns=""/></Assertion></samlp:Response>"#,
        ))
        .unwrap();
        let root = doc.get_root_readonly().unwrap();
        assert_eq!(local_name(&root), "Response");
        assert_eq!(namespace(&root), Some(PROTOCOL));
        assert!(is(root, PROTOCOL, "Response"));
        assert!(!is(root, ASSERTION, "Response"));

        let assertion = child(root, ASSERTION, "Assertion").unwrap();
        let elements: Vec<_> = child_elements(assertion)
            .map(|n| {
                (
                    local_name(&n).to_string(),
                    namespace(&n).map(str::to_string),
                )
            })
            .collect();
        let expected = [
            ("Subject", Some(ASSERTION)),
            ("NameID", Some(ASSERTION)),
            ("Bare", None),
        ]
        .map(|(name, ns)| (name.to_string(), ns.map(str::to_string)));
        assert_eq!(elements, expected);
        for n in child_elements(assertion) {
            assert_eq!(local_name(&n), n.get_name());
            assert_eq!(
                namespace(&n).map(str::to_string),
                n.get_namespace().map(|ns| ns.get_href())
            );
        }
        assert_eq!(child_nodes(assertion).count(), 5);
        assert_eq!(children(assertion, ASSERTION, "NameID").len(), 1);
        assert!(child(assertion, ASSERTION, "Bare").is_none());
    }
}
