//! Statements sent together inside a transaction. On SQLite every statement is a round trip to
//! the connection's own thread, and a transaction holds the one writing connection through all
//! of them, so a sign-in's writes waited on each other's hand-offs; a [`Batch`] goes to that
//! thread in one call (SQLite runs a text of several statements in order, binding `$N` to the
//! N-th value of the whole call). On PostgreSQL, whose extended protocol takes one statement a
//! call, the statements run one after another: the same results, in the same order.
//!
//! Each statement numbers its own parameters from `$1`; the batch renumbers them. A statement
//! that fails stops the batch: the caller's transaction then holds the statements before it,
//! and rolling it back (as every caller does on an error) undoes them.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{Either, Executor};

use super::Tx;

/// A value bound to a statement of a [`Batch`].
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Int(Some(i64::from(v)))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_string()))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_string))
    }
}

/// What one statement of a batch gave: the rows it returned and the rows it changed.
#[derive(Default)]
pub struct Outcome {
    pub rows: Vec<AnyRow>,
    pub affected: u64,
}

/// Statements to run in order in one transaction, in one round trip on SQLite.
#[derive(Debug, Default)]
pub struct Batch {
    statements: Vec<Statement>,
}

#[derive(Debug)]
struct Statement {
    sql: &'static str,
    params: Vec<Param>,
    /// A `SELECT` whose rows stay share-locked until the transaction ends (PostgreSQL).
    shared: bool,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a statement whose parameters are `$1 ..= $n` for `n` values; returns its index in
    /// what [`Batch::run`] gives back.
    pub fn push(&mut self, sql: &'static str, params: Vec<Param>) -> usize {
        debug_assert_eq!(
            highest_parameter(sql),
            params.len(),
            "each of $1..$n once bound: {sql}"
        );
        self.statements.push(Statement {
            sql,
            params,
            shared: false,
        });
        self.statements.len() - 1
    }

    /// Adds a `SELECT` (without a locking clause) whose rows stay locked against changes until
    /// the transaction ends, while other transactions may read and share-lock them too: on
    /// PostgreSQL it runs `FOR SHARE`, so a writer of those rows waits for every holder and
    /// holders never wait for each other; SQLite's write transactions already exclude every
    /// other writer. Returns its index, as [`Batch::push`] does.
    pub fn push_shared(&mut self, select: &'static str, params: Vec<Param>) -> usize {
        let at = self.push(select, params);
        self.statements[at].shared = true;
        at
    }

    /// How many statements it holds.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the statements in `tx`, in order; one outcome per statement, so that the index
    /// [`Batch::push`] returned finds its statement's.
    pub async fn run(self, tx: &mut Tx) -> Result<Vec<Outcome>, sqlx::Error> {
        let sqlite = tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
        if sqlite && self.statements.len() > 1 {
            return self.run_text(tx, None, None).await;
        }
        let expected = self.statements.len();
        let mut all = Vec::with_capacity(expected);
        for s in self.statements {
            let sql = if s.shared && !sqlite {
                std::borrow::Cow::Owned(format!("{} FOR SHARE", s.sql))
            } else {
                std::borrow::Cow::Borrowed(s.sql)
            };
            all.extend(outcomes(tx, &sql, s.params).await?);
        }
        counted(all, expected)
    }

    /// SQLite: the statements as one text, after `first` and before `last` (statements without
    /// parameters or rows, such as `BEGIN` and `COMMIT`), in one call; the outcomes of the
    /// batch's own statements.
    pub(super) async fn run_text(
        self,
        tx: &mut Tx,
        first: Option<&str>,
        last: Option<&str>,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        let expected = self.statements.len();
        let mut sql = String::new();
        if let Some(first) = first {
            sql.push_str(first);
            sql.push_str(";\n");
        }
        let values = joined(self.statements, &mut sql);
        if let Some(last) = last {
            sql.push_str(last);
            sql.push_str(";\n");
        }
        let mut all = outcomes(tx, &sql, values).await?;
        if last.is_some() {
            all.pop();
        }
        if first.is_some() && !all.is_empty() {
            all.remove(0);
        }
        counted(all, expected)
    }
}

/// `all`, when it holds one outcome for each of the `expected` statements.
fn counted(all: Vec<Outcome>, expected: usize) -> Result<Vec<Outcome>, sqlx::Error> {
    if all.len() != expected {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {expected} statements gave {} outcomes",
            all.len()
        )));
    }
    Ok(all)
}

/// Runs `sql` (one statement, or several on SQLite) and splits what comes back by statement:
/// each statement's rows come first, then the count of rows it changed.
async fn outcomes(tx: &mut Tx, sql: &str, params: Vec<Param>) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
        };
    }
    let mut stream = (&mut **tx).fetch_many(query);
    let mut all = Vec::new();
    let mut current = Outcome::default();
    while let Some(step) = stream.try_next().await? {
        match step {
            Either::Right(row) => current.rows.push(row),
            Either::Left(done) => {
                current.affected = done.rows_affected();
                all.push(std::mem::take(&mut current));
            }
        }
    }
    Ok(all)
}

/// Appends the statements to `sql` as one text, each statement's `$N` moved past the
/// parameters of those before it; all the values, in order.
fn joined(statements: Vec<Statement>, sql: &mut String) -> Vec<Param> {
    let mut values = Vec::new();
    for s in statements {
        let offset = values.len();
        renumber(s.sql, offset, sql);
        sql.push_str(";\n");
        values.extend(s.params);
    }
    values
}

/// Appends `text` to `out` with every `$N` written as `$(N + offset)`.
fn renumber(text: &str, offset: usize, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&format!("${}", n + offset)),
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
}

/// The highest `$N` in `sql` (0 when it has none).
fn highest_parameter(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|s| {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_joined_with_their_parameters_moved_past_the_ones_before() {
        let mut batch = Batch::new();
        batch.push(
            "UPDATE a SET x = $2 WHERE id = $1",
            vec![1.into(), "x".into()],
        );
        batch.push_shared("SELECT $1 AS one", vec![Param::Int(None)]);
        batch.push(
            "INSERT INTO b VALUES ($1, $2, $1, $10)",
            (0..10).map(Param::from).collect(),
        );
        let mut sql = String::new();
        let values = joined(batch.statements, &mut sql);
        assert_eq!(
            sql,
            "UPDATE a SET x = $2 WHERE id = $1;\nSELECT $3 AS one;\n\
             INSERT INTO b VALUES ($4, $5, $4, $13);\n"
        );
        assert_eq!(values.len(), 13);
        assert_eq!(values[1], Param::Text(Some("x".into())));
        assert_eq!(values[2], Param::Int(None));
        assert_eq!(values[12], Param::Int(Some(9)));
    }

    #[test]
    fn a_dollar_without_digits_is_kept() {
        let mut out = String::new();
        renumber("SELECT '$' || $1", 2, &mut out);
        assert_eq!(out, "SELECT '$' || $3");
        assert_eq!(highest_parameter("SELECT '$' || $12, $3"), 12);
        assert_eq!(highest_parameter("SELECT 1"), 0);
    }
}
