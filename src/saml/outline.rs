//! The outline of a SAML response as libxml2 reads it: the structural gates the ACS applies
//! before any signature is trusted. The document is parsed by the same library, with the same
//! namespace resolution, that samael and xmlsec verify, only strictly (no recovery, no network,
//! no DTD), so the assertions counted here are the ones xmlsec sees: a namespace written with
//! character references, a split NameID or a second assertion cannot look different to this
//! check than to the verifier. What this module learns is only ever used to refuse.

use libxml::readonly::RoNode;
use libxml::tree::NodeType;

use super::acs::{Reason, Rejection};
use super::xml::{
    ASSERTION, DSIG, NoNsProperty, PROTOCOL, child, child_elements, child_nodes, is, local_name,
    namespace,
};
use super::{dsig_policy, metadata, xml};

/// Facts read from the document before any signature is trusted.
#[derive(Debug, Default)]
pub struct Scan {
    pub root_is_response: bool,
    pub response_id: Option<String>,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub status: Option<String>,
    pub assertions: usize,
    pub encrypted_assertions: usize,
    pub signatures: usize,
    /// SignatureMethod and DigestMethod URIs.
    pub algorithms: Vec<String>,
    pub embedded_certs: Vec<String>,
    /// Reference URIs of every signature.
    pub references: Vec<String>,
    pub audiences: Vec<String>,
    /// A NameID or AttributeValue holds more than one text node (comments, processing
    /// instructions, CDATA, elements or entity references split it).
    pub split_values: bool,
}

/// Parses `xml` strictly with libxml2 and reads its outline. Refuses DTDs, encodings other
/// than UTF-8, anything not well-formed, signature transforms outside the allow-list and
/// signatures that do not sign exactly the element they sit in.
pub fn scan(xml: &str) -> Result<Scan, Rejection> {
    if metadata::has_dtd(xml) {
        return Err(Rejection::new(
            Reason::DtdForbidden,
            "the document declares a DTD or entities",
        ));
    }
    check_encoding(xml)?;
    let malformed = || Rejection::new(Reason::Malformed, "not well-formed XML");
    let doc = xml::parse_strict(xml).ok_or_else(malformed)?;
    let root = doc.get_root_readonly().ok_or_else(malformed)?;
    let mut sibling = root.get_prev_sibling();
    while let Some(node) = sibling {
        if matches!(
            node.get_type(),
            Some(NodeType::DTDNode | NodeType::DocumentTypeNode)
        ) {
            return Err(Rejection::new(
                Reason::DtdForbidden,
                "the document declares a DTD",
            ));
        }
        sibling = node.get_prev_sibling();
    }
    let mut scan = Scan {
        root_is_response: is(root, PROTOCOL, "Response"),
        response_id: root.get_property_no_ns("ID"),
        destination: root.get_property_no_ns("Destination"),
        in_response_to: root.get_property_no_ns("InResponseTo"),
        status: child(root, PROTOCOL, "Status")
            .and_then(|s| child(s, PROTOCOL, "StatusCode"))
            .and_then(|c| c.get_property_no_ns("Value")),
        ..Scan::default()
    };
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        visit(node, root, &mut scan)?;
        stack.extend(child_elements(node));
    }
    Ok(scan)
}

/// Only UTF-8: another encoding would be decoded by libxml2 from bytes that every other reader
/// of this request sees as UTF-8 text.
fn check_encoding(xml: &str) -> Result<(), Rejection> {
    let refuse = |what: &str| {
        Err(Rejection::new(
            Reason::Malformed,
            format!("{what}; only UTF-8 is accepted"),
        ))
    };
    if xml.contains('\0') {
        return refuse("the document contains NUL bytes (UTF-16 or UTF-32)");
    }
    let body = xml.trim_start_matches('\u{feff}');
    if let Some(decl) = body
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split("?>").next())
        && let Some(at) = decl.find("encoding")
    {
        let value: String = decl[at + "encoding".len()..]
            .trim_start()
            .trim_start_matches('=')
            .trim_start()
            .chars()
            .skip(1)
            .take_while(|c| *c != '"' && *c != '\'')
            .collect();
        if !value.eq_ignore_ascii_case("utf-8") {
            return refuse("the document declares another encoding");
        }
    }
    Ok(())
}

fn visit(node: RoNode, root: RoNode, scan: &mut Scan) -> Result<(), Rejection> {
    if id_attributes(node) > 1 {
        return Err(Rejection::new(
            Reason::Wrapped,
            format!("<{}> carries more than one ID attribute", node.get_name()),
        ));
    }
    // Canonicalization drops comments, and readers differ on processing instructions: neither
    // has a place anywhere in a response (NameID and AttributeValue say so with their own code).
    let name = local_name(&node);
    let value = matches!(name, "NameID" | "AttributeValue");
    if !value
        && child_nodes(node)
            .any(|c| matches!(c.get_type(), Some(NodeType::CommentNode | NodeType::PiNode)))
    {
        return Err(Rejection::new(
            Reason::Malformed,
            format!(
                "<{}> contains a comment or processing instruction",
                node.get_name()
            ),
        ));
    }
    // A relative namespace URI is resolved differently by different readers (XML Namespaces
    // 1.0 deprecates it): every declared namespace must be an absolute URI.
    if let Some(relative) = node
        .get_namespace_declarations()
        .into_iter()
        .map(|ns| ns.get_href())
        .find(|href| !href.is_empty() && !href.contains(':'))
    {
        return Err(Rejection::new(
            Reason::Malformed,
            format!("the namespace {relative:?} is not an absolute URI"),
        ));
    }
    match (namespace(&node), name) {
        (Some(ASSERTION), "Assertion") => scan.assertions += 1,
        (Some(ASSERTION), "EncryptedAssertion") => scan.encrypted_assertions += 1,
        (Some(ASSERTION), "Audience") => scan.audiences.push(node.get_content().trim().into()),
        (Some(ASSERTION), "NameID" | "AttributeValue") => {
            scan.split_values |= is_split(node);
        }
        (Some(DSIG), "Signature") => {
            scan.signatures += 1;
            signature(node, root, scan)?;
        }
        (Some(DSIG), "Transform" | "CanonicalizationMethod") => {
            let uri = node.get_property_no_ns("Algorithm").unwrap_or_default();
            if !dsig_policy::transform_allowed(&uri) {
                return Err(Rejection::new(
                    Reason::TransformNotAllowed,
                    format!("a signature asks for the transform {uri:?}, which is not allowed"),
                ));
            }
        }
        // Only the signature's own methods: a DigestMethod in an EncryptedKey's method is the
        // OAEP digest, which decryption governs.
        (Some(DSIG), "SignatureMethod" | "DigestMethod")
            if node
                .get_parent()
                .is_some_and(|p| is(p, DSIG, "SignedInfo") || is(p, DSIG, "Reference")) =>
        {
            scan.algorithms
                .push(node.get_property_no_ns("Algorithm").unwrap_or_default());
        }
        (Some(DSIG), "X509Certificate") => scan
            .embedded_certs
            .push(node.get_content().split_whitespace().collect()),
        _ => {}
    }
    Ok(())
}

/// A signature may only sit directly in the Response or an Assertion and sign exactly that
/// element (one Reference, `#` + its ID): the shapes every IdP produces, and none of the
/// wrapping ones.
fn signature(sig: RoNode, root: RoNode, scan: &mut Scan) -> Result<(), Rejection> {
    let wrapped = |why: &str| Err(Rejection::new(Reason::Wrapped, why.to_string()));
    let Some(parent) = sig.get_parent() else {
        return wrapped("a signature without a parent element");
    };
    let signs_root = parent.to_hashable() == root.to_hashable();
    if !signs_root && !is(parent, ASSERTION, "Assertion") {
        return wrapped("a signature sits outside the Response and the Assertion");
    }
    let references: Vec<String> = child(sig, DSIG, "SignedInfo")
        .map(|info| {
            child_elements(info)
                .filter(|n| is(*n, DSIG, "Reference"))
                .map(|r| r.get_property_no_ns("URI").unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let expected = parent.get_property_no_ns("ID").map(|id| format!("#{id}"));
    match (references.as_slice(), expected) {
        ([uri], Some(expected)) if *uri == expected => {
            scan.references.push(uri.clone());
            Ok(())
        }
        _ => wrapped("a signature does not reference exactly the element it sits in"),
    }
}

/// A value is whole when it is at most one text node. An AttributeValue may instead hold only
/// elements (Shibboleth's `eduPersonTargetedID` holds a NameID, itself checked as a NameID).
/// Comments, processing instructions, CDATA and entity references split any value.
fn is_split(node: RoNode) -> bool {
    let children = node.get_child_nodes();
    let kind = |c: &RoNode| c.get_type();
    let only_elements = local_name(&node) == "AttributeValue"
        && children
            .iter()
            .any(|c| kind(c) == Some(NodeType::ElementNode))
        && children.iter().all(|c| match kind(c) {
            Some(NodeType::ElementNode) => true,
            Some(NodeType::TextNode) => c.get_content().trim().is_empty(),
            _ => false,
        });
    if only_elements {
        return false;
    }
    children.len() > 1 || children.iter().any(|c| kind(c) != Some(NodeType::TextNode))
}

/// How many attributes are named `ID` in any namespace (attribute pollution).
fn id_attributes(node: RoNode) -> usize {
    let mut count = 0;
    // SAFETY: reads the attribute list of an element of a document that outlives this call.
    unsafe {
        let mut attr = (*node.node_ptr()).properties;
        while !attr.is_null() {
            if std::ffi::CStr::from_ptr((*attr).name.cast()).to_bytes() == b"ID" {
                count += 1;
            }
            attr = (*attr).next;
        }
    }
    count
}
