//! Delivers the outbox over SMTP. Each message is claimed with a lease, sent, then marked sent;
//! failures are retried with exponential backoff, and permanent SMTP refusals are marked failed.
//! A message carries a Message-ID derived from its outbox id, so in the rare case of a crash
//! between handing it to SMTP and marking it sent, the repeat is recognisable downstream.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::store::{self, OutboxMessage};
use crate::clock::Clock;
use crate::db::Db;

/// How long a claimed message stays hidden from other senders.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// How many messages one pass claims.
const BATCH: i64 = 20;
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

/// One pass: claims due messages and tries each once. Returns how many were claimed.
pub async fn deliver_due(db: &Db, clock: &Clock, smtp: &Smtp) -> Result<usize, sqlx::Error> {
    let batch = store::claim_due(db.pool(), db.dialect(), clock.now_ms(), LEASE_MS, BATCH).await?;
    for message in &batch {
        deliver(db, clock, smtp, message).await?;
    }
    Ok(batch.len())
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
            return store::mark_failed(db.pool(), &message.id, &reason).await;
        }
    };
    match smtp.transport.send(email).await {
        Ok(_) => {
            tracing::info!(id = %message.id, kind = %message.kind, "email sent");
            store::mark_sent(db.pool(), &message.id, clock.now_ms()).await
        }
        Err(err) if err.is_permanent() => {
            tracing::error!(id = %message.id, error = %err, "SMTP refused email permanently");
            store::mark_failed(db.pool(), &message.id, &err.to_string()).await
        }
        Err(err) => {
            let wait = backoff_ms(message.attempts);
            tracing::warn!(id = %message.id, error = %err, wait_ms = wait, "email not sent; will retry");
            store::mark_retry(
                db.pool(),
                &message.id,
                clock.now_ms() + wait,
                &err.to_string(),
            )
            .await
        }
    }
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
