//! `/dev/mail`: the outbox as a page, only in development mode (`--dev`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tower_sessions::Session;

use super::store::{self, OutboxMessage};
use crate::AppState;
use crate::web::Layout;
use crate::web::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/dev/mail", get(dev_mail))
}

#[derive(Template, WebTemplate)]
#[template(path = "dev_mail.html")]
struct DevMailPage {
    layout: Layout,
    messages: Vec<OutboxMessage>,
}

async fn dev_mail(
    State(state): State<AppState>,
    session: Session,
) -> Result<DevMailPage, AppError> {
    Ok(DevMailPage {
        layout: Layout::new(&session, None).await?,
        messages: store::recent(state.db.pool(), 50).await?,
    })
}
