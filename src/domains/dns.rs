//! DNS lookups of verification records. The only code that talks to hickory: everything else
//! sees a [`TxtLookup`] and the three outcomes of [`TxtAnswer`].

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};

use super::DomainName;
use crate::Config;

/// What a TXT lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT records at the name (after following any CNAME chain); each record's strings
    /// are joined into one text.
    Found(Vec<String>),
    /// The name has no TXT record, or does not exist (`NXDOMAIN`): an answer, not a failure.
    NoRecords,
    /// No answer could be had: it says nothing about whether the record is there.
    Failure(DnsFailure),
}

/// Why a lookup produced no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsFailure {
    /// No server answered in time.
    TimedOut,
    /// The server answered `SERVFAIL`.
    ServFail,
    /// The server answered with another error code (e.g. `REFUSED`).
    ResponseCode(String),
    /// No server could be reached, or the exchange broke.
    Unreachable,
}

impl DnsFailure {
    /// A stable code for storage and the API.
    pub fn code(&self) -> &'static str {
        match self {
            DnsFailure::TimedOut => "timeout",
            DnsFailure::ServFail => "servfail",
            DnsFailure::ResponseCode(_) => "dns_error",
            DnsFailure::Unreachable => "unreachable",
        }
    }

    /// The failure in words for admins.
    pub fn describe(&self) -> String {
        match self {
            DnsFailure::TimedOut => "lookup timed out".to_string(),
            DnsFailure::ServFail => "DNS server failure (SERVFAIL)".to_string(),
            DnsFailure::ResponseCode(code) => format!("DNS server error ({code})"),
            DnsFailure::Unreachable => "could not reach the DNS server".to_string(),
        }
    }
}

/// Could not set the resolver up (e.g. an unreadable `/etc/resolv.conf`).
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver configuration: {0}")]
pub struct DnsSetupError(String);

/// Looks up TXT records through configured name servers, without caching: a record that was
/// just published (or removed) is seen at once.
#[derive(Clone)]
pub struct TxtLookup {
    resolver: TokioResolver,
    timeout: Duration,
}

impl std::fmt::Debug for TxtLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxtLookup")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TxtLookup {
    /// A lookup through `servers` (`ip:port`, UDP with TCP for truncated answers), or through
    /// the system's resolver configuration when `servers` is empty. `timeout` bounds a whole
    /// lookup.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<TxtLookup, DnsSetupError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsSetupError(e.to_string()))?
        } else {
            let name_servers = servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        // Verification must see the zone as it is now: a cached negative answer would make
        // "verify now" fail for hours after the admin published the record.
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        let resolver = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(TxtLookup { resolver, timeout })
    }

    /// The lookup the configuration asks for (`NULAB_PASS_DNS_SERVERS`, `..._DNS_TIMEOUT_MS`).
    pub fn from_config(config: &Config) -> Result<TxtLookup, DnsSetupError> {
        TxtLookup::new(
            &config.dns_servers,
            Duration::from_millis(config.dns_timeout_ms.max(1)),
        )
    }

    /// The TXT records at `domain` itself.
    pub async fn lookup(&self, domain: &DomainName) -> TxtAnswer {
        // Fully qualified, so no search domain from resolv.conf is ever appended.
        let Ok(name) = Name::from_ascii(format!("{}.", domain.as_str())) else {
            return TxtAnswer::NoRecords;
        };
        match tokio::time::timeout(self.timeout, self.resolver.txt_lookup(name)).await {
            Err(_) => TxtAnswer::Failure(DnsFailure::TimedOut),
            Ok(Ok(lookup)) => {
                let texts: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(join_strings(&txt.txt_data)),
                        _ => None,
                    })
                    .collect();
                if texts.is_empty() {
                    TxtAnswer::NoRecords
                } else {
                    TxtAnswer::Found(texts)
                }
            }
            Ok(Err(err)) => classify(&err),
        }
    }
}

/// One TXT record's character-strings as one text (RFC 7208 §3.3 joins them without spaces).
fn join_strings(strings: &[Box<[u8]>]) -> String {
    let bytes: Vec<u8> = strings.iter().flat_map(|s| s.iter().copied()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sorts a resolver error into "no such record" and "no answer". hickory reports an empty
/// answer as `NoRecordsFound` whatever the response code, so the code decides: only `NOERROR`
/// (no TXT at the name) and `NXDOMAIN` (no such name) mean the record is absent.
fn classify(err: &NetError) -> TxtAnswer {
    let code = match err {
        NetError::Timeout => return TxtAnswer::Failure(DnsFailure::TimedOut),
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => no_records.response_code,
        NetError::Dns(DnsError::ResponseCode(code)) => *code,
        NetError::Io(_) | NetError::NoConnections | NetError::Busy => {
            return TxtAnswer::Failure(DnsFailure::Unreachable);
        }
        other => {
            tracing::debug!(error = %other, "DNS lookup failed");
            return TxtAnswer::Failure(DnsFailure::Unreachable);
        }
    };
    match code {
        ResponseCode::NoError | ResponseCode::NXDomain => TxtAnswer::NoRecords,
        ResponseCode::ServFail => TxtAnswer::Failure(DnsFailure::ServFail),
        other => TxtAnswer::Failure(DnsFailure::ResponseCode(rcode_name(other))),
    }
}

/// The mnemonic of a response code, as DNS tools print it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        ResponseCode::NotAuth => "NOTAUTH".to_string(),
        ResponseCode::NotZone => "NOTZONE".to_string(),
        other => format!("code {}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_of_one_record_are_joined_without_spaces() {
        let parts: Vec<Box<[u8]>> = vec![
            b"nulab-pass-verification=abc".to_vec().into_boxed_slice(),
            b"def".to_vec().into_boxed_slice(),
        ];
        assert_eq!(join_strings(&parts), "nulab-pass-verification=abcdef");
        assert_eq!(join_strings(&[]), "");
    }

    #[test]
    fn only_noerror_and_nxdomain_mean_absent() {
        use hickory_resolver::net::NoRecords;
        use hickory_resolver::proto::op::Query;
        let empty = |code| {
            NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(
                Box::new(Query::default()),
                code,
            )))
        };
        assert_eq!(
            classify(&empty(ResponseCode::NoError)),
            TxtAnswer::NoRecords
        );
        assert_eq!(
            classify(&empty(ResponseCode::NXDomain)),
            TxtAnswer::NoRecords
        );
        assert_eq!(
            classify(&empty(ResponseCode::ServFail)),
            TxtAnswer::Failure(DnsFailure::ServFail)
        );
        assert_eq!(
            classify(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::ServFail
            ))),
            TxtAnswer::Failure(DnsFailure::ServFail)
        );
        assert_eq!(
            classify(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::Refused
            ))),
            TxtAnswer::Failure(DnsFailure::ResponseCode("REFUSED".to_string()))
        );
        assert_eq!(
            classify(&NetError::Timeout),
            TxtAnswer::Failure(DnsFailure::TimedOut)
        );
    }
}
