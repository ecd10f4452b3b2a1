//! Tamper evidence: every event joins the hash chain of its organization (events of no
//! organization, such as a sign-up, join the global chain `""`). An event's hash is the SHA-256
//! of its canonical form, which includes the previous event's hash, so changing, removing or
//! reordering any event breaks every hash after it.
//!
//! Appending takes the chain's head row (`audit_chain_heads`) in the caller's transaction: on
//! PostgreSQL the row lock orders concurrent writers of one organization (several server
//! instances included) until they commit; SQLite's write lock already does.

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::Row;

use super::store;
use crate::db::{Db, Tx};

/// The hash before the first event of every chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of an organization's events; `""` is the global chain (events of no organization).
pub fn chain_of(org_id: Option<&str>) -> String {
    org_id.unwrap_or_default().to_string()
}

/// The fields of an event that its hash covers, in the order of the canonical form.
#[derive(Clone, Debug)]
pub struct Sealed<'a> {
    pub chain: &'a str,
    pub seq: i64,
    pub id: &'a str,
    pub org_id: Option<&'a str>,
    pub occurred_at: i64,
    pub action: &'a str,
    pub actor_type: &'a str,
    pub actor_id: Option<&'a str>,
    pub actor_label: Option<&'a str>,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The details exactly as stored (JSON text).
    pub details: &'a str,
    pub prev_hash: &'a str,
}

impl Sealed<'_> {
    /// The canonical form: a JSON array of the fields above in that order (strings, integers and
    /// nulls; no whitespace), prefixed with the format version, as UTF-8 bytes.
    pub fn canonical(&self) -> String {
        serde_json::json!([
            "nulab-pass-audit-v1",
            self.chain,
            self.seq,
            self.id,
            self.org_id,
            self.occurred_at,
            self.action,
            self.actor_type,
            self.actor_id,
            self.actor_label,
            self.target_type,
            self.target_id,
            self.ip,
            self.user_agent,
            self.details,
            self.prev_hash,
        ])
        .to_string()
    }

    /// The SHA-256 of the canonical form, in lowercase hex.
    pub fn hash(&self) -> String {
        crate::secrets::hex(&openssl::sha::sha256(self.canonical().as_bytes()))
    }
}

/// Takes the next place in `chain`: its sequence number and the previous hash. The head row
/// stays locked until the caller's transaction ends; [`set_head`] must follow in it.
pub async fn next_place(tx: &mut Tx, chain: &str) -> Result<(i64, String), sqlx::Error> {
    store::advance_head(tx, chain).await
}

/// Records `hash` as the head of `chain` (after [`next_place`]).
pub async fn set_head(tx: &mut Tx, chain: &str, hash: &str) -> Result<(), sqlx::Error> {
    store::set_head_hash(tx, chain, hash).await
}

/// What `audit verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub chain: String,
    /// Events checked (after the retention checkpoint, if any).
    pub events: i64,
    /// The checkpoint the check started from (events up to it were pruned by retention).
    pub checkpoint_seq: Option<i64>,
    /// The last event's sequence number and hash, as the chain head row records them.
    pub head_seq: i64,
    pub head_hash: String,
    /// The first problem, `None` when the whole chain holds.
    pub broken: Option<Break>,
}

/// The first place where a chain does not hold.
#[derive(Clone, Debug, Serialize)]
pub struct Break {
    /// The event at fault (`None` when an event is missing at the end).
    pub event_id: Option<String>,
    pub seq: Option<i64>,
    pub problem: String,
}

/// Checks `chain` from its retention checkpoint (or the genesis) to its head, streaming the
/// events in sequence order, and names the first event that does not hold.
pub async fn verify(db: &Db, chain: &str) -> Result<Verification, sqlx::Error> {
    let checkpoint = store::last_checkpoint(db.pool(), chain).await?;
    let (mut expected_seq, mut prev) = match &checkpoint {
        Some((seq, hash)) => (seq + 1, hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let head = store::head(db.pool(), chain).await?;
    let mut result = Verification {
        chain: chain.to_string(),
        events: 0,
        checkpoint_seq: checkpoint.as_ref().map(|c| c.0),
        head_seq: head.as_ref().map_or(0, |h| h.0),
        head_hash: head.as_ref().map_or(GENESIS.to_string(), |h| h.1.clone()),
        broken: None,
    };
    if let Some(id) = store::unsealed_in(db.pool(), chain).await? {
        result.broken = Some(Break {
            event_id: Some(id),
            seq: None,
            problem: "the event is not in the chain (its chain columns are empty)".into(),
        });
        return Ok(result);
    }
    let mut rows = sqlx::query(store::SELECT_CHAIN)
        .bind(chain.to_string())
        .fetch(db.pool());
    while let Some(row) = rows.try_next().await? {
        let event = store::ChainRow::of(&row)?;
        if let Some(problem) = event.check(expected_seq, &prev) {
            result.broken = Some(Break {
                event_id: Some(event.id.clone()),
                seq: Some(event.seq),
                problem,
            });
            return Ok(result);
        }
        result.events += 1;
        prev = event.hash;
        expected_seq += 1;
    }
    if expected_seq - 1 != result.head_seq || prev != result.head_hash {
        result.broken = Some(Break {
            event_id: None,
            seq: Some(expected_seq),
            problem: format!(
                "the chain ends at event {} but its head records event {}: events are missing at the end",
                expected_seq - 1,
                result.head_seq
            ),
        });
    }
    Ok(result)
}

/// Seals events written before the chain existed (schema migration 10), oldest first, into
/// their chains; run at start, before the server takes requests. Returns how many were sealed.
pub async fn seal_unchained(db: &Db) -> Result<u64, sqlx::Error> {
    let mut sealed = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows = sqlx::query(store::SELECT_UNSEALED)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(sealed);
        }
        for row in &rows {
            let org_id: Option<String> = row.try_get("org_id")?;
            let chain = chain_of(org_id.as_deref());
            let (seq, prev) = next_place(&mut tx, &chain).await?;
            let mut event = store::ChainRow::of(row)?;
            event.chain = chain.clone();
            event.seq = seq;
            event.prev_hash = prev;
            let hash = event.sealed().hash();
            store::seal(&mut tx, &event.id, &chain, seq, &event.prev_hash, &hash).await?;
            set_head(&mut tx, &chain, &hash).await?;
            sealed += 1;
        }
        tx.commit().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(details: &'a str, prev: &'a str) -> Sealed<'a> {
        Sealed {
            chain: "org-1",
            seq: 7,
            id: "e-1",
            org_id: Some("org-1"),
            occurred_at: 1_700_000_000_123,
            action: "sso.signin.failed",
            actor_type: "anonymous",
            actor_id: None,
            actor_label: None,
            target_type: Some("saml_connection"),
            target_id: Some("c-1"),
            ip: Some("203.0.113.9"),
            user_agent: Some("curl/8"),
            details,
            prev_hash: prev,
        }
    }

    #[test]
    fn the_canonical_form_is_fixed_and_every_field_counts() {
        let e = event(r#"{"reason":"expired"}"#, GENESIS);
        assert_eq!(
            e.canonical(),
            r#"["nulab-pass-audit-v1","org-1",7,"e-1","org-1",1700000000123,"sso.signin.failed","anonymous",null,null,"saml_connection","c-1","203.0.113.9","curl/8","{\"reason\":\"expired\"}","0000000000000000000000000000000000000000000000000000000000000000"]"#
        );
        let base = e.hash();
        assert_eq!(base.len(), 64);
        assert_ne!(event(r#"{"reason":"replayed"}"#, GENESIS).hash(), base);
        assert_ne!(
            event(r#"{"reason":"expired"}"#, &"1".repeat(64)).hash(),
            base
        );
        let mut moved = event(r#"{"reason":"expired"}"#, GENESIS);
        moved.seq = 8;
        assert_ne!(moved.hash(), base);
        let mut other_ip = event(r#"{"reason":"expired"}"#, GENESIS);
        other_ip.ip = None;
        assert_ne!(other_ip.hash(), base);
    }
}
