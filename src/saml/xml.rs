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
    node.get_child_elements()
        .into_iter()
        .filter(|c| is(*c, ns, name))
        .collect()
}

pub fn namespace(node: RoNode) -> Option<String> {
    node.get_namespace().map(|ns| ns.get_href())
}

pub fn is(node: RoNode, ns: &str, name: &str) -> bool {
    node.get_name() == name && namespace(node).as_deref() == Some(ns)
}

pub fn child(node: RoNode, ns: &str, name: &str) -> Option<RoNode> {
    node.get_child_elements()
        .into_iter()
        .find(|c| is(*c, ns, name))
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
