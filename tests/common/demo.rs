//! `nulab-pass demo` as its own process on free loopback ports, with a data directory the test
//! keeps; `DemoProcess::start` waits until the demo prints that it runs and reads what it
//! printed (the addresses) and saved (`demo.json`: the password, the product's credentials).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_nulab-pass");

/// A running demo.
pub struct DemoProcess {
    child: Child,
    /// Everything it printed on standard output until it ran.
    pub printed: String,
    pub base: String,
    pub product: String,
    pub idp: String,
    pub dns: std::net::SocketAddr,
    pub saved: serde_json::Value,
    pub data_dir: PathBuf,
}

/// The ports of one demo, chosen once so that a second run can use the same ones.
#[derive(Clone, Copy)]
pub struct Ports {
    pub server: u16,
    pub idp: u16,
    pub product: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            server: crate::common::steady_port(),
            idp: crate::common::steady_port(),
            product: crate::common::steady_port(),
        }
    }
}

/// The value printed after `label` on a line of `printed`.
fn printed_after<'a>(printed: &'a str, label: &str) -> &'a str {
    printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{printed}"))
        .split_whitespace()
        .next()
        .unwrap()
}

impl DemoProcess {
    /// Runs `nulab-pass demo` on `data_dir` and `ports` (the DNS server on any free port) with
    /// `extra` arguments, and waits until it is running.
    pub async fn start(data_dir: &Path, ports: Ports, extra: &[&str]) -> DemoProcess {
        let mut child = Command::new(BIN)
            .arg("demo")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", &format!("127.0.0.1:{}", ports.server)])
            .args(["--idp-bind", &format!("127.0.0.1:{}", ports.idp)])
            .args(["--product-bind", &format!("127.0.0.1:{}", ports.product)])
            .args(["--dns-bind", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("NULAB_PASS_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run nulab-pass demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = String::new();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                printed.push_str(&line);
                printed.push('\n');
                if line.starts_with("publish its TXT record") {
                    return;
                }
            }
            panic!("the demo ended before it ran:\n{printed}");
        };
        tokio::time::timeout(Duration::from_secs(120), read)
            .await
            .expect("the demo did not start within two minutes");
        // Keep draining its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let saved = std::fs::read(data_dir.join("demo.json")).expect("demo.json");
        DemoProcess {
            base: printed_after(&printed, "nulab-pass  ").to_string(),
            product: printed_after(&printed, "Backlog (demo) ").to_string(),
            idp: printed_after(&printed, "mock IdP ")
                .trim_end_matches("/metadata")
                .to_string(),
            dns: printed_after(&printed, "demo DNS (.test) ")
                .parse()
                .unwrap(),
            saved: serde_json::from_slice(&saved).unwrap(),
            printed,
            child,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The password of every seeded Nulab account.
    pub fn password(&self) -> String {
        self.saved["password"].as_str().unwrap().to_string()
    }

    /// The demo's SQLite database, opened beside the running demo.
    pub async fn db(&self) -> nulab_pass::db::Db {
        let url = format!("sqlite://{}", self.data_dir.join("nulab-pass.db").display());
        nulab_pass::db::Db::connect(&url)
            .await
            .expect("the demo's database")
    }

    /// Stops it as Ctrl-C would (SIGTERM) and waits until it has ended.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(killed.expect("kill").success());
        let ended = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            ended
                .expect("the demo stops on SIGTERM")
                .expect("wait")
                .success()
        );
    }
}

/// Runs `nulab-pass demo` with `args` expecting it to fail at once; returns what it wrote on
/// standard error.
pub async fn demo_fails(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("demo")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run nulab-pass demo");
    assert!(
        !out.status.success(),
        "the demo should have refused to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
