//! Configuration: one `Config`, read from flags and `NULAB_PASS_*` environment variables.

use std::net::SocketAddr;

use clap::Args;
use url::Url;

/// Settings shared by every subcommand. Each field has a flag and an environment variable.
#[derive(Args, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "NULAB_PASS_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,

    /// Public URL of the service (links in emails, redirects, cookies). Default: derived from the bind address.
    #[arg(long, env = "NULAB_PASS_BASE_URL", global = true)]
    pub base_url: Option<Url>,

    /// Database: `sqlite://FILE` (created on first start) or `postgres://USER:PASS@HOST/DB`.
    #[arg(
        long,
        env = "NULAB_PASS_DATABASE_URL",
        default_value = "sqlite://nulab-pass.db",
        global = true
    )]
    pub database_url: String,

    /// SMTP server for outgoing mail, e.g. `smtp://127.0.0.1:2525` or `smtps://user:pass@host`.
    /// Without it, email stays in the outbox (and shows on `/dev/mail` with `--dev`).
    #[arg(long, env = "NULAB_PASS_SMTP_URL", global = true)]
    pub smtp_url: Option<String>,

    /// Sender address of every email.
    #[arg(
        long,
        env = "NULAB_PASS_MAIL_FROM",
        default_value = "nulab-pass <no-reply@nulab-pass.localhost>",
        global = true
    )]
    pub mail_from: String,

    /// Development mode: enables `/dev/mail`, which shows every queued email.
    #[arg(long, env = "NULAB_PASS_DEV", global = true)]
    pub dev: bool,

    /// Allows `--dev` with an https base URL (refused otherwise: `/dev/mail` would show every
    /// email, with live links, on what looks like a deployment).
    #[arg(long, env = "NULAB_PASS_DEV_ALLOW_HTTPS", global = true)]
    pub dev_allow_https: bool,

    /// Folder of the service's keys and certificates.
    #[arg(
        long,
        env = "NULAB_PASS_CERTS_DIR",
        default_value = "certs",
        global = true
    )]
    pub certs_dir: std::path::PathBuf,

    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "NULAB_PASS_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes; larger requests get 413.
    #[arg(long, env = "NULAB_PASS_MAX_BODY_BYTES", default_value_t = 256 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Browser session lifetime in hours of inactivity.
    #[arg(
        long,
        env = "NULAB_PASS_SESSION_HOURS",
        default_value_t = 12,
        global = true
    )]
    pub session_hours: u32,

    /// How often the outbox sender looks for due email, in milliseconds.
    #[arg(
        long,
        env = "NULAB_PASS_OUTBOX_POLL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub outbox_poll_ms: u64,

    /// DNS servers for domain verification, comma-separated `ip:port` (e.g. `127.0.0.1:5353`).
    /// Default: the system's resolver configuration (`/etc/resolv.conf`).
    #[arg(
        long,
        env = "NULAB_PASS_DNS_SERVERS",
        value_delimiter = ',',
        global = true
    )]
    pub dns_servers: Vec<SocketAddr>,

    /// How long one DNS lookup may take, in milliseconds; a slower answer counts as a failure.
    #[arg(
        long,
        env = "NULAB_PASS_DNS_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub dns_timeout_ms: u64,

    /// How often verified, lapsed and pending domains are checked again, in hours.
    #[arg(
        long,
        env = "NULAB_PASS_DOMAIN_RECHECK_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub domain_recheck_hours: u64,

    /// Days a verified domain may miss its TXT record before it lapses.
    #[arg(
        long,
        env = "NULAB_PASS_DOMAIN_GRACE_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub domain_grace_days: u64,

    /// Days a pending domain waits for its TXT record before it expires.
    #[arg(
        long,
        env = "NULAB_PASS_DOMAIN_PENDING_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub domain_pending_days: u64,

    /// Pricing and subscription settings (`NULAB_PASS_BILLING_*`).
    #[command(flatten)]
    pub billing: Pricing,

    /// Rate limits (`NULAB_PASS_LIMIT_*`).
    #[command(flatten)]
    pub limits: RateLimits,
}

/// Seats a new organization starts with (its trial).
pub const DEFAULT_TRIAL_SEATS: i64 = 5;

/// Pricing of seats and the subscription rules that go with it. Money is in the currency's
/// minor units (cents for USD, yen for JPY).
#[derive(Args, Clone, Debug)]
pub struct Pricing {
    /// ISO 4217 currency code of every price, charge and invoice.
    #[arg(
        long = "billing-currency",
        env = "NULAB_PASS_BILLING_CURRENCY",
        default_value = "USD",
        global = true
    )]
    pub currency: String,

    /// Price of one seat for a monthly period, in minor units (800 = $8.00).
    #[arg(
        long = "billing-seat-price-monthly",
        env = "NULAB_PASS_BILLING_SEAT_PRICE_MONTHLY",
        default_value_t = 800,
        global = true
    )]
    pub seat_price_monthly: i64,

    /// Price of one seat for a yearly period, in minor units (8000 = $80.00).
    #[arg(
        long = "billing-seat-price-yearly",
        env = "NULAB_PASS_BILLING_SEAT_PRICE_YEARLY",
        default_value_t = 8000,
        global = true
    )]
    pub seat_price_yearly: i64,

    /// Tax rate in basis points (1000 = 10%), added to every invoice and charge.
    #[arg(
        long = "billing-tax-basis-points",
        env = "NULAB_PASS_BILLING_TAX_BASIS_POINTS",
        default_value_t = 0,
        global = true
    )]
    pub tax_basis_points: i64,

    /// The fewest seats a subscription may have.
    #[arg(
        long = "billing-minimum-seats",
        env = "NULAB_PASS_BILLING_MINIMUM_SEATS",
        default_value_t = 1,
        global = true
    )]
    pub minimum_seats: i64,

    /// Seats a new organization starts with, free during its trial.
    #[arg(
        long = "billing-trial-seats",
        env = "NULAB_PASS_BILLING_TRIAL_SEATS",
        default_value_t = DEFAULT_TRIAL_SEATS,
        global = true
    )]
    pub trial_seats: i64,

    /// Days of a new organization's trial; then the subscription becomes active (monthly,
    /// with the seats it has) and is invoiced.
    #[arg(
        long = "billing-trial-days",
        env = "NULAB_PASS_BILLING_TRIAL_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub trial_days: i64,

    /// Days that managed accounts of an organization imported from before domain verification
    /// keep working on unverified domains.
    #[arg(
        long = "billing-legacy-transition-days",
        env = "NULAB_PASS_BILLING_LEGACY_TRANSITION_DAYS",
        default_value_t = 60,
        global = true
    )]
    pub legacy_transition_days: i64,

    /// How often the billing job looks for periods that turned, in milliseconds.
    #[arg(
        long = "billing-poll-ms",
        env = "NULAB_PASS_BILLING_POLL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub poll_ms: u64,
}

/// A rate: at most `max` in `window_ms` (written `10/15m`; units `s`, `m`, `h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub max: i64,
    pub window_ms: i64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(raw: &str) -> Result<Rate, String> {
        let bad = || format!("{raw:?} is not a rate such as 10/15m (a count, '/', a duration)");
        let (max, window) = raw.trim().split_once('/').ok_or_else(bad)?;
        let max: i64 = max.trim().parse().map_err(|_| bad())?;
        let window_ms = duration_ms(window).ok_or_else(bad)?;
        if !(1..=1_000_000).contains(&max) {
            return Err(format!("{raw:?}: the count must be between 1 and 1000000"));
        }
        Ok(Rate { max, window_ms })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.max, self.window_ms / 1000)
    }
}

/// A duration such as `90s`, `15m` or `4h` in milliseconds (one second to seven days).
pub fn duration_ms(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let unit = match raw.chars().last()? {
        's' => 1000,
        'm' => 60 * 1000,
        'h' => 60 * 60 * 1000,
        _ => return None,
    };
    let n: i64 = raw[..raw.len() - 1].parse().ok()?;
    let ms = n.checked_mul(unit)?;
    (1000..=7 * 24 * 60 * 60 * 1000).contains(&ms).then_some(ms)
}

fn parse_duration(raw: &str) -> Result<i64, String> {
    duration_ms(raw).ok_or_else(|| format!("{raw:?} is not a duration such as 90s, 15m or 4h"))
}

/// Rate limits, counted in the database so that every instance shares them. Each is a rate
/// (`max/window`); going over it blocks the key for the window, doubling with each block in a
/// row up to `--limit-backoff-max`.
#[derive(Args, Clone, Debug)]
pub struct RateLimits {
    /// Password and second-factor attempts (sign-in, consent page) per account or email.
    #[arg(
        long = "limit-sign-in-per-account",
        env = "NULAB_PASS_LIMIT_SIGN_IN_PER_ACCOUNT",
        default_value = "10/15m",
        global = true
    )]
    pub sign_in_per_account: Rate,

    /// Failed password and second-factor attempts per client address, whatever the account.
    #[arg(
        long = "limit-sign-in-per-address",
        env = "NULAB_PASS_LIMIT_SIGN_IN_PER_ADDRESS",
        default_value = "50/15m",
        global = true
    )]
    pub sign_in_per_address: Rate,

    /// Failed token requests per product (OIDC client).
    #[arg(
        long = "limit-token-per-client",
        env = "NULAB_PASS_LIMIT_TOKEN_PER_CLIENT",
        default_value = "60/5m",
        global = true
    )]
    pub token_per_client: Rate,

    /// Failed token requests per client address.
    #[arg(
        long = "limit-token-per-address",
        env = "NULAB_PASS_LIMIT_TOKEN_PER_ADDRESS",
        default_value = "30/5m",
        global = true
    )]
    pub token_per_address: Rate,

    /// Requests that send email (sign-up, confirmation, invitations, migration requests,
    /// password resets) per client address.
    #[arg(
        long = "limit-email-per-address",
        env = "NULAB_PASS_LIMIT_EMAIL_PER_ADDRESS",
        default_value = "30/1h",
        global = true
    )]
    pub email_per_address: Rate,

    /// Emails of those requests to one recipient address.
    #[arg(
        long = "limit-email-per-recipient",
        env = "NULAB_PASS_LIMIT_EMAIL_PER_RECIPIENT",
        default_value = "5/1h",
        global = true
    )]
    pub email_per_recipient: Rate,

    /// SSO sign-ins started (`/sso/{id}/login`) per client address.
    #[arg(
        long = "limit-sso-login-per-address",
        env = "NULAB_PASS_LIMIT_SSO_LOGIN_PER_ADDRESS",
        default_value = "60/5m",
        global = true
    )]
    pub sso_login_per_address: Rate,

    /// Failed posts to an ACS per client address.
    #[arg(
        long = "limit-acs-failures-per-address",
        env = "NULAB_PASS_LIMIT_ACS_FAILURES_PER_ADDRESS",
        default_value = "20/5m",
        global = true
    )]
    pub acs_failures_per_address: Rate,

    /// The longest block: each block in a row doubles, from the rate's window up to this.
    #[arg(long = "limit-backoff-max", env = "NULAB_PASS_LIMIT_BACKOFF_MAX",
        default_value = "1h", value_parser = parse_duration, global = true)]
    pub backoff_max_ms: i64,

    /// The least time between two emails to an organization's admins about attacks on its
    /// accounts.
    #[arg(long = "limit-alert-every", env = "NULAB_PASS_LIMIT_ALERT_EVERY",
        default_value = "1h", value_parser = parse_duration, global = true)]
    pub alert_every_ms: i64,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The public base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.base_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => {
                let host = if self.bind.ip().is_unspecified() {
                    "localhost".to_string()
                } else {
                    self.bind.ip().to_string()
                };
                format!("http://{host}:{}", self.bind.port())
            }
        }
    }

    /// Whether cookies must carry `Secure`.
    pub fn is_https(&self) -> bool {
        self.base_url().starts_with("https://")
    }

    /// Refuses settings that must not run together.
    pub fn check(&self) -> Result<(), String> {
        self.billing.check()?;
        if self.dev && self.is_https() && !self.dev_allow_https {
            return Err(format!(
                "refusing --dev with the https base URL {}: /dev/mail would show every email, with \
                 live sign-in links, on what looks like a deployment (pass --dev-allow-https to \
                 force it)",
                self.base_url()
            ));
        }
        Ok(())
    }

    /// A configuration with every default and the given database, for tests and tools.
    pub fn with_database(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Only::parse_from(["nulab-pass"]).config;
        config.database_url = database_url.to_string();
        config
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("base_url", &self.base_url())
            .field("database_url", &redact_url(&self.database_url))
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("dev", &self.dev)
            .field("dev_allow_https", &self.dev_allow_https)
            .field("certs_dir", &self.certs_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("session_hours", &self.session_hours)
            .finish_non_exhaustive()
    }
}

impl Pricing {
    /// Refuses prices and rules that cannot work.
    pub fn check(&self) -> Result<(), String> {
        let code_ok =
            self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase());
        if !code_ok {
            return Err(format!(
                "--billing-currency must be a three-letter ISO 4217 code such as USD, not {:?}",
                self.currency
            ));
        }
        let price = 0..=100_000_000;
        if !price.contains(&self.seat_price_monthly) || !price.contains(&self.seat_price_yearly) {
            return Err("seat prices must be between 0 and 100000000 minor units".to_string());
        }
        if !(0..=10_000).contains(&self.tax_basis_points) {
            return Err("--billing-tax-basis-points must be between 0 and 10000".to_string());
        }
        if !(0..=1_000_000).contains(&self.minimum_seats)
            || !(0..=1_000_000).contains(&self.trial_seats)
        {
            return Err("minimum and trial seats must be between 0 and 1000000".to_string());
        }
        if !(0..=3650).contains(&self.trial_days)
            || !(0..=3650).contains(&self.legacy_transition_days)
        {
            return Err("trial and transition days must be between 0 and 3650".to_string());
        }
        Ok(())
    }
}

/// A URL with its password replaced, for logs.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn dev_mode_needs_a_flag_to_run_with_an_https_base_url() {
        let mut config = Config::with_database("sqlite::memory:");
        config.dev = true;
        assert!(
            config.check().is_ok(),
            "dev on http is the newcomer's setting"
        );
        config.base_url = Some("https://pass.example.com".parse().unwrap());
        let refused = config.check().unwrap_err();
        assert!(refused.contains("--dev-allow-https"), "{refused}");
        config.dev_allow_https = true;
        assert!(config.check().is_ok());
        config.dev = false;
        config.dev_allow_https = false;
        assert!(config.check().is_ok(), "production on https");
    }
}
