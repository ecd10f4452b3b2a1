//! A real SMTP server on loopback that keeps what it receives. It can be stopped (connections
//! refused) and started again on the same port, to show that mail waits and is not lost. It can
//! also hold the next message at `DATA` without answering, so a test can kill the sending server
//! while a delivery is open: a message whose `DATA` was never answered is not delivered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One message as delivered.
#[derive(Clone, Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

impl Received {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The decoded `text/plain` part.
    pub fn text(&self) -> String {
        self.part("text/plain")
    }

    /// The decoded `text/html` part.
    pub fn html(&self) -> String {
        self.part("text/html")
    }

    fn part(&self, mime: &str) -> String {
        let boundary = self
            .data
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("multipart message");
        for part in self.data.split(&format!("--{boundary}")) {
            let Some((head, body)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let head_lower = head.to_ascii_lowercase();
            if !head_lower.contains(&format!("content-type: {mime}")) {
                continue;
            }
            let body = body.trim_end_matches("\r\n");
            if head_lower.contains("content-transfer-encoding: quoted-printable") {
                return decode_qp(body);
            }
            if head_lower.contains("content-transfer-encoding: base64") {
                let joined: String = body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .expect("base64 part");
                return String::from_utf8(bytes).expect("utf-8 part");
            }
            return body.to_string();
        }
        panic!("no {mime} part")
    }
}

fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 text")
}

/// Holding deliveries at `DATA`: armed by the test, counted as sessions reach it.
#[derive(Default)]
pub struct Hold {
    armed: AtomicBool,
    held: AtomicUsize,
}

/// The sink: a port, what arrived, and the running listener.
pub struct SmtpSink {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    hold: Arc<Hold>,
    task: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Starts on a free loopback port that stays free while the sink is stopped.
    pub async fn start() -> SmtpSink {
        // Another test may take the port between the check and the bind: then take another.
        let listener = loop {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", super::steady_port())).await {
                break listener;
            }
        };
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let hold = Arc::new(Hold::default());
        let task = Some(tokio::spawn(serve(
            listener,
            received.clone(),
            hold.clone(),
        )));
        SmtpSink {
            port,
            received,
            hold,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops listening and drops open connections: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(err) if tries < 50 => {
                    tries += 1;
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("rebind smtp port: {err}"),
            }
        };
        self.task = Some(tokio::spawn(serve(
            listener,
            self.received.clone(),
            self.hold.clone(),
        )));
    }

    /// From now on, every delivery stops at `DATA` unanswered until its client goes away; returns
    /// once one delivery is held.
    pub async fn hold_next(&self, secs: u64) {
        self.hold.armed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while self.hold.held.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no delivery reached DATA within {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Answers deliveries normally again.
    pub fn release(&self) {
        self.hold.armed.store(false, Ordering::SeqCst);
        self.hold.held.store(0, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` messages arrived (or panics after `secs` seconds).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("expected {n} emails, got {}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, received: Arc<Mutex<Vec<Received>>>, hold: Arc<Hold>) {
    // Connections are children of this task: aborting it drops them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let received = received.clone();
        let hold = hold.clone();
        connections.spawn(async move {
            let _ = session(stream, received, hold).await;
        });
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    hold: Arc<Hold>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            write
                .write_all(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            write.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = line[10..].trim().to_string();
            rcpt_to.clear();
            write.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt_to.push(
                line[8..]
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_string(),
            );
            write.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("DATA") && hold.armed.load(Ordering::SeqCst) {
            // Never answered: the transaction stays open until the client goes away, and then
            // nothing was delivered (RFC 5321 section 3.3: no mail before the final reply).
            hold.held.fetch_add(1, Ordering::SeqCst);
            let mut rest = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut lines, &mut rest).await?;
            return Ok(());
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                // Undo dot-stuffing (RFC 5321 section 4.5.2).
                data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            received.lock().expect("lock").push(Received {
                mail_from: mail_from.clone(),
                rcpt_to: rcpt_to.clone(),
                data,
            });
            write.write_all(b"250 queued\r\n").await?;
        } else if upper.starts_with("RSET") {
            write.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"502 not implemented\r\n").await?;
        }
    }
}
