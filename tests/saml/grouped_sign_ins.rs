//! IdP-initiated responses posted at the same time are admitted and parked together
//! (`saml::admit`), and sign-ins whose browsers come back at the same time are completed together
//! (`saml::sign_ins`, by group commit): every one signs its own browser in, each audited once
//! in an organization chain that still verifies; a parked sign-in fetched twice at once signs
//! in once; and when one sign-in of a group cannot be written, only its browser gets the
//! error, nothing of it is kept, and the others are signed in.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use super::{Sso, new_managed, sso};
use crate::both;
use crate::common::{Backend, api};

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
/// go: each request's status, in order (the second fetches last). Two parked sign-ins of Mia's
/// go first, each alone: the first on its own task (nothing else under way), the second taken
/// on its own by the committer, which waits with it for the table, so that every browser after
/// them waits in one group.
async fn continue_all(
    s: &Sso,
    backend: Backend,
    browsers: &[reqwest::Client],
    twice: usize,
) -> Vec<u16> {
    let url = s.server.url(&format!("/sso/{}/continue", s.id()));
    let mia = parked(
        s,
        &["mia@corp.test".to_string(), "mia@corp.test".to_string()],
    )
    .await;
    let fetch = |b: &reqwest::Client| {
        let (b, url) = (b.clone(), url.clone());
        tokio::spawn(async move { b.get(&url).send().await.unwrap().status().as_u16() })
    };
    let lone: Vec<_> = mia.iter().map(|b| move || fetch(b)).collect();
    let rest = || {
        browsers
            .iter()
            .chain(&browsers[..twice])
            .map(fetch)
            .collect()
    };
    let (first, rest) = while_held(s, backend, "saml_pending_sign_ins", lone, rest).await;
    assert_eq!(first, [303, 303], "Mia's sign-ins");
    rest
}

/// Starts the `lone` jobs 300 ms apart, then the `rest`, while `table` is held (SQLite: the
/// transaction holds the one writing connection; PostgreSQL: a lock the jobs wait for); checks
/// that nobody is answered before it is let go, then lets it go: the lone jobs' outcomes and
/// the others', in order.
async fn while_held<T: Send + 'static>(
    s: &Sso,
    backend: Backend,
    table: &str,
    lone: Vec<impl FnOnce() -> tokio::task::JoinHandle<T>>,
    rest: impl FnOnce() -> Vec<tokio::task::JoinHandle<T>>,
) -> (Vec<T>, Vec<T>) {
    let mut holder = s.server.db().begin().await.unwrap();
    if backend == Backend::Postgres {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE {table} IN SHARE MODE"
        )))
        .execute(&mut *holder)
        .await
        .unwrap();
    }
    let mut first = Vec::new();
    for start in lone {
        first.push(start());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let tasks = rest();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        first.iter().chain(&tasks).all(|t| !t.is_finished()),
        "a caller was answered before its work could be committed"
    );
    holder.commit().await.unwrap();
    let unwrap = |done: Vec<Result<T, _>>| done.into_iter().map(Result::unwrap).collect();
    (unwrap(join_all(first).await), unwrap(join_all(tasks).await))
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

/// Makes every insert into `table` whose `column` mentions `email` fail (a trigger `refuse`).
async fn refuse_inserts(s: &Sso, backend: Backend, table: &str, column: &str, email: &str) {
    let refuse = match backend {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON {table} WHEN NEW.{column} LIKE '%{email}%' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.{column} LIKE '%{email}%' THEN RAISE EXCEPTION 'refused by the test'; \
                 END IF; RETURN NEW; END $$"
            ),
            format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION refuse()"
            ),
        ],
    };
    for sql in refuse {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(s.server.db().pool())
            .await
            .unwrap();
    }
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
    // Sessions of corp's accounts last an hour: a group reads the lifetime for all its sign-ins.
    let settings = s.server.url("/api/v1/orgs/corp/session-settings");
    let one_hour = Some(json!({"session_lifetime_hours": 1}));
    let http = s.server.client();
    let (status, _) = api(&http, Method::PUT, settings, &s.token, one_hour).await;
    assert_eq!(status, 200);
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
        // Its own last sign-in time and SAML session, written by the group's statements.
        let (last, saml_sessions) = sign_in_state(&s, email).await;
        assert!(last.is_some(), "{email}");
        assert_eq!(saml_sessions, 1, "{email}");
    }
    chain_holds(&s).await;
    s.server.state.clock.advance_ms(59 * 60_000);
    for browser in &browsers {
        assert!(signed_in_as(&s, browser).await.is_some(), "59 minutes in");
    }
    s.server.state.clock.advance_ms(2 * 60_000);
    for browser in &browsers {
        assert!(signed_in_as(&s, browser).await.is_none(), "61 minutes in");
    }

    // The audit event of m7's sign-in cannot be written: its group fails and is completed one
    // by one; m7's browser gets the error and keeps nothing, the others are signed in.
    refuse_inserts(&s, backend, "audit_events", "details", "m7@corp.test").await;
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

/// Posts every response of `posts` to the ACS, each from its own browser, while the replay
/// cache is held, checks that nobody is answered before it is let go, then lets it go: each
/// post's status and, for a parked sign-in, the browser that can continue it. Two responses for
/// Mia go first, each alone (as in [`continue_all`]), so that every post after them waits in
/// one group.
async fn post_all(s: &Sso, backend: Backend, posts: &[String]) -> Vec<(u16, reqwest::Client)> {
    let post = |b64: &String| {
        let (browser, form) = (s.server.client(), [("SAMLResponse", b64.clone())]);
        let acs = s.acs();
        tokio::spawn(async move {
            let res = browser.post(acs).form(&form).send().await.unwrap();
            (res.status().as_u16(), browser)
        })
    };
    let mia: Vec<String> = (0..2).map(|_| s.unsolicited("mia@corp.test")).collect();
    let lone: Vec<_> = mia.iter().map(|b64| move || post(b64)).collect();
    let rest = || posts.iter().map(post).collect();
    let (first, rest) = while_held(s, backend, "saml_replay", lone, rest).await;
    for (status, _) in first {
        assert_eq!(status, 303, "Mia's response");
    }
    rest
}

/// Continues the parked sign-in of `browser`: who it is then signed in as.
async fn continued(s: &Sso, browser: &reqwest::Client) -> Option<String> {
    let url = s.server.url(&format!("/sso/{}/continue", s.id()));
    let res = browser.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    signed_in_as(s, browser).await
}

/// Posts `b64` on its own: the status.
async fn post_again(s: &Sso, b64: &str) -> u16 {
    s.post(&s.server.client(), b64, "", None)
        .await
        .status()
        .as_u16()
}

async fn arrivals(backend: Backend) {
    let s = sso(backend).await;
    assert_eq!(s.patch(json!({"allow_idp_initiated": true})).await.0, 200);
    let emails: Vec<String> = (0..5).map(|i| format!("m{i}@corp.test")).collect();
    for email in &emails {
        new_managed(&s.server, "corp", &s.token, email, "M").await;
    }
    // An account on a second domain of the organization, which then lapses.
    s.server.verified_domain(&s.org, "corp2.test").await;
    new_managed(&s.server, "corp", &s.token, "n0@corp2.test", "N").await;
    sqlx::query("UPDATE domains SET status = 'lapsed' WHERE domain = 'corp2.test'")
        .execute(s.server.db().pool())
        .await
        .unwrap();
    let groups = s.server.state.arrivals.groups();

    // Five responses, the first posted twice, one for an address with no account yet and one
    // for the account whose domain lapsed.
    let mut posts: Vec<String> = emails.iter().map(|e| s.unsolicited(e)).collect();
    posts.push(posts[0].clone());
    let stranger = s.unsolicited("m9@corp.test");
    posts.push(stranger.clone());
    posts.push(s.unsolicited("n0@corp2.test"));
    let answered = post_all(&s, backend, &posts).await;
    let statuses: Vec<u16> = answered.iter().map(|(status, _)| *status).collect();
    assert!(
        s.server.state.arrivals.groups() > groups,
        "no group was formed"
    );
    assert_eq!(&statuses[1..5], &[303; 4], "{statuses:?}");
    let mut twice = [statuses[0], statuses[5]];
    twice.sort_unstable();
    assert_eq!(twice, [303, 403], "the response posted twice: {statuses:?}");
    assert_eq!(statuses[6], 403, "no account: {statuses:?}");
    assert_eq!(statuses[7], 403, "domain lapsed: {statuses:?}");
    // Each parked sign-in signs its own browser in, as its own account.
    let first = if statuses[0] == 303 { 0 } else { 5 };
    for (at, email) in emails.iter().enumerate() {
        let browser = &answered[if at == 0 { first } else { at }].1;
        assert_eq!(
            continued(&s, browser).await.as_deref(),
            Some(email.as_str())
        );
    }
    // The refused response kept nothing: once its account exists, it signs in; the response
    // admitted stays spent.
    new_managed(&s.server, "corp", &s.token, "m9@corp.test", "M").await;
    assert_eq!(post_again(&s, &stranger).await, 303);
    assert_eq!(post_again(&s, &posts[0]).await, 403);

    // m4's grant cannot be parked: its group fails and is admitted again one by one; m4's
    // browser gets the error and its response keeps nothing, the others are parked.
    refuse_inserts(
        &s,
        backend,
        "saml_pending_sign_ins",
        "grant_json",
        "m4@corp.test",
    )
    .await;
    let failed = s.server.state.arrivals.failed_groups();
    let posts: Vec<String> = emails.iter().map(|e| s.unsolicited(e)).collect();
    let answered = post_all(&s, backend, &posts).await;
    let statuses: Vec<u16> = answered.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [303, 303, 303, 303, 500]);
    assert!(
        s.server.state.arrivals.failed_groups() > failed,
        "m4's response failed outside a group"
    );
    for (email, (_, browser)) in emails.iter().zip(&answered).take(4) {
        assert_eq!(
            continued(&s, browser).await.as_deref(),
            Some(email.as_str())
        );
    }
    let drop_trigger = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse",
        Backend::Postgres => "DROP TRIGGER refuse ON saml_pending_sign_ins",
    };
    sqlx::query(drop_trigger)
        .execute(s.server.db().pool())
        .await
        .unwrap();
    assert_eq!(
        post_again(&s, &posts[4]).await,
        303,
        "m4's response was kept"
    );
    chain_holds(&s).await;
}

both!(admitted_together, arrivals);
