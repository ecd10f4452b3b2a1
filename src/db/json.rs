//! SQL over JSON text, the same on both databases: lists and rows of any length as one
//! parameter, members of JSON columns, and statement text made once per dialect.

use super::{Dialect, Param};

/// A condition that `column` is one of the texts of the JSON array bound to `param` (such as
/// `$1`): a list of any length as one text parameter, on both databases, served by an index on
/// `column`. (PostgreSQL takes a sub-select of a JSON array for a hundred rows and joins it by
/// scanning the whole table; `= ANY` of an array is an index condition to it.)
pub fn in_json_texts(dialect: Dialect, column: &str, param: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each({param}))"),
        Dialect::Postgres => {
            format!("{column} = ANY (ARRAY(SELECT json_array_elements_text({param}::json)))")
        }
    }
}

/// The JSON array of `items`' texts: the one parameter that [`in_json_texts`] names.
pub fn json_texts<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let texts: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    serde_json::Value::from(texts).to_string()
}

/// A sub-select of the rows of the JSON array of arrays bound to `param`: its column `c{i}` is
/// element `i` of each row's array, as text, or as an integer where `ints` names `i`. Many rows
/// as one text parameter, on both databases. (An `INSERT ... SELECT` from it with an
/// `ON CONFLICT` needs a `WHERE` before the `ON`, or SQLite reads it as a join's.) On
/// PostgreSQL the text is read once, as `jsonb`: an element of a `json` value is found by
/// parsing its text again, once for each column of each row.
pub fn json_rows(dialect: Dialect, param: &str, columns: usize, ints: &[usize]) -> String {
    let column = |i: usize| match (dialect, ints.contains(&i)) {
        (Dialect::Sqlite, _) => format!("json_extract(value, '$[{i}]') AS c{i}"),
        (Dialect::Postgres, false) => format!("(e ->> {i}) AS c{i}"),
        (Dialect::Postgres, true) => format!("(e ->> {i})::BIGINT AS c{i}"),
    };
    let list = (0..columns).map(column).collect::<Vec<_>>().join(", ");
    match dialect {
        Dialect::Sqlite => format!("SELECT {list} FROM json_each({param})"),
        Dialect::Postgres => {
            format!("SELECT {list} FROM jsonb_array_elements({param}::jsonb) AS e")
        }
    }
}

/// The JSON array of `rows` (each a row's values, an array: an integer a number, a text a
/// string, `NULL` null): the one parameter that [`json_rows`] names.
pub fn json_rows_text(rows: Vec<Vec<Param>>) -> Param {
    let value = |param: Param| match param {
        Param::Int(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
        Param::Text(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
    };
    let rows: Vec<serde_json::Value> = (rows.into_iter())
        .map(|row| row.into_iter().map(value).collect())
        .collect();
    serde_json::Value::from(rows).to_string().into()
}

/// SQL text that differs by dialect, made once for each by a function of the code (never of
/// input): for statements built with [`in_json_texts`] or [`json_rows`], which a
/// [`super::Batch`] takes as `&'static str`.
pub struct DialectSql {
    make: fn(Dialect) -> String,
    made: std::sync::OnceLock<[String; 2]>,
}

impl DialectSql {
    pub const fn new(make: fn(Dialect) -> String) -> Self {
        DialectSql {
            make,
            made: std::sync::OnceLock::new(),
        }
    }

    /// The text for `dialect`.
    pub fn get(&'static self, dialect: Dialect) -> &'static str {
        let made = self
            .made
            .get_or_init(|| [(self.make)(Dialect::Sqlite), (self.make)(Dialect::Postgres)]);
        match dialect {
            Dialect::Sqlite => &made[0],
            Dialect::Postgres => &made[1],
        }
    }
}

/// SQL reading the text member `key` of the JSON object held in the text column `column`
/// (`NULL` when absent). `key` and `column` are identifiers of the caller's SQL, never input.
pub fn json_text(dialect: Dialect, column: &str, key: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
        Dialect::Postgres => format!("({column}::json ->> '{key}')"),
    }
}
