//! The real binary: operator commands (with and without --json) against SQLite and PostgreSQL,
//! including while `serve` runs on the same database.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Backend, fresh_db};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(db_url: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env("NULAB_PASS_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nulab-pass");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn count(url: &str, table: &str) -> i64 {
    let db = nulab_pass::db::Db::connect(url).await.unwrap();
    let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(db.pool())
        .await
        .unwrap();
    db.close().await;
    row.0
}

async fn operator_commands(backend: Backend) {
    let testdb = fresh_db(backend).await;
    let url = testdb.url.clone();

    let migrated = run(&url, &["db", "migrate"], None).await;
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);

    // Password on stdin with a trailing newline (echo) and without one (printf).
    let ada = run(
        &url,
        &[
            "account",
            "create",
            "--email",
            "Ada@Example.com",
            "--name",
            "Ada Admin",
            "--password-stdin",
            "--json",
        ],
        Some("correct horse battery\n"),
    )
    .await;
    assert_eq!(ada.code, 0, "{}", ada.stderr);
    let ada_json: serde_json::Value = serde_json::from_str(ada.stdout.trim()).unwrap();
    assert_eq!(ada_json["email"], "Ada@example.com");
    assert!(uuid::Uuid::parse_str(ada_json["id"].as_str().unwrap()).is_ok());
    let bob = run(
        &url,
        &[
            "account",
            "create",
            "--email",
            "bob@example.com",
            "--name",
            "Bob",
            "--password-stdin",
        ],
        Some("another long password"),
    )
    .await;
    assert_eq!(bob.code, 0, "{}", bob.stderr);
    assert!(
        uuid::Uuid::parse_str(bob.stdout.trim()).is_ok(),
        "plain output is the id"
    );

    // Operator-created accounts count as verified and the password works exactly as typed.
    let account = nulab_pass::accounts::store::by_email(
        testdb.db.pool(),
        &nulab_pass::accounts::Email::parse("ada@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(account.email_verified);
    let meta = nulab_pass::audit::RequestMeta::default();
    let now = nulab_pass::clock::Clock::default().now_ms();
    assert!(
        nulab_pass::sign_in::password::sign_in_with_password(
            &testdb.db,
            &nulab_pass::Config::with_database(&testdb.url),
            now,
            "ada@example.com",
            "correct horse battery",
            &meta
        )
        .await
        .is_ok()
    );
    assert!(
        nulab_pass::sign_in::password::sign_in_with_password(
            &testdb.db,
            &nulab_pass::Config::with_database(&testdb.url),
            now,
            "bob@example.com",
            "another long password",
            &meta
        )
        .await
        .is_ok()
    );

    let org = run(
        &url,
        &[
            "org",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme Corp",
            "--admin-email",
            "ada@example.com",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(org.code, 0, "{}", org.stderr);
    let org_json: serde_json::Value = serde_json::from_str(org.stdout.trim()).unwrap();
    assert_eq!(org_json["slug"], "acme");

    let token = run(&url, &["token", "create", "--org", "acme"], None).await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    assert_eq!(token.stdout.lines().count(), 1, "the token alone on stdout");
    assert!(token.stdout.trim().starts_with("np_"));
    let token_json = run(
        &url,
        &["token", "create", "--org", "acme", "--name", "ci", "--json"],
        None,
    )
    .await;
    let token_json: serde_json::Value = serde_json::from_str(token_json.stdout.trim()).unwrap();
    assert!(token_json["token"].as_str().unwrap().starts_with("np_"));
    assert_eq!(token_json["org"], "acme");

    // Each command wrote its audit event with the operator as the actor.
    let db = nulab_pass::db::Db::connect(&url).await.unwrap();
    let actions: Vec<(String,)> =
        sqlx::query_as("SELECT action FROM audit_events WHERE actor_type = 'operator'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    db.close().await;
    let actions: Vec<String> = actions.into_iter().map(|a| a.0).collect();
    for action in ["account.created", "org.created", "api_token.created"] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
    // Operator tokens: every scope and 90 days unless narrowed.
    assert_eq!(token_json["operator"], true);
    assert_eq!(
        token_json["scopes"],
        serde_json::json!(["read", "members", "domains", "sso", "billing", "audit"])
    );
    let narrow = run(
        &url,
        &[
            "token",
            "create",
            "--org",
            "acme",
            "--scopes",
            "domains,read",
            "--expires-in-days",
            "7",
        ],
        None,
    )
    .await;
    assert_eq!(narrow.code, 0, "{}", narrow.stderr);
    assert_eq!(
        narrow.stdout.lines().count(),
        1,
        "the token alone on stdout"
    );
    let db = nulab_pass::db::Db::connect(&url).await.unwrap();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT scopes, (expires_at - created_at) / 86400000, operator FROM api_tokens \
         ORDER BY created_at, name",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    db.close().await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.1, r.2))
            .collect::<Vec<_>>(),
        [
            ("read members domains sso billing audit", 90, 1),
            ("read members domains sso billing audit", 90, 1),
            ("read domains", 7, 1)
        ]
    );
}
both!(
    operator_commands_create_accounts_orgs_and_tokens,
    operator_commands
);

async fn bad_operator_input(backend: Backend) {
    let testdb = fresh_db(backend).await;
    let url = testdb.url.clone();
    // /dev/mail shows every email with live links: never on an https deployment by accident.
    let dev = run(
        &url,
        &[
            "serve",
            "--dev",
            "--base-url",
            "https://pass.example.com",
            "--bind",
            "127.0.0.1:0",
        ],
        None,
    )
    .await;
    assert_ne!(dev.code, 0);
    assert!(
        dev.stderr.contains("refusing --dev") && dev.stderr.contains("--dev-allow-https"),
        "{}",
        dev.stderr
    );
    // An account ada@example.com and an organization acme to collide with.
    let ada = run(
        &url,
        &[
            "account",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    )
    .await;
    assert_eq!(ada.code, 0, "{}", ada.stderr);
    let org = run(
        &url,
        &[
            "org",
            "create",
            "--slug",
            "acme",
            "--name",
            "Acme Corp",
            "--admin-email",
            "ada@example.com",
        ],
        None,
    )
    .await;
    assert_eq!(org.code, 0, "{}", org.stderr);

    // Bad input: a clear message, a failing exit code, and nothing written.
    let before = (
        count(&url, "accounts").await,
        count(&url, "orgs").await,
        count(&url, "audit_events").await,
        count(&url, "api_tokens").await,
    );
    for (args, stdin, fragment) in [
        (
            vec![
                "account",
                "create",
                "--email",
                "ADA@example.com",
                "--name",
                "Again",
                "--password-stdin",
            ],
            Some("correct horse battery"),
            "already exists",
        ),
        (
            vec![
                "account",
                "create",
                "--email",
                "nope",
                "--name",
                "X",
                "--password-stdin",
            ],
            Some("correct horse battery"),
            "not a valid email",
        ),
        (
            vec![
                "account",
                "create",
                "--email",
                "c@example.com",
                "--name",
                "X",
                "--password-stdin",
            ],
            Some("short\n"),
            "at least 12",
        ),
        (
            vec![
                "org",
                "create",
                "--slug",
                "acme",
                "--name",
                "Dup",
                "--admin-email",
                "ada@example.com",
            ],
            None,
            "is taken",
        ),
        (
            vec![
                "org",
                "create",
                "--slug",
                "A!",
                "--name",
                "Bad",
                "--admin-email",
                "ada@example.com",
            ],
            None,
            "not a valid organization ID",
        ),
        (
            vec![
                "org",
                "create",
                "--slug",
                "other",
                "--name",
                "X",
                "--admin-email",
                "ghost@example.com",
            ],
            None,
            "no account uses",
        ),
        (
            vec!["token", "create", "--org", "missing"],
            None,
            "no organization",
        ),
        (
            vec!["token", "create", "--org", "acme", "--scopes", "read,admin"],
            None,
            "unknown scope \"admin\"",
        ),
        (
            vec!["token", "create", "--org", "acme", "--scopes", ","],
            None,
            "names no scope",
        ),
        (
            vec![
                "token",
                "create",
                "--org",
                "acme",
                "--expires-in-days",
                "366",
            ],
            None,
            "1 to 365 days",
        ),
        (
            vec!["token", "create", "--org", "acme", "--expires-in-days", "0"],
            None,
            "1 to 365 days",
        ),
    ] {
        let out = run(&url, &args, stdin).await;
        assert_ne!(out.code, 0, "{args:?} should fail");
        assert!(out.stderr.contains(fragment), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?} printed {}", out.stdout);
    }
    assert_eq!(
        (
            count(&url, "accounts").await,
            count(&url, "orgs").await,
            count(&url, "audit_events").await,
            count(&url, "api_tokens").await
        ),
        before
    );
}
both!(
    bad_operator_input_is_refused_and_changes_nothing,
    bad_operator_input
);

async fn cli_beside_running_server(backend: Backend) {
    let testdb = fresh_db(backend).await;
    let url = testdb.url.clone();
    let port = common::steady_port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = Command::new(BIN)
        .args(["serve", "--bind", &bind])
        .env("NULAB_PASS_DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{bind}");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "server did not become ready");

    // Operator commands while the server holds the database open, interleaved with API calls.
    assert_eq!(
        run(
            &url,
            &[
                "account",
                "create",
                "--email",
                "ada@example.com",
                "--name",
                "Ada",
                "--password-stdin"
            ],
            Some("correct horse battery")
        )
        .await
        .code,
        0
    );
    assert_eq!(
        run(
            &url,
            &[
                "org",
                "create",
                "--slug",
                "acme",
                "--name",
                "Acme",
                "--admin-email",
                "ada@example.com"
            ],
            None
        )
        .await
        .code,
        0
    );
    let token = run(&url, &["token", "create", "--org", "acme"], None)
        .await
        .stdout
        .trim()
        .to_string();
    let mut creations = Vec::new();
    for i in 0..5 {
        let url = url.clone();
        creations.push(tokio::spawn(async move {
            run(
                &url,
                &[
                    "account",
                    "create",
                    "--email",
                    &format!("u{i}@example.com"),
                    "--name",
                    "U",
                    "--password-stdin",
                ],
                Some("correct horse battery"),
            )
            .await
            .code
        }));
    }
    for i in 0..5 {
        let res = client
            .get(format!("{base}/api/v1/orgs/acme/members"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i}");
    }
    for c in creations {
        assert_eq!(c.await.unwrap(), 0);
    }
    for i in 0..5 {
        let res = client
            .post(format!("{base}/api/v1/orgs/acme/members"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"email": format!("u{i}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // The operator adds u0 directly: the open invitation becomes the membership.
    let added = run(
        &url,
        &[
            "org",
            "add-member",
            "--org",
            "acme",
            "--email",
            "u0@example.com",
            "--role",
            "admin",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let added: serde_json::Value = serde_json::from_str(&added.stdout).unwrap();
    assert_eq!(
        (added["email"].as_str(), added["role"].as_str()),
        (Some("u0@example.com"), Some("admin"))
    );
    let memberships = count(&url, "memberships").await;
    for (args, says) in [
        (
            ["--email", "u0@example.com", "--role", "member"],
            "already a member",
        ),
        (
            ["--email", "u1@example.com", "--role", "owner"],
            "--role must be admin or member",
        ),
        (
            ["--email", "nobody@example.com", "--role", "member"],
            "sign up first",
        ),
    ] {
        let mut all = vec!["org", "add-member", "--org", "acme"];
        all.extend(args);
        let refused = run(&url, &all, None).await;
        assert_ne!(refused.code, 0);
        assert!(refused.stderr.contains(says), "{}", refused.stderr);
    }
    assert_eq!(
        count(&url, "memberships").await,
        memberships,
        "nothing changed"
    );
    let members: serde_json::Value = client
        .get(format!("{base}/api/v1/orgs/acme/members"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 6, "{members}");
    assert_eq!(statuses.iter().filter(|s| **s == "invited").count(), 4);
    server.kill().await.unwrap();
}
both!(cli_works_while_the_server_runs, cli_beside_running_server);

/// The binary exports mimalloc's `malloc` and `free` (`Cargo.toml`, the `override` feature), and
/// the dynamic linker binds the C libraries' calls to them: libxml2 (which xmlsec allocates
/// through), OpenSSL and the C library itself allocate through the same allocator as the Rust
/// code. `LD_DEBUG=bindings` is the dynamic linker's own account of each binding, one line
/// `binding file <caller> [0] to <definer> [0]: normal symbol `<name>'`; `LD_BIND_NOW` makes it
/// bind every symbol at start rather than at each first call.
#[test]
fn the_c_libraries_allocate_through_the_binarys_allocator() {
    let out = std::process::Command::new(BIN)
        .arg("--version")
        .env("LD_DEBUG", "bindings")
        .env("LD_BIND_NOW", "1")
        .output()
        .expect("run nulab-pass --version");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bindings: Vec<(&str, &str, &str)> = stderr
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("binding file ")?;
            let (caller, rest) = rest.split_once(" [")?;
            let (_, rest) = rest.split_once(" to ")?;
            let (definer, rest) = rest.split_once(" [")?;
            let (_, symbol) = rest.split_once("normal symbol `")?;
            Some((caller, definer, symbol.split('\'').next()?))
        })
        .collect();
    let binary = std::fs::canonicalize(BIN).unwrap();
    for library in ["libxml2.so", "libcrypto.so", "libc.so"] {
        for symbol in ["malloc", "free", "realloc", "calloc"] {
            let definers: Vec<&str> = bindings
                .iter()
                .filter(|(caller, _, name)| caller.contains(library) && *name == symbol)
                .map(|(_, definer, _)| *definer)
                .collect();
            assert!(
                !definers.is_empty(),
                "{library} binds {symbol}; {} bindings read",
                bindings.len()
            );
            for definer in definers {
                assert_eq!(
                    std::fs::canonicalize(definer).unwrap(),
                    binary,
                    "{library}'s {symbol}"
                );
            }
        }
    }
}
