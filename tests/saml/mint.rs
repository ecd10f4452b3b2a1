//! `nulab-pass mock-idp mint` through the binary: responses signed with the mock's key from the
//! certificates folder, unique, numbered into the email template, each signing in once through
//! the real server's ACS; a bad option prints nothing and exits 2.

use nulab_pass::mock_idp::MockIdp;
use serde_json::json;

use super::{IDP_SSO, sso_with};
use crate::both;
use crate::common::Backend;

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");

fn mint(certs: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["mock-idp", "--public-url", "https://idp.corp.test", "mint"])
        .args(args)
        .env("NULAB_PASS_CERTS_DIR", certs)
        .env("NULAB_PASS_DATABASE_URL", "sqlite::memory:")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run nulab-pass")
}

async fn minted_responses_sign_in(backend: Backend) {
    let certs = tempfile::tempdir().unwrap();
    let keys = nulab_pass::saml::keys::load_or_create(certs.path(), "mock-idp", "mock").unwrap();
    let idp = MockIdp::with_keys("https://idp.corp.test/metadata", IDP_SSO, keys);
    let metadata = idp.metadata_xml();
    let s = sso_with(backend, idp, metadata, json!({"allow_idp_initiated": true})).await;
    let (acs, audience) = (s.acs(), s.audience());
    let out = mint(
        certs.path(),
        &[
            "--count",
            "3",
            "--first",
            "7",
            "--acs",
            &acs,
            "--audience",
            &audience,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 3);
    let unique: std::collections::HashSet<_> = lines.iter().collect();
    assert_eq!(unique.len(), 3, "each response is new");
    // The default template numbers the email: user7@example.com is no account here.
    let browser = s.server.client();
    let res = s.post(&browser, &lines[0], "", None).await;
    s.assert_refused(&browser, res, 403, "unknown_account")
        .await;

    let out = mint(
        certs.path(),
        &[
            "--count",
            "2",
            "--acs",
            &acs,
            "--audience",
            &audience,
            "--email",
            "mia@corp.test",
            "--signing",
            "response",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let browser = s.server.client();
        let res = s.post(&browser, line, "", None).await;
        assert_eq!(res.status(), 303, "parked");
        let back = res.headers()["location"].to_str().unwrap().to_string();
        let res = browser.get(s.server.url(&back)).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let page = s.signed_in_as(&browser).await.expect("signed in");
        assert!(page.contains("mia@corp.test"));
    }
    let again = s.server.client();
    let res = s.post(&again, lines[0], "", None).await;
    s.assert_refused(&again, res, 403, "replayed").await;

    let bad = mint(
        certs.path(),
        &[
            "--count",
            "2",
            "--acs",
            &acs,
            "--audience",
            &audience,
            "--signing",
            "none",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
}
both!(
    mock_idp_mint_makes_unique_valid_responses,
    minted_responses_sign_in
);
