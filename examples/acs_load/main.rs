//! The ACS under load, measured from outside: seeds a fresh database with the SSO fixture
//! (`benches/common/sso.rs`), starts `nulab-pass serve` on it as its own process, mints unique
//! valid responses with `nulab-pass mock-idp mint`, and posts them over loopback HTTP with
//! keep-alive at fixed concurrencies and then paced at half the best rate. A sign-in is the
//! IdP-initiated POST to the ACS plus the browser's return to `/sso/{id}/continue`.
//!
//! For each run it reports sign-ins per second, p50/p99 latency, the server's CPU per sign-in
//! (from `/proc/<pid>/stat`) and its peak RSS (`VmHWM`), and, in the same run and on the same
//! cores, the bare verification rate (the outline and the signature check of the same
//! responses, on one thread per core): the ratio of the two holds on a noisy machine. Then the
//! tool's own CPU per sign-in (its clients share the cores), and the rate of samael as
//! published on the same responses with the ratio to it.
//!
//! `--floor` runs the same load against a server that only verifies and redirects
//! (`floor.rs`): the ratio no server can pass on these cores with these clients.
//!
//! Run: `bash scripts/acs_load.sh` (SQLite) or `bash scripts/acs_load.sh --postgres`.

/// The server's allocator (`src/main.rs`), the C libraries' too, so that the bare verification
/// runs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../benches/common/audit_rows.rs"]
mod audit_rows;
mod callgrind;
#[path = "../../benches/common/sso.rs"]
mod fixture;
mod floor;
mod procfs;
mod scale;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use nulab_pass::db::Db;
use nulab_pass::saml::{Connection, SpUrls};
use procfs::{cpu_ticks, peak_rss_mib, thread_cpu, ticks_per_second, tree_ticks};

#[derive(Parser)]
struct Args {
    /// `sqlite` (a fresh file) or `postgres` (a fresh database under NULAB_PASS_TEST_POSTGRES_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Concurrent clients of each closed-loop run: by default from one client to enough to
    /// keep both the server's cores and its group commits full.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    concurrency: Vec<usize>,
    /// Sign-ins of each run.
    #[arg(long, default_value_t = 4000)]
    sign_ins: usize,
    /// Managed accounts in the fixture (responses take them in turn).
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// `both` or `response` (which elements are signed).
    #[arg(long, default_value = "both")]
    signing: String,
    /// The server binary (default: `nulab-pass` beside this example's folder).
    #[arg(long)]
    server: Option<PathBuf>,
    /// A PostgreSQL postmaster pid: its CPU (with its children's) is reported beside the server's.
    #[arg(long)]
    pg_pid: Option<u32>,
    /// Counts instructions under callgrind instead of timing: the server's per sign-in (one
    /// client) and the bare verification's per response.
    #[arg(long)]
    callgrind: bool,
    /// Runs the same load against the floor (`floor.rs`): a server that only verifies each
    /// response and redirects, with no database, session or audit event. Its ratio is the
    /// most any server could reach here.
    #[arg(long, conflicts_with_all = ["callgrind", "scale"])]
    floor: bool,
    /// With `--floor`: a sign-in is the ACS POST alone, without the continue GET (the floor of
    /// a one-request sign-in).
    #[arg(long, requires = "floor")]
    acs_only: bool,
    /// With `--floor` on PostgreSQL: the floor's ACS POST also makes a sign-in's writes (the
    /// replay cache, the audit chain head and event, the browser session), the least a durable
    /// server sends its database: `each` sign-in in one statement, or `grouped` with the
    /// sign-ins waiting at the time (group commit; `floor.rs`).
    #[arg(long, value_parser = ["each", "grouped"])]
    floor_writes: Option<String>,
    /// (Used by `--floor`.) Serves the floor on `--base` for the connection and never exits.
    #[arg(long, requires_all = ["database_url", "connection_id", "base"])]
    floor_serve: bool,
    /// (Used by `--callgrind`.) Only verifies the responses of this file and exits.
    #[arg(long, requires_all = ["database_url", "connection_id", "base"])]
    verify_only: Option<PathBuf>,
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long)]
    connection_id: Option<String>,
    #[arg(long)]
    base: Option<String>,
    /// The paced run's rate in sign-ins per second (default: half the best closed-loop rate);
    /// a fixed rate compares two builds at the same load.
    #[arg(long)]
    paced: Option<f64>,
    /// Writes the paced run's sign-ins to this file, one line each in the order they were
    /// due: when it was due (ms from the run's start) and how long it took (ms), after a first
    /// line `# started <Unix ms>`. Where the slow ones fall in time tells a periodic stall (a
    /// checkpoint) from queueing.
    #[arg(long)]
    latencies: Option<PathBuf>,
    /// `ORGS,ACCOUNTS,EVENTS` (e.g. `10000,1000000,10000000`): measures the closed runs and
    /// the admin pages on the fixture alone, then again after seeding a deployment of that size
    /// into the same database (`scale.rs`), and prints both.
    #[arg(long, value_parser = scale::Scale::parse)]
    scale: Option<scale::Scale>,
}

/// The running server and what the load needs to reach it.
struct Server {
    child: Child,
    wrapper: Vec<String>,
    log: PathBuf,
    base: String,
    url: String,
    binary: PathBuf,
    certs: PathBuf,
    connection: Connection,
    acs: String,
    audience: String,
    minted: usize,
    accounts: usize,
    signing: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn database_url(backend: &str, dir: &Path) -> String {
    if backend == "sqlite" {
        return format!("sqlite://{}", dir.join("load.db").display());
    }
    let admin = std::env::var("NULAB_PASS_TEST_POSTGRES_URL")
        .expect("NULAB_PASS_TEST_POSTGRES_URL (scripts/acs_load.sh --postgres starts one)");
    let name = format!("load_{}", uuid::Uuid::new_v4().simple());
    let db = Db::connect(&admin).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(db.pool())
        .await
        .expect("create database");
    db.close().await;
    format!("{}/{name}", admin.rsplit_once('/').expect("url").0)
}

async fn start(args: &Args, dir: &Path, wrapper: &[String]) -> Server {
    let url = database_url(&args.backend, dir).await;
    let certs = dir.join("certs");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db = Db::connect(&url).await.expect("connect");
    db.migrate().await.expect("migrate");
    let fixture = fixture::seed(&db, &certs, &base, args.accounts).await;
    if db.dialect() == nulab_pass::db::Dialect::Postgres {
        // Planner statistics, as autovacuum keeps them in a deployment: without them the
        // fixture's freshly inserted thousands of rows look empty to the planner.
        sqlx::query("ANALYZE")
            .execute(db.pool())
            .await
            .expect("analyze");
    }
    db.close().await;
    let binary = args.server.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("exe");
        exe.parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("nulab-pass")
    });
    let log = dir.join("server.log");
    let child = spawn(&binary, wrapper, &url, &base, &certs, &log).await;
    Server {
        child,
        wrapper: wrapper.to_vec(),
        log,
        base,
        url,
        binary,
        certs,
        acs: fixture.acs_url,
        audience: fixture.audience,
        connection: fixture.connection,
        minted: 0,
        accounts: args.accounts,
        signing: args.signing.clone(),
    }
}

/// Starts `nulab-pass serve` (under `wrapper`, if any) and waits until it is ready.
async fn spawn(
    binary: &Path,
    wrapper: &[String],
    url: &str,
    base: &str,
    certs: &Path,
    log: &Path,
) -> Child {
    let log = log_file(log);
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let bind = base.trim_start_matches("http://");
    let child = command
        .arg("serve")
        .env("NULAB_PASS_DATABASE_URL", url)
        .env("NULAB_PASS_BIND", bind)
        .env("NULAB_PASS_BASE_URL", base)
        .env("NULAB_PASS_CERTS_DIR", certs)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start nulab-pass serve");
    wait_ready(base).await;
    child
}

/// `log` opened for appending, for a child's output.
fn log_file(log: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log")
}

/// Waits until the server at `base` answers `/readyz` (up to two minutes: under callgrind the
/// server starts some fifty times slower).
async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..1200 {
        if client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server process (its port is free once this returns).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server process and starts a new one on the same database and port.
    async fn restart(&mut self) {
        self.stop();
        self.child = spawn(
            &self.binary,
            &self.wrapper,
            &self.url,
            &self.base,
            &self.certs,
            &self.log,
        )
        .await;
    }

    /// `count` fresh responses from `nulab-pass mock-idp mint`, for the accounts in turn.
    fn mint(&mut self, count: usize) -> Vec<String> {
        let mut all = Vec::with_capacity(count);
        while all.len() < count {
            let first = self.minted % self.accounts;
            let batch = (count - all.len()).min(self.accounts - first);
            let out = Command::new(&self.binary)
                .args(["mock-idp", "mint", "--count", &batch.to_string()])
                .args(["--first", &first.to_string(), "--signing", &self.signing])
                .args(["--acs", &self.acs, "--audience", &self.audience])
                .args(["--email", fixture::EMAIL_TEMPLATE])
                .env("NULAB_PASS_CERTS_DIR", &self.certs)
                .env("NULAB_PASS_DATABASE_URL", "sqlite::memory:")
                .stderr(Stdio::inherit())
                .output()
                .expect("mock-idp mint");
            assert!(out.status.success(), "mock-idp mint failed");
            let text = String::from_utf8(out.stdout).expect("utf-8");
            all.extend(text.lines().map(str::to_string));
            self.minted += batch;
        }
        all
    }
}

/// The bare verification rates of a run's responses, on the same cores just before it.
#[derive(Clone, Copy)]
struct Bare {
    /// Responses per second verified as the ACS does.
    rate: f64,
    /// CPU seconds per response of that.
    cpu: f64,
    /// Responses per second verified by samael as published ([`samael_alone`]).
    samael: f64,
}

/// Verifies `responses` as the ACS does (decode, outline, signatures and conditions) on one
/// thread per core, and again with samael alone.
fn bare_verification(responses: &[String], connection: &Connection, sp: &SpUrls) -> Bare {
    let (rate, cpu) = on_every_core(responses, |b64| callgrind::verify_one(b64, connection, sp));
    Bare {
        rate,
        cpu,
        samael: samael_alone(responses, connection),
    }
}

/// Verifies `responses` with samael as published alone, on one thread per core: its
/// reduction to what is signed (each certificate loaded for every signature, as samael does)
/// with the connection's certificates, and the result read as a `samael::schema::Response`.
/// The rate issue 16 measured its goal against; returns responses per second. (The vendored
/// copy's patches leave this path's work as published, apart from freeing what it leaked.)
fn samael_alone(responses: &[String], connection: &Connection) -> f64 {
    use base64::Engine;
    use samael::crypto::{CertificateDer, CryptoProvider, ReduceMode, XmlSec};
    let b64 = base64::engine::general_purpose::STANDARD;
    let certs: Vec<CertificateDer> = connection
        .certificates
        .iter()
        .map(|c| CertificateDer::from(b64.decode(&c.der_base64).expect("certificate")))
        .collect();
    let (rate, _) = on_every_core(responses, |response| {
        let xml = String::from_utf8(b64.decode(response).expect("base64")).expect("utf-8");
        let signed =
            XmlSec::reduce_xml_to_signed(&xml, &certs, ReduceMode::ValidateAndMarkNoAncestors)
                .expect("samael verifies");
        let _: samael::schema::Response = signed.parse().expect("a response");
    });
    rate
}

/// Runs `each` over `responses` on one thread per core; returns responses per second and CPU
/// seconds per response.
fn on_every_core(responses: &[String], each: impl Fn(&str) + Sync) -> (f64, f64) {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let tps = ticks_per_second();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let cpu: f64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let before = thread_cpu(tps);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(b64) = responses.get(i) else { break };
                        each(b64);
                    }
                    thread_cpu(tps) - before
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let n = responses.len() as f64;
    (n / start.elapsed().as_secs_f64(), cpu / n)
}

/// One sign-in: the ACS POST, then (unless `acs_only`) the browser's GET of the continue page
/// with its cookie.
async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    response: &str,
    acs_only: bool,
) -> bool {
    let form = [("SAMLResponse", response)];
    let Ok(res) = client
        .post(format!("{base}/sso/{id}/acs"))
        .form(&form)
        .send()
        .await
    else {
        return false;
    };
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nulab_pass_sso_continue="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string);
    let _ = res.bytes().await;
    let Some(cookie) = cookie else { return false };
    if acs_only {
        return true;
    }
    let Ok(res) = client
        .get(format!("{base}/sso/{id}/continue"))
        .header("cookie", cookie)
        .send()
        .await
    else {
        return false;
    };
    let ok = res.status() == 303
        && res
            .headers()
            .get("location")
            .is_some_and(|l| l == "/account");
    let _ = res.bytes().await;
    ok
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// What one run measured.
struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    server_cpu_ms: f64,
    pg_cpu_ms: f64,
    /// This tool's own CPU per sign-in (the clients), on the same cores.
    tool_cpu_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Posts `responses` with `pace`: `Closed(c)` keeps c sign-ins in flight; `Paced(rate)`
/// starts one every 1/rate s (latency counted from when it was due).
async fn run(server: &Server, args: &Args, responses: Vec<String>, pace: Pace) -> Run {
    let tps = ticks_per_second();
    let (pid, n) = (server.pid(), responses.len());
    let pg = |a: &Args| a.pg_pid.map_or(0, tree_ticks);
    let (cpu0, pg0) = (cpu_ticks(pid), pg(args));
    let responses = Arc::new(responses);
    let next = Arc::new(AtomicUsize::new(0));
    let id = server.connection.id.to_string();
    let acs_only = args.acs_only;
    let workers = match pace {
        Pace::Closed(c) => c,
        Pace::Paced(_) => 64,
    };
    // Clients are built before the clock starts: building one loads the system's root
    // certificates (tens of milliseconds), which on this one-threaded runtime would make the
    // first requests of a paced run late by the time it takes to build them all.
    let clients: Vec<reqwest::Client> = (0..workers).map(|_| client()).collect();
    warm_up(&clients, &server.base).await;
    let tool0 = cpu_ticks(std::process::id());
    let start = Instant::now();
    let started = SystemTime::now();
    let mut tasks = Vec::new();
    for http in clients {
        let (responses, next, id, base) = (
            responses.clone(),
            next.clone(),
            id.clone(),
            server.base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = responses.get(i) else { break };
                let due = match pace {
                    Pace::Closed(_) => Instant::now(),
                    Pace::Paced(rate) => start + Duration::from_secs_f64(i as f64 / rate),
                };
                tokio::time::sleep_until(due.into()).await;
                let ok = sign_in(&http, &base, &id, r, acs_only).await;
                out.push((ok, due - start, due.elapsed()));
            }
            out
        }));
    }
    let mut timeline = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        for (ok, due, took) in t.await.expect("task") {
            failed += usize::from(!ok);
            timeline.push((due, took));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    if let (Pace::Paced(_), Some(path)) = (pace, &args.latencies) {
        write_timeline(path, started, &mut timeline);
    }
    let mut lat: Vec<Duration> = timeline.iter().map(|&(_, took)| took).collect();
    lat.sort();
    let per = |ticks: u64| ticks as f64 / tps * 1e3 / n as f64;
    Run {
        rate: (n - failed) as f64 / wall,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        failed,
        server_cpu_ms: per(cpu_ticks(pid).saturating_sub(cpu0)),
        // A backend that ends between its last reading and the postmaster's wait for it is
        // briefly counted nowhere: never below zero.
        pg_cpu_ms: per(pg(args).saturating_sub(pg0)),
        tool_cpu_ms: per(cpu_ticks(std::process::id()) - tool0),
    }
}

/// Before the clock starts, every client asks the server whether it is ready, all at once: each
/// opens its keep-alive connection, and the server takes (and pings, when they were idle) as
/// many of its database connections as the run will. Otherwise the first sign-ins of a run
/// wait for that, after the pause in which its responses were minted: on PostgreSQL 44 of the
/// 76 sign-ins over 20 ms of a paced run of 4,000 came in its first 300 ms (docs/performance.md,
/// "The full run of 20:14 UTC").
async fn warm_up(clients: &[reqwest::Client], base: &str) {
    let url = format!("{base}/readyz");
    let asks = clients.iter().map(|http| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.get(&url).send().await.map(|r| r.status()) })
    });
    for ask in asks.collect::<Vec<_>>() {
        match ask.await.expect("task") {
            Ok(status) if status.is_success() => {}
            other => panic!("the server is not ready: {other:?}"),
        }
    }
}

/// `--latencies`: a first line `# started <Unix ms>` (the run's start on the wall clock, to set
/// the timeline beside a server's or a database's log), then each sign-in's due time and
/// latency in milliseconds, in the order they were due.
fn write_timeline(path: &Path, started: SystemTime, timeline: &mut [(Duration, Duration)]) {
    use std::fmt::Write as _;
    timeline.sort();
    let mut text = String::with_capacity(timeline.len() * 20 + 32);
    let unix_ms = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    writeln!(text, "# started {unix_ms}").expect("to a String");
    for (due, took) in timeline.iter() {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        writeln!(text, "{:.3} {:.3}", ms(due), ms(took)).expect("to a String");
    }
    std::fs::write(path, text).expect("write --latencies");
}

#[derive(Clone, Copy)]
enum Pace {
    Closed(usize),
    Paced(f64),
}

fn report(label: &str, r: &Run, bare: Bare, rss: f64) {
    println!(
        "{label:<14} {:>8.0} {:>8.2} {:>8.2} {:>7} {:>9.2} {:>7.2} {:>9.0} {:>8.2} {:>6.2} {:>7.0} {:>8.2} {:>9.0} {:>7.2}",
        r.rate,
        r.p50_ms,
        r.p99_ms,
        r.failed,
        r.server_cpu_ms,
        r.pg_cpu_ms,
        bare.rate,
        bare.cpu * 1e3,
        r.rate / bare.rate,
        rss,
        r.tool_cpu_ms,
        bare.samael,
        r.rate / bare.samael
    );
}

fn main() {
    let args = Args::parse();
    if args.floor_serve {
        let connection = current_thread().block_on(target_connection(&args));
        let url = args.database_url.as_deref().unwrap_or_default();
        let base = args.base.as_deref().unwrap_or_default();
        return floor::serve(connection, base, url, args.floor_writes.as_deref());
    }
    current_thread().block_on(load(args));
}

/// The tool's own runtime: one thread, so that it takes as little of the cores as it can.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn load(args: Args) {
    if let Some(file) = &args.verify_only {
        return verify_only(&args, file).await;
    }
    if args.floor_writes.is_some() && !(args.floor && args.backend == "postgres") {
        eprintln!("--floor-writes goes with --floor and --backend postgres");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    if args.callgrind {
        return under_callgrind(&args, dir.keep()).await;
    }
    let mut server = start(&args, dir.path(), &[]).await;
    if args.floor {
        server.stop();
        server.child = floor::spawn(
            &server.url,
            &server.connection,
            &server.base,
            &server.log,
            args.floor_writes.as_deref(),
        )
        .await;
    }
    let sp = server.connection.sp_urls(&server.base);
    println!(
        "nulab-pass ACS load: {}{}, {}-signed, {} sign-ins a run, {} cores, server pid {}",
        args.backend,
        match (args.floor, args.floor_writes.as_deref()) {
            (true, Some("each")) => " (the floor, with each sign-in's writes)",
            (true, Some(_)) => " (the floor, with sign-ins' writes grouped)",
            (true, None) => " (the floor)",
            _ => "",
        },
        args.signing,
        args.sign_ins,
        std::thread::available_parallelism().map_or(1, usize::from),
        server.pid()
    );
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>8} {:>6} {:>7} {:>8} {:>9} {:>7}",
        "run",
        "signin/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "cpu ms",
        "pg ms",
        "verify/s",
        "vcpu ms",
        "ratio",
        "rss MiB",
        "tool ms",
        "samael/s",
        "s.ratio"
    );
    if let Some(size) = args.scale {
        return at_scale(&mut server, &args, size).await;
    }
    let mut best: f64 = 0.0;
    for &c in &args.concurrency {
        let responses = server.mint(args.sign_ins);
        let bare = bare_verification(&responses, &server.connection, &sp);
        let r = run(&server, &args, responses, Pace::Closed(c)).await;
        best = best.max(r.rate);
        let rss = peak_rss_mib(server.pid());
        report(&format!("closed c={c}"), &r, bare, rss);
    }
    let responses = server.mint(args.sign_ins);
    let bare = bare_verification(&responses, &server.connection, &sp);
    let rate = args.paced.unwrap_or(best / 2.0).max(1.0);
    let r = run(&server, &args, responses, Pace::Paced(rate)).await;
    report(
        &format!("paced {rate:.0}/s"),
        &r,
        bare,
        peak_rss_mib(server.pid()),
    );
    if r.failed > 0 {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        eprintln!(
            "server log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
}

/// `--scale`: the closed runs and the admin pages on the fixture alone, then the same after
/// seeding a deployment of `size` into the same database and restarting the server on it. Then
/// the pages again, fetched in turn from that server and from a second one on a copy of the
/// fixture as it was measured: one after the other, the two stages' page times differ as much
/// with the machine's phases as with the database's size.
async fn at_scale(server: &mut Server, args: &Args, size: scale::Scale) {
    let mut db = Db::connect(&server.url).await.expect("connect");
    scale::set_admin_password(&db).await;
    let load_org: String = sqlx::query_scalar("SELECT id FROM orgs WHERE slug = 'load'")
        .fetch_one(db.pool())
        .await
        .expect("load organization");
    let paths = [
        "/admin/load/members".to_string(),
        "/admin/load/audit".to_string(),
    ];
    let mut fixture_copy = None;
    for stage in ["empty", "scaled"] {
        if stage == "scaled" {
            db.close().await;
            server.stop();
            fixture_copy = Some(scale::snapshot(&server.url).await);
            db = Db::connect(&server.url).await.expect("connect");
            eprintln!("seeding {size:?}");
            let took = scale::seed(&db, size, &load_org).await;
            let mut counts = Vec::new();
            for table in ["orgs", "accounts", "memberships", "audit_events"] {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {table}"
                )))
                .fetch_one(db.pool())
                .await
                .expect("count");
                counts.push(format!("{table} {n}"));
            }
            println!(
                "seeded in {:.0} s: {}",
                took.as_secs_f64(),
                counts.join(", ")
            );
            server.restart().await;
        }
        for &c in &args.concurrency {
            let responses = server.mint(args.sign_ins);
            let bare = bare_verification(
                &responses,
                &server.connection,
                &server.connection.sp_urls(&server.base),
            );
            let r = run(server, args, responses, Pace::Closed(c)).await;
            report(
                &format!("{stage} c={c}"),
                &r,
                bare,
                peak_rss_mib(server.pid()),
            );
        }
        let pages = scale::time_pages(std::slice::from_ref(&server.base), &paths, 50).await;
        for (path, t) in paths.iter().zip(&pages[0]) {
            println!(
                "{stage:<7} {path:<22} p50 {:>7.2} ms  p99 {:>7.2} ms  {:>7} bytes  server rss {:.0} MiB",
                t.p50_ms,
                t.p99_ms,
                t.bytes,
                peak_rss_mib(server.pid())
            );
        }
    }
    db.close().await;
    pages_beside(server, &fixture_copy.expect("the fixture copied"), &paths).await;
}

/// The `--scale` pages fetched in turn from the seeded database's server and from a second
/// server on the copy of the fixture (`fixture_url`), 200 times each.
async fn pages_beside(server: &Server, fixture_url: &str, paths: &[String]) {
    let base = format!("http://127.0.0.1:{}", free_port());
    let log = server.log.with_file_name("fixture-server.log");
    let mut fixture = spawn(&server.binary, &[], fixture_url, &base, &server.certs, &log).await;
    let times = scale::time_pages(&[base, server.base.clone()], paths, 200).await;
    let _ = fixture.kill();
    let _ = fixture.wait();
    for (p, path) in paths.iter().enumerate() {
        let (empty, scaled) = (&times[0][p], &times[1][p]);
        println!(
            "beside  {path:<22} p50 {:>7.2} → {:>7.2} ms ({:+.0}%)  p99 {:>7.2} → {:>7.2} ms  (200 each, in turn)",
            empty.p50_ms,
            scaled.p50_ms,
            (scaled.p50_ms / empty.p50_ms - 1.0) * 100.0,
            empty.p99_ms,
            scaled.p99_ms,
        );
    }
}

/// The `--callgrind` run: instructions per sign-in in the server and per bare verification.
async fn under_callgrind(args: &Args, dir: PathBuf) {
    let mut server = start(args, &dir, &callgrind::wrapper(&dir)).await;
    let warm = server.mint(20);
    run(&server, args, warm, Pace::Closed(1)).await;
    let responses = server.mint(args.sign_ins);
    let file = dir.join("responses.txt");
    std::fs::write(&file, responses.join("\n")).expect("responses file");
    callgrind::zero(server.pid());
    let r = run(&server, args, responses, Pace::Closed(1)).await;
    let total = callgrind::dump(server.pid(), &dir);
    assert_eq!(r.failed, 0, "every sign-in under callgrind succeeds");
    let target = [
        "--database-url".to_string(),
        server.url.clone(),
        "--connection-id".into(),
        server.connection.id.to_string(),
        "--base".into(),
        server.base.clone(),
    ];
    let bare = callgrind::bare_instructions(&dir, &file, args.sign_ins, &target);
    let per = total / args.sign_ins as u64;
    println!(
        "{} {}-signed: {:.2} M instructions per sign-in in the server, {:.2} M per bare \
         verification: {:.2}x",
        args.backend,
        args.signing,
        per as f64 / 1e6,
        bare as f64 / 1e6,
        per as f64 / bare.max(1) as f64
    );
    println!("profiles (callgrind_annotate): {}", dir.display());
}

/// The connection named by `--database-url` and `--connection-id`, for a child process.
async fn target_connection(args: &Args) -> Connection {
    let url = args.database_url.as_deref().expect("--database-url");
    let db = Db::connect(url).await.expect("connect");
    let id = nulab_pass::ids::SamlConnectionId::parse(args.connection_id.as_deref().unwrap_or(""))
        .expect("connection id");
    let connection = nulab_pass::saml::store::by_id(db.pool(), id)
        .await
        .expect("read")
        .expect("connection");
    db.close().await;
    connection
}

/// The `--verify-only` child of `--callgrind`: verifies each response of `file` once.
async fn verify_only(args: &Args, file: &Path) {
    let connection = target_connection(args).await;
    let sp = connection.sp_urls(args.base.as_deref().unwrap_or_default());
    let text = std::fs::read_to_string(file).expect("responses");
    for line in text.lines() {
        callgrind::verify_one(line, &connection, &sp);
    }
}
