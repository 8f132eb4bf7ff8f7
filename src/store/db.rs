//! The small seam between the shared SQL and a database engine: values, rows, a connection
//! that runs a statement, and a backend that lends connections and transactions.
//!
//! Everything above this seam ([`super::sql`]) is written once. Each engine
//! ([`super::sqlite`], [`super::postgres`]) only moves [`SqlValue`]s in and out and rewrites the
//! placeholders it needs; the statements are the same text.

use super::{StoreError, StoreResult};

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(v as i64)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// Builds an array of `SqlValue`s from expressions of convertible types.
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => { [$($crate::store::db::SqlValue::from($v)),*] };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<SqlValue>);

fn bad_column(i: usize, want: &str, got: &SqlValue) -> StoreError {
    StoreError::Other(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn get(&self, i: usize) -> &SqlValue {
        self.0.get(i).unwrap_or(&SqlValue::Null)
    }

    pub fn int(&self, i: usize) -> StoreResult<i64> {
        match self.get(i) {
            SqlValue::Int(v) => Ok(*v),
            SqlValue::Real(v) => Ok(*v as i64),
            other => Err(bad_column(i, "an integer", other)),
        }
    }

    pub fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.get(i) {
            SqlValue::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn bool(&self, i: usize) -> StoreResult<bool> {
        self.int(i).map(|v| v != 0)
    }

    pub fn real(&self, i: usize) -> StoreResult<f64> {
        match self.get(i) {
            SqlValue::Real(v) => Ok(*v),
            SqlValue::Int(v) => Ok(*v as f64),
            other => Err(bad_column(i, "a number", other)),
        }
    }

    pub fn opt_real(&self, i: usize) -> StoreResult<Option<f64>> {
        match self.get(i) {
            SqlValue::Null => Ok(None),
            _ => self.real(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> StoreResult<String> {
        match self.get(i) {
            SqlValue::Text(v) => Ok(v.clone()),
            other => Err(bad_column(i, "text", other)),
        }
    }

    pub fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.get(i) {
            SqlValue::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn blob(&self, i: usize) -> StoreResult<Vec<u8>> {
        match self.get(i) {
            SqlValue::Blob(v) => Ok(v.clone()),
            SqlValue::Text(v) => Ok(v.clone().into_bytes()),
            other => Err(bad_column(i, "bytes", other)),
        }
    }
}

/// A connection (or an open transaction on one) that runs statements synchronously.
///
/// Statements use numbered `?N` placeholders; engines that want another form rewrite them.
pub trait Conn {
    /// Runs a statement and returns every row.
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<Vec<Row>>;
    /// Runs a statement and returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<u64>;

    /// The first row, or [`StoreError::NotFound`].
    fn query_one(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<Row> {
        self.query_opt(sql, params)?.ok_or(StoreError::NotFound)
    }

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Serializes the creation of the issue of one fingerprint across every writer of the
    /// database (a transaction-scoped lock). SQLite has one writer at a time: nothing to do.
    fn lock_fingerprint(&mut self, project_id: i64, hash: &str) -> StoreResult<()>;

    /// Refreshes the planner's statistics where nothing else does; whether it did. PostgreSQL
    /// with `autovacuum` off never analyzes the tables by itself, and statements keep plans
    /// made for empty tables as they grow (digestion slowed to half speed in a benchmark).
    /// SQLite plans without statistics unless asked to: nothing to do.
    fn refresh_statistics(&mut self) -> StoreResult<bool> {
        Ok(false)
    }

    /// The clause that ends a `SELECT` claiming rows for the current transaction, passing over
    /// rows another transaction holds: `FOR UPDATE SKIP LOCKED` on PostgreSQL, so that two
    /// nodes never claim the same outbox row. Nothing on SQLite: its one writer at a time
    /// already excludes every other claimer.
    fn skip_locked(&self) -> &'static str {
        ""
    }
}

/// An engine that lends connections to closures, on a blocking thread.
pub trait Backend: Send + Sync + 'static {
    /// Runs `f` on a connection for reads.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> impl Future<Output = StoreResult<T>> + Send;

    /// Runs `f` inside one write transaction: committed when `f` succeeds, rolled back otherwise.
    fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> impl Future<Output = StoreResult<T>> + Send;

    /// Whether the database answers and accepts writes.
    fn healthy(&self) -> impl Future<Output = bool> + Send;
}

/// Rewrites `?N` placeholders to PostgreSQL's `$N`.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten() {
        assert_eq!(
            dollar_placeholders("SELECT ?1, ?12 WHERE a = ?2"),
            "SELECT $1, $12 WHERE a = $2"
        );
    }

    #[test]
    fn rows_convert_and_complain() {
        let r = Row(vec![
            SqlValue::Int(1),
            SqlValue::Null,
            SqlValue::Text("x".into()),
        ]);
        assert!(r.bool(0).unwrap());
        assert_eq!(r.opt_text(1).unwrap(), None);
        assert!(r.int(2).is_err());
        assert_eq!(
            sql_params![1i64, "a", None::<i64>, 2.5f64],
            [
                SqlValue::Int(1),
                SqlValue::Text("a".into()),
                SqlValue::Null,
                SqlValue::Real(2.5)
            ]
        );
    }
}
