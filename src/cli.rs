//! The command line: `serve`, schema migrations, and operator commands that print JSON with
//! `--json`. Operator commands work while a server runs on the same database.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::accounts::{self, Email, NewAccount};
use crate::audit::{Actor, RequestMeta};
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
use crate::db::Db;
use crate::orgs::{self, AdminScope, OrgSlug};
use crate::{AppState, api_tokens};

#[derive(Parser)]
#[command(
    name = "nulab-pass",
    version,
    about = "Account security service for organizations that use the Nulab products"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP server (and its background jobs).
    Serve,
    /// Database administration.
    #[command(subcommand)]
    Db(DbCommand),
    /// Account administration.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Organization administration.
    #[command(subcommand)]
    Org(OrgCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Billing: legacy imports, the subscription status, credit notes.
    #[command(subcommand)]
    Billing(crate::billing::cli::BillingCommand),
    /// Products (OIDC clients): register, list, rotate secrets, delete.
    #[command(subcommand)]
    Product(crate::oidc::clients::ProductCommand),
    /// The OIDC signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Runs the whole product on this machine for a first look: the server with seeded
    /// organizations, the mock IdP, a DNS server for `.test` names and the demo product
    /// "Backlog (demo)" (development only; SQLite in --data-dir).
    Demo(crate::demo::DemoArgs),
    /// Runs the mock SAML identity provider (for tests and integrators; never in production);
    /// `mock-idp mint` prints signed responses in bulk instead.
    MockIdp {
        #[command(subcommand)]
        command: Option<MockIdpCommand>,
        /// Address the mock IdP listens on (`--bind` is the server's own address).
        #[arg(long = "listen", default_value = "127.0.0.1:8090", global = true)]
        listen: std::net::SocketAddr,
        /// The mock's public URL (default: http://<listen>); its entity ID is <URL>/metadata.
        #[arg(long, global = true)]
        public_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum MockIdpCommand {
    /// Prints valid responses signed with the mock's key, one base64 SAMLResponse a line.
    Mint(crate::saml::mock_idp_mint::MintArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks an organization's hash chain from its retention checkpoint to its head; names the
    /// first broken event and exits with status 1 when the chain does not hold.
    Verify {
        /// The organization ID (slug).
        #[arg(long, required_unless_present = "global", conflicts_with = "global")]
        org: Option<String>,
        /// Checks the global chain (events of no organization, such as sign-ups).
        #[arg(long)]
        global: bool,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replaces the ID-token signing key; the previous key stays in the JWKS until the next rotation.
    Rotate,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Applies pending schema migrations and exits.
    Migrate,
}

#[derive(Args)]
struct Output {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates a Nulab account whose email counts as verified; the password is read from stdin.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Read the password from standard input (a trailing newline is ignored).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Creates an organization with an existing account as its admin.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[command(flatten)]
        output: Output,
    },
    /// Adds an existing Nulab account with a confirmed email as a member directly, without an
    /// invitation (an open invitation for the address becomes this membership).
    AddMember {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// `admin` or `member`.
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        output: Output,
    },
    /// Sets the subscribed seats at once, without a charge (never below the minimum, nor below
    /// the managed accounts plus pending migration requests).
    Seats {
        #[arg(long)]
        org: String,
        #[arg(long)]
        seats: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Brings in an organization whose managed accounts predate domain verification: they keep
    /// signing in on unverified domains for the transition period (--billing-legacy-transition-days)
    /// while the admins are emailed and reminded to verify.
    ImportLegacy {
        #[arg(long)]
        org: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates an API token for an organization and prints it (alone, without --json).
    Create {
        #[arg(long)]
        org: String,
        /// A name that says what the token is for.
        #[arg(long, default_value = "created by the command line")]
        name: String,
        /// Narrows the token to these scopes (comma- or space-separated: read, members, domains,
        /// sso, billing, audit); every scope when absent.
        #[arg(long)]
        scopes: Option<String>,
        /// Days until the token expires (1–365).
        #[arg(long, default_value_t = api_tokens::DEFAULT_DAYS)]
        expires_in_days: i64,
        #[command(flatten)]
        output: Output,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Opens the database, applies pending schema migrations and seals audit events written before
/// the audit chain existed into their chains.
async fn open(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    let sealed = crate::audit::chain::seal_unchained(&db).await?;
    if sealed > 0 {
        tracing::info!(sealed, "audit events sealed into their chains");
    }
    Ok(db)
}

/// How a command ended when it did not fail with an error.
enum Outcome {
    Done,
    /// The command ran and reports a negative result (exit status 1).
    Failed,
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let config = cli.config;
    let command = match cli.command {
        Command::Audit(command) => return audit(&config, command).await,
        command => command,
    };
    run_command(config, command).await.map(|()| Outcome::Done)
}

/// `audit verify`: prints what the check found; a broken chain is a failed outcome.
async fn audit(config: &Config, command: AuditCommand) -> anyhow::Result<Outcome> {
    let AuditCommand::Verify {
        org,
        global,
        output,
    } = command;
    let db = open(config).await?;
    let chain = match (&org, global) {
        (Some(slug), _) => org_by_slug(&db, slug).await?.id.to_string(),
        (None, _) => crate::audit::chain::chain_of(None),
    };
    let found = crate::audit::chain::verify(&db, &chain).await?;
    let name = org.unwrap_or_else(|| "the global chain".to_string());
    let plain = match &found.broken {
        None => format!(
            "{name}: the chain holds ({} events checked); head {} {}",
            found.events, found.head_seq, found.head_hash
        ),
        Some(b) => format!(
            "{name}: the chain is broken at event {} (number {}): {}",
            b.event_id.as_deref().unwrap_or("-"),
            b.seq.map_or("-".to_string(), |s| s.to_string()),
            b.problem
        ),
    };
    print(&output, &serde_json::to_value(&found)?, &plain);
    db.close().await;
    Ok(if found.broken.is_some() {
        Outcome::Failed
    } else {
        Outcome::Done
    })
}

async fn run_command(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Audit(command) => audit(&config, command).await.map(|_| ()),
        Command::Serve => serve(config).await,
        Command::Billing(command) => {
            let db = open(&config).await?;
            crate::billing::cli::run(&config, &db, command).await
        }
        Command::Product(command) => {
            let db = open(&config).await?;
            crate::oidc::clients::run(&db, Clock::default().now_ms(), command).await
        }
        Command::Keys(KeysCommand::Rotate) => {
            let kid = crate::oidc::keys::rotate(&config.certs_dir)?;
            println!("{}", json!({ "kid": kid }));
            Ok(())
        }
        Command::MockIdp {
            command,
            listen,
            public_url,
        } => mock_idp(&config, command, listen, public_url).await,
        Command::Demo(args) => demo(config, args).await,
        Command::Db(DbCommand::Migrate) => {
            open(&config).await?.close().await;
            println!("schema is up to date");
            Ok(())
        }
        Command::Account(command) => account(&config, command).await,
        Command::Org(command) => org(&config, command).await,
        Command::Token(command) => token(&config, command).await,
    }
}

/// `demo`: runs the demo until Ctrl-C or SIGTERM.
async fn demo(config: Config, args: crate::demo::DemoArgs) -> anyhow::Result<()> {
    let config = crate::demo::prepare(config, &args)?;
    config.check().map_err(anyhow::Error::msg)?;
    let db = open(&config).await?;
    let running = crate::demo::start(config, db, &args).await?;
    shutdown_signal().await;
    running.stop().await;
    tracing::info!("the demo stopped");
    Ok(())
}

/// `mock-idp`: serves the test IdP with a dev key pair of its own.
async fn mock_idp(
    config: &Config,
    command: Option<MockIdpCommand>,
    listen: std::net::SocketAddr,
    public_url: Option<String>,
) -> anyhow::Result<()> {
    let public = public_url
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_string();
    // A dev key pair of its own, kept beside the service's keys so metadata stays stable.
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
    if let Some(MockIdpCommand::Mint(args)) = command {
        return tokio::task::spawn_blocking(move || crate::saml::mock_idp_mint::run(&idp, &args))
            .await?;
    }
    println!("mock IdP metadata: {public}/metadata");
    crate::saml::mock_idp_server::serve(idp, listen).await
}

/// `account create`: a verified Nulab account whose password comes on stdin.
async fn account(config: &Config, command: AccountCommand) -> anyhow::Result<()> {
    let AccountCommand::Create {
        email,
        name,
        password_stdin: _,
        output,
    } = command;
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let email = Email::parse(&email)?;
    let name = accounts::check_name(&name)?;
    accounts::check_password(password)?;
    let password_hash = accounts::password::hash(password).await?;
    let db = open(config).await?;
    let clock = Clock::default();
    let mut tx = db.begin().await?;
    let new = NewAccount {
        email,
        name,
        password_hash,
        email_verified: true,
    };
    let account = accounts::sign_up(
        &mut tx,
        clock.now_ms(),
        new,
        &Actor::Operator,
        &RequestMeta::default(),
        &config.base_url(),
    )
    .await?;
    tx.commit().await?;
    print(
        &output,
        &json!({ "id": account.id, "email": account.email, "name": account.name }),
        &account.id.to_string(),
    );
    Ok(())
}

/// `org create`, `org add-member`, `org seats` and `org import-legacy`.
async fn org(config: &Config, command: OrgCommand) -> anyhow::Result<()> {
    let now = Clock::default().now_ms();
    match command {
        OrgCommand::Create {
            slug,
            name,
            admin_email,
            output,
        } => {
            let slug = OrgSlug::parse(&slug)?;
            let db = open(config).await?;
            let admin = accounts::store::by_email(db.pool(), &Email::parse(&admin_email)?)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("no account uses the email {admin_email}; create it first")
                })?;
            let mut tx = db.begin().await?;
            let (actor, meta) = (Actor::Operator, RequestMeta::default());
            let seats = config.billing.trial_seats;
            let org =
                orgs::create(&mut tx, now, &slug, &name, &admin, seats, &actor, &meta).await?;
            tx.commit().await?;
            print(
                &output,
                &json!({ "id": org.id, "slug": org.slug, "name": org.name, "admin": admin.email }),
                &org.slug,
            );
        }
        OrgCommand::AddMember {
            org,
            email,
            role,
            output,
        } => {
            let role = orgs::Role::parse(role.trim())
                .ok_or_else(|| anyhow::anyhow!("--role must be admin or member"))?;
            let db = open(config).await?;
            let scope = AdminScope::operator(org_by_slug(&db, &org).await?);
            let mut tx = db.begin().await?;
            let member = orgs::add_member(&mut tx, now, &scope, &email, role).await?;
            tx.commit().await?;
            print(
                &output,
                &json!({ "org": scope.org().slug, "account_id": member.account_id, "email": member.email, "role": member.role.as_str() }),
                &format!(
                    "{} is now {} of {}",
                    member.email,
                    member.role.as_str(),
                    scope.org().slug
                ),
            );
        }
        OrgCommand::Seats { org, seats, output } => {
            let db = open(config).await?;
            let org = org_by_slug(&db, &org).await?;
            let result = crate::billing::cli::operator_seats(config, &db, &org, seats).await?;
            print(
                &output,
                &json!({ "org": org.slug, "seats": result.seats, "used": result.managed, "reserved": result.pending }),
                &format!(
                    "{}: {} seats, {} used, {} reserved",
                    org.slug, result.seats, result.managed, result.pending
                ),
            );
        }
        OrgCommand::ImportLegacy { org, output } => {
            let db = open(config).await?;
            let org = org_by_slug(&db, &org).await?;
            let t = crate::billing::cli::import_legacy_org(config, &db, &org).await?;
            print(
                &output,
                &json!({ "org": org.slug, "until": t.until, "days_left": t.days_left, "accounts": t.accounts }),
                &format!(
                    "{}: {} managed accounts on unverified domains keep working for {} days",
                    org.slug,
                    t.accounts.len(),
                    t.days_left
                ),
            );
        }
    }
    Ok(())
}

/// `token create`: an operator token of the organization, printed once.
async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create {
        org,
        name,
        scopes,
        expires_in_days,
        output,
    } = command;
    let scopes = match scopes {
        None => api_tokens::Scopes::all(),
        Some(raw) => api_tokens::Scopes::parse(&raw).map_err(|word| match word.as_str() {
            "" => anyhow::anyhow!("--scopes names no scope"),
            _ => anyhow::anyhow!(
                "unknown scope {word:?} (read, members, domains, sso, billing, audit)"
            ),
        })?,
    };
    let new = api_tokens::NewToken {
        name,
        scopes,
        expires_in_days,
    };
    let db = open(config).await?;
    let scope = AdminScope::operator(org_by_slug(&db, &org).await?);
    let clock = Clock::default();
    let mut tx = db.begin().await?;
    let (token, secret) = api_tokens::create_with(&mut tx, clock.now_ms(), &scope, &new).await?;
    tx.commit().await?;
    print(
        &output,
        &json!({
            "id": token.id, "org": scope.org().slug, "name": token.name, "token": secret,
            "scopes": token.scopes, "expires_at": token.expires_at, "operator": token.operator,
        }),
        &secret,
    );
    Ok(())
}

async fn org_by_slug(db: &Db, slug: &str) -> anyhow::Result<orgs::Org> {
    orgs::store::by_slug(db.pool(), slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no organization {slug}"))
}

/// Prints JSON with `--json`, else the plain value.
fn print(output: &Output, value: &serde_json::Value, plain: &str) {
    if output.json {
        println!("{value}");
    } else {
        println!("{plain}");
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    config.check().map_err(anyhow::Error::msg)?;
    tracing::info!(config = ?config, "starting nulab-pass");
    let db = open(&config).await?;
    crate::oidc::keys::ensure(&config.certs_dir)?;
    crate::saml::dsig_policy::harden()?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let state = AppState::new(db.clone(), config, Clock::default());
    crate::sign_in::store::seal_plaintext_totp(&db, &state.totp_key).await?;
    let jobs = crate::jobs::spawn_all(&state)?;
    tracing::info!(address = %listener.local_addr()?, base_url = %state.base_url(), "listening");
    let app = crate::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    for job in jobs {
        job.abort();
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
