//! Email: a transactional outbox written in the same transaction as the change that causes a
//! message, and a sender that delivers it over SMTP with retries (see [`sender`]).
//! Every message is rendered from two templates, `templates/mail/layout.txt` and `.html`.

pub mod pages;
pub mod sender;
pub mod store;

use askama::Template;

use crate::db::Tx;
use crate::web::error::AppError;

/// One email to queue: a subject, paragraphs, an optional button, and closing lines.
#[derive(Clone, Debug)]
pub struct Mail {
    /// Stable name of the kind of message, e.g. `account.verify_email`.
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    pub paragraphs: Vec<String>,
    pub action: Option<MailAction>,
    pub closing: Vec<String>,
}

/// A link the message asks the reader to follow.
#[derive(Clone, Debug)]
pub struct MailAction {
    pub label: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "mail/layout.txt", escape = "none")]
struct TextBody<'a> {
    mail: &'a Mail,
}

#[derive(Template)]
#[template(path = "mail/layout.html")]
struct HtmlBody<'a> {
    mail: &'a Mail,
}

/// Errors of queuing mail.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("rendering an email failed: {0}")]
    Render(#[from] askama::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// How MailError reaches the user: client mistakes are 4xx with a stable code, the rest 5xx.
impl From<MailError> for AppError {
    fn from(err: MailError) -> AppError {
        AppError::Internal(err.into())
    }
}

/// Renders `mail` and writes it to the outbox inside the caller's transaction.
pub async fn enqueue(tx: &mut Tx, now: i64, mail: &Mail) -> Result<(), MailError> {
    let text = TextBody { mail }.render()?;
    let html = HtmlBody { mail }.render()?;
    store::insert(tx, now, mail, &text, &html).await?;
    tracing::info!(kind = mail.kind, "email queued");
    Ok(())
}
