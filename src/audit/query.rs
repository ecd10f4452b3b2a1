//! Searching one organization's events: the filters of the viewer, the API and the export
//! (each checked, a bad one named), newest first in chain order, and cursors that are bound to
//! the organization and signed, so a cursor cannot be forged or used for another organization.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::AuditAction;

/// The filters as they arrive (query string of the page, the API and the export).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawFilter {
    /// An action or a prefix of actions at a dot boundary (`sso`, `sso.signin`, `domain.verified`).
    pub action: Option<String>,
    /// The actor: an account or API token id, or an email (the actor's label).
    pub actor: Option<String>,
    /// The target's id (an account, domain, connection, ...).
    pub target: Option<String>,
    /// The client's IP address, exactly.
    pub ip: Option<String>,
    /// Events at or after this time: RFC 3339, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` (UTC) or Unix ms.
    pub since: Option<String>,
    /// Events before this time (same forms as `since`).
    pub until: Option<String>,
    /// Free text, matched case-insensitively in the action, actor, target and details.
    pub q: Option<String>,
}

/// A filter parameter that is not valid: which one and why (400, naming it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct BadParam {
    pub param: &'static str,
    pub message: String,
}

fn bad(param: &'static str, message: impl Into<String>) -> BadParam {
    BadParam {
        param,
        message: message.into(),
    }
}

/// Checked filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The actions the prefix stands for (empty: any action).
    pub actions: Vec<&'static str>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub text: Option<String>,
}

const MAX_PARAM: usize = 256;

fn present(param: &'static str, raw: &Option<String>) -> Result<Option<String>, BadParam> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > MAX_PARAM => {
            Err(bad(param, format!("at most {MAX_PARAM} characters")))
        }
        Some(v) if v.chars().any(char::is_control) => {
            Err(bad(param, "control characters are not allowed"))
        }
        Some(v) => Ok(Some(v.to_string())),
    }
}

impl RawFilter {
    /// Checks every parameter; the first bad one is named.
    pub fn check(&self) -> Result<Filter, BadParam> {
        let actions = match present("action", &self.action)? {
            None => Vec::new(),
            Some(prefix) => actions_under(&prefix)?,
        };
        let ip = present("ip", &self.ip)?;
        if let Some(ip) = &ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(bad("ip", "not an IPv4 or IPv6 address"));
        }
        let since = present("since", &self.since)?
            .map(|v| parse_time(&v).ok_or_else(|| bad("since", TIME_FORMS)))
            .transpose()?;
        let until = present("until", &self.until)?
            .map(|v| parse_time(&v).ok_or_else(|| bad("until", TIME_FORMS)))
            .transpose()?;
        if let (Some(a), Some(b)) = (since, until)
            && b <= a
        {
            return Err(bad("until", "must be later than since"));
        }
        Ok(Filter {
            actions,
            actor: present("actor", &self.actor)?,
            target: present("target", &self.target)?,
            ip,
            since,
            until,
            text: present("q", &self.q)?,
        })
    }

    /// The filters as query-string pairs (for links to the next page and the export).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("action", &self.action),
            ("actor", &self.actor),
            ("target", &self.target),
            ("ip", &self.ip),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (k, v.to_string()))
        })
        .collect()
    }
}

const TIME_FORMS: &str = "a time as RFC 3339 (2026-12-01T09:30:00Z), YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or Unix milliseconds";

/// Every action at or under `prefix` (at a dot boundary).
fn actions_under(prefix: &str) -> Result<Vec<&'static str>, BadParam> {
    let found: Vec<&'static str> = AuditAction::ALL
        .iter()
        .map(|a| a.as_str())
        .filter(|name| {
            *name == prefix
                || (name.starts_with(prefix) && prefix.ends_with('.'))
                || name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .collect();
    if found.is_empty() {
        return Err(bad(
            "action",
            format!("no action is or starts with {prefix:?} (see docs/audit.md)"),
        ));
    }
    Ok(found)
}

/// Reads a time parameter as Unix ms (UTC).
pub fn parse_time(raw: &str) -> Option<i64> {
    if let Ok(ms) = raw.parse::<i64>() {
        return (0..=253_402_300_799_999).contains(&ms).then_some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(t.timestamp_millis());
    }
    for form in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, form) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// A value bound into the search query.
#[derive(Clone, Debug)]
pub enum Bind {
    Text(String),
    Int(i64),
}

/// The WHERE clause of a search in `chain`, after `before_seq` (a cursor) when given, and its
/// binds (`$1` is the chain).
pub fn where_clause(chain: &str, filter: &Filter, before_seq: Option<i64>) -> (String, Vec<Bind>) {
    let mut sql = String::from("chain = $1");
    let mut binds = vec![Bind::Text(chain.to_string())];
    let mut push = |sql: &mut String, clause: &str, bind: Bind| {
        binds.push(bind);
        sql.push_str(&clause.replace("{}", &format!("${}", binds.len())));
    };
    if let Some(seq) = before_seq {
        push(&mut sql, " AND seq < {}", Bind::Int(seq));
    }
    if !filter.actions.is_empty() {
        sql.push_str(" AND action IN (");
        for (i, action) in filter.actions.iter().enumerate() {
            push(
                &mut sql,
                if i == 0 { "{}" } else { ", {}" },
                Bind::Text(action.to_string()),
            );
        }
        sql.push(')');
    }
    if let Some(actor) = &filter.actor {
        let column = if actor.contains('@') {
            "actor_label"
        } else {
            "actor_id"
        };
        push(
            &mut sql,
            &format!(" AND {column} = {{}}"),
            Bind::Text(actor.clone()),
        );
    }
    if let Some(target) = &filter.target {
        push(&mut sql, " AND target_id = {}", Bind::Text(target.clone()));
    }
    if let Some(ip) = &filter.ip {
        push(&mut sql, " AND ip = {}", Bind::Text(ip.clone()));
    }
    if let Some(since) = filter.since {
        push(&mut sql, " AND occurred_at >= {}", Bind::Int(since));
    }
    if let Some(until) = filter.until {
        push(&mut sql, " AND occurred_at < {}", Bind::Int(until));
    }
    if let Some(text) = &filter.text {
        let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
        push(
            &mut sql,
            " AND (lower(action) LIKE {p} ESCAPE '\\' OR lower(COALESCE(actor_label, '')) LIKE {p} \
             ESCAPE '\\' OR lower(COALESCE(target_id, '')) LIKE {p} ESCAPE '\\' \
             OR lower(details) LIKE {p} ESCAPE '\\')"
                .replace("{p}", "{}")
                .as_str(),
            Bind::Text(pattern),
        );
    }
    (sql, binds)
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Signs and reads the viewer's cursors: `<org>.<seq>` and an HMAC-SHA256 over both with the
/// server's cursor key (stored in the database, so every instance accepts every cursor).
pub struct CursorKey(Vec<u8>);

impl CursorKey {
    pub fn new(key: &[u8]) -> Self {
        CursorKey(key.to_vec())
    }

    fn mac(&self, chain: &str, seq: i64) -> Vec<u8> {
        crate::secrets::hmac_sha256(
            &self.0,
            format!("audit-cursor-v1\n{chain}\n{seq}").as_bytes(),
        )
        .to_vec()
    }

    /// The cursor for the page after the event `seq` of `chain`.
    pub fn sign(&self, chain: &str, seq: i64) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!("{chain}.{seq}")),
            URL_SAFE_NO_PAD.encode(self.mac(chain, seq))
        )
    }

    /// The sequence number a cursor of `chain` points after; `None` for a cursor that was not
    /// made here for this organization.
    pub fn open(&self, chain: &str, cursor: &str) -> Option<i64> {
        let (payload, mac) = cursor.trim().split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let (cursor_chain, seq) = payload.rsplit_once('.')?;
        let seq: i64 = seq.parse().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = self.mac(chain, seq);
        let valid = mac.len() == expected.len() && openssl::memcmp::eq(&mac, &expected);
        (cursor_chain == chain && valid).then_some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_prefixes_stop_at_dots() {
        let f = RawFilter {
            action: Some("sso.signin".into()),
            ..Default::default()
        };
        assert_eq!(
            f.check().unwrap().actions,
            vec!["sso.signin.succeeded", "sso.signin.failed"]
        );
        let f = RawFilter {
            action: Some("sso.sign".into()),
            ..Default::default()
        };
        assert_eq!(f.check().unwrap_err().param, "action");
        let f = RawFilter {
            action: Some("domain".into()),
            ..Default::default()
        };
        assert!(f.check().unwrap().actions.contains(&"domain.verified"));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (raw, param) in [
            (
                RawFilter {
                    since: Some("yesterday".into()),
                    ..Default::default()
                },
                "since",
            ),
            (
                RawFilter {
                    until: Some("2026-13-01".into()),
                    ..Default::default()
                },
                "until",
            ),
            (
                RawFilter {
                    since: Some("2026-12-02".into()),
                    until: Some("2026-12-01".into()),
                    ..Default::default()
                },
                "until",
            ),
            (
                RawFilter {
                    ip: Some("300.1.1.1".into()),
                    ..Default::default()
                },
                "ip",
            ),
            (
                RawFilter {
                    actor: Some("a\u{0}b".into()),
                    ..Default::default()
                },
                "actor",
            ),
            (
                RawFilter {
                    q: Some("x".repeat(300)),
                    ..Default::default()
                },
                "q",
            ),
        ] {
            assert_eq!(raw.check().unwrap_err().param, param, "{raw:?}");
        }
    }

    #[test]
    fn times_read_in_every_documented_form() {
        assert_eq!(parse_time("1764547200000"), Some(1_764_547_200_000));
        assert_eq!(parse_time("2025-12-01"), Some(1_764_547_200_000));
        assert_eq!(parse_time("2025-12-01T00:00"), Some(1_764_547_200_000));
        assert_eq!(
            parse_time("2025-12-01T09:00:00+09:00"),
            Some(1_764_547_200_000)
        );
        assert_eq!(parse_time("-5"), None);
    }

    #[test]
    fn cursors_are_bound_and_signed() {
        let key = CursorKey::new(b"k1");
        let c = key.sign("org-a", 42);
        assert_eq!(key.open("org-a", &c), Some(42));
        assert_eq!(key.open("org-b", &c), None, "another organization");
        assert_eq!(CursorKey::new(b"k2").open("org-a", &c), None, "another key");
        let (payload, mac) = c.split_once('.').unwrap();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("org-a.41"));
        assert_ne!(payload, URL_SAFE_NO_PAD.encode("org-a.41"));
        assert_eq!(key.open("org-a", &forged), None, "a changed position");
        assert_eq!(key.open("org-a", "garbage"), None);
    }
}
