//! The SSO fixture the SSO benchmarks and the ACS load tool share: an organization `load` with
//! the verified domain `load.test`, `accounts` active managed accounts `user{n}@load.test`, and
//! a connection to the mock IdP (its key in `certs_dir`, as `nulab-pass mock-idp` and
//! `mock-idp mint` use it) that allows IdP-initiated sign-in.
#![allow(dead_code)]

use std::path::Path;

use nulab_pass::audit::{Actor, RequestMeta};
use nulab_pass::db::Db;
use nulab_pass::ids::AccountId;
use nulab_pass::mock_idp::MockIdp;
use nulab_pass::saml::{self, Connection};
use nulab_pass::{accounts, orgs};

/// The mock IdP's public URL when `mock-idp` runs with its defaults.
pub const IDP_URL: &str = "http://127.0.0.1:8090";

/// The email of managed account number `n`.
pub fn email(n: usize) -> String {
    format!("user{n}@load.test")
}

/// The email template `mock-idp mint --email` takes.
pub const EMAIL_TEMPLATE: &str = "user{n}@load.test";

/// What a benchmark needs to sign in through the fixture.
pub struct Fixture {
    pub idp: MockIdp,
    pub connection: Connection,
    pub acs_url: String,
    pub audience: String,
}

/// The mock IdP with its key from `certs_dir` (created when absent), as the CLI loads it.
pub fn mock_idp(certs_dir: &Path) -> MockIdp {
    let keys = saml::keys::load_or_create(certs_dir, "mock-idp", "nulab-pass mock IdP (test only)")
        .expect("mock IdP key");
    MockIdp::with_keys(
        &format!("{IDP_URL}/metadata"),
        &format!("{IDP_URL}/sso"),
        keys,
    )
}

/// Seeds the fixture in `db` for a server at `base_url`.
pub async fn seed(db: &Db, certs_dir: &Path, base_url: &str, accounts: usize) -> Fixture {
    let now = nulab_pass::clock::Clock::default().now_ms();
    let idp = mock_idp(certs_dir);
    let mut tx = db.begin().await.expect("begin");
    let admin = accounts::sign_up(
        &mut tx,
        now,
        accounts::NewAccount {
            email: accounts::Email::parse("admin@admins.test").expect("email"),
            name: "Admin".into(),
            password_hash: "!".into(),
            email_verified: true,
        },
        &Actor::Operator,
        &RequestMeta::default(),
        base_url,
    )
    .await
    .expect("admin");
    let slug = orgs::OrgSlug::parse("load").expect("slug");
    let org = orgs::create(
        &mut tx,
        now,
        &slug,
        "Load Test",
        &admin,
        nulab_pass::config::DEFAULT_TRIAL_SEATS,
        &Actor::Operator,
        &RequestMeta::default(),
    )
    .await
    .expect("org");
    sqlx::query(
        "INSERT INTO domains (id, org_id, domain, status, token, created_at, token_issued_at, \
         verified_at, next_check_at, updated_at) VALUES ($1, $2, 'load.test', 'verified', $3, $4, $4, $4, $5, $4)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(org.id.to_string())
    .bind(format!("fixture-{}", uuid::Uuid::new_v4().simple()))
    .bind(now)
    .bind(now + 365 * 24 * 3_600_000)
    .execute(&mut *tx)
    .await
    .expect("domain");
    insert_accounts(&mut tx, &org, accounts, now).await;
    let new: saml::NewConnection = serde_json::from_value(serde_json::json!({
        "name": "Mock IdP",
        "allow_idp_initiated": true,
    }))
    .expect("settings");
    let xml = idp.metadata_xml();
    let meta = saml::metadata::parse(&xml, None).expect("metadata");
    let scope = orgs::AdminScope::operator(org.clone());
    let connection = saml::create(&mut tx, now, &scope, &new, meta, xml)
        .await
        .expect("connection");
    tx.commit().await.expect("commit");
    let urls = connection.sp_urls(base_url);
    Fixture {
        idp,
        connection,
        acs_url: urls.acs_url,
        audience: urls.sp_entity_id,
    }
}

/// `count` active managed accounts of `org` (with their memberships), 500 a statement.
async fn insert_accounts(tx: &mut nulab_pass::db::Tx, org: &orgs::Org, count: usize, now: i64) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut accounts = String::from(
            "INSERT INTO accounts (id, email, email_norm, name, kind, org_id, status, email_verified_at, created_at, updated_at) VALUES ",
        );
        let mut members = String::from(
            "INSERT INTO memberships (org_id, account_id, role, created_at, sort_key) VALUES ",
        );
        for (j, n) in chunk.iter().enumerate() {
            let id = AccountId::new();
            let email = email(*n);
            let sep = if j == 0 { "" } else { "," };
            let org = org.id;
            accounts.push_str(&format!(
                "{sep}('{id}','{email}','{email}','User {n}','managed','{org}','active',{now},{now},{now})"
            ));
            members.push_str(&format!("{sep}('{org}','{id}','member',{now},'{email}')"));
        }
        for sql in [accounts, members] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut **tx)
                .await
                .expect("accounts");
        }
    }
}
