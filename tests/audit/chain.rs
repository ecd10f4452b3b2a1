//! The hash chain: it holds through real flows and concurrent writers, the database refuses
//! UPDATE and DELETE, and `audit verify` (library and binary) names a tampered event.

use nulab_pass::audit::chain;
use nulab_pass::audit::{self, Actor, AuditAction, RequestMeta};
use nulab_pass::db::{Db, Dialect};

use crate::both;
use crate::common::{Backend, TestServer, api};

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");

/// An org with an admin and a few events written through the API.
async fn org_with_events(s: &TestServer, slug: &str) -> nulab_pass::orgs::Org {
    let admin = s
        .account(
            &format!("admin@{slug}.example"),
            "Admin",
            "correct horse battery",
        )
        .await;
    let org = s.org(slug, &admin).await;
    let token = s.token(&org).await;
    for domain in ["one.example", "two.example"] {
        let (status, _) = api(
            &s.client(),
            reqwest::Method::POST,
            s.url(&format!("/api/v1/orgs/{slug}/domains")),
            &token,
            Some(serde_json::json!({ "domain": domain })),
        )
        .await;
        assert_eq!(status, 201);
    }
    org
}

/// Runs `audit verify` with the binary against the server's database.
async fn verify_cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(BIN)
        .args(["audit", "verify"])
        .args(args)
        .env("NULAB_PASS_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run nulab-pass");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Changes an event's details behind the triggers' back, as someone with raw database access.
async fn tamper(db: &Db, event_id: &str) {
    let statements: &[&str] = match db.dialect() {
        Dialect::Sqlite => &[
            "DROP TRIGGER audit_events_no_update",
            "UPDATE audit_events SET details = '{\"domain\":\"evil.example\"}' WHERE id = $1",
        ],
        Dialect::Postgres => &[
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change",
            "UPDATE audit_events SET details = '{\"domain\":\"evil.example\"}' WHERE id = $1",
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change",
        ],
    };
    for sql in statements {
        let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
        let query = if sql.contains("$1") {
            query.bind(event_id.to_string())
        } else {
            query
        };
        query.execute(db.pool()).await.expect("tamper");
    }
}

async fn verify_names_the_tampered_event(backend: Backend) {
    let s = TestServer::start(backend).await;
    let org = org_with_events(&s, "acme").await;
    let chain_id = org.id.to_string();
    let holds = chain::verify(s.db(), &chain_id).await.unwrap();
    assert!(holds.broken.is_none(), "{holds:?}");
    assert!(holds.events >= 4, "{holds:?}");
    let (code, out) = verify_cli(&s.testdb.url, &["--org", "acme"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&holds.head_hash), "{out}");

    let events = audit::store::recent(s.db().pool(), Some(&chain_id), 50)
        .await
        .unwrap();
    let victim = events
        .iter()
        .find(|e| e.action == "domain.added")
        .expect("a domain.added event");
    tamper(s.db(), &victim.id).await;

    let broken = chain::verify(s.db(), &chain_id).await.unwrap();
    let found = broken.broken.expect("the chain is broken");
    assert_eq!(found.event_id.as_deref(), Some(victim.id.as_str()));
    assert!(found.problem.contains("changed"), "{}", found.problem);
    let (code, out) = verify_cli(&s.testdb.url, &["--org", "acme"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&victim.id), "{out}");
}
both!(
    verify_names_the_tampered_event,
    verify_names_the_tampered_event
);

async fn the_database_refuses_changes(backend: Backend) {
    let s = TestServer::start(backend).await;
    let org = org_with_events(&s, "acme").await;
    let before = s
        .rows("SELECT id || ':' || details || ':' || hash FROM audit_events ORDER BY id")
        .await;
    for sql in [
        "UPDATE audit_events SET details = '{}'",
        "UPDATE audit_events SET hash = NULL",
        "DELETE FROM audit_events",
        "UPDATE audit_checkpoints SET seq = 0",
    ] {
        let result = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(s.db().pool())
            .await;
        if sql.contains("checkpoints") {
            // No checkpoint exists yet: nothing to refuse, nothing changed.
            assert_eq!(result.unwrap().rows_affected(), 0);
            continue;
        }
        let err = result.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let after = s
        .rows("SELECT id || ':' || details || ':' || hash FROM audit_events ORDER BY id")
        .await;
    assert_eq!(before, after);
    let holds = chain::verify(s.db(), &org.id.to_string()).await.unwrap();
    assert!(holds.broken.is_none(), "{holds:?}");
}
both!(the_database_refuses_changes, the_database_refuses_changes);

/// Two pools (as two server instances) append to one organization's chain at once.
async fn concurrent_writers_keep_one_chain(backend: Backend) {
    let s = TestServer::start(backend).await;
    let org = org_with_events(&s, "acme").await;
    let second = Db::connect(&s.testdb.url).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let db = if i % 2 == 0 {
            s.db().clone()
        } else {
            second.clone()
        };
        let org_id = org.id;
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            audit::record(
                &mut tx,
                1_000 + i,
                audit::Event {
                    org_id: Some(org_id),
                    action: AuditAction::MemberAdded,
                    actor: &Actor::Operator,
                    target: None,
                    meta: &RequestMeta::default(),
                    details: serde_json::json!({ "n": i }),
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let holds = chain::verify(s.db(), &org.id.to_string()).await.unwrap();
    assert!(holds.broken.is_none(), "{holds:?}");
    let mut seqs: Vec<i64> = s
        .rows(&format!(
            "SELECT CAST(seq AS TEXT) AS n FROM audit_events WHERE chain = '{}'",
            org.id
        ))
        .await
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    seqs.sort();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "one gap-free sequence");
    assert!(holds.events >= 44);
}
both!(
    concurrent_writers_keep_one_chain,
    concurrent_writers_keep_one_chain
);

/// Events of no organization (a sign-up) form the global chain, checked with `--global`.
async fn events_without_an_org_form_the_global_chain(backend: Backend) {
    let s = TestServer::start(backend).await;
    let _org = org_with_events(&s, "acme").await;
    let global = chain::verify(s.db(), "").await.unwrap();
    assert!(global.broken.is_none(), "{global:?}");
    assert!(
        global.events >= 1,
        "the admin's account creation: {global:?}"
    );
    let (code, out) = verify_cli(&s.testdb.url, &["--global"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify_cli(&s.testdb.url, &["--org", "no-such-org"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no organization no-such-org"), "{out}");
}
both!(
    events_without_an_org_form_the_global_chain,
    events_without_an_org_form_the_global_chain
);

/// An event written before the chain existed (chain columns empty) fails verification until
/// the server seals it at start; sealing changes nothing else.
async fn unsealed_events_are_sealed_at_start(backend: Backend) {
    let s = TestServer::start(backend).await;
    let org = org_with_events(&s, "acme").await;
    sqlx::query(
        "INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, details) \
         VALUES ('legacy-1', $1, 5, 'member.added', 'operator', '{}')",
    )
    .bind(org.id.to_string())
    .execute(s.db().pool())
    .await
    .unwrap();
    let broken = chain::verify(s.db(), &org.id.to_string()).await.unwrap();
    assert_eq!(
        broken.broken.expect("unsealed").event_id.as_deref(),
        Some("legacy-1")
    );
    assert_eq!(chain::seal_unchained(s.db()).await.unwrap(), 1);
    let holds = chain::verify(s.db(), &org.id.to_string()).await.unwrap();
    assert!(holds.broken.is_none(), "{holds:?}");
    assert_eq!(
        s.rows("SELECT action || ':' || details FROM audit_events WHERE id = 'legacy-1'")
            .await,
        vec!["member.added:{}"]
    );
    // Sealed once: the chain columns cannot be filled again.
    let again = sqlx::query("UPDATE audit_events SET seq = 999 WHERE id = 'legacy-1'")
        .execute(s.db().pool())
        .await;
    assert!(again.is_err());
}
both!(
    unsealed_events_are_sealed_at_start,
    unsealed_events_are_sealed_at_start
);
