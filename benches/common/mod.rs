//! What the benchmarks share: a timer that reports the median and the worst of its runs, and a
//! runner that benchmarks SQLite always and PostgreSQL too when NULAB_PASS_TEST_POSTGRES_URL is
//! set (each in a fresh, migrated database).

use std::time::{Duration, Instant};

use nulab_pass::db::Db;

/// Runs `f` once to warm up, then `runs` times, and prints the median and the maximum.
pub async fn time<T>(label: &str, runs: u32, mut f: impl AsyncFnMut() -> T) {
    f().await;
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        f().await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let worst = samples[samples.len() - 1];
    println!(
        "  {label:<48} median {:>7.2} ms   max {:>7.2} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}

/// Gathers planner statistics after seeding on PostgreSQL, as autovacuum would in a running
/// deployment (without them the planner guesses, and timings swing by a factor of 50).
pub async fn analyze(db: &Db) {
    if db.dialect() == nulab_pass::db::Dialect::Postgres {
        sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();
    }
}

/// Calls `bench` with a fresh migrated database of each backend there is.
pub async fn on_each_backend(bench: impl AsyncFn(&str, Db)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let db = Db::connect(&sqlite).await.unwrap();
    db.migrate().await.unwrap();
    bench("SQLite", db.clone()).await;
    db.close().await;
    if let Ok(admin) = std::env::var("NULAB_PASS_TEST_POSTGRES_URL") {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin_db = Db::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin_db.pool())
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        let db = Db::connect(&format!("{base}/{name}")).await.unwrap();
        db.migrate().await.unwrap();
        bench("PostgreSQL", db.clone()).await;
        db.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(admin_db.pool())
            .await
            .unwrap();
    }
}
