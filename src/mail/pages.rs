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
    messages: Vec<(OutboxMessage, Vec<Part>)>,
}

/// A piece of an email's text: plain text, or an address to follow.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Link(String),
}

/// Splits `text` into plain text and `http://` / `https://` addresses (an address ends at
/// white space, a quote or an angle bracket; a full stop or comma after it is left as text).
pub fn linked(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        let tail = &rest[start..];
        let mut end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
            .unwrap_or(tail.len());
        while end > 0 && tail[..end].ends_with(['.', ',', ')', ';', ':']) {
            end -= 1;
        }
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        parts.push(Part::Link(tail[..end].to_string()));
        rest = &tail[end..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    parts
}

async fn dev_mail(
    State(state): State<AppState>,
    session: Session,
) -> Result<DevMailPage, AppError> {
    Ok(DevMailPage {
        layout: Layout::new(&session, None).await?,
        messages: store::recent(state.db.pool(), 50)
            .await?
            .into_iter()
            .map(|m| {
                let parts = linked(&m.body_text);
                (m, parts)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::{Part, linked};

    #[test]
    fn addresses_in_an_email_become_links() {
        assert_eq!(
            linked("Open https://pass.test/migration/abc?x=1&y=2. Or http://a.test"),
            vec![
                Part::Text("Open ".into()),
                Part::Link("https://pass.test/migration/abc?x=1&y=2".into()),
                Part::Text(". Or ".into()),
                Part::Link("http://a.test".into()),
            ]
        );
        assert_eq!(linked("no links"), vec![Part::Text("no links".into())]);
        assert_eq!(linked(""), vec![]);
    }
}
