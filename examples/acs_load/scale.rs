//! `--scale ORGS,ACCOUNTS,EVENTS`: the same measurements on an empty database and on one that
//! holds a large deployment, to show whether the sign-in, the members page and the audit viewer
//! stay flat as the tables grow.
//!
//! The organizations are created by the product's own functions (`accounts::sign_up` for an
//! admin each, `orgs::create`: subscription, membership, audit events and chain head as in a real
//! deployment). Their members and audit events are written in bulk by the database itself (a
//! recursive series joined with the organizations), because a million sign-ups through the
//! product would take hours: each organization gets an equal share of ACCOUNTS as active
//! managed accounts with memberships and of nine tenths of EVENTS on its audit chain, and the
//! load organization's own chain gets the last tenth, so its viewer pages through a million
//! events. Seeded events are dated within the retention period (so no pruning job runs during a
//! measurement) and carry placeholder hashes: the chains are not what is measured here
//! (`tests/audit` proves them), so `audit verify` does not pass on a seeded database.

use std::time::{Duration, Instant};

use nulab_pass::audit::{Actor, RequestMeta};
use nulab_pass::db::{Db, Dialect};
use nulab_pass::{accounts, orgs};

/// The size of the seeded deployment.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub orgs: usize,
    pub accounts: usize,
    pub events: usize,
}

impl Scale {
    /// `ORGS,ACCOUNTS,EVENTS`, e.g. `10000,1000000,10000000`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<usize> = text
            .split(',')
            .map(|p| p.trim().replace('_', "").parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--scale takes ORGS,ACCOUNTS,EVENTS: {e}"))?;
        match parts[..] {
            [orgs, accounts, events] if orgs > 0 => Ok(Self {
                orgs,
                accounts,
                events,
            }),
            _ => Err("--scale takes ORGS,ACCOUNTS,EVENTS with ORGS above 0".into()),
        }
    }
}

/// Organizations are created (and their rows filled) this many at a time.
const ORG_BATCH: usize = 250;
/// The seeded events span this many days before now (the retention default is 400).
const SPAN_DAYS: i64 = 300;

/// A UUID-shaped text from a 36-character UUID expression and a number, as SQL: the first 24
/// characters of the UUID, then the number in 12 hexadecimal digits.
fn derived_id(dialect: Dialect, uuid: &str, n: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("substr({uuid}, 1, 24) || printf('%012x', {n})"),
        Dialect::Postgres => format!("substr({uuid}, 1, 24) || lpad(to_hex({n}), 12, '0')"),
    }
}

/// Seeds `scale` beside the load organization `load_org` (whose chain gets a tenth of the
/// events). Prints its progress; returns the time it took.
pub async fn seed(db: &Db, scale: Scale, load_org: &str) -> Duration {
    let start = Instant::now();
    let now = nulab_pass::clock::Clock::default().now_ms();
    if db.dialect() == Dialect::Sqlite {
        // A cache of a gigabyte while seeding: the indexes of ten million events do not fit
        // SQLite's default of two megabytes.
        sqlx::query("PRAGMA cache_size = -1000000")
            .execute(&mut *db.write().await.expect("the writer"))
            .await
            .expect("cache size");
    }
    let per_org_accounts = scale.accounts / scale.orgs;
    let load_events = scale.events / 10;
    let per_org_events = (scale.events - load_events) / scale.orgs;
    let mut done = 0;
    while done < scale.orgs {
        let batch = ORG_BATCH.min(scale.orgs - done);
        let ids = create_orgs(db, now, done, batch).await;
        fill(db, now, &ids, per_org_accounts, per_org_events).await;
        done += batch;
        if done % 2_500 == 0 || done == scale.orgs {
            eprintln!(
                "  seeded {done} of {} organizations ({:.0} s)",
                scale.orgs,
                start.elapsed().as_secs_f64()
            );
        }
    }
    events(db, now, &[load_org.to_string()], load_events).await;
    eprintln!(
        "  seeded {load_events} events of the load organization ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    if db.dialect() == Dialect::Postgres {
        // What a settled deployment of this size has long done: autovacuum's planner statistics
        // and visibility map (without it a count over an index reads the table's rows too; left
        // to autovacuum, the bulk load's tables are vacuumed during the measurement, by its
        // threshold for inserted rows) and the checkpoint of the load's log.
        for settle in ["VACUUM ANALYZE", "CHECKPOINT"] {
            sqlx::query(settle)
                .execute(db.pool())
                .await
                .expect("settle the database");
        }
    }
    // The bulk load's gigabytes on disk before the clock starts again, rather than written back
    // by the kernel during the measurement.
    let synced = std::process::Command::new("sync").status();
    assert!(synced.is_ok_and(|s| s.success()), "sync");
    start.elapsed()
}

/// `count` organizations `scale-{first}`..., each founded by its own admin.
async fn create_orgs(db: &Db, now: i64, first: usize, count: usize) -> Vec<String> {
    let mut tx = db.begin().await.expect("begin");
    let mut ids = Vec::with_capacity(count);
    for i in first..first + count {
        let admin = accounts::sign_up(
            &mut tx,
            now,
            accounts::NewAccount {
                email: accounts::Email::parse(&format!("admin@scale-{i}.test")).expect("email"),
                name: format!("Admin {i}"),
                password_hash: "!".into(),
                email_verified: true,
            },
            &Actor::Operator,
            &RequestMeta::default(),
            "http://127.0.0.1",
        )
        .await
        .expect("admin");
        let slug = orgs::OrgSlug::parse(&format!("scale-{i}")).expect("slug");
        let org = orgs::create(
            &mut tx,
            now,
            &slug,
            &format!("Scale {i}"),
            &admin,
            nulab_pass::config::DEFAULT_TRIAL_SEATS,
            &Actor::Operator,
            &RequestMeta::default(),
        )
        .await
        .expect("org");
        ids.push(org.id.to_string());
    }
    tx.commit().await.expect("commit");
    ids
}

/// `accounts` managed accounts with memberships and `events` audit events for each of `orgs`.
async fn fill(db: &Db, now: i64, orgs: &[String], accounts: usize, events_each: usize) {
    let dialect = db.dialect();
    let list = in_list(orgs);
    if accounts > 0 {
        let id = derived_id(dialect, "o.id", "g + 1048576");
        let sql = format!(
            "WITH RECURSIVE s(g) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT g + 1 FROM s WHERE g < {accounts}) \
             INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, \
             email_verified_at, created_at, updated_at) \
             SELECT {id}, 'u' || g || '@' || o.slug || '.test', 'u' || g || '@' || o.slug || '.test', \
             'Member ' || g, 'managed', o.id, 'active', {now}, {now}, {now} \
             FROM orgs o CROSS JOIN s WHERE o.id IN ({list})"
        );
        exec(db, &sql).await;
        let sql = format!(
            "INSERT INTO memberships (org_id, account_id, role, created_at, sort_key) \
             SELECT a.org_id, a.id, 'member', {now}, a.email_norm FROM accounts a \
             WHERE a.org_id IN ({list}) AND a.name LIKE 'Member %'"
        );
        exec(db, &sql).await;
    }
    events(db, now, orgs, events_each).await;
}

/// `count` events on each chain of `chains` (organization ids), after its head, which moves
/// past them; dated over the last SPAN_DAYS, oldest first.
async fn events(db: &Db, now: i64, chains: &[String], count: usize) {
    if count == 0 {
        return;
    }
    let dialect = db.dialect();
    let list = in_list(chains);
    let step = SPAN_DAYS * 86_400_000 / count as i64;
    let first = now - SPAN_DAYS * 86_400_000;
    let id = derived_id(dialect, "h.chain", "h.seq + g");
    let case = crate::audit_rows::action_case();
    // A million rows a statement at most, so that progress shows and no transaction grows huge.
    let rows_per_statement = 1_000_000usize;
    let mut from = 1usize;
    while from <= count {
        let to = (from + rows_per_statement / chains.len().max(1)).min(count);
        let sql = format!(
            "WITH RECURSIVE s(g) AS (SELECT CAST({from} AS BIGINT) UNION ALL SELECT g + 1 FROM s WHERE g < {to}) \
             INSERT INTO audit_events (id, org_id, occurred_at, action, actor_type, actor_id, \
             actor_label, target_type, target_id, ip, user_agent, details, chain, seq, prev_hash, hash) \
             SELECT {id}, h.chain, {first} + g * {step}, {case}, 'account', \
             'acct-' || (g % 5000), 'user' || (g % 5000) || '@scale.test', 'account', \
             'target-' || (g % 20000), '10.' || (g % 250) || '.' || (g % 199) || '.1', 'Mozilla/5.0', \
             '{{\"detail\":\"seeded ' || g || '\"}}', h.chain, h.seq + g, 'seeded', 'seeded' \
             FROM audit_chain_heads h CROSS JOIN s WHERE h.chain IN ({list})"
        );
        let mut tx = db.begin().await.expect("begin");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .expect("seed events");
        tx.commit().await.expect("commit");
        from = to + 1;
    }
    let sql = format!(
        "UPDATE audit_chain_heads SET seq = seq + {count}, hash = 'seeded' WHERE chain IN ({list})"
    );
    exec(db, &sql).await;
}

fn in_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("'{}'", id.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",")
}

async fn exec(db: &Db, sql: &str) {
    let mut tx = db.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *tx)
        .await
        .expect("seed");
    tx.commit().await.expect("commit");
}

/// The admin of the load organization, as the fixture creates it.
pub const ADMIN: &str = "admin@admins.test";
/// The password `set_admin_password` gives it.
pub const ADMIN_PASSWORD: &str = "scale-measurement-password";

/// Gives the fixture's admin a password, so that the admin pages can be measured.
pub async fn set_admin_password(db: &Db) {
    let hash = accounts::password::hash(ADMIN_PASSWORD)
        .await
        .expect("hash");
    sqlx::query("UPDATE accounts SET password_hash = $1 WHERE email_norm = $2")
        .bind(hash)
        .bind(ADMIN)
        .execute(&mut *db.write().await.expect("the writer"))
        .await
        .expect("admin password");
}

/// Latency of an admin page, fetched `count` times by a signed-in browser.
pub struct PageTimes {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes: usize,
}

/// A browser signed in as the fixture's admin at `base`.
async fn signed_in(base: &str) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser
        .get(format!("{base}/signin"))
        .send()
        .await
        .expect("sign-in page")
        .text()
        .await
        .expect("text");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_string();
    let res = browser
        .post(format!("{base}/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", "/account"),
            ("email", ADMIN),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .expect("sign in");
    assert_eq!(res.status(), 303, "the admin signs in with a password");
    browser
}

/// Signs in as the fixture's admin on each server of `bases` and times `paths` on each, `count`
/// times after one warm-up: each round fetches every path from every server in turn, so that
/// servers measured together see the same phases of a shared machine. One list per server.
pub async fn time_pages(bases: &[String], paths: &[String], count: usize) -> Vec<Vec<PageTimes>> {
    let mut browsers = Vec::with_capacity(bases.len());
    for base in bases {
        browsers.push(signed_in(base).await);
    }
    let mut times = vec![vec![Vec::with_capacity(count); paths.len()]; bases.len()];
    let mut bytes = vec![vec![0; paths.len()]; bases.len()];
    for round in 0..=count {
        for (p, path) in paths.iter().enumerate() {
            for (b, (base, browser)) in bases.iter().zip(&browsers).enumerate() {
                let t = Instant::now();
                let res = browser
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("page");
                assert_eq!(res.status(), 200, "{path} answers");
                bytes[b][p] = res.bytes().await.expect("body").len();
                if round > 0 {
                    times[b][p].push(t.elapsed());
                }
            }
        }
    }
    times
        .into_iter()
        .zip(bytes)
        .map(|(per_path, bytes)| {
            per_path
                .into_iter()
                .zip(bytes)
                .map(|(mut t, bytes)| {
                    t.sort();
                    PageTimes {
                        p50_ms: crate::percentile(&t, 0.5),
                        p99_ms: crate::percentile(&t, 0.99),
                        bytes,
                    }
                })
                .collect()
        })
        .collect()
}

/// A copy of the database at `url` as it is now, for a second server to serve beside the
/// first: `VACUUM INTO` a file beside it on SQLite, a database made from it as a template on
/// PostgreSQL (which nobody may be connected to meanwhile: stop its server first). Its URL.
pub async fn snapshot(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let copy = format!("{}.fixture", path.split('?').next().unwrap_or(path));
        let db = Db::connect(url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{copy}'")))
            .execute(db.pool())
            .await
            .expect("vacuum into");
        db.close().await;
        return format!("sqlite://{copy}");
    }
    let (server, name) = url.rsplit_once('/').expect("database url");
    let copy = format!("{name}_fixture");
    let admin = Db::connect(&format!("{server}/postgres"))
        .await
        .expect("connect");
    // The server's sessions end a moment after its process does.
    let mut tries = 0;
    loop {
        let made = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {copy} TEMPLATE {name}"
        )))
        .execute(admin.pool())
        .await;
        match made {
            Ok(_) => break,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("copying the database: {e}; again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("copying the database: {e}"),
        }
    }
    admin.close().await;
    format!("{server}/{copy}")
}
