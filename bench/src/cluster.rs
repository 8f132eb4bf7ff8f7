//! `cluster`: digest throughput on PostgreSQL with one node and with two nodes on the same
//! database (same machine), against SQLite in the same run.
//!
//! Each round measures three configurations in turn, each from scratch (fresh data dirs, and a
//! fresh PostgreSQL database created for it and dropped afterwards):
//!
//! 1. one node on SQLite;
//! 2. one node on PostgreSQL;
//! 3. two nodes on one PostgreSQL database, each with its own data dir (spool) and port; the load
//!    generator splits its connections between them (same DSN key, other port).
//!
//! After a warm-up, a closed-loop max-throughput load of `--duration` seconds, then the wait until
//! every acknowledged event is digested: digested events/s = accepted ÷ (first request → all
//! digested), as `run-all`. The count comes from the issue list of the first node and is checked
//! on every node (the database is shared): it must equal what was acknowledged, or the command
//! fails. The PostgreSQL backends serving the bench database (and the server's shared background
//! processes) are counted as the system's CPU, not as noise; their wait events are sampled from
//! `pg_stat_activity` to show where time goes (e.g. lock waits).
//!
//! After the warm-up, the PostgreSQL database is `ANALYZE`d once (`--no-analyze` skips it), as
//! autovacuum's auto-analyze would have done after the first 50 rows: on a server with
//! autovacuum off (test servers often are), the generic plans that the nodes' prepared
//! statements got on empty tables are otherwise never re-planned, and the duplicate check of
//! the digest (`SELECT 1 FROM events WHERE project_id = $1 AND event_id = $2`) then reads every
//! event of the project: digestion slows down as the table grows. The report says whether
//! autovacuum is on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Args;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::content::Corpus;
use crate::load::{LoadOpts, Target};
use crate::runall::{
    Server, chrono_now, scan_log, setup_bench_project_env, start_faultline_with, wait_quiet_pids,
};
use crate::verify::Verifier;
use crate::{CorpusArgs, DigestArgs, Phase, build_corpus, measure_nodes, procstat, round1, round2};

#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Path of the faultline binary (build it first: cargo build --release).
    #[arg(long, default_value = "target/release/faultline")]
    faultline: PathBuf,
    /// A PostgreSQL database to connect to for creating (and dropping) one fresh database per
    /// PostgreSQL run; the user must be allowed to create databases.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Seconds of max-throughput load per configuration and round.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Rounds; each measures SQLite, PostgreSQL with one node, PostgreSQL with two nodes.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent keep-alive connections (split evenly between the nodes).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events sent before each measurement (connections, pools, issues created).
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    digest: DigestArgs,
    /// Before each measurement, wait up to this many seconds for the machine to be quiet.
    #[arg(long, default_value_t = 60.0)]
    wait_quiet: f64,
    /// Do not `ANALYZE` the PostgreSQL database after the warm-up (see bench/README.md).
    #[arg(long)]
    no_analyze: bool,
    /// Keep the data directories (and the server logs in them).
    #[arg(long)]
    keep_data: bool,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// The configurations, in the order each round runs them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Config {
    Sqlite,
    Pg1,
    Pg2,
}

impl Config {
    const ALL: [Config; 3] = [Config::Sqlite, Config::Pg1, Config::Pg2];

    fn label(self) -> &'static str {
        match self {
            Config::Sqlite => "SQLite, 1 node",
            Config::Pg1 => "PostgreSQL, 1 node",
            Config::Pg2 => "PostgreSQL, 2 nodes",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Config::Sqlite => "sqlite",
            Config::Pg1 => "pg_1_node",
            Config::Pg2 => "pg_2_nodes",
        }
    }
    fn nodes(self) -> usize {
        if self == Config::Pg2 { 2 } else { 1 }
    }
}

/// `admin`'s URL with its database name replaced by `name`.
fn database_url(admin: &str, name: &str) -> String {
    let (head, query) = match admin.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (admin, String::new()),
    };
    let after_scheme = head.find("://").map_or(0, |i| i + 3);
    let host_end = head[after_scheme..]
        .find('/')
        .map_or(head.len(), |j| after_scheme + j);
    format!("{}/{name}{query}", &head[..host_end])
}

/// A fresh PostgreSQL database, dropped (`WITH (FORCE)`) on drop.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

async fn admin_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl PgDatabase {
    async fn create(admin_url: &str, name: &str) -> anyhow::Result<PgDatabase> {
        let client = admin_client(admin_url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            admin_url: admin_url.to_string(),
            name: name.to_string(),
            url: database_url(admin_url, name),
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop may run inside the runtime: do it on a thread of its own with its own runtime.
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                admin_client(&admin)
                    .await?
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                Ok::<(), anyhow::Error>(())
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("   could not drop database {}: {e:#}", self.name),
            Err(_) => eprintln!("   could not drop database {}: thread panicked", self.name),
        }
    }
}

/// Samples `pg_stat_activity` for the client backends of one database every 250 ms: how many
/// backends were in each state / wait event, summed over the samples.
struct WaitSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, BTreeMap<String, u64>)>,
    /// The sampler's own backend (its CPU is the benchmark's, not noise).
    backend_pid: u32,
}

impl WaitSampler {
    async fn start(admin_url: &str, db: &str) -> anyhow::Result<WaitSampler> {
        let client = admin_client(admin_url).await?;
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, db) = (stop.clone(), db.to_string());
        let task = tokio::spawn(async move {
            let mut samples = 0;
            let mut tally = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                let rows = client
                    .query(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
                         WHERE datname = $1 AND backend_type = 'client backend'",
                        &[&db],
                    )
                    .await;
                if let Ok(rows) = rows {
                    samples += 1;
                    for r in rows {
                        let text = |i: usize| r.try_get::<_, Option<String>>(i).ok().flatten();
                        let (state, ty, ev) = (text(0), text(1), text(2));
                        let state = state.unwrap_or_else(|| "?".into());
                        let key = match (ty, ev) {
                            (Some(t), Some(e)) => format!("{state} {t}:{e}"),
                            _ if state == "active" => "active on CPU".into(),
                            _ => state,
                        };
                        *tally.entry(key).or_insert(0) += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (samples, tally)
        });
        Ok(WaitSampler {
            stop,
            task,
            backend_pid: backend_pid as u32,
        })
    }

    /// (samples, mean number of backends per state / wait event, most first).
    async fn stop(self) -> (u64, Vec<(String, f64)>) {
        self.stop.store(true, Ordering::Relaxed);
        let (n, tally) = self.task.await.unwrap_or_default();
        let mut v: Vec<(String, f64)> = tally
            .into_iter()
            .map(|(k, c)| (k, c as f64 / n.max(1) as f64))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        (n, v)
    }
}

/// One configuration measured in one round.
struct Outcome {
    config: Config,
    phase: Phase,
    /// Other processes' CPU (cores) just before the measurement (see `--wait-quiet`).
    quiet_before: f64,
    /// `pg_stat_activity` samples and the mean backends per state / wait event.
    waits: Option<(u64, Vec<(String, f64)>)>,
    graceful: bool,
    log_levels: BTreeMap<String, u64>,
    log_examples: Vec<String>,
    /// Acknowledged events missing (or extra) after digestion, and other failures.
    failures: Vec<String>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.phase.digested_per_s.unwrap_or(0.0)
    }
}

/// Whether a `postgres` process works for the benchmark's database `db`: its backends (the
/// process title names the database), the server's background processes (no client address in
/// the title) and the wait sampler's backend. Backends of other databases are other work.
fn pg_helper(pid: u32, comm: &str, cmdline: &str, db: &str, sampler: u32) -> bool {
    comm == "postgres"
        && (pid == sampler
            || cmdline.split_whitespace().any(|w| w == db)
            || !(cmdline.contains('(') || cmdline.contains("[local]")))
}

struct Run<'a> {
    a: &'a ClusterArgs,
    faultline: &'a Path,
    root: &'a Path,
    corpus: &'a Corpus,
}

impl Run<'_> {
    async fn measure(&self, config: Config, round: usize) -> anyhow::Result<Outcome> {
        let a = self.a;
        let tag = format!("r{round}-{}", config.key());
        eprintln!("== round {round}: {}", config.label());
        let db = match config {
            Config::Sqlite => None,
            _ => {
                let name = format!(
                    "faultline_bench_{}_{}",
                    std::process::id(),
                    tag.replace('-', "_")
                );
                Some(PgDatabase::create(&a.database_url, &name).await?)
            }
        };
        let db_env: Vec<(&str, &str)> = db
            .iter()
            .map(|d| ("FAULTLINE_DATABASE_URL", d.url.as_str()))
            .collect();
        let extra: Vec<&str> = db
            .iter()
            .flat_map(|d| ["--database-url", d.url.as_str()])
            .collect();
        let dirs: Vec<PathBuf> = (1..=config.nodes())
            .map(|n| self.root.join(format!("{tag}-node{n}")))
            .collect();
        // The first node migrates the database; the second starts on a migrated one.
        let mut nodes: Vec<Server> = Vec::new();
        for d in &dirs {
            nodes.push(start_faultline_with(self.faultline, d, &extra)?);
        }
        let pids: Vec<u32> = nodes.iter().map(|n| n.proc.pid()).collect();
        let (dsn, token) =
            setup_bench_project_env(self.faultline, &dirs[0], &nodes[0].base, &db_env)?;
        let host0 = nodes[0]
            .base
            .strip_prefix("http://")
            .context("node URL is not http://")?;
        let mut targets = Vec::new();
        for n in &nodes {
            let host = n
                .base
                .strip_prefix("http://")
                .context("node URL is not http://")?;
            // DSN keys live in the database: the first node's DSN works on every node.
            let node_dsn = dsn.replacen(host0, host, 1);
            eprintln!("   node {} (pid {}): DSN {node_dsn}", n.base, n.proc.pid());
            targets.push(Target::from_dsn(&node_dsn)?);
        }
        let corpus = Arc::new(self.corpus.with_dsn(&dsn));
        let verifiers: Vec<Verifier> = nodes
            .iter()
            .map(|n| Verifier::Url {
                url: format!(
                    "{}/api/0/projects/bench/bench/issues/?query=&limit=100&statsPeriod=",
                    n.base
                ),
                token: token.clone(),
            })
            .collect();
        let opts = |events: Option<u64>, secs: Option<f64>| LoadOpts {
            concurrency: a.concurrency.max(config.nodes()),
            rate: None,
            duration: secs.map(Duration::from_secs_f64),
            events,
            timeout: Duration::from_secs_f64(a.timeout),
            progress: Duration::from_secs(5),
            check_ids: true,
            first_index: 0,
        };

        let mut failures = Vec::new();
        if a.warmup > 0 {
            let warm = measure_nodes(
                "warm-up",
                &targets,
                corpus.clone(),
                &opts(Some(a.warmup), None),
                Some(&verifiers[0]),
                &pids,
                None,
                &a.digest,
            )
            .await?;
            ensure!(
                warm.digest.as_ref().is_some_and(|d| d.caught_up),
                "{}: the warm-up events were not digested",
                config.label()
            );
        }
        if let (Some(d), false) = (&db, a.no_analyze) {
            // What autovacuum's auto-analyze does on a server where it runs: without it, the
            // generic plans of the nodes' prepared statements, made while the tables were
            // empty, are kept however large the tables grow.
            admin_client(&d.url)
                .await?
                .batch_execute("ANALYZE")
                .await
                .context("ANALYZE after the warm-up")?;
        }
        let (quiet_before, _) = wait_quiet_pids(a.wait_quiet, config.label(), &pids);
        let sampler = match &db {
            Some(d) => Some(WaitSampler::start(&a.database_url, &d.name).await?),
            None => None,
        };
        let helper_list = db.as_ref().map(|d| {
            let (name, sampler) = (
                d.name.clone(),
                sampler.as_ref().map_or(0, |s| s.backend_pid),
            );
            move || procstat::pids_where(|pid, comm, cmd| pg_helper(pid, comm, cmd, &name, sampler))
        });
        let helpers = helper_list
            .as_ref()
            .map(|f| f as &(dyn Fn() -> Vec<u32> + Sync));
        eprintln!(
            "   closed loop {}s, {} connections over {} node(s)",
            a.duration,
            a.concurrency,
            nodes.len()
        );
        let phase = measure_nodes(
            config.label(),
            &targets,
            corpus.clone(),
            &opts(None, Some(a.duration)),
            Some(&verifiers[0]),
            &pids,
            helpers,
            &a.digest,
        )
        .await?;
        let waits = match sampler {
            Some(s) => Some(s.stop().await),
            None => None,
        };
        eprint!("{}", phase.human());

        // Every acknowledged event digested exactly once, seen from every node.
        let expected = phase.baseline.unwrap_or(0) + phase.load.accepted;
        if !phase.digest.as_ref().is_some_and(|d| d.caught_up) {
            failures.push(format!(
                "{} round {round}: digestion did not catch up ({} of {} acknowledged events)",
                config.label(),
                phase.digest.as_ref().map_or(0, |d| d.digested),
                phase.load.accepted
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (n, v) in verifiers.iter().enumerate() {
            match v.count().await {
                Ok((c, _)) if c == expected => {}
                Ok((c, _)) => failures.push(format!(
                    "{} round {round}: node {} counts {c} events, expected {expected} \
                     ({} before the load + {} acknowledged): {} {}",
                    config.label(),
                    n + 1,
                    phase.baseline.unwrap_or(0),
                    phase.load.accepted,
                    c.abs_diff(expected),
                    if c < expected { "missing" } else { "extra" }
                )),
                Err(e) => failures.push(format!(
                    "{} round {round}: node {} issue list: {e:#}",
                    config.label(),
                    n + 1
                )),
            }
        }
        if phase.load.id_mismatches > 0 {
            failures.push(format!(
                "{} round {round}: {} 200 answers without the request's event id",
                config.label(),
                phase.load.id_mismatches
            ));
        }

        let mut graceful = true;
        let mut log_levels = BTreeMap::new();
        let mut log_examples = Vec::new();
        for mut n in nodes {
            let (ok, _, _) = n.proc.stop(Duration::from_secs(30));
            graceful &= ok;
            let (levels, examples, _) = scan_log(&n.log_path);
            for (k, v) in levels {
                *log_levels.entry(k).or_insert(0) += v;
            }
            log_examples.extend(examples);
        }
        drop(db);
        if !a.keep_data {
            for d in &dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        Ok(Outcome {
            config,
            phase,
            quiet_before,
            waits,
            graceful,
            log_levels,
            log_examples,
            failures,
        })
    }
}

fn mib(k: u64) -> String {
    format!("{:.1}", k as f64 / 1024.0)
}

fn cores(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |c| format!("{:.0}%", c * 100.0))
}

/// The busiest non-idle `pg_stat_activity` states, as "state: mean backends".
fn waits_str(w: &Option<(u64, Vec<(String, f64)>)>) -> String {
    match w {
        None => "–".into(),
        Some((n, v)) => {
            let top: Vec<String> = v
                .iter()
                .filter(|(k, m)| {
                    let idle = k == "idle"
                        || (k.starts_with("idle ") && !k.starts_with("idle in transaction"));
                    !idle && *m >= 0.05
                })
                .take(5)
                .map(|(k, m)| format!("{k} {m:.1}"))
                .collect();
            if top.is_empty() {
                format!("none busy ({n} samples)")
            } else {
                top.join(", ")
            }
        }
    }
}

fn ratio(x: f64, y: f64) -> f64 {
    if y > 0.0 { x / y } else { 0.0 }
}

fn round_table(outs: &[Outcome]) -> String {
    let mut md = String::from("| | ");
    md += &outs
        .iter()
        .map(|o| o.config.label())
        .collect::<Vec<_>>()
        .join(" | ");
    md += " |\n|---|";
    md += &"---:|".repeat(outs.len());
    md += "\n";
    let row = |name: &str, f: &dyn Fn(&Outcome) -> String| {
        format!(
            "| {name} | {} |\n",
            outs.iter().map(f).collect::<Vec<_>>().join(" | ")
        )
    };
    md += &row("accepted (200) in the load", &|o| {
        o.phase.load.accepted.to_string()
    });
    md += &row("accepted events/s (load)", &|o| {
        format!("{:.0}", o.phase.load.accepted_per_s())
    });
    md += &row("digestion caught up after the load (s)", &|o| {
        o.phase
            .digest_after_load_s
            .map_or("**did not**".into(), |s| format!("{s:.1}"))
    });
    md += &row(
        "**digested events/s** (first request → all digested)",
        &|o| format!("**{:.0}**", o.rate()),
    );
    md += &row("latency p50 / p99 (ms)", &|o| {
        format!("{:.1} / {:.1}", o.phase.load.ms(0.5), o.phase.load.ms(0.99))
    });
    let per = |s: Option<f64>, o: &Outcome| cores(s.map(|c| c / o.phase.total_s));
    md += &row("Faultline CPU, load + digestion (all nodes)", &|o| {
        per(o.phase.server_cpu_total_s, o)
    });
    md += &row("PostgreSQL CPU, load + digestion", &|o| {
        per(o.phase.helper_cpu_total_s, o)
    });
    md += &row("other processes' CPU during the load", &|o| {
        cores(o.phase.other_cores_load)
    });
    md += &row("other processes' CPU, load + digestion", &|o| {
        cores(o.phase.other_cores_total)
    });
    md += &row("peak RSS per node (MiB)", &|o| {
        o.phase
            .node_peak_rss_kib
            .iter()
            .map(|&k| mib(k))
            .collect::<Vec<_>>()
            .join(" + ")
    });
    md += &row("PostgreSQL backends busy (mean per sample)", &|o| {
        waits_str(&o.waits)
    });
    md
}

pub async fn run(a: ClusterArgs) -> anyhow::Result<()> {
    let faultline = a.faultline.canonicalize().with_context(|| {
        format!(
            "faultline binary not found at {} (cargo build --release first)",
            a.faultline.display()
        )
    })?;
    ensure!(a.rounds > 0, "--rounds must be at least 1");
    let started = chrono_now();
    // Fail early (before any run) when PostgreSQL cannot be reached.
    let version: String = admin_client(&a.database_url)
        .await?
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    let autovacuum: String = admin_client(&a.database_url)
        .await?
        .query_one("SHOW autovacuum", &[])
        .await?
        .get(0);
    eprintln!(
        "== PostgreSQL {version} at {} (autovacuum {autovacuum})",
        a.database_url
    );
    let corpus = build_corpus(
        "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/1",
        &a.corpus,
    )?;
    let root = crate::fresh_temp_dir("cluster")?;
    let run = Run {
        a: &a,
        faultline: &faultline,
        root: &root,
        corpus: &corpus,
    };
    let mut rounds: Vec<Vec<Outcome>> = Vec::new();
    for round in 1..=a.rounds {
        let mut outs = Vec::new();
        for config in Config::ALL {
            outs.push(run.measure(config, round).await?);
        }
        rounds.push(outs);
    }
    if !a.keep_data {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        eprintln!("data dirs kept under {}", root.display());
    }

    let rate =
        |r: &[Outcome], c: Config| r.iter().find(|o| o.config == c).map_or(0.0, Outcome::rate);
    let sum = |c: Config| rounds.iter().map(|r| rate(r, c)).sum::<f64>();
    let (sqlite, pg1, pg2) = (sum(Config::Sqlite), sum(Config::Pg1), sum(Config::Pg2));
    let n = rounds.len() as f64;
    let (gz, raw) = corpus.mean_sizes();
    let mut md = format!(
        "\n## PostgreSQL cluster digest throughput (`cluster`), {started}\n\n\
         {} cores, load generator, nodes and PostgreSQL {version} (autovacuum {autovacuum}) on \
         the same machine. Closed loop, {} connections (split evenly between the nodes), {} s per \
         run, {} groups, mean body {gz:.0} B gzip / {raw:.0} B; each run starts from scratch \
         (fresh data dirs, a fresh PostgreSQL database) and a warm-up of {} events{}; each round \
         runs SQLite, PostgreSQL with one node, then two nodes on the same database.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        a.concurrency,
        a.duration,
        a.corpus.groups,
        a.warmup,
        if a.no_analyze {
            ", no ANALYZE after it"
        } else {
            ", then ANALYZE of the PostgreSQL database"
        },
    );
    for (i, r) in rounds.iter().enumerate() {
        md += &format!("\nRound {}:\n\n{}", i + 1, round_table(r));
    }
    md += "\n| round | SQLite digested/s | PG 1 node digested/s | PG 2 nodes digested/s | PG 1 node ÷ SQLite | PG 2 nodes ÷ PG 1 node |\n\
           |---|---:|---:|---:|---:|---:|\n";
    for (i, r) in rounds.iter().enumerate() {
        let (s, p1, p2) = (
            rate(r, Config::Sqlite),
            rate(r, Config::Pg1),
            rate(r, Config::Pg2),
        );
        md += &format!(
            "| {} | {s:.0} | {p1:.0} | {p2:.0} | {:.2} | {:.2} |\n",
            i + 1,
            ratio(p1, s),
            ratio(p2, p1)
        );
    }
    let pg2_ratio = ratio(pg2, pg1);
    md += &format!(
        "| mean | {:.0} | {:.0} | {:.0} | {:.2} | **{pg2_ratio:.2}** |\n\n\
         Requirement: two nodes ≥ 0.8 × one node's digested/s (the second node costs little): \
         **{}**.\n",
        sqlite / n,
        pg1 / n,
        pg2 / n,
        ratio(pg1, sqlite),
        if pg2_ratio >= 0.8 { "met" } else { "NOT met" }
    );
    let all: Vec<&Outcome> = rounds.iter().flatten().collect();
    let graceful = all.iter().all(|o| o.graceful);
    let mut levels: BTreeMap<String, u64> = BTreeMap::new();
    for o in &all {
        for (k, v) in &o.log_levels {
            *levels.entry(k.clone()).or_insert(0) += v;
        }
    }
    md += &format!("Graceful stops: {graceful}; server log lines by level: {levels:?}.\n");
    let mut seen = std::collections::HashSet::new();
    for e in all.iter().flat_map(|o| &o.log_examples).take(8) {
        if seen.insert(e) {
            md += &format!("    {e}\n");
        }
    }
    let failures: Vec<&String> = all.iter().flat_map(|o| &o.failures).collect();
    for f in &failures {
        md += &format!("- **FAILED**: {f}\n");
    }
    for o in &all {
        if o.phase.other_cores_load.is_some_and(|c| c > 0.15) {
            md += &format!(
                "- {}: other processes used {} of a core during the load (disturbed)\n",
                o.config.label(),
                cores(o.phase.other_cores_load)
            );
        }
    }
    println!("{md}");

    let outcome_json = |o: &Outcome| -> Value {
        let p = &o.phase;
        let mut j = p.json();
        j["config"] = json!(o.config.key());
        j["nodes"] = json!(o.config.nodes());
        j["node_peak_rss_mib"] = json!(
            p.node_peak_rss_kib
                .iter()
                .map(|&k| round1(k as f64 / 1024.0))
                .collect::<Vec<_>>()
        );
        j["faultline_cores_total"] = json!(p.server_cpu_total_s.map(|c| round2(c / p.total_s)));
        j["postgres_cores_total"] = json!(p.helper_cpu_total_s.map(|c| round2(c / p.total_s)));
        j["other_cores_load"] = json!(p.other_cores_load.map(round2));
        j["other_cores_total"] = json!(p.other_cores_total.map(round2));
        j["other_cores_before"] = json!(round2(o.quiet_before));
        j["pg_busy_backends"] = json!(o.waits.as_ref().map(|(n, v)| json!({
            "samples": n,
            "mean": v.iter().map(|(k, m)| (k.clone(), json!(round2(*m)))).collect::<serde_json::Map<_, _>>(),
        })));
        j["failures"] = json!(o.failures);
        j
    };
    let j = json!({
        "bench": "cluster",
        "started": started,
        "postgres_version": version,
        "postgres_autovacuum": autovacuum,
        "analyze_after_warmup": !a.no_analyze,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "concurrency": a.concurrency,
        "duration_s": a.duration,
        "warmup": a.warmup,
        "groups": a.corpus.groups,
        "rounds": rounds.iter().map(|r| {
            r.iter().map(|o| (o.config.key().to_string(), outcome_json(o))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "mean_digested_per_s": {
            "sqlite": round1(sqlite / n), "pg_1_node": round1(pg1 / n), "pg_2_nodes": round1(pg2 / n),
        },
        "ratio_pg1_sqlite": round2(ratio(pg1, sqlite)),
        "ratio_pg2_pg1": round2(pg2_ratio),
        "requirement_pg2_pg1_ge_0_8": pg2_ratio >= 0.8,
        "failures": failures,
    });
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    if !failures.is_empty() {
        bail!(
            "{} acknowledged-event check(s) failed: {}",
            failures.len(),
            failures
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}
