//! `/demo/dns`: the demo's stand-in for a DNS provider, where the newcomer publishes the TXT
//! record of a `.test` domain on the demo DNS server. Only `nulab-pass demo` serves it.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use tower_sessions::Session;

use super::dns::DemoDns;
use crate::AppState;
use crate::accounts::session::SignedIn;
use crate::web::Layout;
use crate::web::error::AppError;
use crate::web::extract::PageForm;

/// The demo's pages on the nulab-pass server.
pub fn routes(dns: Arc<DemoDns>) -> axum::Router<AppState> {
    Router::new()
        .route("/demo/dns", get(show).post(publish))
        .layer(Extension(dns))
}

#[derive(Template, WebTemplate)]
#[template(path = "demo/dns.html")]
struct DnsPage {
    layout: Layout,
    server: String,
    records: Vec<(String, String)>,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    name: String,
    text: String,
}

impl DnsPage {
    /// The page, with the signed-in account (if any) in its header.
    async fn new(
        session: &Session,
        signed_in: Option<&SignedIn>,
        dns: &DemoDns,
    ) -> Result<DnsPage, AppError> {
        let records = dns
            .records()
            .into_iter()
            .flat_map(|(name, texts)| texts.into_iter().map(move |t| (name.clone(), t)))
            .collect();
        Ok(DnsPage {
            layout: Layout::new(session, signed_in.map(|s| &s.account as _)).await?,
            server: dns.addr.to_string(),
            records,
            notice: crate::web::take_flash(session).await?,
            error: None,
            name: String::new(),
            text: String::new(),
        })
    }
}

async fn show(
    Extension(dns): Extension<Arc<DemoDns>>,
    session: Session,
    signed_in: Option<SignedIn>,
) -> Result<DnsPage, AppError> {
    DnsPage::new(&session, signed_in.as_ref(), &dns).await
}

#[derive(Deserialize)]
struct PublishForm {
    name: String,
    text: String,
}

/// Publishes the record, or shows the page again with the error beside the form and the input
/// kept (422; nothing is published).
async fn publish(
    Extension(dns): Extension<Arc<DemoDns>>,
    session: Session,
    signed_in: Option<SignedIn>,
    PageForm(form): PageForm<PublishForm>,
) -> Result<Response, AppError> {
    match dns.publish(&form.name, &form.text).await {
        Ok((name, _)) => {
            let notice = format!(
                "Published a TXT record at {name}. Go back to the organization's Domains page and press Verify now."
            );
            crate::web::flash(&session, notice).await?;
            Ok(Redirect::to("/demo/dns").into_response())
        }
        Err(err) => {
            let mut page = DnsPage::new(&session, signed_in.as_ref(), &dns).await?;
            page.error = Some(err.to_string());
            page.name = form.name.chars().take(300).collect();
            page.text = form.text.chars().take(300).collect();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}
