//! nulab-pass: the account security service for organizations that use the Nulab products.
//! [`app`] builds the HTTP router from an [`AppState`]; `main.rs` only parses the command line.

pub mod accounts;
pub mod api_tokens;
pub mod app;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod domains;
pub mod ids;
pub mod jobs;
pub mod limits;
pub mod logout;
pub mod mail;
pub mod managed;
pub mod migration;
pub mod net;
pub mod oidc;
pub mod orgs;
pub mod paging;
pub mod saml;
pub mod secrets;
pub mod sign_in;
pub mod web;

use std::sync::Arc;

use axum::Router;

pub use config::Config;
pub use saml::mock_idp;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: db::Db,
    pub config: Arc<Config>,
    pub clock: clock::Clock,
    /// The OIDC signing keys, parsed once and reloaded on rotation.
    pub oidc_keys: Arc<oidc::keys::KeyRing>,
    /// The SAML SP's signing and encryption keys, parsed once and reloaded on rotation.
    pub sp_keys: Arc<saml::keys::SpKeyRing>,
    /// The key that seals TOTP secrets at rest (`certs/totp-secret-key`).
    pub totp_key: Arc<accounts::totp_key::TotpKey>,
    /// SAML connections parsed once per version (`saml::cache`).
    pub saml_connections: Arc<saml::cache::Connections>,
    /// Parked IdP-initiated sign-ins, completed by group commit (`saml::sign_ins`).
    pub sign_ins: db::Committer<saml::sign_ins::SignIns>,
    /// IdP-initiated responses, admitted and parked by group commit (`saml::admit`).
    pub arrivals: db::Committer<saml::admit::Arrivals>,
}

impl AppState {
    pub fn new(db: db::Db, config: Config, clock: clock::Clock) -> Self {
        AppState {
            sign_ins: saml::sign_ins::committer(db.clone()),
            arrivals: saml::admit::committer(db.clone()),
            db,
            oidc_keys: Arc::new(oidc::keys::KeyRing::new(&config.certs_dir)),
            sp_keys: Arc::new(saml::keys::SpKeyRing::new(&config.certs_dir)),
            totp_key: Arc::new(accounts::totp_key::TotpKey::new(&config.certs_dir)),
            saml_connections: Arc::default(),
            config: Arc::new(config),
            clock,
        }
    }

    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> String {
        self.config.base_url()
    }
}

/// The whole HTTP application: pages, the JSON API, health checks and static files.
pub fn app(state: AppState) -> Router {
    // Restrict xmlsec's transforms before the first request can reach it; if that fails, every
    // SSO response is refused (`saml::acs::verify` asks again) and `serve` does not start.
    if let Err(e) = saml::dsig_policy::harden() {
        tracing::error!(error = %e, "SAML signature verification is unavailable");
    }
    app::router(state)
}
