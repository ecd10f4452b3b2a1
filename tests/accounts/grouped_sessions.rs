//! New browser sessions are inserted by group commit (`db::GroupInsert`, used by
//! `web::session`): rows that wait together go in one statement, no caller is answered before
//! its row is committed, and a row that breaks a rule fails only its own caller.

use nulab_pass::db::{GroupInsert, Param};

use crate::both;
use crate::common::{Backend, fresh_db};

const HEAD: &str = "INSERT INTO sessions (id, account_id, sign_in_id, data, expires_at)";

fn row(id: &str) -> Vec<Param> {
    vec![
        id.into(),
        Param::Text(None),
        Param::Text(None),
        "{}".into(),
        i64::MAX.into(),
    ]
}

async fn ids(db: &nulab_pass::db::Db) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Inserts `names` at once while the table is held by another transaction, checks that nobody
/// is answered before that transaction ends, then lets it go: each caller's outcome, and how
/// many statements they took.
async fn held_then_released(
    backend: Backend,
    db: &nulab_pass::db::Db,
    inserts: &GroupInsert,
    names: Vec<String>,
) -> (Vec<Result<(), sqlx::Error>>, u64) {
    let before = inserts.statements();
    // SQLite: the transaction holds the one writing connection. PostgreSQL: a lock that every
    // INSERT into the table waits for.
    let mut holder = db.begin().await.unwrap();
    if backend == Backend::Postgres {
        sqlx::query("LOCK TABLE sessions IN SHARE MODE")
            .execute(&mut *holder)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = names
        .into_iter()
        .map(|id| {
            let inserts = inserts.clone();
            tokio::spawn(async move { inserts.insert(row(&id)).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a caller was answered before its row could be committed"
    );
    holder.commit().await.unwrap();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    (outcomes, inserts.statements() - before)
}

async fn grouped(backend: Backend) {
    let t = fresh_db(backend).await;
    let db = &t.db;
    let inserts = GroupInsert::new(db.clone(), HEAD, 5);
    inserts.insert(row("taken")).await.unwrap();
    assert_eq!(inserts.statements(), 1);

    // 50 callers while the table is held: the first (no other under way) inserts on its own
    // task, the committer takes the next one alone, and both wait for the table; the rest queue
    // behind them and go in one statement.
    let names: Vec<String> = (0..50).map(|i| format!("a{i:02}")).collect();
    let (outcomes, statements) = held_then_released(backend, db, &inserts, names.clone()).await;
    assert!(outcomes.iter().all(Result::is_ok));
    assert!(statements <= 3, "50 rows took {statements} statements");
    let mut expected = names;
    expected.push("taken".into());
    assert_eq!(ids(db).await, expected);

    // One of them breaks the unique rule: its group fails and is inserted again row by row, so
    // only that caller gets the violation and every other row is kept.
    let names: Vec<String> = (0..50)
        .map(|i| match i {
            30 => "taken".to_string(),
            _ => format!("b{i:02}"),
        })
        .collect();
    let (outcomes, _) = held_then_released(backend, db, &inserts, names.clone()).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (30, Err(err)) => assert!(nulab_pass::db::is_unique_violation(err), "{err}"),
            (30, Ok(())) => panic!("a duplicate id was inserted"),
            (_, outcome) => assert!(outcome.is_ok(), "row {i}: {outcome:?}"),
        }
    }
    let mut expected: Vec<String> = expected.into_iter().chain(names).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(ids(db).await, expected);
}
both!(
    rows_waiting_together_commit_in_one_statement_and_fail_alone,
    grouped
);
