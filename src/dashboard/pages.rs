//! The dashboard page, `/admin/{org}`: the first page of the admin area.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::charts::{self, Part, Series};
use super::{Facts, Warning, signins};
use crate::AppState;
use crate::clock::format_time;
use crate::domains::DomainStatus;
use crate::migration::overview::SeatView;
use crate::orgs::Org;
use crate::orgs::extract::OrgAdmin;
use crate::web::error::AppError;
use crate::web::{Layout, take_flash};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/{org}", get(page))
}

/// A domain as the dashboard lists it.
struct DomainLine {
    id: String,
    name: String,
    status: &'static str,
    ok: bool,
}

/// A certificate of an SSO connection as the dashboard lists it.
struct CertificateLine {
    connection: String,
    subject: String,
    expires: String,
    days_left: i64,
    ok: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    org: Org,
    section: &'static str,
    notice: Option<crate::web::Notice>,
    error: Option<String>,
    warnings: Vec<Warning>,
    seats: SeatView,
    seats_chart: String,
    managed: i64,
    nulab: i64,
    members_chart: String,
    domains: Vec<DomainLine>,
    connections: usize,
    certificates: Vec<CertificateLine>,
    pending_migrations: i64,
    signins: signins::SignIns,
    signins_chart: String,
}

async fn page(State(state): State<AppState>, admin: OrgAdmin) -> Result<DashboardPage, AppError> {
    let org = admin.scope.org().clone();
    let pool = state.db.pool();
    let now = state.clock.now_ms();
    let seats = crate::migration::overview::seats(&state.db, org.id).await?;
    let (managed, nulab) = crate::orgs::store::member_kinds(pool, org.id).await?;
    let domains = crate::domains::store::list(pool, org.id).await?;
    let connections = crate::saml::connections_of(pool, org.id).await?;
    let break_glass_admins = crate::sign_in::break_glass_admins(pool, org.id)
        .await?
        .len();
    let counts =
        crate::audit::store::sign_in_counts(&state.db, &org.id.to_string(), signins::since(now))
            .await?;
    let warnings = super::warnings(&Facts {
        slug: &org.slug,
        now,
        seats,
        domains: &domains,
        connections: &connections,
        break_glass_admins,
    });
    let signins = signins::build(&counts, now);
    let certificates = connections
        .iter()
        .flat_map(|c| {
            c.certificates.iter().map(|cert| {
                let days_left = super::days_left(cert.not_after, now);
                CertificateLine {
                    connection: c.name.clone(),
                    subject: cert.subject.clone(),
                    expires: format_time(cert.not_after),
                    days_left,
                    ok: days_left >= super::CERTIFICATE_WARNING_DAYS,
                }
            })
        })
        .collect();
    Ok(DashboardPage {
        layout: Layout::new(&admin.session, Some(&admin.account)).await?,
        section: "overview",
        notice: take_flash(&admin.session).await?,
        error: None,
        warnings,
        seats_chart: seats_chart(&seats),
        members_chart: charts::split_bar(
            "members-chart",
            "Members by kind",
            &[
                part("Managed accounts", "#1f6f5c", managed),
                part("Nulab accounts", "#2a6fdb", nulab),
            ],
            managed + nulab,
        ),
        seats,
        managed,
        nulab,
        domains: domains
            .iter()
            .map(|d| DomainLine {
                id: d.id.to_string(),
                name: d.name.to_string(),
                status: d.status.as_str(),
                ok: d.status == DomainStatus::Verified && d.record_missing_since.is_none(),
            })
            .collect(),
        connections: connections.len(),
        certificates,
        pending_migrations: seats.pending,
        signins_chart: charts::stacked_columns(
            "signins-chart",
            "Sign-ins per day, last 30 days",
            &signins.series,
            &signins.columns,
        ),
        signins,
        org,
    })
}

fn part(label: &str, colour: &'static str, value: i64) -> Part {
    Part {
        series: Series {
            label: label.to_string(),
            colour,
        },
        value,
    }
}

/// Seats: used by managed accounts, reserved by pending migration requests, free; past the
/// subscribed seats the bar grows and a line marks the subscription.
fn seats_chart(seats: &SeatView) -> String {
    charts::split_bar(
        "seats-chart",
        "Seats",
        &[
            part("Used by managed accounts", "#1f6f5c", seats.managed),
            part("Reserved by pending migrations", "#d9822b", seats.pending),
            part("Free", "#c8d1da", seats.free()),
        ],
        seats.subscribed,
    )
}
