//! Sustained attacks on an organization's managed accounts are told to its admins: when a
//! managed account's password sign-in is paused a second time in a row (the backoff's second
//! strike, so one person mistyping is not reported), the admins get an email, at most one per
//! organization per `--limit-alert-every`, and the notice is audited.

use crate::Config;
use crate::accounts::Account;
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::Tx;
use crate::limits::{self, Blocked, Bucket, Limit};
use crate::mail::{self, Mail, MailAction, MailKind};
use crate::orgs;

/// Blocks in a row that make an attack "sustained".
pub const SUSTAINED_STRIKES: i64 = 2;

/// Notifies the admins of the account's organization when `block` starts a sustained pause.
pub async fn after_block(
    tx: &mut Tx,
    config: &Config,
    now: i64,
    account: Option<&Account>,
    block: &Blocked,
    meta: &RequestMeta,
) -> Result<(), mail::MailError> {
    let sustained = block.started_now
        && block.limit == Limit::SignInPerAccount
        && block.strikes >= SUSTAINED_STRIKES;
    let Some((account, org_id)) = account.and_then(|a| Some((a, a.org_id?))) else {
        return Ok(());
    };
    if !sustained {
        return Ok(());
    }
    let bucket = Bucket::new(Limit::AttackAlertPerOrg, org_id.to_string());
    if !limits::first_in_window(tx, &config.limits, now, &bucket).await? {
        return Ok(());
    }
    let Some(org) = orgs::store::by_id(&mut **tx, org_id).await? else {
        return Ok(());
    };
    let admins = orgs::store::admin_emails(&mut **tx, org.id).await?;
    for to in &admins {
        mail::enqueue(tx, now, &notice(config, &org, account, block, meta, to)).await?;
    }
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::OrgSignInAttackNotified,
            actor: &Actor::System("rate limits"),
            target: Some(Target::account(account.id)),
            meta,
            details: serde_json::json!({
                "email": account.email,
                "strikes": block.strikes,
                "paused_until": block.until,
                "admins": admins.len(),
            }),
        },
    )
    .await?;
    Ok(())
}

fn notice(
    config: &Config,
    org: &orgs::Org,
    account: &Account,
    block: &Blocked,
    meta: &RequestMeta,
    to: &str,
) -> Mail {
    Mail {
        kind: MailKind::OrgSignInAttack,
        to: to.to_string(),
        subject: format!("Repeated sign-in attempts on {}'s accounts", org.name),
        paragraphs: vec![
            format!(
                "Password sign-in to {}, a managed account of {}, has been paused {} times in a row after too many wrong passwords or codes. It is paused until {}; each further pause lasts longer.",
                account.email,
                org.name,
                block.strikes,
                crate::clock::format_time(block.until)
            ),
            "Someone may be guessing the password. The audit log shows each pause with the address it came from. If the account's owner did not cause it, consider resetting the password or requiring single sign-on.".to_string(),
            format!(
                "You will not get another notice like this for {}.",
                limits::wait_words(config.limits.alert_every_ms / 1000)
            ),
        ],
        action: Some(MailAction {
            label: "Open the audit log".to_string(),
            url: format!(
                "{}/admin/{}/audit?action=account.sign_in_paused",
                config.base_url(),
                org.slug
            ),
        }),
        closing: vec![format!(
            "Latest attempt from {}",
            meta.ip.as_deref().unwrap_or("an unknown address")
        )],
    }
}
