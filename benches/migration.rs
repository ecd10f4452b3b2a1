//! Migration at scale: an organization of 5,000 Nulab-account members on a verified domain. Times
//! the admin page's eligibility overview (before and with 3,000 pending requests), one batch of
//! 1,000 requests in one transaction (requests, emails and audit events), and one acceptance
//! (proof by session, so no password hashing is counted). SQLite always; PostgreSQL too when
//! NULAB_PASS_TEST_POSTGRES_URL is set. Run: `cargo bench --bench migration`.

#[path = "common/mod.rs"]
mod common;

use std::cell::Cell;
use std::time::Instant;

use common::time;
use nulab_pass::audit::RequestMeta;
use nulab_pass::db::Db;
use nulab_pass::ids::AccountId;
use nulab_pass::migration::{self, Proof, Wanted, overview};
use nulab_pass::orgs::{self, AdminScope};

const MEMBERS: usize = 5_000;
const BATCH: usize = 1_000;
const BASE: &str = "https://pass.example";

async fn seed(db: &Db) -> (orgs::Org, Vec<AccountId>) {
    let mut tx = db.begin().await.unwrap();
    let org = nulab_pass::ids::OrgId::new();
    sqlx::query("INSERT INTO orgs (id, slug, name, seats, created_at) VALUES ($1, 'corp', 'Corp', 20000, 0)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO domains (id, org_id, domain, status, token, created_at, token_issued_at, \
         verified_at, next_check_at, updated_at) VALUES ($1, $2, 'corp.test', 'verified', 't', 0, 0, 0, $3, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(org.to_string())
    .bind(i64::MAX / 2)
    .execute(&mut *tx)
    .await
    .unwrap();
    let mut ids = Vec::with_capacity(MEMBERS);
    for chunk in 0..MEMBERS / 500 {
        let mut accounts = String::from(
            "INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, email_verified_at, created_at, updated_at) VALUES ",
        );
        let mut members = String::from(
            "INSERT INTO memberships (org_id, account_id, role, created_at, sort_key) VALUES ",
        );
        for j in 0..500 {
            let i = chunk * 500 + j;
            let id = AccountId::new();
            ids.push(id);
            let email = format!("user{i:05}@corp.test");
            let sep = if j == 0 { "" } else { "," };
            accounts.push_str(&format!(
                "{sep}('{id}','{email}','{email}','User {i}','nulab',NULL,'active',0,0,0)"
            ));
            members.push_str(&format!("{sep}('{org}','{id}','member',0,'{email}')"));
        }
        sqlx::query(sqlx::AssertSqlSafe(accounts))
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(members))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let org = orgs::store::by_slug(db.pool(), "corp")
        .await
        .unwrap()
        .unwrap();
    (org, ids)
}

async fn bench(name: &str, db: Db) {
    let start = Instant::now();
    let (org, ids) = seed(&db).await;
    common::analyze(&db).await;
    println!(
        "{name}: seeded {MEMBERS} members in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    time("eligibility overview, 5,000 members", 5, async || {
        overview::candidates(&db, org.id).await.unwrap()
    })
    .await;
    // Three batches (a warm-up and two timed), each of 1,000 members not asked before.
    let scope = AdminScope::operator(org.clone());
    let next = Cell::new(0);
    time("1,000 requests in one transaction", 2, async || {
        let slice = &ids[next.get() * BATCH..(next.get() + 1) * BATCH];
        next.set(next.get() + 1);
        let wanted: Vec<Wanted> = slice.iter().map(|id| Wanted::Id(id.to_string())).collect();
        let mut tx = db.begin().await.unwrap();
        let results = migration::request_batch(&mut tx, 0, &scope, &wanted, BASE)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(results.iter().all(|r| r.id.is_some()));
    })
    .await;
    time("eligibility overview, 3,000 pending", 5, async || {
        overview::candidates(&db, org.id).await.unwrap()
    })
    .await;
    // The consent links, from the queued emails.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.id, o.body_text FROM outbox o JOIN accounts a ON a.email = o.to_addr \
         WHERE o.kind = 'migration.requested'",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let links: Vec<(AccountId, String)> = rows
        .into_iter()
        .take(201)
        .map(|(id, body)| {
            let start = body.find("/migration/").unwrap() + "/migration/".len();
            let token: String = body[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            (AccountId::parse(&id).unwrap(), token)
        })
        .collect();
    let next = Cell::new(0);
    let meta = RequestMeta::default();
    let certs = tempfile::tempdir().unwrap();
    let totp_key = nulab_pass::accounts::totp_key::TotpKey::new(certs.path());
    let config = nulab_pass::Config::with_database("sqlite::memory:");
    time("one acceptance (signed in: no hashing)", 200, async || {
        let (id, token) = &links[next.get()];
        next.set(next.get() + 1);
        migration::accept(
            &db,
            &totp_key,
            &config,
            1,
            token,
            Proof::SignedIn(*id),
            &meta,
        )
        .await
        .unwrap()
    })
    .await;
}

#[tokio::main]
async fn main() {
    common::on_each_backend(bench).await;
}
