//! Statements sent in one batch before an audit event (`audit::record_after`, on
//! `db::Batch`): each statement's rows and changed-row count come back in order, the event
//! joins its chain with the commit, and a statement that fails stops the batch and leaves
//! nothing of it, of the statements before it, or of the event. The same for the transactions
//! that begin or commit with a batch (`Db::begin_with`, `Tx::commit_with`; on SQLite one call
//! with `BEGIN` or `COMMIT`), and for one dropped open or abandoned mid-call.

use nulab_pass::audit::{self, Actor, AuditAction, RequestMeta, Target, chain};
use nulab_pass::db::{Batch, Db, Opening};
use nulab_pass::ids::OrgId;
use sqlx::Row;

use crate::both;
use crate::common::{Backend, fresh_db};

const REMEMBER: &str =
    "INSERT INTO saml_replay (idp_entity_id, message_id, expires_at) VALUES ($1, $2, $3)";
const TOUCH: &str = "UPDATE saml_replay SET expires_at = $2 WHERE message_id = $1";
const READ: &str = "SELECT message_id, expires_at FROM saml_replay WHERE idp_entity_id = $1 \
     ORDER BY message_id";

fn event(meta: &RequestMeta) -> audit::Event<'_> {
    audit::Event {
        org_id: None,
        action: AuditAction::SsoSigninSucceeded,
        actor: &Actor::System("test"),
        target: None,
        meta,
        details: serde_json::json!({}),
    }
}

#[allow(dead_code)]
async fn replay_ids(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT message_id FROM saml_replay ORDER BY message_id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn replay_rows(db: &Db) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT message_id, expires_at FROM saml_replay ORDER BY message_id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

async fn events(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn batched(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;
    let meta = RequestMeta::default();

    let mut batch = Batch::new();
    let first = batch.push(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    let second = batch.push(REMEMBER, vec!["idp".into(), "b".into(), 20.into()]);
    let missing = batch.push(TOUCH, vec!["none".into(), 1.into()]);
    let touched = batch.push(TOUCH, vec!["b".into(), 30.into()]);
    let read = batch.push(READ, vec!["idp".into()]);
    let (placed, outcomes) = audit::record_after(Opening::Begin(db), batch, 1_000, event(&meta))
        .await
        .unwrap();
    // The event is written by the commit, not before.
    assert_eq!(events(db).await, 0);
    placed.commit().await.unwrap();
    assert_eq!(outcomes.len(), 5);
    assert_eq!(
        (outcomes[first].affected, outcomes[second].affected),
        (1, 1)
    );
    assert_eq!(outcomes[missing].affected, 0);
    assert_eq!(outcomes[touched].affected, 1);
    assert!(outcomes[first].rows.is_empty());
    let rows: Vec<(String, i64)> = outcomes[read]
        .rows
        .iter()
        .map(|r| (r.get("message_id"), r.get("expires_at")))
        .collect();
    assert_eq!(rows, [("a".to_string(), 10), ("b".to_string(), 30)]);
    assert_eq!(events(db).await, 1);

    // The third statement breaks the replay cache's unique rule: the batch stops there with
    // that error, and the transaction it ran in keeps nothing of it nor of the event.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("UPDATE saml_replay SET expires_at = 50 WHERE message_id = 'b'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut batch = Batch::new();
    batch.push(REMEMBER, vec!["idp".into(), "c".into(), 10.into()]);
    batch.push(TOUCH, vec!["a".into(), 99.into()]);
    batch.push(REMEMBER, vec!["idp".into(), "b".into(), 10.into()]);
    batch.push(REMEMBER, vec!["idp".into(), "d".into(), 10.into()]);
    let err = match audit::record_after(Opening::Open(tx), batch, 2_000, event(&meta)).await {
        Ok(_) => panic!("a duplicate message id must fail the batch"),
        Err(err) => err,
    };
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    assert_eq!(replay_rows(db).await, [("a".into(), 10), ("b".into(), 30)]);
    assert_eq!(events(db).await, 1);

    // The same, with the transaction begun by the batch.
    let mut batch = Batch::new();
    batch.push(REMEMBER, vec!["idp".into(), "e".into(), 10.into()]);
    batch.push(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    let err = match audit::record_after(Opening::Begin(db), batch, 2_000, event(&meta)).await {
        Ok(_) => panic!("a duplicate message id must fail the batch"),
        Err(err) => err,
    };
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    assert_eq!(replay_rows(db).await, [("a".into(), 10), ("b".into(), 30)]);

    // A caller that gives up after reading the outcomes rolls the event back with the rest.
    let mut batch = Batch::new();
    batch.push(REMEMBER, vec!["idp".into(), "f".into(), 10.into()]);
    let (placed, _) = audit::record_after(Opening::Begin(db), batch, 2_500, event(&meta))
        .await
        .unwrap();
    placed.rollback().await.unwrap();
    assert_eq!(replay_rows(db).await, [("a".into(), 10), ("b".into(), 30)]);
    assert_eq!(events(db).await, 1);

    // The chain goes on where the committed event left it, and holds.
    let mut tx = db.begin().await.unwrap();
    audit::record(&mut tx, 3_000, event(&meta)).await.unwrap();
    tx.commit().await.unwrap();
    let verified = chain::verify(db, "").await.unwrap();
    assert!(verified.broken.is_none(), "{verified:?}");
    assert_eq!((verified.events, verified.head_seq), (2, 2));
}
both!(
    a_batch_gives_each_statement_its_outcome_and_fails_whole,
    batched
);

/// Statements whose outcome nobody reads (`Batch::push_unread`; on PostgreSQL they travel
/// with the statement after them, or, last in the batch, with the last of them): every one
/// runs, each gives an empty outcome, the other statements' outcomes keep their places, and
/// one that fails fails the batch, which keeps nothing.
async fn unread(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;
    let mut seed = Batch::new();
    seed.push(REMEMBER, vec!["other".into(), "x".into(), 5.into()]);
    let (tx, _) = db.begin_with(seed).await.unwrap();
    tx.commit().await.unwrap();

    let mut batch = Batch::new();
    batch.push_unread(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "b".into(), 20.into()]);
    let read = batch.push(READ, vec!["other".into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "c".into(), 30.into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "d".into(), 40.into()]);
    let (tx, outcomes) = db.begin_with(batch).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let rows: Vec<(String, i64)> = outcomes[read]
        .rows
        .iter()
        .map(|r| (r.get("message_id"), r.get("expires_at")))
        .collect();
    assert_eq!(rows, [("x".to_string(), 5)]);
    for at in [0, 1, 3, 4] {
        assert_eq!(outcomes[at].affected, 0, "an unread outcome is empty");
        assert!(outcomes[at].rows.is_empty());
    }
    let kept = [
        ("a".to_string(), 10),
        ("b".to_string(), 20),
        ("c".to_string(), 30),
        ("d".to_string(), 40),
        ("x".to_string(), 5),
    ];
    assert_eq!(replay_rows(db).await, kept);

    // A duplicate among the unread statements before a read, and among those last in a batch
    // that commits: the unique violation comes back and nothing of the batch is kept.
    let mut batch = Batch::new();
    batch.push_unread(REMEMBER, vec!["idp".into(), "e".into(), 10.into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    batch.push(READ, vec!["other".into()]);
    let err = db.begin_with(batch).await.err().expect("a duplicate id");
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    let mut batch = Batch::new();
    batch.push(READ, vec!["other".into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "f".into(), 10.into()]);
    batch.push_unread(REMEMBER, vec!["idp".into(), "b".into(), 10.into()]);
    let tx = db.begin().await.unwrap();
    let err = tx.commit_with(batch).await.err().expect("a duplicate id");
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    assert_eq!(replay_rows(db).await, kept);
}
both!(
    unread_statements_run_with_empty_outcomes_and_fail_whole,
    unread
);

/// A transaction that commits with a batch keeps all of it; one whose batch fails keeps
/// nothing, not even the statements it ran before; and either way the next transaction starts
/// on a connection with none open.
async fn commit_with(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;

    let (tx, _) = db.begin_with(remember("a")).await.unwrap();
    let mut last = Batch::new();
    let touched = last.push(TOUCH, vec!["a".into(), 11.into()]);
    let read = last.push(READ, vec!["idp".into()]);
    let outcomes = tx.commit_with(last).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[touched].affected, 1);
    assert_eq!(outcomes[read].rows.len(), 1);
    assert_eq!(replay_rows(db).await, [("a".into(), 11)]);

    let mut tx = db.begin().await.unwrap();
    expire_a(&mut tx, 12).await;
    let mut last = Batch::new();
    last.push(REMEMBER, vec!["idp".into(), "b".into(), 10.into()]);
    last.push(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    let err = tx.commit_with(last).await.err().expect("a duplicate id");
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    assert_eq!(replay_rows(db).await, [("a".into(), 11)]);

    // The writing connection is free and outside any transaction.
    let mut tx = db.begin().await.unwrap();
    expire_a(&mut tx, 13).await;
    tx.commit().await.unwrap();
    assert_eq!(replay_rows(db).await, [("a".into(), 13)]);
}
both!(
    a_transaction_commits_with_its_batch_or_keeps_nothing,
    commit_with
);

/// A transaction dropped open (an error returned with `?`, a request whose client went away)
/// keeps nothing; so does one whose `BEGIN` or `COMMIT` call is abandoned part-way, whatever
/// point it reached: the next transaction finds the connection free and outside any
/// transaction, and nothing of the abandoned one is kept unless its commit completed.
async fn abandoned(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;

    let (tx, _) = db.begin_with(remember("dropped")).await.unwrap();
    drop(tx);
    assert!(replay_rows(db).await.is_empty());

    // Abandoned after 0, 50, 100, ... microseconds: early ones stop before or during the
    // batch, late ones after it; the last is given 30 seconds, to complete.
    let waits: Vec<u64> = (0..40u64).map(|i| i * 50).chain([30_000_000]).collect();
    let mut committed = Vec::new();
    for (i, wait) in waits.into_iter().enumerate() {
        let id = format!("begin-{i:02}");
        let limit = std::time::Duration::from_micros(wait);
        if let Ok(begun) = tokio::time::timeout(limit, db.begin_with(remember(&id))).await {
            drop(begun.unwrap());
        }
        let id = format!("commit-{i:02}");
        let tx = db.begin().await.unwrap();
        if let Ok(done) = tokio::time::timeout(limit, tx.commit_with(remember(&id))).await {
            done.unwrap();
            committed.push(id.clone());
        }
        // Whatever happened, the next transaction begins, and its write is kept.
        let (tx, _) = db
            .begin_with(remember(&format!("next-{i:02}")))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let kept: Vec<String> = replay_rows(db)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let abandoned_kept: Vec<&String> = kept
        .iter()
        .filter(|id| id.starts_with("begin-") || id.starts_with("commit-"))
        .collect();
    // A commit abandoned after SQLite ran it is kept, though its caller was not told; every
    // commit its caller saw complete is kept; no transaction only begun is.
    assert!(
        abandoned_kept.iter().all(|id| id.starts_with("commit-")),
        "{abandoned_kept:?}"
    );
    for id in &committed {
        assert!(kept.contains(id), "{id} committed but not kept: {kept:?}");
    }
    assert_eq!(kept.iter().filter(|id| id.starts_with("next-")).count(), 41);
    assert!(
        committed.contains(&"commit-40".to_string()),
        "{committed:?}"
    );
}
both!(
    an_abandoned_transaction_keeps_nothing_and_frees_its_connection,
    abandoned
);

async fn expire_a(tx: &mut nulab_pass::db::Tx, at: i64) {
    sqlx::query("UPDATE saml_replay SET expires_at = $1 WHERE message_id = 'a'")
        .bind(at)
        .execute(&mut **tx)
        .await
        .unwrap();
}

fn remember(id: &str) -> Batch {
    let mut batch = Batch::new();
    batch.push(REMEMBER, vec!["idp".into(), id.into(), 10.into()]);
    batch
}

/// Events of several chains recorded together (`audit::record_all_after`, as sign-ins committed
/// together are; several events go in one statement): each is stored exactly as given, its
/// absent values as NULL, numbered in its own chain after the events before it, and every
/// chain still verifies.
async fn together(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;
    let (a, b) = (OrgId::new(), OrgId::new());
    let bare = RequestMeta::default();
    let seen = RequestMeta {
        ip: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0 \"quoted\" \\ back\u{00e9}\u{1F600}".into()),
    };
    let person = Actor::Account {
        id: "acc-1".into(),
        email: "mia@corp.test".into(),
    };
    let event = |org: Option<OrgId>, actor: &'static Actor, meta: &'static RequestMeta, n: i64| {
        audit::Event {
            org_id: org,
            action: AuditAction::SsoSigninSucceeded,
            actor,
            target: (n % 2 == 0).then(|| Target::account(format!("acc-{n}"))),
            meta,
            details: serde_json::json!({ "n": n, "text": "a \"b\" \\ c\n\u{00fc}", "nested": { "x": [1, null] } }),
        }
    };
    // 'static borrows for the closure: leak the few values of this test.
    let person: &'static Actor = Box::leak(Box::new(person));
    let system: &'static Actor = &Actor::System("test");
    let bare: &'static RequestMeta = Box::leak(Box::new(bare));
    let seen: &'static RequestMeta = Box::leak(Box::new(seen));

    // One event of chain a alone first: the group's go after it.
    let mut tx = db.begin().await.unwrap();
    audit::record(&mut tx, 1_000, event(Some(a), system, bare, 0))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let given = vec![
        event(Some(a), person, seen, 1),
        event(Some(b), system, bare, 2),
        event(None, person, bare, 3),
        event(Some(a), system, seen, 4),
        event(Some(b), person, seen, 5),
    ];
    let (placed, outcomes) =
        audit::record_all_after(Opening::Begin(db), Batch::new(), 2_000, &given)
            .await
            .unwrap();
    assert!(outcomes.is_empty());
    placed.commit().await.unwrap();

    for (chain, events) in [(a.to_string(), 3), (b.to_string(), 2), (String::new(), 1)] {
        let verified = chain::verify(db, &chain).await.unwrap();
        assert!(verified.broken.is_none(), "{verified:?}");
        assert_eq!(
            (verified.events, verified.head_seq),
            (events, events),
            "{chain}"
        );
    }
    type Stored = (
        Option<String>,
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        String,
        i64,
    );
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT org_id, occurred_at, actor_type, actor_id, actor_label, target_id, ip, \
         user_agent, details, chain, seq FROM audit_events WHERE occurred_at = 2000",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(stored.len(), given.len());
    for event in &given {
        let n = event.details["n"].as_i64().unwrap();
        let row = (stored.iter())
            .find(|row| serde_json::from_str::<serde_json::Value>(&row.8).unwrap()["n"] == n)
            .unwrap_or_else(|| panic!("event {n} stored"));
        let (actor_type, actor_id, actor_label) = match event.actor {
            Actor::Account { id, email } => ("account", Some(id.as_str()), Some(email.as_str())),
            _ => ("system", None, Some("test")),
        };
        let chain = event.org_id.map(|o| o.to_string()).unwrap_or_default();
        let expected: Stored = (
            event.org_id.map(|o| o.to_string()),
            2_000,
            actor_type.to_string(),
            actor_id.map(str::to_string),
            actor_label.map(str::to_string),
            event.target.as_ref().map(|t| t.id.clone()),
            event.meta.ip.clone(),
            event.meta.user_agent.clone(),
            event.details.to_string(),
            chain,
            row.10,
        );
        assert_eq!(row, &expected, "event {n}");
    }
    // Numbered in each chain in the order given, after what the chain held.
    let seqs = |org: OrgId| -> Vec<i64> {
        let mut seqs: Vec<(i64, i64)> = (stored.iter())
            .filter(|row| row.0.as_deref() == Some(org.to_string().as_str()))
            .map(|row| {
                let n = serde_json::from_str::<serde_json::Value>(&row.8).unwrap()["n"]
                    .as_i64()
                    .unwrap();
                (n, row.10)
            })
            .collect();
        seqs.sort();
        seqs.into_iter().map(|(_, seq)| seq).collect()
    };
    assert_eq!(seqs(a), [2, 3]);
    assert_eq!(seqs(b), [1, 2]);
}
both!(
    events_recorded_together_in_several_chains_are_stored_as_given,
    together
);
