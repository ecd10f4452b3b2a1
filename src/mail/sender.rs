//! Delivers the outbox over SMTP. Each message is claimed alone with a short lease, sent, then
//! marked sent; failures are retried with exponential backoff, and permanent SMTP refusals are
//! marked failed. A sender that dies mid-message leaves one message leased, which another (or the
//! restarted) sender takes once the lease ends. A message carries a Message-ID derived from its
//! outbox id, so in the rare case of a crash after the SMTP server accepted it and before it was
//! marked sent, the repeat is recognisable downstream.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::store::{self, OutboxMessage};
use crate::clock::Clock;
use crate::db::Db;

/// Longest one SMTP delivery may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a claimed message stays hidden from other senders: twice the longest delivery.
const LEASE_MS: i64 = 2 * SEND_TIMEOUT.as_millis() as i64;
/// How many messages one pass delivers, each claimed on its own.
const BATCH: usize = 20;
/// Longest wait between two attempts at one message.
const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;

/// An SMTP connection and the sender identity.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    id_domain: String,
}

impl Smtp {
    /// Builds a transport from `smtp://` or `smtps://` URL and the From address.
    pub fn new(url: &str, from: &str, id_domain: &str) -> anyhow::Result<Smtp> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("NULAB_PASS_SMTP_URL is not usable: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e| anyhow::anyhow!("NULAB_PASS_MAIL_FROM is not an address: {e}"))?;
        Ok(Smtp {
            transport,
            from,
            id_domain: id_domain.to_string(),
        })
    }
}

/// Runs the sender until the task is dropped.
pub async fn run(db: Db, clock: Clock, smtp: Smtp, poll: Duration) {
    loop {
        match deliver_due(&db, &clock, &smtp).await {
            Ok(0) => tokio::time::sleep(poll).await,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "outbox pass failed; will retry");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// One pass: claims due messages one at a time (so a crash strands at most one behind its
/// lease) and tries each once. Returns how many were claimed.
pub async fn deliver_due(db: &Db, clock: &Clock, smtp: &Smtp) -> Result<usize, sqlx::Error> {
    let mut claimed = 0;
    while claimed < BATCH {
        let Some(message) = store::claim_due(
            &mut *db.write().await?,
            db.dialect(),
            clock.now_ms(),
            LEASE_MS,
            1,
        )
        .await?
        .pop() else {
            break;
        };
        claimed += 1;
        deliver(db, clock, smtp, &message).await?;
    }
    Ok(claimed)
}

async fn deliver(
    db: &Db,
    clock: &Clock,
    smtp: &Smtp,
    message: &OutboxMessage,
) -> Result<(), sqlx::Error> {
    let email = match build(smtp, message) {
        Ok(email) => email,
        Err(reason) => {
            tracing::error!(id = %message.id, %reason, "email cannot be built; marked failed");
            return store::mark_failed(
                &mut *db.write().await?,
                &message.id,
                clock.now_ms(),
                &reason,
            )
            .await;
        }
    };
    let sent = tokio::time::timeout(SEND_TIMEOUT, smtp.transport.send(email)).await;
    match sent {
        Ok(Ok(_)) => {
            tracing::info!(id = %message.id, kind = %message.kind, "email sent");
            store::mark_sent(&mut *db.write().await?, &message.id, clock.now_ms()).await
        }
        Ok(Err(err)) if err.is_permanent() => {
            tracing::error!(id = %message.id, error = %err, "SMTP refused email permanently");
            store::mark_failed(
                &mut *db.write().await?,
                &message.id,
                clock.now_ms(),
                &err.to_string(),
            )
            .await
        }
        Ok(Err(err)) => retry(db, clock, message, &err.to_string()).await,
        Err(_) => retry(db, clock, message, "SMTP delivery timed out").await,
    }
}

/// Records a transient failure; the message is tried again after a backoff.
async fn retry(
    db: &Db,
    clock: &Clock,
    message: &OutboxMessage,
    error: &str,
) -> Result<(), sqlx::Error> {
    let wait = backoff_ms(message.attempts);
    tracing::warn!(id = %message.id, error, wait_ms = wait, "email not sent; will retry");
    store::mark_retry(
        &mut *db.write().await?,
        &message.id,
        clock.now_ms() + wait,
        error,
    )
    .await
}

fn build(smtp: &Smtp, message: &OutboxMessage) -> Result<Message, String> {
    let to: Mailbox = message
        .to_addr
        .parse()
        .map_err(|e| format!("bad recipient: {e}"))?;
    Message::builder()
        .from(smtp.from.clone())
        .to(to)
        .subject(message.subject.clone())
        .message_id(Some(format!("<{}@{}>", message.id, smtp.id_domain)))
        .multipart(MultiPart::alternative_plain_html(
            message.body_text.clone(),
            message.body_html.clone(),
        ))
        .map_err(|e| format!("bad message: {e}"))
}

/// Wait before attempt `attempts + 1`: 2 s, 4 s, 8 s, ... capped at 15 minutes.
fn backoff_ms(attempts: i64) -> i64 {
    let exponent = attempts.clamp(0, 20) as u32;
    (2_000i64.saturating_mul(1i64 << exponent)).min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff_ms(0), 2_000);
        assert_eq!(backoff_ms(1), 4_000);
        assert_eq!(backoff_ms(3), 16_000);
        assert_eq!(backoff_ms(40), 15 * 60 * 1000);
    }
}
