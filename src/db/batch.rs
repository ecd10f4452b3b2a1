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
//!
//! A write whose outcome nobody reads ([`Batch::push_unread`]) costs PostgreSQL no call of its
//! own: it goes, as a data-modifying `WITH`, into the statement after it.

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
    /// Nobody reads its outcome: on PostgreSQL it runs inside the next statement
    /// ([`Batch::push_unread`]).
    unread: bool,
    /// Runs on PostgreSQL only (SQLite has nothing to do for it).
    postgres_only: bool,
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
            unread: false,
            postgres_only: false,
        });
        self.statements.len() - 1
    }

    /// Adds an `INSERT`, `UPDATE` or `DELETE` (without `RETURNING`) whose outcome nobody reads:
    /// its outcome is always empty. On PostgreSQL it runs as a data-modifying `WITH` of the
    /// next statement that is not unread, in that statement's call (unread statements last in
    /// the batch go with the last of them). They then see the same snapshot, and neither sees
    /// the other's changes, so this one must write no row that a later statement of the batch
    /// reads or writes. An error of either fails both, as it stopped the batch before.
    pub fn push_unread(&mut self, sql: &'static str, params: Vec<Param>) {
        let at = self.push(sql, params);
        self.statements[at].unread = true;
    }

    /// Lets the commit of the transaction this batch runs in return before its log record is on
    /// disk (PostgreSQL's `synchronous_commit = off` for this transaction only, by a
    /// `set_config` that travels with the unread statements before it; SQLite's `synchronous =
    /// NORMAL` already commits so), and so releases its row locks without waiting for the disk.
    /// Only for a transaction whose outcome nobody is told until a later synchronous commit on
    /// the same database has returned: that commit writes the log to disk up to its own record,
    /// which comes after this one, so whatever was told is on disk. Until then a crash of the
    /// database loses the transaction whole, its audit event with it (rule 6 holds), never a
    /// part of it.
    pub fn defer_flush(&mut self) {
        let at = self.push(
            "SELECT set_config('synchronous_commit', 'off', true)",
            Vec::new(),
        );
        self.statements[at].postgres_only = true;
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
        if tx.dialect() == super::Dialect::Sqlite {
            return self.run_text(tx, None, None).await;
        }
        let expected = self.statements.len();
        let mut all = Vec::with_capacity(expected);
        let mut unread = Vec::new();
        for s in self.statements {
            if s.unread {
                unread.push(s);
                continue;
            }
            all.extend(unread.iter().map(|_| Outcome::default()));
            let (sql, params) = with_unread(std::mem::take(&mut unread), s);
            all.extend(outcomes(tx, &sql, params).await?);
        }
        // Unread statements last in the batch travel with the last of them.
        if let Some(last) = unread.pop() {
            all.extend(unread.iter().map(|_| Outcome::default()));
            let (sql, params) = with_unread(unread, last);
            outcomes(tx, &sql, params).await?;
            all.push(Outcome::default());
        }
        counted(all, expected)
    }

    /// SQLite: the statements as one text, after `first` and before `last` (statements without
    /// parameters or rows, such as `BEGIN` and `COMMIT`), in one call; the outcomes of the
    /// batch's own statements (empty for unread ones and for those SQLite has no need of).
    pub(super) async fn run_text(
        self,
        tx: &mut Tx,
        first: Option<&str>,
        last: Option<&str>,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        // Which statements SQLite runs, and whose outcomes it gives back (not the unread ones').
        let shapes: Vec<(bool, bool)> = (self.statements.iter())
            .map(|s| (!s.postgres_only, !s.unread))
            .collect();
        let statements: Vec<Statement> = (self.statements.into_iter())
            .filter(|s| !s.postgres_only)
            .collect();
        let mut sql = String::new();
        if let Some(first) = first {
            sql.push_str(first);
            sql.push_str(";\n");
        }
        let values = joined(statements, &mut sql);
        if let Some(last) = last {
            sql.push_str(last);
            sql.push_str(";\n");
        }
        let mut ran = if sql.is_empty() {
            Vec::new()
        } else {
            outcomes(tx, &sql, values).await?
        };
        if last.is_some() {
            ran.pop();
        }
        if first.is_some() && !ran.is_empty() {
            ran.remove(0);
        }
        let ran = counted(ran, shapes.iter().filter(|(runs, _)| *runs).count())?;
        let mut ran = ran.into_iter();
        Ok(shapes
            .into_iter()
            .map(
                |(runs, read)| match (runs.then(|| ran.next()).flatten(), read) {
                    (Some(outcome), true) => outcome,
                    _ => Outcome::default(),
                },
            )
            .collect())
    }
}

/// PostgreSQL: `main` with the `unread` statements before it as data-modifying `WITH`s, as one
/// statement, and its values in order ([`Batch::push_unread`]).
fn with_unread(unread: Vec<Statement>, main: Statement) -> (String, Vec<Param>) {
    let main_sql = if main.shared {
        format!("{} FOR SHARE", main.sql)
    } else {
        main.sql.to_string()
    };
    if unread.is_empty() {
        return (main_sql, main.params);
    }
    // A statement with a `WITH` of its own continues the list.
    let (mut sql, rest) = match main_sql.strip_prefix("WITH RECURSIVE ") {
        Some(rest) => (String::from("WITH RECURSIVE "), Some(rest.to_string())),
        None => (
            String::from("WITH "),
            main_sql.strip_prefix("WITH ").map(str::to_string),
        ),
    };
    let mut values = Vec::new();
    for (n, s) in unread.into_iter().enumerate() {
        sql.push_str(&format!("unread_{n} AS ("));
        renumber(s.sql, values.len(), &mut sql);
        sql.push_str("), ");
        values.extend(s.params);
    }
    let rest = match rest {
        Some(rest) => rest,
        None => {
            sql.truncate(sql.len() - 2);
            sql.push(' ');
            main_sql
        }
    };
    renumber(&rest, values.len(), &mut sql);
    values.extend(main.params);
    (sql, values)
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
    let mut stream = (&mut **tx).fetch_many(bound(sql, params));
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

/// `sql` (built by this module from statements of the code, never from input) with `params`
/// bound in order.
pub(super) fn bound(
    sql: &str,
    params: Vec<Param>,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
        };
    }
    query
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
            Ok(n) => {
                out.push('$');
                push_decimal(n + offset, out);
            }
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
}

/// Appends `n` in decimal digits (the batches of a sign-in renumber tens of parameters;
/// formatting each into a `String` of its own was nearly half of what joining them cost).
fn push_decimal(mut n: usize, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|d| char::from(*d)));
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
    fn unread_statements_go_into_the_next_as_with_and_continue_its_own() {
        let unread = |sql, params| Statement {
            sql,
            params,
            shared: false,
            unread: true,
            postgres_only: false,
        };
        let main = |sql, params, shared| Statement {
            sql,
            params,
            shared,
            unread: false,
            postgres_only: false,
        };
        let (sql, values) = with_unread(
            vec![
                unread(
                    "UPDATE a SET x = $2 WHERE id = $1",
                    vec![1.into(), 2.into()],
                ),
                unread("INSERT INTO b VALUES ($1)", vec![3.into()]),
            ],
            main("SELECT y FROM c WHERE id = $1", vec![4.into()], true),
        );
        assert_eq!(
            sql,
            "WITH unread_0 AS (UPDATE a SET x = $2 WHERE id = $1), \
             unread_1 AS (INSERT INTO b VALUES ($3)) SELECT y FROM c WHERE id = $4 FOR SHARE"
        );
        assert_eq!(values, [1, 2, 3, 4].map(Param::from));
        let (sql, values) = with_unread(
            vec![unread("DELETE FROM a WHERE id = $1", vec![1.into()])],
            main(
                "WITH d AS (SELECT $1 AS v) SELECT v FROM d",
                vec![2.into()],
                false,
            ),
        );
        assert_eq!(
            sql,
            "WITH unread_0 AS (DELETE FROM a WHERE id = $1), d AS (SELECT $2 AS v) SELECT v FROM d"
        );
        assert_eq!(values, [1, 2].map(Param::from));
        let (sql, _) = with_unread(
            vec![unread("DELETE FROM a", Vec::new())],
            main(
                "WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r",
                Vec::new(),
                false,
            ),
        );
        assert_eq!(
            sql,
            "WITH RECURSIVE unread_0 AS (DELETE FROM a), r AS (SELECT 1) SELECT * FROM r"
        );
    }

    #[test]
    fn numbers_are_written_as_formatting_writes_them() {
        for n in (0..1_000).chain([9_999, 10_000, 123_456_789, usize::MAX]) {
            let mut out = String::from("$");
            push_decimal(n, &mut out);
            assert_eq!(out, format!("${n}"));
        }
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
