//! The PostgreSQL engine, for several Faultline nodes on one database.
//!
//! The shared SQL ([`super::sql`]) runs here unchanged but for `?N` → `$N`. Statements are
//! prepared once per pooled connection. Calls run on tokio's blocking pool, driving the async
//! client with the runtime's handle, so the shared SQL stays one synchronous code path for both
//! engines. Migrations run under an advisory lock, so nodes that start together migrate once.

use std::error::Error;
use std::str::FromStr;

use bytes::BytesMut;
use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::db::{Backend, Conn, Row, SqlValue, dollar_placeholders};
use super::{StoreError, StoreResult};

pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_leases.sql"),
    include_str!("../../migrations/postgres/0003_rate_counts.sql"),
    include_str!("../../migrations/postgres/0004_web.sql"),
    include_str!("../../migrations/postgres/0005_tag_keys.sql"),
    include_str!("../../migrations/postgres/0006_alerts.sql"),
    include_str!("../../migrations/postgres/0007_releases.sql"),
    include_str!("../../migrations/postgres/0008_artifacts.sql"),
    include_str!("../../migrations/postgres/0009_grouping_once.sql"),
    include_str!("../../migrations/postgres/0010_payload_dicts.sql"),
    include_str!("../../migrations/postgres/0011_issue_search.sql"),
];
/// Advisory lock key held while migrating ("faultlin" in ASCII).
const MIGRATION_LOCK: i64 = 0x6661_756c_746c_696e;
/// As many connections as blocking threads run database calls (see `main.rs`).
const POOL_SIZE: usize = 8;

/// The PostgreSQL engine.
pub struct Postgres {
    pool: Pool,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_string()),
            ),
            _ => StoreError::Other(match e.as_db_error() {
                Some(db) => db.to_string(),
                None => e.to_string(),
            }),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Other(format!("database connection: {e}"))
    }
}

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            SqlValue::Real(v) => match *ty {
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::INT8 => (*v as i64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            // PostgreSQL text cannot hold NUL; SQLite can. Events may carry any character.
            SqlValue::Text(v) if v.contains('\0') => v.replace('\0', "\u{FFFD}").to_sql(ty, out),
            SqlValue::Text(v) => v.as_str().to_sql(ty, out),
            SqlValue::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn column(row: &tokio_postgres::Row, i: usize) -> Result<SqlValue, tokio_postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|b| SqlValue::Int(b as i64)),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| SqlValue::Int(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| SqlValue::Int(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| SqlValue::Real(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(SqlValue::Real),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(SqlValue::Blob),
        _ => row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text),
    }
    .unwrap_or(SqlValue::Null))
}

/// A pooled connection driven from a blocking thread.
struct PgConn<'a> {
    client: &'a Client,
    handle: &'a Handle,
}

impl PgConn<'_> {
    fn params(params: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }
}

impl Conn for PgConn<'_> {
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<Vec<Row>> {
        let sql = dollar_placeholders(sql);
        let client = self.client;
        self.handle.block_on(async move {
            let stmt = client.prepare_cached(&sql).await?;
            let rows = client.query(&stmt, &Self::params(params)).await?;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| column(r, i))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Row)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)
        })
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> StoreResult<u64> {
        let sql = dollar_placeholders(sql);
        let client = self.client;
        self.handle.block_on(async move {
            let stmt = client.prepare_cached(&sql).await?;
            Ok(client.execute(&stmt, &Self::params(params)).await?)
        })
    }

    fn lock_fingerprint(&mut self, project_id: i64, hash: &str) -> StoreResult<()> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(?2, ?1))",
            &[SqlValue::Int(project_id), SqlValue::Text(hash.to_string())],
        )?;
        Ok(())
    }

    fn refresh_statistics(&mut self) -> StoreResult<bool> {
        let off = self
            .query_one("SELECT current_setting('autovacuum') = 'off'", &[])?
            .bool(0)?;
        if off {
            self.batch("ANALYZE")?;
        }
        Ok(off)
    }

    fn skip_locked(&self) -> &'static str {
        " FOR UPDATE SKIP LOCKED"
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(e.to_string())
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Postgres> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let client = pool.get().await?;
        migrate(&client).await?;
        Ok(Postgres { pool })
    }
}

async fn migrate(client: &Client) -> StoreResult<()> {
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS faultline_migrations \
                 (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM faultline_migrations",
                &[],
            )
            .await?;
        let done: i64 = row.try_get(0)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
            client.batch_execute("BEGIN").await?;
            let step = async {
                client.batch_execute(sql).await?;
                client
                    .execute(
                        "INSERT INTO faultline_migrations (version) VALUES ($1)",
                        &[&(i as i64 + 1)],
                    )
                    .await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            if let Err(e) = step {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    Ok(result?)
}

impl Postgres {
    /// Runs `f` on a pooled connection, on a blocking thread.
    async fn on_connection<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut PgConn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let client = self.pool.get().await?;
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            f(&mut PgConn {
                client: &client,
                handle: &handle,
            })
        })
        .await
        .map_err(join_error)?
    }
}

impl PgConn<'_> {
    /// Runs statements without parameters or results (`BEGIN`, `COMMIT`, …).
    fn batch(&self, sql: &str) -> StoreResult<()> {
        Ok(self.handle.block_on(self.client.batch_execute(sql))?)
    }
}

impl Backend for Postgres {
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.on_connection(|c| f(c)).await
    }

    async fn transaction<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.on_connection(|c| {
            c.batch("BEGIN")?;
            let result = f(c);
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            match (result, c.batch(end)) {
                (Ok(v), Ok(())) => Ok(v),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => {
                    let _ = c.batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    async fn healthy(&self) -> bool {
        match self.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }
}
