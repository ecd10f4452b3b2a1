//! Statements sent in one batch before an audit event (`audit::record_after`, on
//! `db::Batch`): each statement's rows and changed-row count come back in order, the event
//! joins its chain, and a statement that fails stops the batch and, rolled back, leaves
//! nothing of it, of the statements before it, or of the event.

use nulab_pass::audit::{self, Actor, AuditAction, RequestMeta, chain};
use nulab_pass::db::{Batch, Db};
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

async fn replay_ids(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT message_id FROM saml_replay ORDER BY message_id")
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

    let mut tx = db.begin().await.unwrap();
    let mut batch = Batch::new();
    let first = batch.push(REMEMBER, vec!["idp".into(), "a".into(), 10.into()]);
    let second = batch.push(REMEMBER, vec!["idp".into(), "b".into(), 20.into()]);
    let missing = batch.push(TOUCH, vec!["none".into(), 1.into()]);
    let touched = batch.push(TOUCH, vec!["b".into(), 30.into()]);
    let read = batch.push(READ, vec!["idp".into()]);
    let outcomes = audit::record_after(&mut tx, batch, 1_000, event(&meta))
        .await
        .unwrap();
    tx.commit().await.unwrap();
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
    // that error, and rolling back keeps nothing of it nor of the event.
    let mut tx = db.begin().await.unwrap();
    let mut batch = Batch::new();
    batch.push(REMEMBER, vec!["idp".into(), "c".into(), 10.into()]);
    batch.push(TOUCH, vec!["a".into(), 99.into()]);
    batch.push(REMEMBER, vec!["idp".into(), "b".into(), 10.into()]);
    batch.push(REMEMBER, vec!["idp".into(), "d".into(), 10.into()]);
    let err = match audit::record_after(&mut tx, batch, 2_000, event(&meta)).await {
        Ok(_) => panic!("a duplicate message id must fail the batch"),
        Err(err) => err,
    };
    assert!(nulab_pass::db::is_unique_violation(&err), "{err}");
    tx.rollback().await.unwrap();
    assert_eq!(replay_ids(db).await, ["a", "b"]);
    let a: i64 = sqlx::query_scalar("SELECT expires_at FROM saml_replay WHERE message_id = 'a'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(a, 10);
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
