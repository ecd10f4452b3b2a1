//! The demo's DNS server: authoritative for `.test` on loopback (hickory-server, UDP and TCP on
//! one port), so that domains of the demo can be verified through the real TXT lookup. The TXT
//! records it publishes are kept in a file of the data directory and published again on the next
//! start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{NS, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

/// The zone the demo answers for.
pub const ZONE: &str = "test";
/// Longest text of one published record (one TXT string).
pub const MAX_TEXT: usize = 255;
/// Most records the demo keeps.
pub const MAX_RECORDS: usize = 100;
/// Short TTLs: a record published in the demo is seen at once (negative answers too).
const TTL: u32 = 5;

/// Why a record cannot be published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("the demo DNS server answers only for names ending in .test, such as example.test")]
    NotTest,
    #[error("that is not a domain name: use letters, digits and hyphens between dots")]
    BadName,
    #[error("the record text must be 1 to 255 visible characters")]
    BadText,
    #[error("the demo keeps at most 100 records; remove one first")]
    TooMany,
}

/// The running server and its records; dropping the last handle stops it.
pub struct DemoDns {
    pub addr: SocketAddr,
    zone: Arc<Zone>,
    records: Mutex<BTreeMap<String, Vec<String>>>,
    file: PathBuf,
    server: Mutex<Server<Catalog>>,
}

fn fqdn(raw: &str) -> Result<Name, PublishError> {
    Name::from_ascii(format!("{}.", raw.trim_end_matches('.'))).map_err(|_| PublishError::BadName)
}

/// A lowercase `.test` name of letters, digits and hyphens.
pub fn check_name(raw: &str) -> Result<String, PublishError> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if name != ZONE && !name.ends_with(".test") {
        return Err(PublishError::NotTest);
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(PublishError::BadName);
    }
    Ok(name)
}

/// The text of one TXT string: printable ASCII, 1 to 255 characters.
pub fn check_text(raw: &str) -> Result<String, PublishError> {
    let text = raw.trim();
    let ok =
        (1..=MAX_TEXT).contains(&text.len()) && text.bytes().all(|b| (b' '..=b'~').contains(&b));
    ok.then(|| text.to_string()).ok_or(PublishError::BadText)
}

/// A UDP socket and a TCP listener on the same port (port 0: one free for both).
async fn bind(
    addr: SocketAddr,
) -> anyhow::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() == 0 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("no port was free for both DNS UDP and TCP")
}

fn origin() -> Name {
    Name::from_ascii(format!("{ZONE}.")).expect("the zone name is valid")
}

async fn add_apex(zone: &Zone) {
    let origin = origin();
    let ns = Name::from_ascii(format!("ns.{ZONE}.")).expect("valid");
    let hostmaster = Name::from_ascii(format!("hostmaster.{ZONE}.")).expect("valid");
    let soa = SOA::new(ns.clone(), hostmaster, 1, 3600, 600, 86400, TTL);
    zone.upsert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1)
        .await;
    zone.upsert(Record::from_rdata(origin, TTL, RData::NS(NS(ns))), 1)
        .await;
}

impl DemoDns {
    /// Starts the server on `addr` with the records saved in `file` (if any).
    pub async fn start(addr: SocketAddr, file: PathBuf) -> anyhow::Result<Arc<DemoDns>> {
        let zone = Arc::new(Zone::empty(origin(), ZoneType::Primary, AxfrPolicy::Deny));
        add_apex(&zone).await;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin()), vec![zone.clone()]);
        let (udp, tcp) = bind(addr).await?;
        let addr = udp.local_addr()?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        let saved: BTreeMap<String, Vec<String>> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        let dns = DemoDns {
            addr,
            zone,
            records: Mutex::new(BTreeMap::new()),
            file,
            server: Mutex::new(server),
        };
        for (name, texts) in &saved {
            dns.set(name, texts.clone()).await?;
        }
        *dns.records.lock().expect("records lock") = saved;
        Ok(Arc::new(dns))
    }

    /// Every published record: name → texts.
    pub fn records(&self) -> BTreeMap<String, Vec<String>> {
        self.records.lock().expect("records lock").clone()
    }

    /// Publishes a TXT record `text` at `name` (both checked) and saves the records.
    pub async fn publish(&self, name: &str, text: &str) -> Result<(String, String), PublishError> {
        let name = check_name(name)?;
        let text = check_text(text)?;
        let texts = {
            let mut records = self.records.lock().expect("records lock");
            let count: usize = records.values().map(Vec::len).sum();
            let list = records.entry(name.clone()).or_default();
            if !list.contains(&text) {
                if count >= MAX_RECORDS {
                    if list.is_empty() {
                        records.remove(&name);
                    }
                    return Err(PublishError::TooMany);
                }
                list.push(text.clone());
            }
            list.clone()
        };
        self.set(&name, texts).await?;
        self.save();
        Ok((name, text))
    }

    /// Replaces the TXT records at `name` in the zone.
    async fn set(&self, name: &str, texts: Vec<String>) -> Result<(), PublishError> {
        let owner = fqdn(name)?;
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&owner), RecordType::TXT));
        for text in texts {
            let record = Record::from_rdata(owner.clone(), TTL, RData::TXT(TXT::new(vec![text])));
            self.zone.upsert(record, 1).await;
        }
        Ok(())
    }

    fn save(&self) {
        let records = self.records();
        let written = serde_json::to_vec_pretty(&records)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&self.file, bytes));
        if let Err(error) = written {
            tracing::warn!(%error, file = %self.file.display(), "the demo DNS records were not saved");
        }
    }
}

impl Drop for DemoDns {
    fn drop(&mut self) {
        if let Ok(server) = self.server.lock() {
            server.shutdown_token().cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::{DomainName, TxtAnswer, TxtLookup};

    async fn txt(dns: &DemoDns, name: &str) -> TxtAnswer {
        let lookup = TxtLookup::new(&[dns.addr], Duration::from_secs(5)).unwrap();
        lookup.lookup(&DomainName::parse(name).unwrap()).await
    }

    #[tokio::test]
    async fn published_records_are_answered_kept_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dns.json");
        let any = "127.0.0.1:0".parse().unwrap();
        let dns = DemoDns::start(any, file.clone()).await.unwrap();
        assert!(matches!(
            txt(&dns, "example.test").await,
            TxtAnswer::NoRecords
        ));
        dns.publish("Example.test", "v=1").await.unwrap();
        dns.publish("example.test", "v=1").await.unwrap();
        dns.publish("example.test", "v=2").await.unwrap();
        let TxtAnswer::Found(mut found) = txt(&dns, "example.test").await else {
            panic!("published records are answered");
        };
        found.sort();
        assert_eq!(found, ["v=1", "v=2"], "the same record twice is one record");
        for i in 2..MAX_RECORDS {
            dns.publish(&format!("n{i}.test"), "x").await.unwrap();
        }
        let saved = std::fs::read(&file).unwrap();
        assert_eq!(
            dns.publish("one-more.test", "x").await,
            Err(PublishError::TooMany)
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            saved,
            "a refused record changes nothing"
        );
        assert!(!dns.records().contains_key("one-more.test"));
        drop(dns);
        let again = DemoDns::start(any, file).await.unwrap();
        assert_eq!(
            again.records().values().map(Vec::len).sum::<usize>(),
            MAX_RECORDS
        );
        assert!(matches!(txt(&again, "example.test").await, TxtAnswer::Found(t) if t.len() == 2));
    }

    #[test]
    fn only_test_names_and_printable_texts_are_published() {
        assert_eq!(check_name("Example.TEST.").unwrap(), "example.test");
        assert_eq!(check_name("acme.com"), Err(PublishError::NotTest));
        assert_eq!(check_name("bad name.test"), Err(PublishError::BadName));
        assert_eq!(check_name("-x.test"), Err(PublishError::BadName));
        assert_eq!(
            check_text(" nulab-pass-verification=abc ").unwrap(),
            "nulab-pass-verification=abc"
        );
        assert_eq!(check_text(""), Err(PublishError::BadText));
        assert_eq!(check_text(&"a".repeat(256)), Err(PublishError::BadText));
        assert_eq!(check_text("tab\there"), Err(PublishError::BadText));
    }
}
