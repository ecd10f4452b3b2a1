//! An IdP-initiated response cannot switch a signed-in browser to another account (login
//! CSRF): it is parked, the browser comes back by a same-site request, and a browser signed in
//! as someone else is asked "continue as X?" first. Staying changes nothing; the parked sign-in
//! works once, only in the browser that posted it.

use serde_json::json;

use super::{PASSWORD, sso};
use crate::both;
use crate::common::{Backend, hidden_value, set_cookie_value};

async fn switching(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let browser = s.server.signed_in("admin@corp.test", PASSWORD).await;
    let unsolicited = || s.unsolicited("mia@corp.test");
    let signed_in_email = || async {
        let page = browser
            .get(s.server.url("/account"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.contains("mia@corp.test") && page.contains("Signed in with</dt><dd>saml") {
            "mia"
        } else if page.contains("admin@corp.test") {
            "admin"
        } else {
            "nobody"
        }
    };
    let successes = || async {
        let actions = s.server.audit_actions(1000).await;
        actions
            .iter()
            .filter(|a| *a == "sso.signin.succeeded")
            .count()
    };
    let continue_url = s.server.url(&format!("/sso/{}/continue", s.id()));

    // Someone posts Mia's unsolicited response in the admin's browser: nothing switches yet.
    let res = s.post(&browser, &unsolicited(), "", None).await;
    assert_eq!(res.status(), 303);
    let res = browser.get(&continue_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("Continue as mia@corp.test?"), "{page}");
    assert!(page.contains("admin@corp.test"));
    assert_eq!(signed_in_email().await, "admin");
    assert_eq!(successes().await, 0);

    // "Stay": the admin stays signed in and the parked sign-in is gone.
    let csrf = hidden_value(&page, "csrf").expect("form token");
    let res = browser
        .post(&continue_url)
        .form(&[("csrf", csrf.as_str()), ("decision", "stay")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(signed_in_email().await, "admin");
    let res = browser.get(&continue_url).send().await.unwrap();
    assert_eq!(res.status(), 400, "spent");
    assert_eq!(successes().await, 0);

    // A browser without the cookie cannot use someone's parked sign-in.
    let res = s.post(&browser, &unsolicited(), "", None).await;
    assert_eq!(res.status(), 303);
    let stranger = s.server.client();
    let res = stranger.get(&continue_url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(successes().await, 0);

    // "Continue": the switch happens, audited with whom it replaced.
    let page = browser
        .get(&continue_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_value(&page, "csrf").expect("form token");
    let res = browser
        .post(&continue_url)
        .form(&[("csrf", csrf.as_str()), ("decision", "continue")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(signed_in_email().await, "mia");
    assert_eq!(successes().await, 1);
    let details: String = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'sso.signin.succeeded'",
    )
    .fetch_one(s.server.db().pool())
    .await
    .unwrap();
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["switched_from"], "admin@corp.test");
    assert_eq!(details["idp_initiated"], true);
}
both!(
    an_idp_initiated_sign_in_asks_before_switching_accounts,
    switching
);

/// A browser without a stored session gets its session id from the server when the sign-in
/// completes: an id planted in its cookie beforehand (by another site or person) is never the
/// signed-in session's id, and signs no one in.
async fn planted(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let planted = tower_sessions::session::Id::default().to_string();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let base: reqwest::Url = s.server.url("/").parse().unwrap();
    jar.add_cookie_str(&format!("nulab_pass_session={planted}; Path=/"), &base);
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let b64 = s.unsolicited("mia@corp.test");
    assert_eq!(s.post(&browser, &b64, "", None).await.status(), 303);
    let res = browser
        .get(s.server.url(&format!("/sso/{}/continue", s.id())))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed in");
    let issued = set_cookie_value(&res, "nulab_pass_session").expect("a session cookie");
    assert_ne!(issued, planted);
    let page = browser
        .get(s.server.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("mia@corp.test"), "{page}");
    let only_planted = s.server.client();
    let res = only_planted
        .get(s.server.url("/account"))
        .header("cookie", format!("nulab_pass_session={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the planted id signs no one in");
}
both!(a_planted_session_id_is_never_the_signed_in_one, planted);

/// A parked sign-in completes once however many requests race for it: one signs in, the others
/// find it spent, and only that one is kept (one event, one SAML session, one last sign-in
/// time); what the losers wrote before they lost is rolled back.
async fn raced(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let counts = || async {
        let pool = s.server.db().pool();
        let events: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'sso.signin.succeeded'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM saml_sessions")
            .fetch_one(pool)
            .await
            .unwrap();
        (events, sessions)
    };
    let b64 = s.unsolicited("mia@corp.test");
    let res = s.post(&s.server.client(), &b64, "", None).await;
    assert_eq!(res.status(), 303);
    let cookie = format!(
        "nulab_pass_sso_continue={}",
        set_cookie_value(&res, "nulab_pass_sso_continue").expect("the continue cookie")
    );
    assert_eq!(counts().await, (0, 0));
    // The grant is stored under the handle's key: the time the handle was made, then the hash
    // of the whole handle, never the handle itself.
    let handle = cookie.trim_start_matches("nulab_pass_sso_continue=");
    let key: String = sqlx::query_scalar("SELECT handle_hash FROM saml_pending_sign_ins")
        .fetch_one(s.server.db().pool())
        .await
        .unwrap();
    let (time, random) = handle.split_once('.').expect("a timed handle");
    assert_eq!(key, nulab_pass::secrets::token_key(handle));
    assert_eq!(
        key,
        format!("{time}.{}", nulab_pass::secrets::hash_token(handle))
    );
    assert!(!key.contains(random), "{key}");

    // The clients are built first (each loads the system's certificates), then start together.
    let url = s.server.url(&format!("/sso/{}/continue", s.id()));
    let clients: Vec<_> = (0..16).map(|_| s.server.client()).collect();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(clients.len()));
    let racers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (url, cookie, start) = (url.clone(), cookie.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let res = client
                    .get(url)
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                let to = res
                    .headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap().to_string());
                (res.status().as_u16(), to)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.unwrap());
    }
    let won: Vec<_> = answers.iter().filter(|a| a.0 == 303).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert_eq!(won[0].1.as_deref(), Some("/account"));
    assert!(
        answers.iter().all(|a| a.0 == 303 || a.0 == 400),
        "the others find it spent: {answers:?}"
    );
    assert_eq!(counts().await, (1, 1), "one sign-in kept");
    // Every chain holds after the rolled-back appends.
    let chains: Vec<String> = sqlx::query_scalar("SELECT chain FROM audit_chain_heads")
        .fetch_all(s.server.db().pool())
        .await
        .unwrap();
    assert!(!chains.is_empty());
    for chain in chains {
        let verified = nulab_pass::audit::chain::verify(s.server.db(), &chain)
            .await
            .unwrap();
        assert!(verified.broken.is_none(), "{verified:?}");
    }
}
both!(a_parked_sign_in_completes_once_under_a_race, raced);
