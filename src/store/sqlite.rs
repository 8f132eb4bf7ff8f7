//! The embedded SQLite engine: WAL mode, one writer connection, a small pool of readers.
//!
//! Every call runs on tokio's blocking pool. Writes go through the single writer connection
//! (SQLite allows one writer at a time anyway), each in a `BEGIN IMMEDIATE` transaction, so the
//! per-fingerprint lock the shared SQL asks for is already held.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, params_from_iter};

use super::db::{Backend, Conn, Row, SqlValue};
use super::{StoreError, StoreResult};

pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_leases.sql"),
    include_str!("../../migrations/sqlite/0003_rate_counts.sql"),
    include_str!("../../migrations/sqlite/0004_web.sql"),
    include_str!("../../migrations/sqlite/0005_tag_keys.sql"),
    include_str!("../../migrations/sqlite/0006_alerts.sql"),
    include_str!("../../migrations/sqlite/0007_releases.sql"),
    include_str!("../../migrations/sqlite/0008_artifacts.sql"),
    include_str!("../../migrations/sqlite/0009_grouping_once.sql"),
    include_str!("../../migrations/sqlite/0010_payload_dicts.sql"),
    include_str!("../../migrations/sqlite/0011_issue_search.sql"),
];
const READERS: usize = 3;

/// The SQLite engine.
pub struct Sqlite {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(msg.unwrap_or_else(|| "constraint violation".into()))
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            SqlValue::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn value(v: ValueRef) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Int(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

impl Conn for Connection {
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(value(r.get_ref(i)?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<u64> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(params_from_iter(params))? as u64)
    }

    fn lock_fingerprint(&mut self, _project_id: i64, _hash: &str) -> StoreResult<()> {
        Ok(())
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Switching a new file to WAL answers "locked" at once (no busy wait) while another
    // connection is doing the same: retry for a while.
    let mut attempt = 0;
    loop {
        match conn.execute_batch("PRAGMA journal_mode = WAL") {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy && attempt < 100 =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other?,
        }
    }
    // `lower()` as PostgreSQL has it, beyond ASCII, so that searches agree on both engines.
    conn.create_scalar_function(
        "lower",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).to_lowercase()),
                _ => None,
            })
        },
    )?;
    conn.execute_batch(
        // wal_autocheckpoint: checkpoints every ~32 MB of WAL instead of ~4 MB, so that pages
        // changed by many batches (issue rows, counters, index pages) are copied back once.
        // FULL: a commit is on disk before digestion deletes the spool records it covers, so
        // even a power loss cannot lose them (a commit is a whole batch: the sync is cheap).
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4000;
         PRAGMA wal_autocheckpoint = 8000;",
    )?;
    // Plans never depend on bound values. Without this, a cached statement whose plan looked
    // at a parameter (a comparison checked against a partial index, a LIKE pattern) is
    // expired each time the cache hands it out again and is parsed and planned anew: with
    // hundreds of releases in a batch, that was ~8 % of all CPU under load.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(e.to_string())
}

impl Sqlite {
    /// Opens (creating) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Sqlite> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(e.to_string()))?;
            }
            let mut writer = connect(&path)?;
            migrate(&mut writer)?;
            let readers = (0..READERS)
                .map(|_| connect(&path).map(Mutex::new))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Sqlite {
                writer: Arc::new(Mutex::new(writer)),
                readers: Arc::new(readers),
                next_reader: AtomicUsize::new(0),
            })
        })
        .await
        .map_err(join_error)?
    }
}

impl Backend for Sqlite {
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let mut conn = readers[i]
                .lock()
                .map_err(|_| StoreError::Other("reader poisoned".into()))?;
            f(&mut *conn)
        })
        .await
        .map_err(join_error)?
    }

    async fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| StoreError::Other("writer poisoned".into()))?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            match f(&mut *conn) {
                Ok(v) => match conn.execute_batch("COMMIT") {
                    Ok(()) => Ok(v),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(e.into())
                    }
                },
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
        .map_err(join_error)?
    }

    async fn healthy(&self) -> bool {
        self.transaction(|_| Ok(())).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached statement whose plan could depend on a parameter (here a join on a bound
    /// release version, as digestion runs for every release of a batch) runs again without
    /// being parsed and planned again when its parameters change.
    #[test]
    fn cached_statements_are_not_prepared_again_for_new_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("t.db")).unwrap();
        migrate(&mut conn).unwrap();
        let sql = "UPDATE release_projects SET event_count = event_count + 1 \
                   WHERE project_id = ?1 AND release_id IN (SELECT r.id FROM projects p \
                   JOIN releases r ON r.org_id = p.org_id AND r.version = ?2 WHERE p.id = ?1)";
        let mut reprepared = 0;
        for i in 0..20 {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            stmt.execute(rusqlite::params![1, format!("release-{i}")])
                .unwrap();
            reprepared = stmt.get_status(rusqlite::StatementStatus::RePrepare);
        }
        assert_eq!(reprepared, 0);
    }
}
