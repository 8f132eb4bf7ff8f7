//! `faultline migrate --from sqlite:///…/faultline.db --to postgres://…`: copies every table of
//! an SQLite installation into PostgreSQL, table by table in creation order (so references hold),
//! in chunks, with a progress bar. It is resumable: rows already copied are skipped (tables with
//! an `id` continue after the highest copied id; the others are re-sent with
//! `ON CONFLICT DO NOTHING`). At the end it moves PostgreSQL's id sequences past the copied ids
//! and verifies that every table holds as many rows on both sides.
//!
//! Every table is copied, whatever its name: a table a later feature adds is copied without
//! changes here (the PostgreSQL migrations must create it too, or the copy stops and says so).

use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::{Connection, OpenFlags};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::config::MigrateArgs;
use crate::store::db::SqlValue;
use crate::store::redact;

/// Rows per `INSERT` (PostgreSQL takes at most 65,535 parameters per statement).
const CHUNK: usize = 500;

/// One table of the source and how to page through it.
struct Table {
    name: String,
    columns: Vec<String>,
    /// Whether the table has an integer `id` primary key (resume after the highest copied id).
    has_id: bool,
    /// Its primary key columns, for a stable order (tables `WITHOUT ROWID` have no rowid).
    order_by: String,
}

pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let Some(path) = args.from.strip_prefix("sqlite://") else {
        bail!("--from must be sqlite:///path/to/faultline.db");
    };
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    if !Path::new(path).exists() {
        bail!("no SQLite database at {path}");
    }
    // Bring both schemas to the current version first.
    crate::store::open(&args.from).await?;
    crate::store::open(&args.to).await?;

    let sqlite = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (pg, connection) = tokio_postgres::connect(&args.to, NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", redact(&args.to)))?;
    tokio::spawn(connection);

    let tables = tables(&sqlite)?;
    eprintln!(
        "copying {} tables from {path} to {}",
        tables.len(),
        redact(&args.to)
    );
    for table in &tables {
        copy_table(&sqlite, &pg, table).await?;
    }
    for table in tables.iter().filter(|t| t.has_id) {
        pg.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
                 GREATEST((SELECT max(id) FROM {0}), 1))",
                table.name
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot move the id sequence of {}", table.name))?;
    }
    let mut mismatches = Vec::new();
    for table in &tables {
        let from: i64 =
            sqlite.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| {
                r.get(0)
            })?;
        let to: i64 = pg
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .await?
            .get(0);
        if from != to {
            mismatches.push(format!(
                "{}: {from} rows in SQLite, {to} in PostgreSQL",
                table.name
            ));
        }
    }
    if !mismatches.is_empty() {
        bail!(
            "row counts differ after the copy:\n  {}",
            mismatches.join("\n  ")
        );
    }
    eprintln!("done: every table has the same number of rows on both sides");
    Ok(())
}

/// The source's tables in creation order, skipping SQLite's own.
fn tables(sqlite: &Connection) -> anyhow::Result<Vec<Table>> {
    let mut stmt = sqlite.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY rowid",
    )?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for name in names {
        let mut info = sqlite.prepare(&format!("PRAGMA table_info({name})"))?;
        let cols: Vec<(String, i64)> = info
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)?)))?
            .collect::<Result<_, _>>()?;
        let has_id = cols.iter().any(|(c, pk)| c == "id" && *pk == 1);
        let mut key: Vec<&(String, i64)> = cols.iter().filter(|(_, pk)| *pk > 0).collect();
        key.sort_by_key(|(_, pk)| *pk);
        let order_by = if key.is_empty() {
            "rowid".to_string()
        } else {
            key.iter()
                .map(|(c, _)| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(Table {
            name,
            columns: cols.iter().map(|(c, _)| c.clone()).collect(),
            has_id,
            order_by,
        });
    }
    Ok(out)
}

fn quote(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

async fn copy_table(
    sqlite: &Connection,
    pg: &tokio_postgres::Client,
    table: &Table,
) -> anyhow::Result<()> {
    let exists: bool = pg
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.name])
        .await?
        .get(0);
    if !exists {
        bail!(
            "table {} exists in SQLite but not in PostgreSQL: add it to migrations/postgres/",
            table.name
        );
    }
    let total: i64 =
        sqlite.query_row(&format!("SELECT count(*) FROM {}", table.name), [], |r| {
            r.get(0)
        })?;
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} rows ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(table.name.clone());

    let columns = table
        .columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut after: i64 = if table.has_id {
        pg.query_one(
            &format!("SELECT coalesce(max(id), 0) FROM {}", table.name),
            &[],
        )
        .await?
        .get(0)
    } else {
        0
    };
    if table.has_id {
        let done: i64 = sqlite.query_row(
            &format!("SELECT count(*) FROM {} WHERE id <= ?1", table.name),
            [after],
            |r| r.get(0),
        )?;
        bar.set_position(done.max(0) as u64);
    }
    let mut offset = 0i64;
    loop {
        let rows = if table.has_id {
            read_rows(
                sqlite,
                &format!(
                    "SELECT {columns} FROM {} WHERE id > ?1 ORDER BY id LIMIT {CHUNK}",
                    table.name
                ),
                after,
                table.columns.len(),
            )?
        } else {
            read_rows(
                sqlite,
                &format!(
                    "SELECT {columns} FROM {} ORDER BY {} LIMIT {CHUNK} OFFSET ?1",
                    table.name, table.order_by
                ),
                offset,
                table.columns.len(),
            )?
        };
        if rows.is_empty() {
            break;
        }
        insert_rows(pg, table, &columns, &rows).await?;
        bar.inc(rows.len() as u64);
        offset += rows.len() as i64;
        if table.has_id {
            let id_col = table.columns.iter().position(|c| c == "id").unwrap_or(0);
            if let Some(SqlValue::Int(id)) = rows.last().and_then(|r| r.get(id_col)) {
                after = *id;
            }
        }
        if rows.len() < CHUNK {
            break;
        }
    }
    bar.finish();
    Ok(())
}

fn read_rows(
    sqlite: &Connection,
    sql: &str,
    from: i64,
    width: usize,
) -> anyhow::Result<Vec<Vec<SqlValue>>> {
    use rusqlite::types::ValueRef;
    let mut stmt = sqlite.prepare_cached(sql)?;
    let mut rows = stmt.query([from])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(width);
        for i in 0..width {
            row.push(match r.get_ref(i)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(v) => SqlValue::Int(v),
                ValueRef::Real(v) => SqlValue::Real(v),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        out.push(row);
    }
    Ok(out)
}

async fn insert_rows(
    pg: &tokio_postgres::Client,
    table: &Table,
    columns: &str,
    rows: &[Vec<SqlValue>],
) -> anyhow::Result<()> {
    let width = table.columns.len();
    let values = (0..rows.len())
        .map(|r| {
            let cells = (1..=width)
                .map(|c| format!("${}", r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({cells})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({columns}) VALUES {values} ON CONFLICT DO NOTHING",
        table.name
    );
    let params: Vec<&(dyn ToSql + Sync)> = rows
        .iter()
        .flatten()
        .map(|v| v as &(dyn ToSql + Sync))
        .collect();
    pg.execute(&sql, &params)
        .await
        .with_context(|| format!("cannot copy rows of {}", table.name))?;
    Ok(())
}
