//! The audit log at scale: seeds one organization with AUDIT_BENCH_EVENTS events (default
//! 1,000,000; plus a tenth as many in a second organization), then times the viewer's main
//! queries (and prints PostgreSQL's plans), measures the peak RSS of streaming the whole log as
//! CSV, and the cost of appending to a chain (sequential, and concurrent writers of one
//! organization versus of different ones). SQLite always; PostgreSQL too when
//! NULAB_PASS_TEST_POSTGRES_URL is set; only PostgreSQL with AUDIT_BENCH_POSTGRES_ONLY=1. Seeded events carry placeholder hashes (the chain is
//! not what is measured here; `tests/audit` proves it). Run: `cargo bench --bench audit`.

#[path = "common/audit_rows.rs"]
mod audit_rows;
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use futures_util::StreamExt;
use nulab_pass::audit::export::{self, Format};
use nulab_pass::audit::query::{Bind, Filter, RawFilter, where_clause};
use nulab_pass::audit::{self as audit_log, Actor, AuditAction, RequestMeta};
use nulab_pass::db::{Db, Dialect};
use nulab_pass::ids::OrgId;

const BATCH: i64 = 250_000;
const T0: i64 = 1_700_000_000_000;

fn events() -> i64 {
    std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// `n` events of `org`, one second apart, in batches (server-side generated rows).
async fn seed(db: &Db, org: OrgId, n: i64) {
    let case = audit_rows::action_case();
    let columns = "id, org_id, occurred_at, action, actor_type, actor_id, actor_label, target_type, \
         target_id, ip, user_agent, details, chain, seq, prev_hash, hash";
    let sql = match db.dialect() {
        Dialect::Postgres => format!(
            "INSERT INTO audit_events ({columns}) SELECT md5(g::text || $1), $1, {T0} + g * 1000, \
             {case}, 'account', 'acct-' || (g % 5000), 'user' || (g % 5000) || '@big.test', \
             'account', 'target-' || (g % 20000), '10.' || (g % 250) || '.' || (g % 199) || '.1', \
             'Mozilla/5.0', '{{\"connection_id\":\"c1\",\"detail\":\"user' || g || '@big.test\"}}', \
             $1, g, md5((g - 1)::text), md5(g::text) FROM generate_series($2::bigint, $3::bigint) g"
        ),
        Dialect::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT $2 UNION ALL SELECT g + 1 FROM s WHERE g < $3) \
             INSERT INTO audit_events ({columns}) SELECT lower(hex(randomblob(16))), $1, {T0} + g * 1000, \
             {case}, 'account', 'acct-' || (g % 5000), 'user' || (g % 5000) || '@big.test', \
             'account', 'target-' || (g % 20000), '10.' || (g % 250) || '.' || (g % 199) || '.1', \
             'Mozilla/5.0', '{{\"connection_id\":\"c1\",\"detail\":\"user' || g || '@big.test\"}}', \
             $1, g, printf('%064d', g - 1), printf('%064d', g) FROM s"
        ),
    };
    let mut from = 1;
    while from <= n {
        let to = (from + BATCH - 1).min(n);
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(org.to_string())
            .bind(from)
            .bind(to)
            .execute(db.pool())
            .await
            .unwrap();
        from = to + 1;
    }
    sqlx::query("INSERT INTO audit_chain_heads (chain, seq, hash) VALUES ($1, $2, 'seeded')")
        .bind(org.to_string())
        .bind(n)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn org(db: &Db, slug: &str) -> OrgId {
    let org = OrgId::new();
    sqlx::query("INSERT INTO orgs (id, slug, name, seats, created_at) VALUES ($1, $2, $2, 10, 0)")
        .bind(org.to_string())
        .bind(slug.to_string())
        .execute(db.pool())
        .await
        .unwrap();
    org
}

/// The viewer's query (as `audit::admin::search` builds it) for `raw`, after `before`.
fn page_sql(chain: &str, raw: &RawFilter, before: Option<i64>) -> (String, Vec<Bind>) {
    let filter = raw.check().unwrap();
    let (clause, binds) = where_clause(chain, &filter, before);
    (
        format!(
            "SELECT {} FROM audit_events WHERE {clause} ORDER BY seq DESC LIMIT 51",
            audit_log::store::COLUMNS
        ),
        binds,
    )
}

async fn run(db: &Db, sql: &str, binds: &[Bind]) -> usize {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for b in binds {
        q = match b {
            Bind::Text(v) => q.bind(v.clone()),
            Bind::Int(v) => q.bind(*v),
        };
    }
    q.fetch_all(db.pool()).await.unwrap().len()
}

/// PostgreSQL's plan with the bound values inlined (EXPLAIN cannot take bind parameters here).
async fn plan(db: &Db, sql: &str, binds: &[Bind]) {
    let mut text = sql.to_string();
    for (i, b) in binds.iter().enumerate().rev() {
        let value = match b {
            Bind::Text(v) => format!("'{}'", v.replace('\'', "''")),
            Bind::Int(v) => v.to_string(),
        };
        text = text.replace(&format!("${}", i + 1), &value);
    }
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {text}"
    )))
    .fetch_all(db.pool())
    .await
    .unwrap();
    for (line,) in rows {
        println!("      {line}");
    }
}

async fn queries(db: &Db, chain: &str, n: i64) {
    let raw = |f: &dyn Fn(&mut RawFilter)| {
        let mut r = RawFilter::default();
        f(&mut r);
        r
    };
    let cases: Vec<(&str, RawFilter, Option<i64>)> = vec![
        ("first page", RawFilter::default(), None),
        (
            "a page deep in the log (cursor)",
            RawFilter::default(),
            Some(n / 2),
        ),
        (
            "action prefix sso.signin",
            raw(&|r| r.action = Some("sso.signin".into())),
            None,
        ),
        (
            "rare action domain.verified",
            raw(&|r| r.action = Some("domain.verified".into())),
            Some(n / 3),
        ),
        (
            "actor (account id)",
            raw(&|r| r.actor = Some("acct-42".into())),
            None,
        ),
        (
            "actor (email)",
            raw(&|r| r.actor = Some("user42@big.test".into())),
            None,
        ),
        (
            "target",
            raw(&|r| r.target = Some("target-1234".into())),
            None,
        ),
        ("ip", raw(&|r| r.ip = Some("10.7.7.1".into())), None),
        (
            "time range (one day, mid-log)",
            raw(&|r| {
                r.since = Some((T0 + n / 2 * 1000).to_string());
                r.until = Some((T0 + n / 2 * 1000 + 86_400_000).to_string());
            }),
            None,
        ),
        (
            "free text (common)",
            raw(&|r| r.q = Some("big.test".into())),
            None,
        ),
        (
            "free text (one event)",
            raw(&|r| r.q = Some(format!("user{}@", n / 2 + 5000 * 7))),
            None,
        ),
    ];
    for (label, filter, before) in cases {
        let (sql, binds) = page_sql(chain, &filter, before);
        let mut found = 0;
        common::time(label, 5, async || found = run(db, &sql, &binds).await).await;
        println!("      ({found} rows)");
        if db.dialect() == Dialect::Postgres {
            plan(db, &sql, &binds).await;
        }
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn export_all(db: &Db, chain: &str, filter: Filter) -> (usize, usize) {
    let mut stream = Box::pin(export::stream(
        db.pool().clone(),
        chain.to_string(),
        filter,
        Format::Csv,
    ));
    let (mut bytes, mut lines) = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += 1;
    }
    (bytes, lines)
}

async fn export(db: &Db, chain: &str, n: i64) {
    let small = RawFilter {
        since: Some((T0 + (n - 10_000) * 1000).to_string()),
        ..Default::default()
    };
    for (label, filter) in [
        ("10,000 events", small.check().unwrap()),
        ("all events", Filter::default()),
    ] {
        let start = Instant::now();
        let (bytes, lines) = export_all(db, chain, filter).await;
        println!(
            "  CSV export of {label}: {} lines, {:.1} MiB in {:.1} s; peak RSS of the process so far {:.1} MiB",
            lines - 1,
            bytes as f64 / 1_048_576.0,
            start.elapsed().as_secs_f64(),
            peak_rss_kib() as f64 / 1024.0
        );
    }
}

/// `writers` tasks append `each` events; `same_org` puts them all in one chain.
async fn appends(db: &Db, writers: usize, each: usize, same_org: bool) -> f64 {
    let mut orgs = Vec::new();
    for i in 0..writers {
        orgs.push(if same_org && i > 0 {
            orgs[0]
        } else {
            org(db, &format!("w{}", uuid::Uuid::new_v4().simple())).await
        });
    }
    let start = Instant::now();
    let tasks: Vec<_> = orgs
        .into_iter()
        .map(|org_id| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let mut tx = db.begin().await.unwrap();
                    audit_log::record(
                        &mut tx,
                        T0 + i as i64,
                        audit_log::Event {
                            org_id: Some(org_id),
                            action: AuditAction::SsoSigninSucceeded,
                            actor: &Actor::Anonymous,
                            target: None,
                            meta: &RequestMeta::default(),
                            details: serde_json::json!({ "n": i }),
                        },
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (writers * each) as f64 / start.elapsed().as_secs_f64()
}

/// A fresh migrated PostgreSQL database (for AUDIT_BENCH_POSTGRES_ONLY runs at larger sizes).
async fn postgres_only() -> Db {
    let admin =
        std::env::var("NULAB_PASS_TEST_POSTGRES_URL").expect("NULAB_PASS_TEST_POSTGRES_URL");
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin_db = Db::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin_db.pool())
        .await
        .unwrap();
    let db = Db::connect(&format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    db
}

#[tokio::main]
async fn main() {
    let n = events();
    let bench = async |name: &str, db: Db| {
        println!(
            "{name}: {n} events in one organization, {} in another",
            n / 10
        );
        let big = org(&db, "big").await;
        let other = org(&db, "other").await;
        let start = Instant::now();
        seed(&db, big, n).await;
        seed(&db, other, n / 10).await;
        common::analyze(&db).await;
        println!("  seeded in {:.0} s", start.elapsed().as_secs_f64());
        queries(&db, &big.to_string(), n).await;
        export(&db, &big.to_string(), n).await;
        for (writers, same) in [(1, true), (8, true), (8, false)] {
            let rate = appends(&db, writers, 200, same).await;
            println!(
                "  appends: {writers} writer(s), {}: {rate:.0} events/s",
                if same {
                    "one organization"
                } else {
                    "one organization each"
                }
            );
        }
    };
    if std::env::var("AUDIT_BENCH_POSTGRES_ONLY").is_ok() {
        // The database is left in place for inspection; drop it by hand.
        bench("PostgreSQL", postgres_only().await).await;
    } else {
        common::on_each_backend(bench).await;
    }
}
