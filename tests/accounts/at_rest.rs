//! Secrets at rest: the `sessions` table holds the SHA-256 of each session id, never the id the
//! browser's cookie carries, so a copy of the table signs no one in.

use super::*;

/// The value of the session cookie set by `res`, if any.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("nulab_pass_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

fn sha256_hex(text: &str) -> String {
    nulab_pass::secrets::hash_token(text)
}

async fn session_ids_hashed(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.account("ada@example.com", "Ada", PASSWORD).await;
    // A client without a jar: the cookie is carried by hand.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(server.url("/signin")).send().await.unwrap();
    let first = session_cookie(&page).expect("a session for the CSRF token");
    let csrf = common::hidden_value(&page.text().await.unwrap(), "csrf").unwrap();
    let res = client
        .post(server.url("/signin"))
        .header("cookie", format!("nulab_pass_session={first}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = session_cookie(&res).expect("a new session id at sign-in");
    assert_ne!(cookie, first);

    let stored = server.rows("SELECT id FROM sessions ORDER BY id").await;
    assert!(stored.contains(&sha256_hex(&cookie)), "{stored:?}");
    assert!(
        !stored.iter().any(|id| id == &cookie || id == &first),
        "no raw session id is stored"
    );

    let account = |value: String| {
        let client = client.clone();
        let url = server.url("/account");
        async move {
            client
                .get(url)
                .header("cookie", format!("nulab_pass_session={value}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(account(cookie.clone()).await, 200, "the cookie signs in");
    // What the table holds is useless as a cookie.
    let before = server.count("sessions").await;
    assert_eq!(
        account(sha256_hex(&cookie)).await,
        303,
        "a stored key is not a session"
    );
    assert_eq!(server.count("sessions").await, before);
}
both!(session_ids_are_stored_as_sha256_hashes, session_ids_hashed);
