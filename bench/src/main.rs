//! faultline-bench: ingest benchmark for Faultline (or any Sentry-compatible server on loopback).
//!
//!     faultline-bench --dsn http://KEY@127.0.0.1:PORT/ID --duration 20 [--rate 2000] \
//!         [--verify-url URL --token T] [--pid PID]
//!     faultline-bench null-server --listen 127.0.0.1:9999
//!     faultline-bench run-all --faultline target/release/faultline
//!     faultline-bench sample          # body sizes and one decompressed envelope
//!     faultline-bench ui --faultline target/release/faultline [--issues 10000 --events 1000000]
//!     faultline-bench alerts --faultline target/release/faultline [--new-issues 1000]
//!     faultline-bench sourcemaps --faultline target/release/faultline [--duration 15]
//!     faultline-bench cluster --faultline target/release/faultline [--database-url postgres://…]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod alerts;
mod cluster;
mod content;
mod load;
mod null_server;
mod procstat;
mod runall;
mod sourcemaps;
mod ui;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use content::{Corpus, Events};
use load::{LoadOpts, LoadResult, Target};
use verify::{Digest, Verifier};

#[derive(Parser)]
#[command(
    name = "faultline-bench",
    version,
    about = "Ingest benchmark for Faultline",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send load to a DSN (the default when no subcommand is given).
    Load(LoadArgs),
    /// Minimal HTTP server answering 200 {"id":"…"} after reading the body: the ceiling.
    NullServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Null-server ceiling, then Faultline: idle RSS, max throughput, fixed rate; one report.
    RunAll(runall::RunAllArgs),
    /// Prints body sizes and one decompressed envelope; checks every body decompresses to a valid envelope.
    Sample(CorpusArgs),
    /// Web UI page speed: fills Faultline with N issues / M events, then measures the issue
    /// list, issue page and home page (Server-Timing and client latency) against a nearly-empty
    /// baseline.
    Ui(ui::UiArgs),
    /// Alert latency: SDK acknowledgement → webhook arrival for new issues under background load.
    Alerts(alerts::AlertsArgs),
    /// Digest throughput of minified browser events resolved with an uploaded source map,
    /// against the same events in a project without maps.
    Sourcemaps(sourcemaps::SourcemapsArgs),
    /// Digest throughput on PostgreSQL with one node and with two nodes on the same database,
    /// against SQLite, in alternating rounds.
    Cluster(cluster::ClusterArgs),
}

#[derive(Args, Clone, Debug)]
pub struct CorpusArgs {
    /// Distinct issues the events fall into.
    #[arg(long, default_value_t = 50)]
    pub groups: usize,
    /// Pre-rendered, pre-compressed event bodies (cycled; each request still gets a unique event_id).
    #[arg(long, default_value_t = 2000)]
    pub variants: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Which events: this bench's large ones (~6.2 KB gzip, ~18.5 KB JSON) or ones shaped and
    /// sized like shared/bench/loadgen.py's (~2 KB gzip, ~8 KB JSON).
    #[arg(long, value_enum, default_value_t = Events::Large)]
    pub event_size: Events,
}

#[derive(Args, Clone, Debug)]
struct LoadArgs {
    /// http://KEY@127.0.0.1:PORT/PROJECT_ID (loopback only)
    #[arg(long)]
    dsn: Option<String>,
    /// Open loop at this many requests/s (latency); without it: closed loop, max throughput.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load.
    #[arg(long)]
    duration: Option<f64>,
    /// Number of requests (with --duration: whichever comes first).
    #[arg(long)]
    events: Option<u64>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Issue list URL to count processed events (sum of `count`), e.g.
    /// http://127.0.0.1:PORT/api/0/projects/ORG/PROJECT/issues/?query=&limit=100&statsPeriod=
    #[arg(long)]
    verify_url: Option<String>,
    /// API token for --verify-url (Authorization: Bearer).
    #[arg(long)]
    token: Option<String>,
    /// Shell command printing the server's processed-event count (instead of --verify-url).
    #[arg(long)]
    verify_cmd: Option<String>,
    #[command(flatten)]
    digest: DigestArgs,
    /// Server PID: samples VmRSS every 100 ms (idle before, peak during) and its CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// Do not check that 200 answers carry the request's event id.
    #[arg(long)]
    no_check_ids: bool,
    /// Progress line every N seconds (0 = off).
    #[arg(long, default_value_t = 5.0)]
    progress: f64,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct DigestArgs {
    /// Poll interval for the digested count, ms.
    #[arg(long, default_value_t = 200)]
    pub verify_interval_ms: u64,
    /// Stop waiting when the digested count has not grown for this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub verify_idle: f64,
    /// Stop waiting this many seconds after the load ended.
    #[arg(long, default_value_t = 900.0)]
    pub verify_timeout: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Some(Cmd::NullServer { listen }) => rt.block_on(null_server::serve(&listen)),
        Some(Cmd::RunAll(a)) => rt.block_on(runall::run(a)),
        Some(Cmd::Sample(c)) => sample(&c),
        Some(Cmd::Ui(a)) => rt.block_on(ui::run(a)),
        Some(Cmd::Alerts(a)) => rt.block_on(alerts::run(a)),
        Some(Cmd::Sourcemaps(a)) => rt.block_on(sourcemaps::run(a)),
        Some(Cmd::Cluster(a)) => rt.block_on(cluster::run(a)),
        Some(Cmd::Load(l)) => rt.block_on(load_cmd(l)),
        None => rt.block_on(load_cmd(cli.load)),
    }
}

fn sample(c: &CorpusArgs) -> anyhow::Result<()> {
    let t = Instant::now();
    let corpus = Corpus::build(
        "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/1",
        c.event_size,
        c.groups,
        c.variants,
        c.seed,
    );
    let built = t.elapsed();
    corpus.verify_all()?;
    let (gz, raw) = corpus.mean_sizes();
    println!("{}", corpus.sample(0));
    eprintln!(
        "{} bodies over {} groups built in {:.2}s, all decompress (one gzip member each) to valid envelopes; \
         mean body {gz:.0} B gzip, {raw:.0} B uncompressed",
        corpus.variants.len(),
        c.groups,
        built.as_secs_f64()
    );
    Ok(())
}

pub fn build_corpus(dsn: &str, c: &CorpusArgs) -> anyhow::Result<Arc<Corpus>> {
    let t = Instant::now();
    let corpus = Corpus::build(dsn, c.event_size, c.groups, c.variants, c.seed);
    corpus
        .verify_all()
        .context("pre-rendered bodies do not decompress to valid envelopes")?;
    let (gz, raw) = corpus.mean_sizes();
    eprintln!(
        "built {} bodies ({} groups) in {:.2}s, verified; mean body {gz:.0} B gzip / {raw:.0} B uncompressed",
        corpus.variants.len(),
        c.groups,
        t.elapsed().as_secs_f64()
    );
    Ok(Arc::new(corpus))
}

async fn load_cmd(a: LoadArgs) -> anyhow::Result<()> {
    let dsn = a.dsn.clone().context("--dsn is required")?;
    let target = Target::from_dsn(&dsn)?;
    let verifier = match (&a.verify_url, &a.token, &a.verify_cmd) {
        (Some(u), Some(t), None) => Some(Verifier::Url {
            url: u.clone(),
            token: t.clone(),
        }),
        (Some(_), None, _) => bail!("--verify-url needs --token"),
        (None, _, Some(c)) => Some(Verifier::Cmd(c.clone())),
        (Some(_), _, Some(_)) => bail!("give --verify-url or --verify-cmd, not both"),
        (None, _, None) => None,
    };
    let corpus = build_corpus(&dsn, &a.corpus)?;
    let opts = LoadOpts {
        concurrency: a.concurrency,
        rate: a.rate,
        duration: a.duration.map(Duration::from_secs_f64),
        events: a.events,
        timeout: Duration::from_secs_f64(a.timeout),
        progress: Duration::from_secs_f64(a.progress),
        check_ids: !a.no_check_ids,
        first_index: 0,
    };
    let label = match a.rate {
        Some(r) => format!("rate {r}/s"),
        None => "max throughput".into(),
    };
    eprintln!(
        "target {} {}  concurrency {}  {label}",
        target.addr, target.path, a.concurrency
    );
    let idle = a.pid.and_then(procstat::rss_kib).map(|r| r.0);
    let phase = measure(
        &label,
        &target,
        corpus.clone(),
        &opts,
        verifier.as_ref(),
        a.pid,
        &a.digest,
    )
    .await?;
    print!("{}", phase.human());
    let mut j = phase.json();
    let (gz, raw) = corpus.mean_sizes();
    j["mean_body_gzip_bytes"] = json!(gz.round());
    j["mean_body_uncompressed_bytes"] = json!(raw.round());
    j["groups"] = json!(a.corpus.groups);
    j["concurrency"] = json!(a.concurrency);
    if let Some(i) = idle {
        j["idle_rss_mib"] = json!(round1(i as f64 / 1024.0));
    }
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    Ok(())
}

/// One measured run: load, then (optionally) the wait until the server digested what it accepted.
pub struct Phase {
    pub label: String,
    pub opts: LoadOpts,
    pub load: LoadResult,
    pub baseline: Option<u64>,
    pub digest: Option<Digest>,
    pub digest_after_load_s: Option<f64>,
    pub digested_per_s: Option<f64>,
    /// Peak sampled VmRSS of the server (summed over the nodes when there are several).
    pub peak_rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
    /// Peak sampled VmRSS of each node, in the order of the pids given to [`measure_nodes`].
    pub node_peak_rss_kib: Vec<u64>,
    /// CPU seconds of the server (all nodes).
    pub server_cpu_load_s: Option<f64>,
    pub server_cpu_total_s: Option<f64>,
    /// CPU seconds of the helper processes (see [`measure_nodes`]) during the load, and during
    /// load + digestion.
    pub helper_cpu_load_s: Option<f64>,
    pub helper_cpu_total_s: Option<f64>,
    pub total_s: f64,
    /// CPU (cores, averaged over the load) used by user processes other than the server, its
    /// helpers and this client: other work on the machine that disturbs the measurement.
    pub other_cores_load: Option<f64>,
    /// The same over load + digestion.
    pub other_cores_total: Option<f64>,
    /// CPU (cores) of the kernel not charged to the server or client: irq/softirq (loopback TCP)
    /// and kernel threads (ksoftirqd, writeback).
    pub kernel_cores_load: Option<f64>,
}

pub async fn measure(
    label: &str,
    target: &Target,
    corpus: Arc<Corpus>,
    opts: &LoadOpts,
    verifier: Option<&Verifier>,
    pid: Option<u32>,
    d: &DigestArgs,
) -> anyhow::Result<Phase> {
    let targets = std::slice::from_ref(target);
    measure_nodes(
        label,
        targets,
        corpus,
        opts,
        verifier,
        pid.as_slice(),
        None,
        d,
    )
    .await
}

/// Lists the processes that serve the server under test without being it (the PostgreSQL
/// backends of its database): their CPU is the system's, not noise.
pub type Helpers<'a> = &'a (dyn Fn() -> Vec<u32> + Sync);

/// Other processes' CPU (cores) over `wall_s`: the machine's task time between `m0` and `m1`
/// less kernel threads, the server, its helpers and this client.
fn other_cores(
    m0: Option<procstat::MachineCpu>,
    m1: Option<procstat::MachineCpu>,
    known_s: f64,
    wall_s: f64,
) -> Option<f64> {
    m0.zip(m1).map(|(a, b)| {
        let kthreads = b.kthreads_s - a.kthreads_s;
        ((b.tasks_s - a.tasks_s - kthreads - known_s) / wall_s).max(0.0)
    })
}

/// [`measure`] for a server of several nodes (`pids`), the load split between `targets`; CPU
/// and RSS are sampled for every node, CPU also for the `helpers` (listed at the start and the
/// end: a helper born during the load counts from zero).
#[allow(clippy::too_many_arguments)]
pub async fn measure_nodes(
    label: &str,
    targets: &[Target],
    corpus: Arc<Corpus>,
    opts: &LoadOpts,
    verifier: Option<&Verifier>,
    pids: &[u32],
    helpers: Option<Helpers<'_>>,
    d: &DigestArgs,
) -> anyhow::Result<Phase> {
    let baseline = match verifier {
        Some(v) => Some(v.count().await.context("verify before the load")?.0),
        None => None,
    };
    let servers_cpu = || -> Option<f64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| procstat::cpu_s(p)).sum()
    };
    let helpers_cpu = |since: &HashMap<u32, f64>| -> Option<f64> {
        let h = helpers?;
        let now = procstat::cpu_of(&h());
        Some(
            now.iter()
                .map(|(p, c)| c - since.get(p).copied().unwrap_or(0.0))
                .sum(),
        )
    };
    let samplers: Vec<procstat::RssSampler> = pids
        .iter()
        .map(|&p| procstat::RssSampler::start(p))
        .collect();
    let cpu0 = servers_cpu();
    let helpers0 = helpers.map(|h| procstat::cpu_of(&h())).unwrap_or_default();
    let machine0 = procstat::machine_cpu();
    let start = Instant::now();
    let load = load::run_split(targets, corpus, opts).await?;
    let load_end = Instant::now();
    let cpu_load = servers_cpu();
    let helper_load = helpers_cpu(&helpers0);
    let machine1 = procstat::machine_cpu();
    let wall_s = load.wall.as_secs_f64();
    let server = cpu0.zip(cpu_load).map(|(x, y)| y - x).unwrap_or(0.0);
    let other_cores_load = other_cores(
        machine0,
        machine1,
        server + helper_load.unwrap_or(0.0) + load.client_cpu_s,
        wall_s,
    );
    let kernel_cores_load = machine0
        .zip(machine1)
        .map(|(a, b)| (b.irq_s - a.irq_s + b.kthreads_s - a.kthreads_s) / wall_s);
    let client_cpu0 = crate::load::cpu_self_s();
    let digest = match verifier {
        Some(v) => Some(
            verify::wait(
                v,
                baseline.unwrap_or(0),
                load.accepted,
                load_end,
                Duration::from_millis(d.verify_interval_ms),
                Duration::from_secs_f64(d.verify_idle),
                Duration::from_secs_f64(d.verify_timeout),
            )
            .await,
        ),
        None => None,
    };
    let end = Instant::now();
    let cpu_end = servers_cpu();
    let helper_end = helpers_cpu(&helpers0);
    let machine2 = procstat::machine_cpu();
    let total_s = (end - start).as_secs_f64();
    let other_cores_total = other_cores(
        machine0,
        machine2,
        cpu0.zip(cpu_end).map(|(a, b)| b - a).unwrap_or(0.0)
            + helper_end.unwrap_or(0.0)
            + load.client_cpu_s
            + (crate::load::cpu_self_s() - client_cpu0),
        total_s,
    );
    let stopped: Vec<(u64, u64)> = samplers.into_iter().map(|s| s.stop()).collect();
    let (peak, hwm) = if stopped.is_empty() {
        (None, None)
    } else {
        (
            Some(stopped.iter().map(|s| s.0).sum()),
            Some(stopped.iter().map(|s| s.1).sum()),
        )
    };
    let digest_after_load_s = digest
        .as_ref()
        .filter(|g| g.caught_up)
        .map(|g| (g.done_at - load_end).as_secs_f64());
    let digested_per_s = digest
        .as_ref()
        .map(|g| g.digested as f64 / (g.done_at.max(load_end) - start).as_secs_f64().max(1e-9));
    Ok(Phase {
        label: label.to_string(),
        opts: opts.clone(),
        load,
        baseline,
        digest,
        digest_after_load_s,
        digested_per_s,
        peak_rss_kib: peak,
        hwm_kib: hwm,
        node_peak_rss_kib: stopped.iter().map(|s| s.0).collect(),
        server_cpu_load_s: cpu0.zip(cpu_load).map(|(a, b)| b - a),
        server_cpu_total_s: cpu0.zip(cpu_end).map(|(a, b)| b - a),
        helper_cpu_load_s: helper_load,
        helper_cpu_total_s: helper_end,
        total_s,
        other_cores_load,
        other_cores_total,
        kernel_cores_load,
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Phase {
    pub fn statuses_str(&self) -> String {
        if self.load.statuses.is_empty() {
            return "none".into();
        }
        self.load
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn errors_str(&self) -> String {
        if self.load.errors.is_empty() {
            return "0".into();
        }
        self.load
            .errors
            .iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn human(&self) -> String {
        let l = &self.load;
        let mut s = format!(
            "{}: {} sent in {:.2}s, {} accepted (200) = {:.0}/s; statuses {}; transport errors {}\n  \
             latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; client CPU {:.0}%\n",
            self.label,
            l.sent,
            l.wall.as_secs_f64(),
            l.accepted,
            l.accepted_per_s(),
            self.statuses_str(),
            self.errors_str(),
            l.ms(0.5),
            l.ms(0.9),
            l.ms(0.99),
            l.max_ms(),
            100.0 * l.client_cpu_s / l.wall.as_secs_f64()
        );
        if let Some(o) = self.other_cores_load {
            s += &format!(
                "  kernel (irq/softirq, kernel threads) {:.0}% CPU; other processes on the machine {:.0}% CPU during the load{}\n",
                100.0 * self.kernel_cores_load.unwrap_or(0.0),
                100.0 * o,
                if o > 0.15 {
                    " (NOISY: results disturbed)"
                } else {
                    ""
                }
            );
        }
        for (k, b) in &l.error_bodies {
            s += &format!("  first {k} body: {b}\n");
        }
        if l.unsent > 0 {
            s += &format!(
                "  {} scheduled requests NOT sent: the server fell behind the rate\n",
                l.unsent
            );
        }
        if l.id_mismatches > 0 {
            s += &format!(
                "  {} 200 answers without the request's event id\n",
                l.id_mismatches
            );
        }
        if let Some(g) = &self.digest {
            s += &format!(
                "  digested {}/{} ({}), {:.0}/s over load start → digestion done{}\n",
                g.digested,
                l.accepted,
                match self.digest_after_load_s {
                    Some(t) => format!("caught up {t:.2}s after the load"),
                    None => "did NOT catch up".into(),
                },
                self.digested_per_s.unwrap_or(f64::NAN),
                g.issues
                    .map(|i| format!("; {i} issues"))
                    .unwrap_or_default(),
            );
            for e in &g.errors {
                s += &format!("  verify error: {e}\n");
            }
        }
        if let Some(p) = self.peak_rss_kib {
            s += &format!(
                "  server peak RSS {:.1} MiB (VmHWM {:.1} MiB), server CPU {:.0}% during load, {:.0}% load+digestion\n",
                p as f64 / 1024.0,
                self.hwm_kib.unwrap_or(0) as f64 / 1024.0,
                100.0 * self.server_cpu_load_s.unwrap_or(f64::NAN) / l.wall.as_secs_f64(),
                100.0 * self.server_cpu_total_s.unwrap_or(f64::NAN) / self.total_s,
            );
        }
        s
    }

    pub fn json(&self) -> Value {
        let l = &self.load;
        let mut j = json!({
            "label": self.label,
            "mode": if self.opts.rate.is_some() { "open-loop" } else { "closed-loop" },
            "rate": self.opts.rate,
            "concurrency": self.opts.concurrency,
            "wall_s": round2(l.wall.as_secs_f64()),
            "sent": l.sent,
            "accepted": l.accepted,
            "accepted_per_s": round1(l.accepted_per_s()),
            "statuses": l.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "transport_errors": l.errors,
            "non200_example_bodies": l.error_bodies.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "ok_without_event_id": l.id_mismatches,
            "connects": l.connects,
            "unsent_open_loop": l.unsent,
            "bytes_sent": l.bytes_sent,
            "latency_ms": {"p50": round2(l.ms(0.5)), "p90": round2(l.ms(0.9)), "p99": round2(l.ms(0.99)), "max": round2(l.max_ms())},
            "client_cpu_pct": round1(100.0 * l.client_cpu_s / l.wall.as_secs_f64()),
            "other_processes_cpu_pct": self.other_cores_load.map(|o| round1(100.0 * o)),
            "kernel_irq_kthreads_cpu_pct": self.kernel_cores_load.map(|o| round1(100.0 * o)),
        });
        if let Some(g) = &self.digest {
            j["baseline_count"] = json!(self.baseline);
            j["digested"] = json!(g.digested);
            j["digest_caught_up"] = json!(g.caught_up);
            j["digest_done_after_load_s"] = json!(self.digest_after_load_s.map(round2));
            j["digested_per_s"] = json!(self.digested_per_s.map(round1));
            j["issues"] = json!(g.issues);
            j["verify_errors"] = json!(g.errors);
        }
        if let Some(p) = self.peak_rss_kib {
            j["peak_rss_mib"] = json!(round1(p as f64 / 1024.0));
            j["vmhwm_mib"] = json!(round1(self.hwm_kib.unwrap_or(0) as f64 / 1024.0));
            j["server_cpu_pct_load"] = json!(
                self.server_cpu_load_s
                    .map(|c| round1(100.0 * c / l.wall.as_secs_f64()))
            );
            j["server_cpu_pct_load_and_digest"] = json!(
                self.server_cpu_total_s
                    .map(|c| round1(100.0 * c / self.total_s))
            );
        }
        j
    }
}

/// Prints a run's JSON result line on stdout and appends it to `out` when given.
pub fn emit_json_line(j: &serde_json::Value, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let line = serde_json::to_string(j)?;
    println!("{line}");
    if let Some(p) = out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// A path under the system's temporary directory for one run, unique to this process and time:
/// `faultline-bench-LABEL-PID-MILLIS` (not created).
pub fn fresh_temp_dir(label: &str) -> anyhow::Result<std::path::PathBuf> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    Ok(std::env::temp_dir().join(format!(
        "faultline-bench-{label}-{}-{millis}",
        std::process::id()
    )))
}
