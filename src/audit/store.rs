//! SQL of the audit log: appending to a chain, reading chains back, the newest events.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::chain::{GENESIS, Sealed};
use super::{Event, StoredEvent};
use crate::db::{Batch, Dialect, Outcome, Param, Tx, json_rows_text};

/// Every column of an event, in the order [`StoredEvent::of`] reads them.
pub const COLUMNS: &str = "id, org_id, occurred_at, action, actor_type, actor_id, actor_label, \
     target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash";

const INSERT: &str = "INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, \
     actor_id, actor_label, target_type, target_id, ip, user_agent, details, chain, seq, \
     prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Appends `event` to its chain in the caller's transaction, after the statements of `before`
/// (returned with what they gave): two round trips, `before` with taking the head, then the
/// insert with moving the head.
pub(super) async fn insert_after(
    tx: &mut Tx,
    before: Batch,
    now: i64,
    event: &Event<'_>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let events = std::slice::from_ref(event);
    let (taking, places) = take_places(before, events);
    let outcomes = taking.run(tx).await?;
    let (outcomes, append) = append(outcomes, &places, now, events, tx.dialect())?;
    append.run(tx).await?;
    Ok(outcomes)
}

/// Where [`take_places`] takes the events' places: per chain, in chain order, the index of the
/// statement that advances its head and the events (their indexes) it numbers, in order.
pub(super) struct Places {
    chains: Vec<(String, usize, Vec<usize>)>,
}

/// `before` with the statements that take the next places in the events' chains: one a chain,
/// in chain order (so that on PostgreSQL two transactions that take several heads wait for each
/// other instead of each holding one the other needs), advancing it by its number of events.
pub(super) fn take_places(mut before: Batch, events: &[Event<'_>]) -> (Batch, Places) {
    let mut by_chain: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, event) in events.iter().enumerate() {
        let org_id = event.org_id.map(|id| id.to_string());
        by_chain
            .entry(super::chain::chain_of(org_id.as_deref()))
            .or_default()
            .push(i);
    }
    let chains = by_chain
        .into_iter()
        .map(|(chain, numbered)| {
            let count = i64::try_from(numbered.len()).unwrap_or(i64::MAX);
            let head = before.push(
                ADVANCE_HEAD,
                vec![chain.as_str().into(), GENESIS.into(), count.into()],
            );
            (chain, head, numbered)
        })
        .collect();
    (before, Places { chains })
}

/// From the outcomes of [`take_places`]'s batch: those of the statements before the heads',
/// and the batch that writes the events in the places taken, each after the one before it in
/// its chain, and moves each head to its chain's last.
pub(super) fn append(
    mut outcomes: Vec<Outcome>,
    places: &Places,
    now: i64,
    events: &[Event<'_>],
    dialect: Dialect,
) -> Result<(Vec<Outcome>, Batch), sqlx::Error> {
    let mut append = Batch::new();
    let mut rows = Vec::with_capacity(events.len());
    let mut heads = Vec::with_capacity(places.chains.len());
    let mut first_head = outcomes.len();
    for (chain, head, numbered) in &places.chains {
        first_head = first_head.min(*head);
        let (last_seq, mut prev_hash) = match outcomes.get(*head).and_then(|o| o.rows.first()) {
            Some(row) => (
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("hash")?,
            ),
            None => return Err(sqlx::Error::RowNotFound),
        };
        let first_seq = last_seq + 1 - i64::try_from(numbered.len()).unwrap_or(i64::MAX);
        for (seq, &i) in (first_seq..).zip(numbered) {
            let (row, hash) = sealed_row(chain, seq, &prev_hash, now, &events[i]);
            rows.push(row);
            prev_hash = hash;
        }
        heads.push((chain, prev_hash));
    }
    // No outcome is read, and each writes rows no other statement touches: on PostgreSQL one
    // call for all of them.
    if dialect == Dialect::Postgres && rows.len() > 1 {
        append.push_unread(INSERT_ALL.as_str(), vec![json_rows_text(rows)]);
    } else {
        for row in rows {
            append.push_unread(INSERT, row);
        }
    }
    for (chain, hash) in heads {
        append.push_unread(
            SET_HEAD_HASH,
            vec![chain.as_str().into(), hash.as_str().into()],
        );
    }
    outcomes.truncate(first_head);
    Ok((outcomes, append))
}

/// The columns of `event` at `seq` in `chain`, after `prev_hash`, in [`INSERT`]'s order, and its
/// hash.
fn sealed_row(
    chain: &str,
    seq: i64,
    prev_hash: &str,
    now: i64,
    event: &Event<'_>,
) -> (Vec<Param>, String) {
    let (actor_type, actor_id, actor_label) = event.actor.parts();
    let org_id = event.org_id.map(|id| id.to_string());
    let id = crate::ids::time_ordered().to_string();
    let details = event.details.to_string();
    let target_type = event.target.as_ref().map(|t| t.kind);
    let target_id = event.target.as_ref().map(|t| t.id.as_str());
    let sealed = Sealed {
        chain,
        seq,
        id: &id,
        org_id: org_id.as_deref(),
        occurred_at: now,
        action: event.action.as_str(),
        actor_type,
        actor_id,
        actor_label,
        target_type,
        target_id,
        ip: event.meta.ip.as_deref(),
        user_agent: event.meta.user_agent.as_deref(),
        details: &details,
        prev_hash,
    };
    let hash = sealed.hash();
    let row = vec![
        id.as_str().into(),
        org_id.into(),
        now.into(),
        event.action.as_str().into(),
        actor_type.into(),
        actor_id.into(),
        actor_label.into(),
        target_type.into(),
        target_id.into(),
        event.meta.ip.clone().into(),
        event.meta.user_agent.clone().into(),
        details.into(),
        chain.into(),
        seq.into(),
        prev_hash.into(),
        hash.as_str().into(),
    ];
    (row, hash)
}

/// [`INSERT`] on PostgreSQL for the JSON rows in `$1`, each in its columns' order: any number of
/// events in one statement whose text does not change with their number. (One `INSERT` an
/// event would be a text for each number of events, each parsed and planned again for each
/// connection that meets it; SQLite's one writing connection keeps each batch's prepared
/// statements, and there one `INSERT` an event costs no more than reading JSON.)
static INSERT_ALL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({COLUMNS}) SELECT c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, \
         c11, c12, c13, c14, c15 FROM ({}) AS e",
        crate::db::json_rows(Dialect::Postgres, "$1", 16, &[2, 13])
    )
});

// The upsert advances the head by `$3` events and returns its new sequence number (the last
// event's) and its hash before them (a new chain starts at the genesis hash); on PostgreSQL it
// locks the head row until commit.
const ADVANCE_HEAD: &str = "INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ($1, $3, $2) \
     ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + $3 RETURNING seq, hash";

pub(super) async fn advance_head(tx: &mut Tx, chain: &str) -> Result<(i64, String), sqlx::Error> {
    let row = sqlx::query(ADVANCE_HEAD)
        .bind(chain.to_string())
        .bind(GENESIS)
        .bind(1_i64)
        .fetch_one(&mut **tx)
        .await?;
    Ok((row.try_get("seq")?, row.try_get("hash")?))
}

const LOCK_HEAD: &str = "UPDATE audit_chain_heads SET seq = seq WHERE chain = $1";

/// Takes `chain`'s head row until the transaction ends (PostgreSQL; SQLite's write lock already
/// orders writers). A chain without events has no head row yet, and nothing is taken.
pub(super) async fn lock_head(tx: &mut Tx, chain: &str) -> Result<(), sqlx::Error> {
    sqlx::query(LOCK_HEAD)
        .bind(chain.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SET_HEAD_HASH: &str = "UPDATE audit_chain_heads SET hash = $2 WHERE chain = $1";

pub(super) async fn set_head_hash(tx: &mut Tx, chain: &str, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(SET_HEAD_HASH)
        .bind(chain.to_string())
        .bind(hash.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The head of `chain`: its last sequence number and hash (`None` before its first event).
pub async fn head(pool: &sqlx::AnyPool, chain: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, hash FROM audit_chain_heads WHERE chain = $1")
        .bind(chain.to_string())
        .fetch_optional(pool)
        .await
}

/// The newest retention checkpoint of `chain`: the last pruned event's number and hash.
pub async fn last_checkpoint(
    pool: &sqlx::AnyPool,
    chain: &str,
) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, hash FROM audit_checkpoints WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(chain.to_string())
    .fetch_optional(pool)
    .await
}

/// An event of the chain's organization that is not in the chain, if any.
pub(super) async fn unsealed_in(
    pool: &sqlx::AnyPool,
    chain: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM audit_events WHERE hash IS NULL AND COALESCE(org_id, '') = $1 LIMIT 1",
    )
    .bind(chain.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.0))
}

pub(super) const SELECT_CHAIN: &str = "SELECT id, org_id, occurred_at, action, actor_type, \
     actor_id, actor_label, target_type, target_id, ip, user_agent, details, chain, seq, \
     prev_hash, hash FROM audit_events WHERE chain = $1 ORDER BY seq";

pub(super) const SELECT_UNSEALED: &str = "SELECT id, org_id, occurred_at, action, actor_type, \
     actor_id, actor_label, target_type, target_id, ip, user_agent, details, chain, seq, \
     prev_hash, hash FROM audit_events WHERE hash IS NULL ORDER BY occurred_at, id LIMIT 500";

/// An event as the chain stores it (every column as text, as hashed).
pub(super) struct ChainRow {
    pub id: String,
    pub org_id: Option<String>,
    pub occurred_at: i64,
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub actor_label: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: String,
    pub chain: String,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

impl ChainRow {
    pub fn of(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ChainRow {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            occurred_at: row.try_get("occurred_at")?,
            action: row.try_get("action")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            actor_label: row.try_get("actor_label")?,
            target_type: row.try_get("target_type")?,
            target_id: row.try_get("target_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            details: row.try_get("details")?,
            chain: row
                .try_get::<Option<String>, _>("chain")?
                .unwrap_or_default(),
            seq: row.try_get::<Option<i64>, _>("seq")?.unwrap_or_default(),
            prev_hash: row
                .try_get::<Option<String>, _>("prev_hash")?
                .unwrap_or_default(),
            hash: row
                .try_get::<Option<String>, _>("hash")?
                .unwrap_or_default(),
        })
    }

    pub fn sealed(&self) -> Sealed<'_> {
        Sealed {
            chain: &self.chain,
            seq: self.seq,
            id: &self.id,
            org_id: self.org_id.as_deref(),
            occurred_at: self.occurred_at,
            action: &self.action,
            actor_type: &self.actor_type,
            actor_id: self.actor_id.as_deref(),
            actor_label: self.actor_label.as_deref(),
            target_type: self.target_type.as_deref(),
            target_id: self.target_id.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            details: &self.details,
            prev_hash: &self.prev_hash,
        }
    }

    /// What is wrong with this event at place `seq` after `prev`, if anything.
    pub fn check(&self, seq: i64, prev: &str) -> Option<String> {
        if self.seq != seq {
            return Some(format!(
                "expected event number {seq}, found {}: events are missing before it",
                self.seq
            ));
        }
        if self.prev_hash != prev {
            return Some("its previous-hash does not match the event before it".into());
        }
        if self.sealed().hash() != self.hash {
            return Some("its content does not match its hash: the event was changed".into());
        }
        None
    }
}

/// Fills the chain columns of an event written before the chain existed.
pub(super) async fn seal(
    tx: &mut Tx,
    id: &str,
    chain: &str,
    seq: i64,
    prev_hash: &str,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_events SET chain = $2, seq = $3, prev_hash = $4, hash = $5 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(chain.to_string())
    .bind(seq)
    .bind(prev_hash.to_string())
    .bind(hash.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SELECT_RECENT_ALL: &str = "SELECT id, org_id, occurred_at, action, actor_type, actor_id, \
     actor_label, target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash \
     FROM audit_events ORDER BY occurred_at DESC, id DESC LIMIT $1";

const SELECT_RECENT_ORG: &str = "SELECT id, org_id, occurred_at, action, actor_type, actor_id, \
     actor_label, target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash \
     FROM audit_events WHERE chain = $1 ORDER BY seq DESC LIMIT $2";

/// The newest events, of one org (in chain order) or, with `None`, of all; newest first.
pub async fn recent(
    pool: &sqlx::AnyPool,
    org_id: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = match org_id {
        Some(org) => {
            sqlx::query(SELECT_RECENT_ORG)
                .bind(org.to_string())
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
        None => {
            sqlx::query(SELECT_RECENT_ALL)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(StoredEvent::of).collect()
}

/// The sign-in actions that the admin dashboard counts: password and SSO, succeeded or failed.
pub const SIGN_IN_ACTIONS: [&str; 4] = [
    "account.signed_in",
    "account.sign_in_failed",
    "sso.signin.succeeded",
    "sso.signin.failed",
];

/// One group of sign-in events: a UTC day (days since the epoch), the action and, for a
/// failure, its reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInCount {
    pub day: i64,
    pub action: String,
    pub reason: Option<String>,
    pub count: i64,
}

/// Sign-in events of the organization's chain since `since` (Unix ms), grouped by UTC day,
/// action and reason; counted by the database, so a busy organization sends back at most
/// days × actions × reasons rows. The chain's action index finds the rows.
pub async fn sign_in_counts(
    db: &crate::db::Db,
    org_id: &str,
    since: i64,
) -> Result<Vec<SignInCount>, sqlx::Error> {
    let reason = crate::db::json_text(db.dialect(), "details", "reason");
    let sql = format!(
        "SELECT occurred_at / {day} AS day, action, {reason} AS reason, COUNT(*) AS n \
         FROM audit_events WHERE chain = $1 AND action IN ($2, $3, $4, $5) AND occurred_at >= $6 \
         GROUP BY occurred_at / {day}, action, {reason} ORDER BY 1, 2",
        day = crate::clock::DAY_MS
    );
    let mut query =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(super::chain::chain_of(Some(org_id)));
    for action in SIGN_IN_ACTIONS {
        query = query.bind(action);
    }
    let rows = query.bind(since).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(SignInCount {
                day: r.try_get("day")?,
                action: r.try_get("action")?,
                reason: r.try_get("reason")?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}
