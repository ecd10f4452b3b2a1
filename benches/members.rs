//! Member list at 100,000 members: seeds one organization (10% managed accounts, 5% of those
//! suspended) and times the first page, a page deep into the list through its cursor, and the
//! filtered lists. SQLite always; PostgreSQL too when NULAB_PASS_TEST_POSTGRES_URL is set.
//! Run: `cargo bench --bench members`.

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use common::time;

use nulab_pass::accounts::{AccountKind, AccountStatus};
use nulab_pass::db::Db;
use nulab_pass::ids::{AccountId, OrgId};
use nulab_pass::orgs::invitations::store::{EntryQuery, Rows};
use nulab_pass::orgs::{self, MemberFilter};

const MEMBERS: usize = 100_000;

async fn seed(db: &Db) -> OrgId {
    let org = OrgId::new();
    let mut tx = db.begin().await.unwrap();
    sqlx::query("INSERT INTO orgs (id, slug, name, seats, created_at) VALUES ($1, 'big', 'Big Corp', 20000, 0)")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
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
            let email = format!("user{i:06}@big.test");
            let managed = i % 10 == 0;
            let (kind, org_ref) = if managed {
                ("managed", format!("'{org}'"))
            } else {
                ("nulab", "NULL".to_string())
            };
            let status = if managed && i % 200 == 0 {
                "suspended"
            } else {
                "active"
            };
            let sep = if j == 0 { "" } else { "," };
            accounts.push_str(&format!(
                "{sep}('{id}','{email}','{email}','User {i}','{kind}',{org_ref},'{status}',0,0,0)"
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
    org
}

async fn bench(name: &str, db: Db) {
    let start = Instant::now();
    let org = seed(&db).await;
    common::analyze(&db).await;
    println!(
        "{name}: seeded {MEMBERS} members in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let pool = db.pool().clone();
    let all = MemberFilter::default();
    time("first page (50)", 50, async || {
        orgs::list_members(&pool, org, &all, None, 50)
            .await
            .unwrap()
    })
    .await;
    // Walk to the middle once to get a deep cursor.
    let mut cursor = None;
    for _ in 0..(MEMBERS / 2 / 500) {
        let page = orgs::list_members(&pool, org, &all, cursor.as_deref(), 500)
            .await
            .unwrap();
        cursor = page.next_cursor;
    }
    let deep = cursor.clone();
    time("page at member 50,000 (50, by cursor)", 50, async || {
        orgs::list_members(&pool, org, &all, deep.as_deref(), 50)
            .await
            .unwrap()
    })
    .await;
    let managed = MemberFilter {
        kind: Some(AccountKind::Managed),
        status: None,
    };
    time("first page, managed accounts only", 50, async || {
        orgs::list_members(&pool, org, &managed, None, 50)
            .await
            .unwrap()
    })
    .await;
    let suspended = MemberFilter {
        kind: Some(AccountKind::Managed),
        status: Some(AccountStatus::Suspended),
    };
    time("first page, suspended managed accounts", 50, async || {
        orgs::list_members(&pool, org, &suspended, None, 50)
            .await
            .unwrap()
    })
    .await;
    time("page of 500", 20, async || {
        orgs::list_members(&pool, org, &all, None, 500)
            .await
            .unwrap()
    })
    .await;
    // The API's list: members and open invitations in one order (1,000 invitations seeded).
    invitations(&db, org).await;
    let query = || EntryQuery {
        org,
        kind: None,
        status: None,
        rows: Rows::Both,
        after: None,
        limit: 50,
        now: 0,
    };
    time(
        "API list with invitations, first page (50)",
        50,
        async || orgs::invitations::list(&pool, query(), None).await.unwrap(),
    )
    .await;
    time(
        "API list with invitations, page at member 50,000 (50)",
        50,
        async || {
            orgs::invitations::list(&pool, query(), deep.as_deref())
                .await
                .unwrap()
        },
    )
    .await;
    time("API list, open invitations only (50)", 50, async || {
        let only = EntryQuery {
            rows: Rows::InvitationsOnly,
            ..query()
        };
        orgs::invitations::list(&pool, only, None).await.unwrap()
    })
    .await;
}

/// 1,000 pending invitations of `org`, spread through the member list's order.
async fn invitations(db: &Db, org: OrgId) {
    let mut sql = String::from(
        "INSERT INTO invitations (id, org_id, email, email_norm, role, status, token_hash, \
         invited_by, created_at, sent_at, expires_at) VALUES ",
    );
    for i in 0..1000 {
        let sep = if i == 0 { "" } else { "," };
        let email = format!("user{:06}x@big.test", i * 100);
        let id = uuid::Uuid::new_v4();
        sql.push_str(&format!(
            "{sep}('{id}','{org}','{email}','{email}','member','pending','h{id}','bench',0,0,{})",
            i64::MAX / 2
        ));
    }
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(db.pool())
        .await
        .unwrap();
    common::analyze(db).await;
}

#[tokio::main]
async fn main() {
    common::on_each_backend(bench).await;
}
