//! A real authoritative DNS server on loopback (hickory-server; UDP and TCP on one port) that
//! the test controls: in-memory zones whose records change while it runs, and a switch that
//! makes it answer SERVFAIL to everything or not answer at all (so lookups time out).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{CNAME, NS, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};

/// How the server treats every query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers from its zones, as an authoritative server does.
    Answer,
    /// Answers `SERVFAIL`.
    ServFail,
    /// Reads the query and never answers.
    Silent,
}

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

struct Switch {
    catalog: Catalog,
    mode: Arc<Mutex<Mode>>,
}

#[async_trait::async_trait]
impl RequestHandler for Switch {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mode = *self.mode.lock().unwrap();
        let silent = || {
            ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: HeaderCounts::default(),
            })
        };
        match mode {
            Mode::Answer => {
                self.catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
            Mode::ServFail => {
                let response = MessageResponseBuilder::from_message_request(request)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                response_handle
                    .send_response(response)
                    .await
                    .unwrap_or_else(|_| silent())
            }
            Mode::Silent => silent(),
        }
    }
}

/// The running server; dropping it stops it.
pub struct DnsServer {
    pub addr: SocketAddr,
    zones: Vec<(LowerName, Arc<Zone>)>,
    mode: Arc<Mutex<Mode>>,
    server: Server<Switch>,
}

const TTL: u32 = 300;

fn name(raw: &str) -> Name {
    let fqdn = if raw.ends_with('.') {
        raw.to_string()
    } else {
        format!("{raw}.")
    };
    Name::from_ascii(fqdn).expect("DNS name")
}

/// A UDP socket and a TCP listener on one free loopback port. The port the system picks for UDP
/// may be taken for TCP (by another test's connection, say): then another port is tried.
async fn bind_udp_and_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind DNS UDP");
        let addr = udp.local_addr().expect("DNS address");
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp, addr),
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(err) => panic!("bind DNS TCP on {addr}: {err}"),
        }
    }
    panic!("no loopback port was free for both DNS UDP and TCP in 50 tries");
}

impl DnsServer {
    /// Starts a server authoritative for `origins` (e.g. `["test", "provider.example"]`).
    pub async fn start(origins: &[&str]) -> DnsServer {
        let mut catalog = Catalog::new();
        let mut zones = Vec::new();
        for origin in origins {
            let origin = name(origin);
            let zone = Arc::new(Zone::empty(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            ));
            let ns = name(&format!("ns.{origin}"));
            let soa = SOA::new(
                ns.clone(),
                name(&format!("hostmaster.{origin}")),
                1,
                3600,
                600,
                86400,
                60,
            );
            assert!(
                zone.upsert(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)), 1)
                    .await
            );
            assert!(
                zone.upsert(
                    Record::from_rdata(origin.clone(), TTL, RData::NS(NS(ns))),
                    1
                )
                .await
            );
            let lower = LowerName::new(&origin);
            catalog.upsert(lower.clone(), vec![zone.clone()]);
            zones.push((lower, zone));
        }
        let mode = Arc::new(Mutex::new(Mode::Answer));
        let (udp, tcp, addr) = bind_udp_and_tcp().await;
        let mut server = Server::new(Switch {
            catalog,
            mode: mode.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        DnsServer {
            addr,
            zones,
            mode,
            server,
        }
    }

    /// The value for `NULAB_PASS_DNS_SERVERS`.
    pub fn servers(&self) -> Vec<SocketAddr> {
        vec![self.addr]
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn zone_of(&self, owner: &Name) -> Arc<Zone> {
        let lower = LowerName::new(owner);
        self.zones
            .iter()
            .filter(|(origin, _)| origin.zone_of(&lower))
            .max_by_key(|(origin, _)| origin.num_labels())
            .map(|(_, zone)| zone.clone())
            .unwrap_or_else(|| panic!("no zone for {owner}"))
    }

    /// Adds one TXT record at `owner`, made of `strings` (several strings make one record).
    pub async fn add_txt(&self, owner: &str, strings: &[&str]) {
        let owner = name(owner);
        let txt = TXT::new(strings.iter().map(|s| s.to_string()).collect());
        let added = self
            .zone_of(&owner)
            .upsert(Record::from_rdata(owner.clone(), TTL, RData::TXT(txt)), 1)
            .await;
        assert!(added, "TXT record at {owner} not added");
    }

    /// Points `owner` at `target` with a CNAME record.
    pub async fn set_cname(&self, owner: &str, target: &str) {
        let owner = name(owner);
        let added = self
            .zone_of(&owner)
            .upsert(
                Record::from_rdata(owner.clone(), TTL, RData::CNAME(CNAME(name(target)))),
                1,
            )
            .await;
        assert!(added, "CNAME at {owner} not added");
    }

    /// Removes every TXT and CNAME record at `owner`.
    pub async fn clear(&self, owner: &str) {
        let owner = name(owner);
        let zone = self.zone_of(&owner);
        let mut records = zone.records_mut().await;
        for record_type in [RecordType::TXT, RecordType::CNAME] {
            records.remove(&RrKey::new(LowerName::new(&owner), record_type));
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}
