//! No secret reaches the log: a password sign-in, an API call with a token and an SSO sign-in
//! run with every target at debug level, and the captured lines hold no password, token,
//! session id, SAMLResponse or assertion.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::{PASSWORD, sso};
use crate::common::{Backend, api};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// One test for both databases: the subscriber is global to the process, and no other test
/// of this binary installs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_at_debug_level() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        secrets(backend, &captured).await;
    }
}

async fn secrets(backend: Backend, captured: &Captured) {
    captured.0.lock().unwrap().clear();
    let s = sso(backend).await;
    let admin = s.server.signed_in("admin@corp.test", PASSWORD).await;
    let (status, _) = api(
        &admin,
        reqwest::Method::GET,
        s.server.url("/api/v1/orgs/corp/saml-connections"),
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (browser, started, b64) = s.started_with_response().await;
    let res = s
        .post(&browser, &b64, &started.relay_state, Some(&started.cookie))
        .await;
    assert_eq!(res.status(), 303);
    let session = crate::common::set_cookie_value(&res, "nulab_pass_session").unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("DEBUG"), "debug lines were captured");
    assert!(
        log.contains("/sso/{id}/acs") && log.contains("sqlx::query"),
        "the server's own lines (the ACS request, its queries) were captured"
    );
    for (what, secret) in [
        ("the password", PASSWORD.to_string()),
        ("the API token", s.token.clone()),
        ("the session id", session),
        ("the binding cookie", started.cookie.clone()),
        ("the SAMLResponse", b64[..60].to_string()),
        ("the assertion", "saml:Assertion".to_string()),
        ("the relay state", started.relay_state.clone()),
    ] {
        assert!(!log.contains(&secret), "{what} is in the log ({backend:?})");
    }
}
