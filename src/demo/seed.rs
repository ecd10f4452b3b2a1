//! What the demo puts in a fresh data directory, each piece through the code path an operator
//! or an admin would take: Nulab accounts, the organizations `acme` and `globex`, seats, the
//! domain `acme.test` verified by a real TXT lookup against the demo DNS server, an SSO
//! connection made from the mock IdP's metadata URL, managed accounts, a migration request and
//! the product "Backlog (demo)". Every step writes its audit events; the actor is the operator.

use anyhow::Context;

use super::dns::DemoDns;
use crate::accounts::{self, Account, Email, NewAccount};
use crate::audit::{Actor, RequestMeta};
use crate::config::Config;
use crate::db::Db;
use crate::domains::{self, DomainSettings, DomainStatus, TxtLookup};
use crate::managed::NewManaged;
use crate::migration::Wanted;
use crate::orgs::{self, AdminScope, Org, OrgSlug, Role};

/// The demo's organization with SSO.
pub const ORG: &str = "acme";
/// Its verified domain.
pub const DOMAIN: &str = "acme.test";
/// Its admin, a Nulab account that signs in with the printed password.
pub const ADMIN: &str = "admin@acme.test";
/// The managed accounts of `acme`, which sign in through the mock IdP.
pub const MANAGED: [(&str, &str); 3] = [
    ("alice@acme.test", "Alice Adams"),
    ("dave@acme.test", "Dave Diaz"),
    ("erin@acme.test", "Erin Evans"),
];
/// Nulab-account members of `acme` on its domain, ready to migrate; the first has a request
/// waiting (its email is on `/dev/mail`) and is also a member of `globex`.
pub const NULAB_MEMBERS: [(&str, &str); 2] = [
    ("bob@acme.test", "Bob Brown"),
    ("carol@acme.test", "Carol Chen"),
];
/// The second organization and its admin.
pub const SECOND_ORG: &str = "globex";
pub const SECOND_ADMIN: &str = "admin@globex.test";
/// Seats of `acme`.
pub const SEATS: i64 = 10;

/// What seeding made that the demo must remember.
pub struct Seeded {
    pub client_id: String,
    pub client_secret: String,
}

/// Where the demo's pieces listen, as the seeding needs them.
pub struct Places<'a> {
    pub config: &'a Config,
    pub dns: &'a DemoDns,
    pub idp_metadata_url: &'a str,
    pub product_url: &'a str,
    pub password: &'a str,
}

fn now() -> i64 {
    crate::clock::Clock::default().now_ms()
}

/// Seeds a fresh database.
pub async fn seed(db: &Db, at: &Places<'_>) -> anyhow::Result<Seeded> {
    let base_url = at.config.base_url();
    let admin = nulab_account(db, ADMIN, "Ada Admin", at.password, &base_url).await?;
    let acme = org(db, at.config, ORG, "Acme Corporation", &admin).await?;
    for (email, name) in NULAB_MEMBERS {
        nulab_account(db, email, name, at.password, &base_url).await?;
        add_member(db, &acme, email).await?;
    }
    let globex_admin =
        nulab_account(db, SECOND_ADMIN, "Gina Green", at.password, &base_url).await?;
    let globex = org(db, at.config, SECOND_ORG, "Globex", &globex_admin).await?;
    add_member(db, &globex, NULAB_MEMBERS[0].0).await?;
    crate::billing::cli::operator_seats(at.config, db, &acme, SEATS)
        .await
        .context("setting the seats of acme")?;
    verify_domain(db, at, &acme, DOMAIN).await?;
    connect_idp(db, at, &acme).await?;
    for (email, name) in MANAGED {
        managed_account(db, &acme, email, name, &base_url).await?;
    }
    request_migration(db, &acme, NULAB_MEMBERS[0].0, &base_url).await?;
    product(db, at.product_url).await
}

async fn nulab_account(
    db: &Db,
    email: &str,
    name: &str,
    password: &str,
    base_url: &str,
) -> anyhow::Result<Account> {
    let new = NewAccount {
        email: Email::parse(email)?,
        name: name.to_string(),
        password_hash: accounts::password::hash(password).await?,
        email_verified: true,
    };
    let mut tx = db.begin().await?;
    let account = accounts::sign_up(
        &mut tx,
        now(),
        new,
        &Actor::Operator,
        &RequestMeta::default(),
        base_url,
    )
    .await
    .with_context(|| format!("creating the Nulab account {email}"))?;
    tx.commit().await?;
    Ok(account)
}

async fn org(
    db: &Db,
    config: &Config,
    slug: &str,
    name: &str,
    admin: &Account,
) -> anyhow::Result<Org> {
    let slug = OrgSlug::parse(slug)?;
    let trial = config.billing.trial_seats;
    let mut tx = db.begin().await?;
    let org = orgs::create(
        &mut tx,
        now(),
        &slug,
        name,
        admin,
        trial,
        &Actor::Operator,
        &RequestMeta::default(),
    )
    .await
    .with_context(|| format!("creating the organization {slug:?}"))?;
    tx.commit().await?;
    Ok(org)
}

async fn add_member(db: &Db, org: &Org, email: &str) -> anyhow::Result<()> {
    let scope = AdminScope::operator(org.clone());
    let mut tx = db.begin().await?;
    orgs::add_member(&mut tx, now(), &scope, email, Role::Member)
        .await
        .with_context(|| format!("adding {email} to {}", org.slug))?;
    tx.commit().await?;
    Ok(())
}

/// Adds the domain, publishes its record on the demo DNS server and verifies it the way "Verify
/// now" does: a TXT lookup through the configured name servers.
async fn verify_domain(db: &Db, at: &Places<'_>, org: &Org, name: &str) -> anyhow::Result<()> {
    let scope = AdminScope::operator(org.clone());
    let settings = DomainSettings::from_config(at.config);
    let mut tx = db.begin().await?;
    let domain = domains::add(&mut tx, now(), &scope, &settings, name).await?;
    tx.commit().await?;
    at.dns
        .publish(domain.txt_name(), &domain.txt_value())
        .await
        .with_context(|| format!("publishing the TXT record of {name}"))?;
    let lookup = TxtLookup::from_config(at.config)?;
    let base_url = at.config.base_url();
    let domain =
        domains::verify_now(db, &lookup, now(), &scope, &settings, &base_url, domain.id).await?;
    anyhow::ensure!(
        domain.status == DomainStatus::Verified,
        "{name} did not verify against the demo DNS server: {}",
        domain.last_check_message.unwrap_or_default()
    );
    Ok(())
}

/// Creates the SSO connection from the mock IdP's metadata URL, as an admin would paste it.
async fn connect_idp(db: &Db, at: &Places<'_>, org: &Org) -> anyhow::Result<()> {
    let scope = AdminScope::operator(org.clone());
    let (meta, xml) = crate::saml::load_metadata(None, Some(at.idp_metadata_url), None, true)
        .await
        .context("reading the mock IdP's metadata")?;
    let new = crate::saml::NewConnection {
        metadata_url: Some(at.idp_metadata_url.to_string()),
        name: Some("Mock IdP (demo)".to_string()),
        ..Default::default()
    };
    let mut tx = db.begin().await?;
    crate::saml::create(&mut tx, now(), &scope, &new, meta, xml).await?;
    tx.commit().await?;
    Ok(())
}

/// A managed account without a password: it signs in through SSO (its activation email, which
/// would let it choose a password, is on `/dev/mail`).
async fn managed_account(
    db: &Db,
    org: &Org,
    email: &str,
    name: &str,
    base_url: &str,
) -> anyhow::Result<()> {
    let scope = AdminScope::operator(org.clone());
    let new = NewManaged {
        email: email.to_string(),
        name: name.to_string(),
        role: None,
        password: None,
    };
    let mut tx = db.begin().await?;
    crate::managed::create(&mut tx, now(), &scope, &new, None, base_url)
        .await
        .with_context(|| format!("creating the managed account {email}"))?;
    tx.commit().await?;
    Ok(())
}

async fn request_migration(db: &Db, org: &Org, email: &str, base_url: &str) -> anyhow::Result<()> {
    let scope = AdminScope::operator(org.clone());
    let mut tx = db.begin().await?;
    let wanted = [Wanted::Email(email.to_string())];
    let results =
        crate::migration::request_batch(&mut tx, now(), &scope, &wanted, base_url).await?;
    tx.commit().await?;
    if let Some(message) = results.iter().find_map(|r| r.message.clone()) {
        anyhow::bail!("the migration request for {email} was refused: {message}");
    }
    Ok(())
}

/// Registers the demo product with its callback and where it returns after signing out.
pub async fn product(db: &Db, product_url: &str) -> anyhow::Result<Seeded> {
    let redirect = vec![format!("{product_url}/callback")];
    let after_logout = vec![format!("{product_url}/")];
    let mut tx = db.begin().await?;
    let name = super::product::PRODUCT_NAME;
    let created = crate::oidc::clients::create(
        &mut tx,
        now(),
        name,
        &redirect,
        &after_logout,
        None,
        &Actor::Operator,
    )
    .await
    .context("registering the demo product")?;
    tx.commit().await?;
    Ok(Seeded {
        client_id: created.client_id,
        client_secret: created.client_secret,
    })
}
