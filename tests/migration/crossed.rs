//! Two migrations that cross: each account belongs to the organization the other migrates into,
//! and both users agree at the same instant. Both migrations complete and every chain verifies.
//!
//! On PostgreSQL the test forces the interleaving that used to deadlock: it holds one row (an
//! organization's row, or its audit chain's head) in its own transaction, lets the two
//! acceptances queue behind it in a chosen order, then lets go. Taking organization rows and
//! chain heads in one fixed order makes the second wait for the first instead of for each other.
//! SQLite serialises writers, so there the two simply race. The migration job, whose expiry and
//! reminder rounds each write several organizations' chains in one transaction, takes them in
//! the same order.

use super::*;
use nulab_pass::db::Dialect;
use nulab_pass::migration::jobs::Summary;

/// How each account belongs to the organization the other one migrates into.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// As admin: each migration locks the other organization's row.
    Admin,
    /// As member: each migration writes into the other organization's audit chain.
    Member,
}

/// corp (with its member sam@corp.test) and other, both with a verified domain and free
/// seats, other with its member ann@other.test.
async fn two_orgs(backend: Backend) -> (World, nulab_pass::orgs::Org) {
    let w = world(backend, 5, &["sam"]).await;
    let s = &w.server;
    let other = nulab_pass::orgs::store::by_slug(s.db().pool(), "other")
        .await
        .unwrap()
        .expect("other");
    s.verified_domain(&other, "other.test").await;
    s.seats(&other, 5).await;
    s.account("ann@other.test", "ann", PASSWORD).await;
    s.add_member(&other, "ann@other.test", "member").await;
    (w, other)
}

async fn crossed(backend: Backend, role: Role) {
    let (w, other) = two_orgs(backend).await;
    let s = &w.server;
    let role_name = match role {
        Role::Admin => "admin",
        Role::Member => "member",
    };
    // sam (of corp) joins other, ann (of other) joins corp; both orgs keep their own admins.
    s.add_member(&other, "sam@corp.test", role_name).await;
    s.add_member(&w.org, "ann@other.test", role_name).await;

    w.ask_one("sam@corp.test").await;
    let sam_link = w.link("sam@corp.test").await;
    let (status, body) = api(
        &s.client(),
        Method::POST,
        s.url("/api/v1/orgs/other/migrations"),
        &w.other_token,
        Some(json!({"emails": ["ann@other.test"]})),
    )
    .await;
    assert_eq!((status, &body["requested"]), (200, &json!(1)), "{body}");
    let ann_mail = s.last_mail("ann@other.test", "migration.requested").await;
    let ann_link = link_in(&ann_mail.body_text, &s.url("/migration/")).expect("link");

    // Into corp: sam. Into other: ann. On PostgreSQL the first to queue behind the held row is
    // the one that, under the old order, took it and then waited for a row the other held.
    let (first, second) = match role {
        Role::Admin => (&sam_link, &ann_link),
        Role::Member => (&ann_link, &sam_link),
    };
    let (a, b) = if s.db().dialect() == Dialect::Postgres {
        let held = match role {
            Role::Admin => "UPDATE orgs SET seats = seats WHERE id = $1",
            Role::Member => "UPDATE audit_chain_heads SET seq = seq WHERE chain = $1",
        };
        let mut holder = s.db().begin().await.unwrap();
        let touched = sqlx::query(held)
            .bind(w.org.id.to_string())
            .execute(&mut *holder)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(touched, 1, "the held row exists");
        tokio::join!(w.agree(first, PASSWORD), async {
            lock_waiters_reach(s, 1).await;
            let release = async {
                lock_waiters_reach(s, 2).await;
                holder.commit().await.unwrap();
            };
            tokio::join!(w.agree(second, PASSWORD), release).0
        })
    } else {
        tokio::join!(w.agree(first, PASSWORD), w.agree(second, PASSWORD))
    };
    assert_eq!((a.0, b.0), (200, 200), "both migrate:\n{}\n{}", a.1, b.1);

    let sam = w.account("sam@corp.test").await;
    let ann = w.account("ann@other.test").await;
    assert_eq!(
        (sam.kind, sam.org_id),
        (AccountKind::Managed, Some(w.org.id))
    );
    assert_eq!(
        (ann.kind, ann.org_id),
        (AccountKind::Managed, Some(other.id))
    );
    // Each left the other's organization: one membership each remains.
    let memberships = s
        .rows(&format!(
            "SELECT org_id || ':' || account_id FROM memberships \
             WHERE account_id IN ('{}', '{}') ORDER BY 1",
            sam.id, ann.id
        ))
        .await;
    let mut expected = vec![
        format!("{}:{}", w.org.id, sam.id),
        format!("{}:{}", other.id, ann.id),
    ];
    expected.sort();
    assert_eq!(memberships, expected);
    for org in [&w.org, &other] {
        let chain = nulab_pass::audit::chain::verify(s.db(), &org.id.to_string())
            .await
            .unwrap();
        assert!(chain.broken.is_none(), "chain of {} breaks", org.slug);
    }
    let removed = s
        .rows("SELECT org_id FROM audit_events WHERE action = 'member.removed' ORDER BY 1")
        .await;
    let mut expected = vec![w.org.id.to_string(), other.id.to_string()];
    expected.sort();
    assert_eq!(
        removed, expected,
        "each organization records its member leaving"
    );
}

/// Waits until `n` of the server's database sessions wait for a lock (PostgreSQL).
async fn lock_waiters_reach(s: &TestServer, n: i64) {
    for _ in 0..500 {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(s.db().pool())
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{n} acceptances never queued behind the held row");
}

async fn crossed_admins(backend: Backend) {
    crossed(backend, Role::Admin).await
}
both!(crossed_migrations_of_admins_both_complete, crossed_admins);

async fn crossed_members(backend: Backend) {
    crossed(backend, Role::Member).await
}
both!(crossed_migrations_of_members_both_complete, crossed_members);

/// The migration job writes several organizations' chains in one transaction, expiring requests
/// or reminding their users, and takes them in chain order as an acceptance does. On
/// PostgreSQL: with the lower chain's head held, the job waits for it before it has taken the
/// higher one, which another transaction can still take (in the order of the due requests, it
/// would hold the higher one while waiting). Runs the job `after_ms` after the requests were
/// made: both requests are due for a reminder at once (they expire within the reminder's lead),
/// and expired three days later.
async fn job_in_chain_order(backend: Backend, after_ms: i64) -> Summary {
    let (w, other) = two_orgs(backend).await;
    let s = &w.server;
    let (lo, hi) = if w.org.id < other.id {
        (&w.org, &other)
    } else {
        (&other, &w.org)
    };
    let token_of = |org: &nulab_pass::orgs::Org| {
        if org.id == w.org.id {
            w.token.clone()
        } else {
            w.other_token.clone()
        }
    };
    let email_of = |org: &nulab_pass::orgs::Org| {
        if org.id == w.org.id {
            "sam@corp.test"
        } else {
            "ann@other.test"
        }
    };
    // The higher organization's request expires first, so it comes first among the due.
    for (org, days) in [(hi, 1), (lo, 2)] {
        let token = token_of(org);
        let (status, _) = api(
            &s.client(),
            Method::PUT,
            s.url(&format!("/api/v1/orgs/{}/migration-settings", org.slug)),
            &token,
            Some(json!({"link_days": days})),
        )
        .await;
        assert_eq!(status, 200);
        let (status, body) = api(
            &s.client(),
            Method::POST,
            s.url(&format!("/api/v1/orgs/{}/migrations", org.slug)),
            &token,
            Some(json!({"emails": [email_of(org)]})),
        )
        .await;
        assert_eq!((status, &body["requested"]), (200, &json!(1)), "{body}");
    }
    s.state.clock.advance_ms(after_ms);
    let now = s.state.clock.now_ms();
    let job = nulab_pass::migration::jobs::run_once(s.db(), now, &s.base);
    let summary = if s.db().dialect() == Dialect::Postgres {
        let head = "UPDATE audit_chain_heads SET seq = seq WHERE chain = $1";
        let mut holder = s.db().begin().await.unwrap();
        let held = sqlx::query(head)
            .bind(lo.id.to_string())
            .execute(&mut *holder)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(held, 1);
        let probe = async {
            lock_waiters_reach(s, 1).await;
            // The job waits for the lower head; the higher one is still free.
            let mut probe = s.db().begin().await.unwrap();
            sqlx::query("SET LOCAL lock_timeout = '2s'")
                .execute(&mut *probe)
                .await
                .unwrap();
            let free = sqlx::query(head)
                .bind(hi.id.to_string())
                .execute(&mut *probe)
                .await;
            probe.rollback().await.unwrap();
            holder.commit().await.unwrap();
            free
        };
        let (summary, free) = tokio::join!(job, probe);
        assert!(
            free.is_ok(),
            "the job held the higher head while waiting: {free:?}"
        );
        summary.unwrap()
    } else {
        job.await.unwrap()
    };
    for org in [lo, hi] {
        let chain = nulab_pass::audit::chain::verify(s.db(), &org.id.to_string())
            .await
            .unwrap();
        assert!(chain.broken.is_none(), "chain of {} breaks", org.slug);
    }
    summary
}

async fn expiry_in_chain_order(backend: Backend) {
    let summary = job_in_chain_order(backend, 3 * 24 * 3600 * 1000).await;
    assert_eq!(summary.expired, 2);
}
both!(the_expiry_job_takes_chains_in_order, expiry_in_chain_order);

async fn reminders_in_chain_order(backend: Backend) {
    let summary = job_in_chain_order(backend, 0).await;
    assert_eq!(
        summary,
        Summary {
            expired: 0,
            reminded: 2
        }
    );
}
both!(
    the_reminder_job_takes_chains_in_order,
    reminders_in_chain_order
);
