//! The billing page (`/admin/{org}/billing`): seats and what uses them, the chart, a preview of
//! a change of seats or period before it is confirmed, the legacy saving, and the invoices with their printable
//! page, CSV and PDF.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::plan::{ChangeKind, Preview, Requester};
use super::store::{self, Invoice};
use super::switch::{self, Ask};
use super::view::{self, SubscriptionView};
use super::{BillingError, chart, money};
use crate::AppState;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::extract::PageForm;
use crate::web::{Layout, flash, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/{org}/billing", get(page).post(change))
        .route("/admin/{org}/billing/invoices/{number}", get(invoice_page))
        .route(
            "/admin/{org}/billing/invoices/{number}/csv",
            get(invoice_csv),
        )
        .route(
            "/admin/{org}/billing/invoices/{number}/pdf",
            get(invoice_pdf),
        )
}

/// A date for pages: `2026-12-05`.
pub fn day(ms: impl std::borrow::Borrow<i64>) -> String {
    super::period::date_of(*ms.borrow()).to_string()
}

/// An amount for pages.
pub fn amount(minor: impl std::borrow::Borrow<i64>, currency: &str) -> String {
    money::format(*minor.borrow(), currency)
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/billing.html")]
struct BillingPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    sub: SubscriptionView,
    preview: Option<Preview>,
    chart: String,
    invoices: Vec<Invoice>,
}

/// What the form asks for: seats, a period, or both (empty fields are not asked).
#[derive(Deserialize)]
struct AskForm {
    seats: Option<String>,
    period: Option<String>,
}

impl AskForm {
    fn asked(&self) -> bool {
        [&self.seats, &self.period]
            .iter()
            .any(|f| f.as_deref().is_some_and(|v| !v.trim().is_empty()))
    }

    fn ask(&self) -> Result<Ask, BillingError> {
        let value = |f: &Option<String>| {
            f.as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| serde_json::Value::String(v.to_string()))
        };
        Ask::parse(value(&self.seats).as_ref(), value(&self.period).as_ref())
    }
}

async fn render(
    state: &AppState,
    admin: &OrgAdmin,
    wanted: Option<&AskForm>,
    error: Option<String>,
) -> Result<BillingPage, AppError> {
    let org = admin.scope.org();
    let now = state.clock.now_ms();
    let pricing = &state.config.billing;
    let (_, view) = view::current(&state.db, now, org, pricing, &state.base_url()).await?;
    let mut error = error;
    let mut preview = None;
    if let Some(form) = wanted {
        let asked = async {
            let ask = form.ask()?;
            let mut tx = state.db.begin().await?;
            let p = switch::preview_ask(&mut tx, now, org, ask, pricing, &state.base_url()).await?;
            tx.commit().await?;
            Ok::<_, BillingError>(p)
        };
        match asked.await {
            Ok(p) => preview = Some(p),
            Err(e) => error = AppError::from(e).user_message().map(str::to_string),
        }
    }
    let usage = store::usage(state.db.pool(), org.id, chart::since(now)).await?;
    Ok(BillingPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: org.clone(),
        section: "billing",
        notice: take_flash(&admin.session).await?,
        error,
        sub: view,
        preview,
        chart: chart::svg(&chart::months(&usage, now)),
        invoices: store::invoices(state.db.pool(), org.id).await?,
    })
}

async fn page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Query(query): Query<AskForm>,
) -> Result<Response, AppError> {
    let wanted = Some(&query).filter(|q| q.asked());
    let page = render(&state, &admin, wanted, None).await?;
    let status = if page.error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, page).into_response())
}

async fn change(
    State(state): State<AppState>,
    admin: OrgAdmin,
    PageForm(form): PageForm<AskForm>,
) -> Result<Response, AppError> {
    let org = admin.scope.org();
    let result = async {
        let ask = form.ask()?;
        let mut tx = state.db.begin().await?;
        let by = Requester {
            actor: admin.scope.actor(),
            meta: admin.scope.meta(),
        };
        let done = switch::apply(
            &mut tx,
            state.clock.now_ms(),
            org,
            ask,
            by,
            &state.config.billing,
            &state.base_url(),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, BillingError>(done)
    }
    .await;
    match result {
        Ok(done) => {
            let message = match &done.period_change {
                Some(p) if done.change == ChangeKind::Unchanged => p.message.clone(),
                Some(p) => format!("{} {}", done.message, p.message),
                None => done.message.clone(),
            };
            flash(&admin.session, format!("Done. {message}")).await?;
            Ok(Redirect::to(&super::page_path(&org.slug)).into_response())
        }
        Err(err) => {
            let err = AppError::from(err);
            let (status, Some(message)) = (err.status(), err.user_message().map(str::to_string))
            else {
                return Err(err);
            };
            let page = render(&state, &admin, None, Some(message)).await?;
            Ok((status, page).into_response())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "billing_invoice.html")]
struct InvoicePage {
    layout: Layout,
    org: Org,
    invoice: Invoice,
}

async fn load(state: &AppState, admin: &OrgAdmin, number: &str) -> Result<Invoice, AppError> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(store::invoice(&mut conn, admin.scope.org().id, number)
        .await?
        .ok_or(BillingError::InvoiceNotFound)?)
}

async fn invoice_page(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, number)): Path<(String, String)>,
) -> Result<InvoicePage, AppError> {
    let invoice = load(&state, &admin, &number).await?;
    Ok(InvoicePage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        org: admin.scope.org().clone(),
        invoice,
    })
}

fn download(content_type: &'static str, name: String, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn invoice_csv(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, number)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let invoice = load(&state, &admin, &number).await?;
    let name = format!("{}.csv", invoice.number);
    let body = super::invoices::csv(&invoice).into_bytes();
    Ok(download("text/csv; charset=utf-8", name, body))
}

async fn invoice_pdf(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, number)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let invoice = load(&state, &admin, &number).await?;
    let name = format!("{}.pdf", invoice.number);
    Ok(download(
        "application/pdf",
        name,
        super::pdf::render(&invoice),
    ))
}
