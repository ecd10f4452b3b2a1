//! IdP-initiated sign-ins whose browsers come back at the same time are completed together
//! (`saml::sign_ins`, by group commit): every one signs its own browser in, each audited once
//! in an organization chain that still verifies; a parked sign-in fetched twice at once signs
//! in once; and when one sign-in of a group cannot be written, only its browser gets the
//! error, nothing of it is kept, and the others are signed in.

use futures_util::future::join_all;
use serde_json::json;

use super::{Sso, new_managed, sso};
use crate::both;
use crate::common::Backend;

/// Browsers of `emails`, each having posted its own unsolicited response: parked sign-ins.
async fn parked(s: &Sso, emails: &[String]) -> Vec<reqwest::Client> {
    let mut browsers = Vec::new();
    for email in emails {
        let browser = s.server.client();
        let res = s.post(&browser, &s.unsolicited(email), "", None).await;
        assert_eq!(res.status(), 303, "{email}");
        browsers.push(browser);
    }
    browsers
}

/// Fetches the continue page in every browser (`twice` of them twice at once) while the
/// sign-ins' table is held, checks that nobody is answered before it is let go, then lets it
/// go: each request's status, in order (the second fetches last). Mia's parked sign-in goes
/// first and alone: the committer takes it on its own and waits with it for the table, so that
/// every browser after it waits in one group.
async fn continue_all(
    s: &Sso,
    backend: Backend,
    browsers: &[reqwest::Client],
    twice: usize,
) -> Vec<u16> {
    let url = s.server.url(&format!("/sso/{}/continue", s.id()));
    let mia = parked(s, &["mia@corp.test".to_string()]).await.remove(0);
    // SQLite: the transaction holds the one writing connection. PostgreSQL: a lock that spending
    // a parked sign-in waits for.
    let mut holder = s.server.db().begin().await.unwrap();
    if backend == Backend::Postgres {
        sqlx::query("LOCK TABLE saml_pending_sign_ins IN SHARE MODE")
            .execute(&mut *holder)
            .await
            .unwrap();
    }
    let fetch = |b: &reqwest::Client| {
        let (b, url) = (b.clone(), url.clone());
        tokio::spawn(async move { b.get(&url).send().await.unwrap().status().as_u16() })
    };
    let first = fetch(&mia);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let tasks: Vec<_> = browsers
        .iter()
        .chain(&browsers[..twice])
        .map(fetch)
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !first.is_finished() && tasks.iter().all(|t| !t.is_finished()),
        "a browser was answered before its sign-in could be committed"
    );
    holder.commit().await.unwrap();
    assert_eq!(first.await.unwrap(), 303, "Mia's sign-in");
    join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Who `browser` is signed in as, by its account page.
async fn signed_in_as(s: &Sso, browser: &reqwest::Client) -> Option<String> {
    let res = browser.get(s.server.url("/account")).send().await.unwrap();
    if res.status() != 200 {
        return None;
    }
    let page = res.text().await.unwrap();
    page.split(|c: char| c == '<' || c == '>' || c.is_whitespace())
        .find(|w| w.starts_with('m') && w.ends_with("@corp.test"))
        .map(str::to_string)
}

async fn successes(s: &Sso, email: &str) -> usize {
    let events = nulab_pass::audit::store::recent(s.server.db().pool(), None, 1000)
        .await
        .unwrap();
    events
        .iter()
        .filter(|e| e.action == "sso.signin.succeeded" && e.details["email"] == json!(email))
        .count()
}

/// What a sign-in of `email` writes: its last sign-in time and how many SAML sessions it has.
async fn sign_in_state(s: &Sso, email: &str) -> (Option<i64>, i64) {
    sqlx::query_as(
        "SELECT last_sign_in_at, (SELECT count(*) FROM saml_sessions WHERE account_id = a.id) \
         FROM accounts a WHERE email = $1",
    )
    .bind(email)
    .fetch_one(s.server.db().pool())
    .await
    .unwrap()
}

async fn chain_holds(s: &Sso) {
    let chain = s.org.id.to_string();
    let checked = nulab_pass::audit::chain::verify(s.server.db(), &chain)
        .await
        .unwrap();
    assert!(checked.broken.is_none(), "{checked:?}");
    assert!(checked.events > 0);
}

async fn together(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let emails: Vec<String> = (0..8).map(|i| format!("m{i}@corp.test")).collect();
    for email in &emails {
        new_managed(&s.server, "corp", &s.token, email, "M").await;
    }
    let groups = s.server.state.sign_ins.groups();

    // Eight browsers back at once, the first twice: all signed in, each as itself, once.
    let browsers = parked(&s, &emails).await;
    let statuses = continue_all(&s, backend, &browsers, 1).await;
    assert_eq!(&statuses[1..8], &[303; 7], "{statuses:?}");
    let mut first = [statuses[0], statuses[8]];
    first.sort_unstable();
    assert_eq!(first, [303, 400], "the sign-in fetched twice: {statuses:?}");
    assert!(
        s.server.state.sign_ins.groups() > groups,
        "no group was formed"
    );
    for (browser, email) in browsers.iter().zip(&emails) {
        assert_eq!(
            signed_in_as(&s, browser).await.as_deref(),
            Some(email.as_str())
        );
        assert_eq!(successes(&s, email).await, 1, "{email}");
    }
    chain_holds(&s).await;

    // The audit event of m7's sign-in cannot be written: its group fails and is completed one
    // by one; m7's browser gets the error and keeps nothing, the others are signed in.
    let refuse = match backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_m7 BEFORE INSERT ON audit_events \
             WHEN NEW.details LIKE '%m7@corp.test%' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_m7() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.details LIKE '%m7@corp.test%' THEN RAISE EXCEPTION 'refused by the test'; \
             END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_m7 BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_m7()",
        ],
    };
    for sql in refuse {
        sqlx::query(sql)
            .execute(s.server.db().pool())
            .await
            .unwrap();
    }
    let m7_before = sign_in_state(&s, "m7@corp.test").await;
    let failed = s.server.state.sign_ins.failed_groups();
    let browsers = parked(&s, &emails).await;
    let statuses = continue_all(&s, backend, &browsers, 0).await;
    assert_eq!(&statuses[..7], &[303; 7], "{statuses:?}");
    assert_eq!(statuses[7], 500, "{statuses:?}");
    assert!(
        s.server.state.sign_ins.failed_groups() > failed,
        "m7's sign-in failed outside a group"
    );
    for email in &emails[..7] {
        assert_eq!(successes(&s, email).await, 2, "{email}");
    }
    assert_eq!(successes(&s, "m7@corp.test").await, 1);
    let m7_after = sign_in_state(&s, "m7@corp.test").await;
    assert_eq!(m7_after, m7_before, "m7's failed sign-in kept something");
    let unspent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saml_pending_sign_ins p JOIN accounts a ON a.id = p.account_id \
         WHERE a.email = 'm7@corp.test' AND p.used_at IS NULL",
    )
    .fetch_one(s.server.db().pool())
    .await
    .unwrap();
    assert_eq!(
        unspent, 1,
        "m7's parked sign-in was spent by a failed sign-in"
    );
    chain_holds(&s).await;
}

both!(completed_together, together);
