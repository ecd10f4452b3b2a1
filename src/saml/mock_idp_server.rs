//! `nulab-pass mock-idp`: the mock IdP over HTTP for integrators and browser tests. It serves
//! its metadata, answers HTTP-Redirect AuthnRequests with a page to pick the email and name, and
//! can start IdP-initiated sign-ins. It trusts whatever ACS URL a request names: test use only.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quick_xml::events::Event;
use quick_xml::reader::NsReader;
use serde::Deserialize;

use super::mock_idp::{MockIdp, ResponseSpec};

fn esc(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The routes of the mock IdP.
pub fn router(idp: Arc<MockIdp>) -> Router {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/sso", get(sso_page).post(respond))
        .route("/start", get(start_page))
        .route("/slo", get(super::mock_idp_slo::slo))
        .route("/logout", get(super::mock_idp_slo::logout))
        .with_state(idp)
}

/// Serves the mock IdP on `bind` until the process ends.
pub async fn serve(idp: MockIdp, bind: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(address = %listener.local_addr()?, entity_id = %idp.entity_id, "mock IdP listening");
    axum::serve(listener, router(Arc::new(idp))).await?;
    Ok(())
}

async fn metadata(State(idp): State<Arc<MockIdp>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/samlmetadata+xml; charset=utf-8",
        )],
        idp.metadata_xml(),
    )
        .into_response()
}

/// What the mock reads from an AuthnRequest.
#[derive(Debug, Default)]
pub struct RequestFacts {
    pub id: String,
    pub acs_url: String,
    pub issuer: String,
}

/// Decodes an HTTP-Redirect `SAMLRequest` (base64 of raw DEFLATE).
pub fn read_request(encoded: &str) -> anyhow::Result<RequestFacts> {
    let compressed = STANDARD.decode(encoded.trim())?;
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&compressed[..]).read_to_string(&mut xml)?;
    let mut reader = NsReader::from_str(&xml);
    let mut facts = RequestFacts::default();
    let mut in_issuer = false;
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) => {
                let local = e.local_name();
                if local.as_ref() == b"AuthnRequest" {
                    for a in e.attributes().flatten() {
                        let value = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                            .into_owned();
                        match a.key.as_ref() {
                            b"ID" => facts.id = value,
                            b"AssertionConsumerServiceURL" => facts.acs_url = value,
                            _ => {}
                        }
                    }
                }
                in_issuer = local.as_ref() == b"Issuer";
            }
            Event::Text(t) if in_issuer => facts.issuer = t.decode()?.trim().to_string(),
            Event::End(_) => in_issuer = false,
            Event::Eof => break,
            _ => {}
        }
    }
    anyhow::ensure!(
        !facts.id.is_empty() && !facts.acs_url.is_empty(),
        "not an AuthnRequest"
    );
    Ok(facts)
}

#[derive(Deserialize)]
struct SsoQuery {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
    #[serde(rename = "RelayState", default)]
    relay_state: String,
    /// The email the user typed at the SP, to fill the form with.
    #[serde(default)]
    login_hint: String,
}

const STYLE: &str = "<style>body{font-family:sans-serif;max-width:480px;margin:40px auto}label{display:block;margin:10px 0}input{width:100%;padding:6px}</style>";

async fn sso_page(State(idp): State<Arc<MockIdp>>, Query(q): Query<SsoQuery>) -> Response {
    match read_request(&q.saml_request) {
        Ok(facts) => Html(format!(
            "<!doctype html><html><head><title>Mock IdP sign-in</title>{STYLE}</head><body><h1>Mock IdP</h1>\
             <p>Signing in to <code>{}</code></p><form method=\"post\" action=\"/sso\">\
             <input type=\"hidden\" name=\"request_id\" value=\"{}\"><input type=\"hidden\" name=\"acs\" value=\"{}\">\
             <input type=\"hidden\" name=\"audience\" value=\"{}\"><input type=\"hidden\" name=\"relay_state\" value=\"{}\">\
             <label>Email <input type=\"email\" name=\"email\" value=\"{}\" required></label>\
             <label>Name <input type=\"text\" name=\"name\" value=\"Test User\"></label>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form><p><small>{}</small></p></body></html>",
            esc(&facts.issuer),
            esc(&facts.id),
            esc(&facts.acs_url),
            esc(&facts.issuer),
            esc(&q.relay_state),
            esc(&q.login_hint),
            esc(&idp.entity_id)
        ))
        .into_response(),
        Err(err) => (axum::http::StatusCode::BAD_REQUEST, format!("not a SAML AuthnRequest: {err}")).into_response(),
    }
}

#[derive(Deserialize)]
struct RespondForm {
    #[serde(default)]
    request_id: String,
    acs: String,
    audience: String,
    #[serde(default)]
    relay_state: String,
    email: String,
    #[serde(default)]
    name: String,
}

/// A page that POSTs `response` to `acs` at once (the HTTP-POST binding).
pub fn auto_post(acs: &str, response_b64: &str, relay_state: &str) -> String {
    format!(
        "<!doctype html><html><head><title>Signing in…</title></head><body>\
         <form method=\"post\" action=\"{}\" id=\"saml\"><input type=\"hidden\" name=\"SAMLResponse\" value=\"{}\">\
         <input type=\"hidden\" name=\"RelayState\" value=\"{}\"><noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>document.getElementById('saml').submit();</script></body></html>",
        esc(acs),
        esc(response_b64),
        esc(relay_state)
    )
}

async fn respond(State(idp): State<Arc<MockIdp>>, Form(form): Form<RespondForm>) -> Response {
    let in_response_to = Some(form.request_id.as_str()).filter(|id| !id.is_empty());
    let mut spec = ResponseSpec::new(&form.email, &form.acs, &form.audience, in_response_to);
    if !form.name.is_empty() {
        spec.attributes
            .push(("name".to_string(), vec![form.name.clone()]));
    }
    match idp.response_b64(&spec) {
        Ok(b64) => Html(auto_post(&form.acs, &b64, &form.relay_state)).into_response(),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("signing failed: {err}"),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct StartQuery {
    acs: String,
    audience: String,
    email: Option<String>,
}

/// IdP-initiated sign-in: an unsolicited response to `acs` for `audience`.
async fn start_page(State(idp): State<Arc<MockIdp>>, Query(q): Query<StartQuery>) -> Response {
    match q.email {
        Some(email) => {
            let spec = ResponseSpec::new(&email, &q.acs, &q.audience, None);
            match idp.response_b64(&spec) {
                Ok(b64) => Html(auto_post(&q.acs, &b64, "")).into_response(),
                Err(err) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("signing failed: {err}")).into_response(),
            }
        }
        None => Html(format!(
            "<!doctype html><html><head><title>Mock IdP</title>{STYLE}</head><body><h1>Mock IdP: start a sign-in</h1>\
             <form method=\"get\" action=\"/start\"><input type=\"hidden\" name=\"acs\" value=\"{}\"><input type=\"hidden\" name=\"audience\" value=\"{}\">\
             <label>Email <input type=\"email\" name=\"email\" required></label><button type=\"submit\">Sign in</button></form></body></html>",
            esc(&q.acs),
            esc(&q.audience)
        ))
        .into_response(),
    }
}
