//! `run-all`: the whole benchmark in one run.
//!
//! 1. null server (this binary, `null-server`, separate process): closed-loop max throughput = the
//!    ceiling of this client + HTTP on this machine;
//! 2. `faultline serve` on a fresh data dir; project, superuser and token through its CLI; idle RSS;
//! 3. closed-loop max throughput (accepted/s, digested/s, latency, peak RSS);
//! 4. open loop at a fixed rate (latency);
//! 5. a markdown report and one JSON line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::load::{LoadOpts, Target};
use crate::verify::Verifier;
use crate::{CorpusArgs, DigestArgs, Phase, build_corpus, measure, procstat, round1, round2};

#[derive(Args, Clone, Debug)]
pub struct RunAllArgs {
    /// Path of the faultline binary (build it first: cargo build --release).
    #[arg(long, default_value = "target/release/faultline")]
    faultline: PathBuf,
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of max-throughput load against the null server.
    #[arg(long, default_value_t = 10.0)]
    null_duration: f64,
    /// Seconds of max-throughput load against Faultline.
    #[arg(long, default_value_t = 20.0)]
    max_duration: f64,
    /// Fixed rate (requests/s) of the latency run.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of the fixed-rate run.
    #[arg(long, default_value_t = 15.0)]
    rate_duration: f64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    digest: DigestArgs,
    /// Data directory for Faultline (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data directory (and the server log in it).
    #[arg(long)]
    keep_data: bool,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Before each run, wait up to this many seconds for the machine to be quiet (other
    /// processes using < 15% of a core over 2 s); 0 = don't wait.
    #[arg(long, default_value_t = 120.0)]
    wait_quiet: f64,
}

/// Waits until the machine is quiet (see `--wait-quiet`): CPU used by processes other than the
/// server (`pid`) and this client. Returns (other busy cores last measured, server cores then).
pub(crate) fn wait_quiet(max: f64, what: &str, pid: Option<u32>) -> (f64, f64) {
    wait_quiet_pids(max, what, pid.as_slice())
}

/// [`wait_quiet`] for a server of several processes (`pids`: the nodes).
pub(crate) fn wait_quiet_pids(max: f64, what: &str, pids: &[u32]) -> (f64, f64) {
    let t = Instant::now();
    let mut warned = false;
    let servers = || -> f64 { pids.iter().filter_map(|&p| procstat::cpu_s(p)).sum() };
    loop {
        let m0 = procstat::machine_busy_s().unwrap_or(0.0);
        let s0 = servers();
        let c0 = crate::load::cpu_self_s();
        std::thread::sleep(Duration::from_secs(2));
        let server = (servers() - s0) / 2.0;
        let me = (crate::load::cpu_self_s() - c0) / 2.0;
        let busy = ((procstat::machine_busy_s().unwrap_or(0.0) - m0) / 2.0 - server - me).max(0.0);
        if busy < 0.15 || t.elapsed().as_secs_f64() >= max {
            if busy >= 0.15 && max > 0.0 {
                eprintln!(
                    "   machine still busy ({:.0}% CPU used by others) after {max}s: running {what} anyway",
                    busy * 100.0
                );
            }
            if server > 0.05 {
                eprintln!(
                    "   note: the server itself used {:.0}% CPU while idle before {what}",
                    server * 100.0
                );
            }
            return (busy, server);
        }
        if !warned {
            eprintln!(
                "   machine busy ({:.0}% CPU by other processes, load avg {}): waiting up to {max}s before {what}",
                busy * 100.0,
                procstat::loadavg()
            );
            warned = true;
        }
    }
}

/// A child process killed on drop (SIGTERM first, then SIGKILL).
pub(crate) struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns (exited by itself, seconds, exit status).
    pub(crate) fn stop(&mut self, grace: Duration) -> (bool, f64, String) {
        let t = Instant::now();
        if let Ok(Some(st)) = self.child.try_wait() {
            return (true, 0.0, format!("already exited: {st}"));
        }
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while t.elapsed() < grace {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (true, t.elapsed().as_secs_f64(), st.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let st = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        (false, t.elapsed().as_secs_f64(), st)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("stopping {}", self.name);
            self.stop(Duration::from_secs(10));
        }
    }
}

pub(crate) type Lines = Arc<Mutex<Vec<String>>>;

/// Spawns `cmd` (stdout piped), waits for a stdout line containing `marker` followed by a URL
/// (`http://…`), keeps draining stdout into `lines`.
fn spawn_listening(
    mut cmd: Command,
    name: &str,
    marker: &str,
    timeout: Duration,
) -> anyhow::Result<(Proc, String, Lines)> {
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().unwrap();
    let mut proc = Proc {
        child,
        name: name.to_string(),
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let l2 = lines.clone();
    let m = marker.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent
                && line.contains(&m)
                && let Some(i) = line.find("http://")
            {
                let url = line[i..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(url);
                sent = true;
            }
            l2.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(url) => Ok((proc, url, lines)),
        Err(_) => {
            let (_, _, st) = proc.stop(Duration::from_secs(2));
            bail!(
                "{name} did not print '{marker} http://…' within {timeout:?} ({st}); stdout: {:?}",
                lines.lock().unwrap()
            )
        }
    }
}

/// A running `faultline serve`.
pub(crate) struct Server {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub stdout: Lines,
    pub startup_s: f64,
    pub log_path: PathBuf,
}

/// The superuser every bench data dir gets (see [`setup_bench_project`]).
pub(crate) const BENCH_EMAIL: &str = "bench@example.com";
pub(crate) const BENCH_PASSWORD: &str = "benchpass123";

/// Starts `faultline serve --listen 127.0.0.1:0 --data-dir DIR` (creating DIR), its stderr in
/// `DIR/server-stderr.log`, and waits until it prints the address it listens on.
pub(crate) fn start_faultline(faultline: &Path, data_dir: &Path) -> anyhow::Result<Server> {
    start_faultline_with(faultline, data_dir, &[])
}

/// [`start_faultline`] with extra `serve` arguments (e.g. `--allow-private-webhooks`).
pub(crate) fn start_faultline_with(
    faultline: &Path,
    data_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(data_dir)?;
    let data = data_dir.to_str().context("data dir path is not UTF-8")?;
    let log_path = data_dir.join("server-stderr.log");
    eprintln!(
        "== faultline: {} serve, data dir {data}, log {}",
        faultline.display(),
        log_path.display()
    );
    let mut c = Command::new(faultline);
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .args(extra)
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&log_path)?);
    let t_spawn = Instant::now();
    let (proc, base, stdout) = spawn_listening(
        c,
        "faultline serve",
        "Faultline listening on",
        Duration::from_secs(60),
    )?;
    Ok(Server {
        proc,
        base,
        stdout,
        startup_s: t_spawn.elapsed().as_secs_f64(),
        log_path,
    })
}

/// With the CLI: project `bench/bench`, superuser [`BENCH_EMAIL`] and an API token for it.
/// Returns (DSN, token).
pub(crate) fn setup_bench_project(
    faultline: &Path,
    data_dir: &Path,
    base: &str,
) -> anyhow::Result<(String, String)> {
    setup_bench_project_env(faultline, data_dir, base, &[])
}

/// [`setup_bench_project`] with environment for the CLI (e.g. `FAULTLINE_DATABASE_URL`).
pub(crate) fn setup_bench_project_env(
    faultline: &Path,
    data_dir: &Path,
    base: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(String, String)> {
    let data = data_dir.to_str().context("data dir path is not UTF-8")?;
    let dsn = cli(
        faultline,
        &[
            "project",
            "create",
            "bench/bench",
            "--data-dir",
            data,
            "--public-url",
            base,
        ],
        env,
    )?;
    let mut user_env = env.to_vec();
    user_env.push(("FAULTLINE_PASSWORD", BENCH_PASSWORD));
    cli(
        faultline,
        &[
            "user",
            "create",
            "--email",
            BENCH_EMAIL,
            "--superuser",
            "--data-dir",
            data,
        ],
        &user_env,
    )?;
    let token = bench_token_env(faultline, data_dir, env)?;
    if !dsn.starts_with("http://") {
        bail!("unexpected output from the faultline CLI: DSN {dsn:?}");
    }
    Ok((dsn, token))
}

/// A new API token for [`BENCH_EMAIL`].
pub(crate) fn bench_token(faultline: &Path, data_dir: &Path) -> anyhow::Result<String> {
    bench_token_env(faultline, data_dir, &[])
}

/// [`bench_token`] with environment for the CLI.
fn bench_token_env(
    faultline: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let data = data_dir.to_str().context("data dir path is not UTF-8")?;
    let token = cli(
        faultline,
        &[
            "token",
            "create",
            "--email",
            BENCH_EMAIL,
            "--data-dir",
            data,
        ],
        env,
    )?;
    if token.is_empty() || token.contains(' ') {
        bail!("unexpected output from `faultline token create`: {token:?}");
    }
    Ok(token)
}

/// The entries of a directory with their sizes (largest first), and those of 1 MiB or more as
/// `name 12.3, …` (MiB).
pub(crate) fn dir_parts(dir: &Path) -> (Vec<(String, u64)>, String) {
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    let size = if p.is_dir() {
                        dir_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    };
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let s = parts
        .iter()
        .filter(|p| p.1 >= 1 << 20)
        .map(|(n, b)| format!("{n} {:.1}", *b as f64 / 1048576.0))
        .collect::<Vec<_>>()
        .join(", ");
    (parts, s)
}

/// Runs a faultline CLI command; returns its last non-empty stdout line.
pub(crate) fn cli(faultline: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut c = Command::new(faultline);
    c.args(args).stdin(Stdio::null()).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .output()
        .with_context(|| format!("cannot run {} {}", faultline.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`faultline {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string())
}

pub(crate) fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Log levels seen in the server's stderr, and up to 12 distinct WARN/ERROR lines.
pub(crate) fn scan_log(path: &Path) -> (std::collections::BTreeMap<String, u64>, Vec<String>, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut levels = std::collections::BTreeMap::new();
    let mut examples: Vec<String> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let mut n = 0;
    for raw in text.lines() {
        n += 1;
        let line = strip_ansi(raw);
        let level = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
            .into_iter()
            .find(|l| {
                line.contains(&format!(" {l} "))
                    || line.contains(&format!("\"level\":\"{l}\""))
                    || line.starts_with(l)
            });
        let level = level.unwrap_or("other");
        *levels.entry(level.to_string()).or_default() += 1;
        if matches!(level, "ERROR" | "WARN" | "other") && examples.len() < 12 {
            // Dedupe on the line without its leading timestamp and digits.
            let key: String = line
                .chars()
                .skip(30)
                .filter(|c| !c.is_ascii_digit())
                .take(120)
                .collect();
            if keys.insert(key) {
                examples.push(line.chars().take(400).collect());
            }
        }
    }
    (levels, examples, n)
}

pub async fn run(a: RunAllArgs) -> anyhow::Result<()> {
    let faultline = a.faultline.canonicalize().with_context(|| {
        format!(
            "faultline binary not found at {} (cargo build --release first)",
            a.faultline.display()
        )
    })?;
    let me = std::env::current_exe()?;
    let opts = |rate: Option<f64>, secs: f64, check_ids: bool| LoadOpts {
        concurrency: a.concurrency,
        rate,
        duration: Some(Duration::from_secs_f64(secs)),
        events: None,
        timeout: Duration::from_secs_f64(a.timeout),
        progress: Duration::from_secs(5),
        check_ids,
        first_index: 0,
    };
    let started = chrono_now();

    // ---------------------------------------------------------------- 1. null-server ceiling
    let mut quiet = Vec::new();
    quiet.push(wait_quiet(a.wait_quiet, "the null-server run", None));
    eprintln!(
        "== null server: ceiling, closed loop {}s, {} connections",
        a.null_duration, a.concurrency
    );
    let mut c = Command::new(&me);
    c.args(["null-server", "--listen", "127.0.0.1:0"]);
    let (mut null, null_url, _) =
        spawn_listening(c, "null-server", "listening on", Duration::from_secs(10))?;
    let null_dsn = format!(
        "{}/1",
        null_url.replacen("http://", "http://0123456789abcdef0123456789abcdef@", 1)
    );
    let corpus = build_corpus(&null_dsn, &a.corpus)?;
    let null_target = Target::from_dsn(&null_dsn)?;
    let null_pid = null.pid();
    let null_phase = measure(
        "null-server ceiling",
        &null_target,
        corpus.clone(),
        &opts(None, a.null_duration, false),
        None,
        Some(null_pid),
        &a.digest,
    )
    .await?;
    eprint!("{}", null_phase.human());
    null.stop(Duration::from_secs(5));
    drop(null);

    // ---------------------------------------------------------------- 2. Faultline setup
    let (data_dir, temp) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = crate::fresh_temp_dir("run")?;
            (d, true)
        }
    };
    let Server {
        proc: mut server,
        base,
        stdout: server_stdout,
        startup_s,
        log_path,
    } = start_faultline(&faultline, &data_dir)?;
    let pid = server.pid();
    let (dsn, token) = setup_bench_project(&faultline, &data_dir, &base)?;
    eprintln!("   listening on {base} (pid {pid}, up in {startup_s:.2}s), DSN {dsn}");
    let target = Target::from_dsn(&dsn)?;
    // The DSN only appears in the per-request envelope header: no need to re-render the bodies.
    let corpus = Arc::new(corpus.with_dsn(&dsn));
    corpus.verify_all()?;
    let verifier = Verifier::Url {
        url: format!("{base}/api/0/projects/bench/bench/issues/?query=&limit=100&statsPeriod="),
        token,
    };
    let before = verifier
        .count()
        .await
        .context("issue list before the load (is the token accepted?)")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = procstat::rss_kib(pid)
        .map(|r| r.0)
        .context("cannot read the server's /proc status")?;
    eprintln!(
        "   idle RSS {:.1} MiB; issue list before the load: {} events in {} issues",
        idle as f64 / 1024.0,
        before.0,
        before.1.unwrap_or(0)
    );

    // ---------------------------------------------------------------- 3. max throughput
    eprintln!(
        "== faultline: max throughput, closed loop {}s, {} connections",
        a.max_duration, a.concurrency
    );
    quiet.push(wait_quiet(
        a.wait_quiet,
        "the max-throughput run",
        Some(pid),
    ));
    let max = measure(
        "Faultline max throughput",
        &target,
        corpus.clone(),
        &opts(None, a.max_duration, true),
        Some(&verifier),
        Some(pid),
        &a.digest,
    )
    .await?;
    eprint!("{}", max.human());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // ---------------------------------------------------------------- 4. fixed rate
    eprintln!(
        "== faultline: open loop {}/s for {}s, {} connections",
        a.rate, a.rate_duration, a.concurrency
    );
    quiet.push(wait_quiet(a.wait_quiet, "the fixed-rate run", Some(pid)));
    let fixed = measure(
        &format!("Faultline {}/s", a.rate),
        &target,
        corpus.clone(),
        &opts(Some(a.rate), a.rate_duration, true),
        Some(&verifier),
        Some(pid),
        &a.digest,
    )
    .await?;
    eprint!("{}", fixed.human());

    // ---------------------------------------------------------------- 5. stop, collect
    let hwm_end = procstat::rss_kib(pid).map(|r| r.1);
    let server_cpu_total = procstat::cpu_s(pid);
    let (graceful, stop_s, exit) = server.stop(Duration::from_secs(30));
    drop(server);
    let (levels, log_examples, log_lines) = scan_log(&log_path);
    let data_bytes = dir_size(&data_dir);
    let (parts, parts_str) = dir_parts(&data_dir);
    let accepted_total = max.load.accepted + fixed.load.accepted;
    // The first-start bootstrap prints a throwaway admin password: keep it out of the report.
    let stdout_lines: Vec<String> = server_stdout
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            if l.contains("Password") {
                "  Password: (redacted)".to_string()
            } else {
                l.clone()
            }
        })
        .collect();

    let (gz, raw) = corpus.mean_sizes();
    let ceiling = null_phase.load.accepted_per_s();
    let ratio = |x: Option<f64>| x.map(|v| v / ceiling);
    let mib = |k: Option<u64>| {
        k.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "–".into())
    };
    let f0 = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into());
    let f2 = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
    let pct = |x: Option<f64>| {
        x.map(|v| format!("{:.1}%", 100.0 * v))
            .unwrap_or_else(|| "–".into())
    };

    let phases = [&null_phase, &max, &fixed];
    let mut md = String::new();
    md += &format!(
        "\n## Faultline ingest benchmark ({started})\n\n\
         {} cores, client and server on the same machine; {} connections (HTTP/1.1 keep-alive); \
         {} groups; {} pre-rendered bodies of `--event-size {}` events, mean **{gz:.0} B gzip** \
         ({raw:.0} B uncompressed), unique event_id per request.\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        a.concurrency,
        a.corpus.groups,
        corpus.variants.len(),
        a.corpus.event_size.name(),
    );
    md += "| | null-server ceiling | Faultline max throughput | Faultline fixed rate |\n|---|---:|---:|---:|\n";
    let row = |name: &str, f: &dyn Fn(&Phase) -> String| {
        format!(
            "| {name} | {} |\n",
            phases.iter().map(|p| f(p)).collect::<Vec<_>>().join(" | ")
        )
    };
    md += &row("mode", &|p| match p.opts.rate {
        Some(r) => format!("open loop {r:.0}/s"),
        None => "closed loop".into(),
    });
    md += &row("load duration (s)", &|p| {
        format!("{:.2}", p.load.wall.as_secs_f64())
    });
    md += &row("requests sent", &|p| p.load.sent.to_string());
    md += &row("accepted (200)", &|p| p.load.accepted.to_string());
    md += &row("**accepted events/s**", &|p| {
        format!("**{:.0}**", p.load.accepted_per_s())
    });
    md += &row("status codes", &|p| p.statuses_str());
    md += &row("transport errors", &|p| p.errors_str());
    md += &row("scheduled but not sent (server behind the rate)", &|p| {
        if p.opts.rate.is_some() {
            p.load.unsent.to_string()
        } else {
            "–".into()
        }
    });
    md += &row("200 without our event_id", &|p| {
        if p.opts.check_ids {
            p.load.id_mismatches.to_string()
        } else {
            "not checked".into()
        }
    });
    md += &row("latency p50 (ms)", &|p| format!("{:.2}", p.load.ms(0.5)));
    md += &row("latency p90 (ms)", &|p| format!("{:.2}", p.load.ms(0.9)));
    md += &row("latency p99 (ms)", &|p| format!("{:.2}", p.load.ms(0.99)));
    md += &row("latency max (ms)", &|p| format!("{:.2}", p.load.max_ms()));
    md += &row("digested", &|p| {
        p.digest
            .as_ref()
            .map(|g| format!("{} / {}", g.digested, p.load.accepted))
            .unwrap_or_else(|| "–".into())
    });
    md += &row(
        "digestion caught up after load end (s)",
        &|p| match &p.digest {
            Some(g) if !g.caught_up => "**did not**".into(),
            Some(_) => f2(p.digest_after_load_s),
            None => "–".into(),
        },
    );
    md += &row(
        "**digested events/s** (load start → digestion done)",
        &|p| format!("**{}**", f0(p.digested_per_s)),
    );
    md += &row("issues in the list", &|p| {
        p.digest
            .as_ref()
            .and_then(|g| g.issues)
            .map(|i| i.to_string())
            .unwrap_or_else(|| "–".into())
    });
    md += &row("server peak RSS (MiB, 100 ms samples)", &|p| {
        mib(p.peak_rss_kib)
    });
    md += &row("server CPU during load", &|p| {
        p.server_cpu_load_s
            .map(|c| format!("{:.0}%", 100.0 * c / p.load.wall.as_secs_f64()))
            .unwrap_or_else(|| "–".into())
    });
    md += &row("server CPU load+digestion", &|p| {
        p.server_cpu_total_s
            .map(|c| format!("{:.0}%", 100.0 * c / p.total_s))
            .unwrap_or_else(|| "–".into())
    });
    md += &row(
        "kernel CPU during load (irq/softirq, kernel threads)",
        &|p| {
            p.kernel_cores_load
                .map(|o| format!("{:.0}%", 100.0 * o))
                .unwrap_or_else(|| "–".into())
        },
    );
    md += &row("other processes' CPU during load (noise)", &|p| {
        p.other_cores_load
            .map(|o| format!("{:.0}%", 100.0 * o))
            .unwrap_or_else(|| "–".into())
    });
    md += &row("client CPU", &|p| {
        format!(
            "{:.0}%",
            100.0 * p.load.client_cpu_s / p.load.wall.as_secs_f64()
        )
    });
    let closed = |p: &Phase, x: Option<f64>| {
        if p.opts.rate.is_some() {
            "n/a (rate-limited by the client)".to_string()
        } else {
            pct(x)
        }
    };
    md += &row("accepted/s ÷ null ceiling", &|p| {
        closed(p, Some(p.load.accepted_per_s() / ceiling))
    });
    md += &row("digested/s ÷ null ceiling", &|p| {
        closed(p, ratio(p.digested_per_s))
    });

    md += "\n| Faultline | value |\n|---|---:|\n";
    md += &format!("| startup until listening (s) | {startup_s:.2} |\n");
    md += &format!(
        "| idle RSS after setup (MiB) | {:.1} |\n",
        idle as f64 / 1024.0
    );
    md += &format!(
        "| peak RSS, max-throughput run (MiB) | {} |\n",
        mib(max.peak_rss_kib)
    );
    md += &format!(
        "| peak RSS, fixed-rate run (MiB) | {} |\n",
        mib(fixed.peak_rss_kib)
    );
    md += &format!("| VmHWM at the end (MiB) | {} |\n", mib(hwm_end));
    md += &format!(
        "| server CPU time, whole run (s) | {} |\n",
        f2(server_cpu_total)
    );
    md += &format!(
        "| server CPU while idle before the max / fixed-rate runs | {:.0}% / {:.0}% |\n",
        100.0 * quiet.get(1).map_or(0.0, |q| q.1),
        100.0 * quiet.get(2).map_or(0.0, |q| q.1)
    );
    md += &format!(
        "| **accepted/s ÷ null ceiling** (max run) | **{}** |\n",
        pct(Some(max.load.accepted_per_s() / ceiling))
    );
    md += &format!(
        "| **digested/s ÷ null ceiling** (max run) | **{}** |\n",
        pct(ratio(max.digested_per_s))
    );
    md += &format!(
        "| fixed-rate run: achieved / target rate | {} |\n",
        pct(Some(fixed.load.accepted_per_s() / a.rate))
    );
    md += &format!(
        "| data dir after the run (MiB) | {:.1} ({parts_str}); {:.1} KiB per accepted event |\n",
        data_bytes as f64 / 1048576.0,
        data_bytes as f64 / 1024.0 / accepted_total.max(1) as f64
    );
    md += &format!(
        "| graceful shutdown (SIGTERM) | {} in {stop_s:.2}s ({exit}) |\n",
        if graceful { "yes" } else { "**no, killed**" }
    );
    md += &format!(
        "| server stderr lines by level | {} |\n",
        if levels.is_empty() {
            "none".into()
        } else {
            levels
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let mut notes = Vec::new();
    for p in phases {
        for (k, b) in &p.load.error_bodies {
            notes.push(format!(
                "{}: first {k} answer: `{}`",
                p.label,
                b.replace('\n', " ")
            ));
        }
        if p.other_cores_load.is_some_and(|o| o > 0.15) {
            notes.push(format!(
                "{}: other processes used {:.0}% CPU during the load: this run was disturbed, repeat it on a quiet machine",
                p.label, 100.0 * p.other_cores_load.unwrap()
            ));
        }
        if let Some(g) = &p.digest {
            for e in &g.errors {
                notes.push(format!("{}: verify error: {e}", p.label));
            }
        }
    }
    if !log_examples.is_empty() {
        notes.push(format!(
            "server stderr ({log_lines} lines), distinct WARN/ERROR/other lines:"
        ));
        notes.extend(log_examples.iter().map(|l| format!("    {l}")));
    }
    if !notes.is_empty() {
        md += "\nNotes:\n";
        for n in &notes {
            md += &format!("- {n}\n");
        }
    }
    println!("{md}");

    let j = json!({
        "bench": "faultline-ingest",
        "date": started,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "concurrency": a.concurrency,
        "groups": a.corpus.groups,
        "variants": corpus.variants.len(),
        "event_size": a.corpus.event_size.name(),
        "mean_body_gzip_bytes": gz.round(),
        "mean_body_uncompressed_bytes": raw.round(),
        "null": null_phase.json(),
        "max": max.json(),
        "fixed_rate": fixed.json(),
        "startup_s": round2(startup_s),
        "idle_rss_mib": round1(idle as f64 / 1024.0),
        "vmhwm_end_mib": hwm_end.map(|k| round1(k as f64 / 1024.0)),
        "accepted_ratio_vs_null": max.load.accepted_per_s() / ceiling,
        "digested_ratio_vs_null": ratio(max.digested_per_s),
        "data_dir_mib": round1(data_bytes as f64 / 1048576.0),
        "data_dir_parts_mib": parts.iter().map(|(n, b)| (n.clone(), json!(round1(*b as f64 / 1048576.0)))).collect::<serde_json::Map<_, _>>(),
        "graceful_shutdown": graceful,
        "shutdown_s": round2(stop_s),
        "server_log_levels": levels,
        "server_stdout": stdout_lines,
        "other_busy_cores_before_runs": quiet.iter().map(|q| round2(q.0)).collect::<Vec<_>>(),
        "server_cores_before_runs": quiet.iter().map(|q| round2(q.1)).collect::<Vec<_>>(),
    });
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    if temp && !a.keep_data {
        let _ = std::fs::remove_dir_all(&data_dir);
    } else {
        eprintln!("data dir kept: {}", data_dir.display());
    }
    Ok(())
}

/// Current UTC time, RFC 3339 to the second.
pub(crate) fn chrono_now() -> String {
    let s = crate::content::iso_utc(crate::content::now_micros());
    format!("{}Z", &s[..19])
}
