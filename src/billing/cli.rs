//! The operator's billing commands (`nulab-pass billing ...`): legacy imports, the status the
//! payment system reports, and credit notes.

use clap::Subcommand;
use serde_json::json;

use super::{BillingError, Status};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::orgs::Org;

#[derive(Subcommand)]
pub enum BillingCommand {
    /// Marks an organization that was billed for every user: its seats become N (not reduced
    /// automatically later) and its billing page shows what it could save.
    ImportLegacy {
        #[arg(long)]
        org: String,
        #[arg(long)]
        seats: i64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sets the subscription status the payment system reports: active, past_due or cancelled.
    Status {
        #[arg(long)]
        org: String,
        #[arg(long)]
        status: String,
    },
    /// Issues a credit note against an invoice (invoices themselves never change).
    CreditNote {
        #[arg(long)]
        org: String,
        /// The invoice number, e.g. INV-000001.
        #[arg(long)]
        invoice: String,
        /// Minor units to credit before tax (e.g. 800 for $8.00).
        #[arg(long)]
        amount: i64,
        #[arg(long)]
        reason: String,
    },
}

async fn org_of(db: &Db, slug: &str) -> anyhow::Result<Org> {
    crate::orgs::store::by_slug(db.pool(), slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no organization {slug}"))
}

/// Runs one billing command against the configured database.
pub async fn run(config: &Config, db: &Db, command: BillingCommand) -> anyhow::Result<()> {
    let now = Clock::default().now_ms();
    let pricing = &config.billing;
    let base = config.base_url();
    match command {
        BillingCommand::ImportLegacy { org, seats, json } => {
            let org = org_of(db, &org).await?;
            let mut tx = db.begin().await?;
            let usage =
                super::legacy::import_org_wide(&mut tx, now, &org, seats, pricing, &base).await?;
            tx.commit().await?;
            let value = json!({ "org": org.slug, "seats": usage.seats, "managed": usage.managed, "pending": usage.pending });
            if json {
                println!("{value}");
            } else {
                println!(
                    "{}: {} seats billed organization-wide; {} used by managed accounts, {} reserved by pending requests",
                    org.slug, usage.seats, usage.managed, usage.pending
                );
            }
        }
        BillingCommand::Status { org, status } => {
            let org = org_of(db, &org).await?;
            let status = Status::parse(&status)
                .filter(|s| *s != Status::Trial)
                .ok_or_else(|| anyhow::anyhow!("the status is active, past_due or cancelled"))?;
            let mut tx = db.begin().await?;
            super::plan::set_status(&mut tx, now, &org, status, pricing, &base).await?;
            tx.commit().await?;
            println!("{}: {}", org.slug, status.as_str());
        }
        BillingCommand::CreditNote {
            org,
            invoice,
            amount,
            reason,
        } => {
            let org = org_of(db, &org).await?;
            let mut tx = db.begin().await?;
            let note = super::invoices::credit_note(
                &mut tx, now, &org, &invoice, amount, &reason, pricing,
            )
            .await?;
            tx.commit().await?;
            println!(
                "{} {}",
                note.number,
                super::money::format(note.total, &note.currency)
            );
        }
    }
    Ok(())
}

/// `org import-legacy`: starts the domain transition of an organization whose managed accounts
/// predate domain verification.
pub async fn import_legacy_org(
    config: &Config,
    db: &Db,
    org: &Org,
) -> Result<crate::domains::transition::Transition, BillingError> {
    let now = Clock::default().now_ms();
    let mut tx = db.begin().await?;
    let t = super::legacy::import_domains(&mut tx, now, org, &config.billing, &config.base_url())
        .await?;
    tx.commit().await?;
    Ok(t)
}

/// `org seats`: the operator's setting, through the same rules and audit as the API.
pub async fn operator_seats(
    config: &Config,
    db: &Db,
    org: &Org,
    seats: i64,
) -> Result<super::plan::Usage, BillingError> {
    let now = Clock::default().now_ms();
    let mut tx = db.begin().await?;
    let usage = super::plan::operator_set(
        &mut tx,
        now,
        org,
        seats,
        &config.billing,
        &config.base_url(),
    )
    .await?;
    tx.commit().await?;
    Ok(usage)
}
