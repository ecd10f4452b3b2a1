//! Bulk creation of managed accounts from CSV (header `email,name[,role]`), one transaction per
//! row so that a failing row leaves nothing behind and the others still go through.

use std::collections::HashMap;

use serde::Serialize;

use super::{ManagedError, NewManaged};
use crate::db::Db;
use crate::orgs::{AdminScope, Role};
use crate::web::error::AppError;

/// Most data rows one upload may have.
pub const MAX_ROWS: usize = 5_000;

/// The outcome of one CSV row.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RowResult {
    /// Line number in the file (the header is line 1).
    pub line: usize,
    pub email: String,
    /// `created` or `error`.
    pub status: &'static str,
    pub account_id: Option<String>,
    /// Stable error code, e.g. `no_free_seats`, `domain_not_verified`, `duplicate_row`.
    pub error: Option<String>,
    pub message: Option<String>,
}

/// The per-row report of an upload.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub created: usize,
    pub failed: usize,
    pub rows: Vec<RowResult>,
}

/// Splits CSV text (RFC 4180: quotes, doubled quotes, CRLF or LF) into records with their
/// starting line numbers. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, '\n') => {
                line += 1;
                field.push('\n');
            }
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => in_quotes = true,
            (false, '"') => return Err(format!("line {line}: a quote inside an unquoted field")),
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].trim().is_empty()) {
                    records.push((record_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                record_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("line {record_line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((record_line, record));
        }
    }
    Ok(records)
}

/// Creates a managed account for each row and reports each row's outcome.
pub async fn import(
    db: &Db,
    now: impl Fn() -> i64,
    scope: &AdminScope,
    text: &str,
    base_url: &str,
) -> Result<BulkReport, AppError> {
    let records = parse(text)
        .map_err(|e| AppError::bad_request(format!("the CSV file is malformed: {e}")))?;
    let mut records = records.into_iter();
    let (_, header) = records.next().ok_or_else(|| {
        AppError::bad_request("the CSV file is empty: its first line must be email,name[,role]")
    })?;
    let columns = Columns::of(&header)?;
    let rows: Vec<(usize, Vec<String>)> = records.collect();
    if rows.len() > MAX_ROWS {
        return Err(AppError::bad_request(format!(
            "the CSV file has {} rows; upload at most {MAX_ROWS} at a time",
            rows.len()
        )));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut report = BulkReport {
        created: 0,
        failed: 0,
        rows: Vec::with_capacity(rows.len()),
    };
    let upload = Upload {
        db,
        scope,
        base_url,
        columns: &columns,
    };
    for (line, fields) in rows {
        let result = upload.row(now(), line, &fields, &mut seen).await?;
        if result.status == "created" {
            report.created += 1;
        } else {
            report.failed += 1;
        }
        report.rows.push(result);
    }
    Ok(report)
}

/// Where the header puts each column.
struct Columns {
    email: usize,
    name: usize,
    role: Option<usize>,
    count: usize,
}

impl Columns {
    fn of(header: &[String]) -> Result<Columns, AppError> {
        let header: Vec<String> = header
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let column = |name: &str| header.iter().position(|h| h == name);
        let (Some(email), Some(name)) = (column("email"), column("name")) else {
            return Err(AppError::bad_request(
                "the first line of the CSV file must name the columns: email,name[,role]",
            ));
        };
        Ok(Columns {
            email,
            name,
            role: column("role"),
            count: header.len(),
        })
    }
}

/// One upload: where its rows go.
struct Upload<'a> {
    db: &'a Db,
    scope: &'a AdminScope,
    base_url: &'a str,
    columns: &'a Columns,
}

impl Upload<'_> {
    /// Creates the account of one row (in its own transaction) or says why not.
    async fn row(
        &self,
        now: i64,
        line: usize,
        fields: &[String],
        seen: &mut HashMap<String, usize>,
    ) -> Result<RowResult, AppError> {
        let get = |i: usize| {
            fields
                .get(i)
                .map(|f| f.trim().to_string())
                .unwrap_or_default()
        };
        let email = get(self.columns.email);
        let fail = |code: &str, message: String| RowResult {
            line,
            email: email.clone(),
            status: "error",
            account_id: None,
            error: Some(code.to_string()),
            message: Some(message),
        };
        if fields.len() != self.columns.count {
            return Ok(fail(
                "malformed_row",
                format!(
                    "expected {} fields, found {}",
                    self.columns.count,
                    fields.len()
                ),
            ));
        }
        if let Some(first) = seen.get(&email.to_lowercase()) {
            return Ok(fail(
                "duplicate_row",
                format!("the same email as line {first}"),
            ));
        }
        seen.insert(email.to_lowercase(), line);
        let role = match self.columns.role.map(get).filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => match Role::parse(&r.to_ascii_lowercase()) {
                Some(role) => Some(role),
                None => {
                    return match AppError::from(ManagedError::InvalidRole) {
                        AppError::Client { code, message, .. } => Ok(fail(code, message)),
                        other => Err(other),
                    };
                }
            },
        };
        let new = NewManaged {
            email: email.clone(),
            name: get(self.columns.name),
            role,
            password: None,
        };
        match create_one(self.db, now, self.scope, new, self.base_url).await {
            Ok(id) => Ok(RowResult {
                line,
                email: email.clone(),
                status: "created",
                account_id: Some(id),
                error: None,
                message: None,
            }),
            Err(AppError::Client { code, message, .. }) => Ok(fail(code, message)),
            Err(other) => Err(other),
        }
    }
}

async fn create_one(
    db: &Db,
    now: i64,
    scope: &AdminScope,
    new: NewManaged,
    base_url: &str,
) -> Result<String, AppError> {
    let mut tx = db.begin().await?;
    match super::create(&mut tx, now, scope, &new, None, base_url).await {
        Ok(account) => {
            tx.commit().await?;
            Ok(account.id.to_string())
        }
        Err(err) => {
            tx.rollback().await?;
            Err(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_quotes_line_endings_and_blank_lines() {
        let text = "email,name\r\na@x.test,\"Smith, Ann\"\n\nb@x.test,\"Say \"\"hi\"\"\"\nc@x.test,\"two\nlines\"\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[1],
            (2, vec!["a@x.test".to_string(), "Smith, Ann".to_string()])
        );
        assert_eq!(rows[2].1[1], "Say \"hi\"");
        assert_eq!(rows[3].0, 5);
        assert_eq!(rows[3].1[1], "two\nlines");
    }

    #[test]
    fn refuses_broken_quotes() {
        assert!(parse("email,name\na@x.test,\"open").is_err());
        assert!(parse("email,name\na@x.test,bro\"ken").is_err());
    }
}
