//! `nulab-pass demo`: the whole product on one machine in one process, for a first look. It
//! runs the server (in development mode, on SQLite in a data directory), the mock IdP, a DNS
//! server for `.test` names that the server's domain checks use, and the demo product
//! "Backlog (demo)"; it seeds a fresh data directory (`seed`) and reuses it on the next run.
//! Nothing here is reachable from `serve`: the demo's page (`/demo/dns`) is added to the router
//! only by this command. The DNS server is the one place outside `domains` that uses hickory.

pub mod client;
pub mod dns;
pub mod pages;
pub mod product;
pub mod seed;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::Db;
use crate::{AppState, clock::Clock};

/// The demo's own flags (the server's address is the global `--bind`).
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Folder of the demo's data: the SQLite database, keys, DNS records and credentials.
    #[arg(long, default_value = "demo-data")]
    pub data_dir: PathBuf,
    /// Address of the mock IdP.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub idp_bind: SocketAddr,
    /// Address of the DNS server for `.test` names (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:8053")]
    pub dns_bind: SocketAddr,
    /// Address of the demo product "Backlog (demo)".
    #[arg(long, default_value = "127.0.0.1:8070")]
    pub product_bind: SocketAddr,
    /// Deletes the data directory first and seeds a fresh one.
    #[arg(long)]
    pub reset: bool,
}

/// What the demo remembers between runs (`demo.json` in the data directory).
#[derive(Serialize, Deserialize)]
pub struct Saved {
    /// The password of every seeded Nulab account.
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    pub idp_url: String,
    pub product_url: String,
}

const SAVED: &str = "demo.json";
/// The files and folders a data directory holds; `--reset` deletes nothing else.
const OURS: [&str; 6] = [
    SAVED,
    "dns.json",
    "certs",
    "nulab-pass.db",
    "nulab-pass.db-wal",
    "nulab-pass.db-shm",
];

/// Applies `--reset`, creates the data directory and points the configuration at it:
/// SQLite inside it, keys in its `certs/`, development mode.
pub fn prepare(mut config: Config, args: &DemoArgs) -> anyhow::Result<Config> {
    if args.reset {
        reset(&args.data_dir)?;
    }
    std::fs::create_dir_all(args.data_dir.join("certs"))
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let db = args.data_dir.join("nulab-pass.db");
    config.database_url = format!("sqlite://{}", db.display());
    config.certs_dir = args.data_dir.join("certs");
    config.dev = true;
    Ok(config)
}

/// Deletes the demo's files in `dir`; refuses a folder holding anything else.
fn reset(dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    if let Some(other) = names.iter().find(|n| !OURS.contains(&n.as_str())) {
        anyhow::bail!(
            "--reset refuses to empty {}: it holds {other:?}, which the demo did not make",
            dir.display()
        );
    }
    for name in names {
        let path = dir.join(name);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn load_saved(dir: &Path) -> anyhow::Result<Option<Saved>> {
    match std::fs::read(dir.join(SAVED)) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).context("reading demo.json")?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn store_saved(dir: &Path, saved: &Saved) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join(SAVED);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(&serde_json::to_vec_pretty(saved)?)?;
    Ok(())
}

/// A password for the seeded accounts: three groups of four lowercase letters and digits.
fn new_password() -> String {
    let raw: Vec<char> = std::iter::repeat_with(|| crate::secrets::new_token(""))
        .flat_map(|t| t.chars().collect::<Vec<_>>())
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    raw.chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

async fn listen(
    addr: SocketAddr,
    what: &str,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("{what} cannot listen on {addr} (is another program using it? pass {flag} to choose another address)")
    })
}

/// The demo while it runs; [`Running::stop`] ends it.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    jobs: Vec<tokio::task::JoinHandle<()>>,
    db: Db,
    _dns: Arc<dns::DemoDns>,
}

impl Running {
    pub async fn stop(self) {
        for task in self.tasks.into_iter().chain(self.jobs) {
            task.abort();
        }
        self.db.close().await;
    }
}

/// The listeners of the demo, bound before anything starts so a taken port fails at once.
struct Listeners {
    server: tokio::net::TcpListener,
    idp: tokio::net::TcpListener,
    product: tokio::net::TcpListener,
    dns: Arc<dns::DemoDns>,
}

async fn bind_all(config: &Config, args: &DemoArgs) -> anyhow::Result<Listeners> {
    let server = listen(config.bind, "nulab-pass", "--bind").await?;
    let idp = listen(args.idp_bind, "the mock IdP", "--idp-bind").await?;
    let product = listen(args.product_bind, "the demo product", "--product-bind").await?;
    let dns = dns::DemoDns::start(args.dns_bind, args.data_dir.join("dns.json"))
        .await
        .with_context(|| {
            format!("the demo DNS server cannot listen on {} (pass --dns-bind to choose another address)", args.dns_bind)
        })?;
    Ok(Listeners {
        server,
        idp,
        product,
        dns,
    })
}

/// Starts the mock IdP with its key pair in the data directory; returns its metadata URL.
fn start_idp(
    config: &Config,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let public = format!("http://{}", listener.local_addr()?);
    let keys = crate::saml::keys::load_or_create(
        &config.certs_dir,
        "mock-idp",
        "nulab-pass mock IdP (test only)",
    )?;
    let idp = crate::saml::mock_idp::MockIdp::with_keys(
        &format!("{public}/metadata"),
        &format!("{public}/sso"),
        keys,
    )
    .with_slo(&format!("{public}/slo"));
    let router = crate::saml::mock_idp_server::router(Arc::new(idp));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the mock IdP stopped");
        }
    });
    Ok((public, task))
}

/// Starts everything, seeding a fresh data directory first; prints where to go.
pub async fn start(mut config: Config, db: Db, args: &DemoArgs) -> anyhow::Result<Running> {
    let saved = load_saved(&args.data_dir)?;
    if saved.is_none()
        && crate::orgs::store::by_slug(db.pool(), seed::ORG)
            .await?
            .is_some()
    {
        anyhow::bail!(
            "{} holds a demo that did not finish seeding: run `nulab-pass demo --reset`",
            args.data_dir.display()
        );
    }
    crate::oidc::keys::ensure(&config.certs_dir)?;
    crate::saml::dsig_policy::harden()?;
    let listeners = bind_all(&config, args).await?;
    config.bind = listeners.server.local_addr()?;
    config.dns_servers = vec![listeners.dns.addr];
    let product_url = format!("http://{}", listeners.product.local_addr()?);
    let (idp_url, idp_task) = start_idp(&config, listeners.idp)?;
    let saved = match saved {
        Some(saved) => check_places(saved, &idp_url, &product_url)?,
        None => {
            first_run(
                &config,
                &db,
                &listeners.dns,
                &args.data_dir,
                &idp_url,
                &product_url,
            )
            .await?
        }
    };
    let state = AppState::new(db.clone(), config.clone(), Clock::default());
    let jobs = crate::jobs::spawn_all(&state)?;
    let app = crate::app::router_with(state, pages::routes(listeners.dns.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = listeners.server;
    let server_task = tokio::spawn(async move {
        if let Err(error) = axum::serve(server, app).await {
            tracing::error!(%error, "the server stopped");
        }
    });
    let base_url = config.base_url();
    let redirect = format!("{product_url}/callback");
    let client =
        client::Client::discover(&base_url, &saved.client_id, &saved.client_secret, &redirect)
            .await?;
    let product_app = product::router(product::Product::new(client, &product_url));
    let product_listener = listeners.product;
    let product_task = tokio::spawn(async move {
        if let Err(error) = axum::serve(product_listener, product_app).await {
            tracing::error!(%error, "the demo product stopped");
        }
    });
    print_welcome(&config, args, &saved, listeners.dns.addr);
    Ok(Running {
        tasks: vec![idp_task, server_task, product_task],
        jobs,
        db,
        _dns: listeners.dns,
    })
}

/// The data directory was seeded for these addresses: the SSO connection names the IdP's, the
/// product's callback is registered.
fn check_places(saved: Saved, idp_url: &str, product_url: &str) -> anyhow::Result<Saved> {
    if saved.idp_url != idp_url || saved.product_url != product_url {
        anyhow::bail!(
            "this demo's data was made with the mock IdP at {} and the product at {}: run with the \
             same --idp-bind and --product-bind, or start fresh with --reset",
            saved.idp_url,
            saved.product_url
        );
    }
    Ok(saved)
}

async fn first_run(
    config: &Config,
    db: &Db,
    dns: &dns::DemoDns,
    dir: &Path,
    idp_url: &str,
    product_url: &str,
) -> anyhow::Result<Saved> {
    eprintln!("seeding a fresh demo in {} ...", dir.display());
    let password = new_password();
    let metadata = format!("{idp_url}/metadata");
    let places = seed::Places {
        config,
        dns,
        idp_metadata_url: &metadata,
        product_url,
        password: &password,
    };
    let seeded = seed::seed(db, &places).await?;
    let saved = Saved {
        password,
        client_id: seeded.client_id,
        client_secret: seeded.client_secret,
        idp_url: idp_url.to_string(),
        product_url: product_url.to_string(),
    };
    store_saved(dir, &saved)?;
    Ok(saved)
}

fn print_welcome(config: &Config, args: &DemoArgs, saved: &Saved, dns: SocketAddr) {
    let base = config.base_url();
    let product = &saved.product_url;
    let managed: Vec<&str> = seed::MANAGED.iter().map(|(e, _)| *e).collect();
    let (bob, carol) = (seed::NULAB_MEMBERS[0].0, seed::NULAB_MEMBERS[1].0);
    println!(
        "\nnulab-pass demo is running (data in {dir}; Ctrl-C stops it; --reset starts fresh)\n\n\
         \x20 nulab-pass          {base}\n\
         \x20 {product_name}      {product}\n\
         \x20 mock IdP            {idp}/metadata\n\
         \x20 demo DNS (.test)    {dns}   publish records at {base}/demo/dns\n\
         \x20 email (outbox)      {base}/dev/mail\n\n\
         Accounts (the password of each: {password})\n\
         \x20 {admin}       admin of {org} (Acme Corporation)\n\
         \x20 {bob}, {carol}   Nulab accounts, members of {org} ({bob} also of {org2})\n\
         \x20 {admin2}     admin of {org2}\n\
         \x20 {managed}   managed accounts of {org}: no password, they sign in through the mock IdP\n\n\
         Three things to try\n\
         \x20 1. Sign in to the product through SSO: open {product}, press \"Sign in with nulab-pass\",\n\
         \x20    enter alice@acme.test, and at the mock IdP sign in as alice@acme.test.\n\
         \x20 2. Migrate a Nulab account: open {base}/dev/mail, follow the link in the email to {bob},\n\
         \x20    enter {bob}'s password (the one above) and agree.\n\
         \x20 3. Read the audit log: sign in at {base}/signin?with=password as {admin}, open {base}/admin/{org}/audit.\n\
         And verify a domain yourself: add one such as example.test at {base}/admin/{org}/domains,\n\
         publish its TXT record at {base}/demo/dns, then press Verify now.\n",
        dir = args.data_dir.display(),
        product_name = product::DISPLAY_NAME,
        idp = saved.idp_url,
        password = saved.password,
        admin = seed::ADMIN,
        admin2 = seed::SECOND_ADMIN,
        org = seed::ORG,
        org2 = seed::SECOND_ORG,
        managed = managed.join(", "),
    );
}
