//! Single Logout of the mock IdP, for tests and integrators: it builds signed LogoutRequests and
//! LogoutResponses (HTTP-Redirect, or an enveloped signature for HTTP-POST), answers this
//! service's LogoutRequests at `/slo`, and starts an IdP-initiated logout at `/logout`. Like the
//! rest of the mock it trusts whatever SP it is pointed at: test use only.

use std::io::Read;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::mock_idp::{MockIdp, esc, new_id, time};
use super::sp::redirect_message;
use super::xml::{ASSERTION, NoNsProperty, PROTOCOL, child, text};

const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

impl MockIdp {
    /// This mock with a SingleLogoutService at `url` (published in its metadata).
    pub fn with_slo(mut self, url: &str) -> MockIdp {
        self.slo_url = Some(url.to_string());
        self
    }

    /// A LogoutRequest for `name_id` to the SP's SLO URL `destination`; `signature` puts an
    /// enveloped-signature template after the Issuer (for [`MockIdp::sign`], HTTP-POST).
    pub fn logout_request_xml(
        &self,
        id: &str,
        destination: &str,
        name_id: &str,
        session_index: Option<&str>,
        signature: bool,
    ) -> String {
        let template = if signature {
            self.signature_template(id, super::mock_idp::Algorithm::RsaSha256)
        } else {
            String::new()
        };
        let index = session_index
            .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(i)))
            .unwrap_or_default();
        format!(
            "<samlp:LogoutRequest xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{id}\" \
             Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" NotOnOrAfter=\"{}\">\
             <saml:Issuer>{}</saml:Issuer>{template}<saml:NameID Format=\"{EMAIL_FORMAT}\">{}</saml:NameID>{index}\
             </samlp:LogoutRequest>",
            time(0),
            esc(destination),
            time(300),
            esc(&self.entity_id),
            esc(name_id),
        )
    }

    /// A LogoutResponse to `in_response_to`, with `status`, to the SP's SLO URL.
    pub fn logout_response_xml(
        &self,
        destination: &str,
        in_response_to: &str,
        status: &str,
    ) -> String {
        format!(
            "<samlp:LogoutResponse xmlns:samlp=\"{PROTOCOL}\" xmlns:saml=\"{ASSERTION}\" ID=\"{}\" \
             Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" InResponseTo=\"{}\">\
             <saml:Issuer>{}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"{}\"/></samlp:Status>\
             </samlp:LogoutResponse>",
            new_id(),
            time(0),
            esc(destination),
            esc(in_response_to),
            esc(&self.entity_id),
            esc(status),
        )
    }

    /// `xml` carried to `url` as `parameter` by HTTP-Redirect, signed with the mock's key.
    pub fn redirect(
        &self,
        url: &str,
        parameter: &str,
        xml: &str,
        relay_state: Option<&str>,
    ) -> anyhow::Result<String> {
        redirect_message(url, parameter, xml, relay_state, Some(&self.keys))
    }
}

/// What the mock reads from a message this service sent it.
#[derive(Debug, Default)]
pub struct SloFacts {
    pub id: String,
    pub issuer: String,
    pub name_id: String,
    pub session_index: Option<String>,
    pub in_response_to: Option<String>,
    pub status: Option<String>,
}

/// Decodes an HTTP-Redirect message (base64 of raw DEFLATE) that this service sent.
pub fn read_message(encoded: &str) -> anyhow::Result<SloFacts> {
    let compressed = STANDARD.decode(encoded.trim())?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&compressed[..])
        .take(256 * 1024)
        .read_to_string(&mut xml)?;
    let doc = super::xml::parse_strict(&xml).ok_or_else(|| anyhow::anyhow!("not XML"))?;
    let root = doc
        .get_root_readonly()
        .ok_or_else(|| anyhow::anyhow!("empty"))?;
    Ok(SloFacts {
        id: root.get_property_no_ns("ID").unwrap_or_default(),
        issuer: child(root, ASSERTION, "Issuer")
            .map(text)
            .unwrap_or_default(),
        name_id: child(root, ASSERTION, "NameID")
            .map(text)
            .unwrap_or_default(),
        session_index: child(root, PROTOCOL, "SessionIndex").map(text),
        in_response_to: root.get_property_no_ns("InResponseTo"),
        status: child(root, PROTOCOL, "Status")
            .and_then(|s| child(s, PROTOCOL, "StatusCode"))
            .and_then(|c| c.get_property_no_ns("Value")),
    })
}

/// The SP's SLO URL, from its entity ID (this service's layout: `…/sso/{id}/metadata`).
fn sp_slo_url(sp_entity_id: &str) -> String {
    match sp_entity_id.strip_suffix("/metadata") {
        Some(base) => format!("{base}/slo"),
        None => sp_entity_id.to_string(),
    }
}

#[derive(Deserialize)]
pub(super) struct SloQuery {
    #[serde(rename = "SAMLRequest")]
    request: Option<String>,
    #[serde(rename = "SAMLResponse")]
    response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `GET /slo`: answers an SP's LogoutRequest with a signed success, or shows the SP's answer to
/// an IdP-initiated logout.
pub(super) async fn slo(State(idp): State<Arc<MockIdp>>, Query(q): Query<SloQuery>) -> Response {
    let bad = |e: anyhow::Error| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            format!("not a SAML logout message: {e}"),
        )
            .into_response()
    };
    if let Some(encoded) = q.request {
        let facts = match read_message(&encoded) {
            Ok(f) => f,
            Err(e) => return bad(e),
        };
        let to = sp_slo_url(&facts.issuer);
        let xml = idp.logout_response_xml(&to, &facts.id, super::slo::SUCCESS);
        return match idp.redirect(&to, "SAMLResponse", &xml, q.relay_state.as_deref()) {
            Ok(url) => Redirect::to(&url).into_response(),
            Err(e) => bad(e),
        };
    }
    match q.response.map(|r| read_message(&r)) {
        Some(Ok(facts)) => Html(format!(
            "<!doctype html><html><head><title>Mock IdP</title></head><body><h1>Signed out</h1>\
             <p id=\"status\">{}</p><p>{}</p></body></html>",
            esc(facts.status.as_deref().unwrap_or("")),
            esc(&facts.issuer)
        ))
        .into_response(),
        Some(Err(e)) => bad(e),
        None => bad(anyhow::anyhow!("no SAMLRequest or SAMLResponse")),
    }
}

#[derive(Deserialize)]
pub(super) struct LogoutQuery {
    /// The SP's SLO URL.
    slo: String,
    /// The NameID the SP knows the user by (the email the mock signed in).
    name_id: String,
    session_index: Option<String>,
}

/// `GET /logout?slo=…&name_id=…`: an IdP-initiated logout at that SP.
pub(super) async fn logout(
    State(idp): State<Arc<MockIdp>>,
    Query(q): Query<LogoutQuery>,
) -> Response {
    let xml = idp.logout_request_xml(
        &new_id(),
        &q.slo,
        &q.name_id,
        q.session_index.as_deref(),
        false,
    );
    match idp.redirect(&q.slo, "SAMLRequest", &xml, None) {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("signing failed: {e}"),
        )
            .into_response(),
    }
}
