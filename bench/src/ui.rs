//! `ui`: how long the web UI takes to make its pages with a realistic amount of data.
//!
//! The requirement: "With 10,000 issues and 1,000,000 events in SQLite, the issue list and the
//! issue page are produced in under 50 ms at p95 (server side)."
//!
//! 1. Baseline: a fresh `faultline serve` on a temporary data dir with a handful of issues
//!    (`--baseline-issues`, `--baseline-events`), measured like step 3, then stopped.
//! 2. `faultline serve` on `--data-dir` (or a temporary dir), filled through the real ingest
//!    endpoint with `--events` events over `--issues` groups: a UI corpus
//!    ([`Corpus::build_ui`]: per-request timestamps over the last `--spread-days`, users, tags),
//!    sent in chunks so the spool backlog stays bounded, then the wait until everything is
//!    digested; issues and events counted through the API. `--reuse` measures a data dir filled
//!    earlier (a marker file records what it holds).
//! 3. Logs in through the login form like a browser and requests each page kind `--samples`
//!    times, one request at a time, kinds interleaved: records the page's `Server-Timing:
//!    app;dur=…` (time spent making it on the server) and the client-side latency, and checks
//!    every answer is a 200 page of some size (not the login form).
//! 4. A markdown table and one JSON line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::content::{Corpus, Rng};
use crate::load::{LoadOpts, Target};
use crate::runall::{
    BENCH_EMAIL, BENCH_PASSWORD, Server, bench_token, chrono_now, dir_parts, dir_size, scan_log,
    setup_bench_project, start_faultline, wait_quiet,
};
use crate::verify::{IssueRow, Verifier};
use crate::{procstat, round1, round2};

/// The organization and project every bench data dir has.
const ORG: &str = "bench";
const ISSUES_API: &str = "/api/0/projects/bench/bench/issues/?query=&limit=100&statsPeriod=";
/// Written into the data dir once a fill is complete and counted; `--reuse` reads it.
const MARKER: &str = "faultline-bench-ui.json";
/// A page smaller than this is not a real page (an empty answer, an error stub).
const MIN_PAGE_BYTES: usize = 1000;

#[derive(Args, Clone, Debug)]
pub struct UiArgs {
    /// Path of the faultline binary (build it first: cargo build --release).
    #[arg(long, default_value = "target/release/faultline")]
    faultline: PathBuf,
    /// Distinct issues (groups) the events fall into.
    #[arg(long, default_value_t = 10_000)]
    issues: usize,
    /// Events sent through the ingest endpoint.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Measured requests per page kind.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Unmeasured requests per page kind before the samples (the first one's time is reported).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Data dir of the filled server (default: a fresh temporary dir, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the temporary data dirs (filled and baseline) and the server logs in them.
    #[arg(long)]
    keep_data: bool,
    /// With --data-dir: when it holds a complete fill made with the same options, measure it as
    /// it is instead of filling (when it is empty, fill it and keep it for next time).
    #[arg(long)]
    reuse: bool,
    /// Every issue gets the same share of the events (default: half of the events uniformly,
    /// half Zipf-like, so a few issues are large).
    #[arg(long)]
    uniform: bool,
    /// Event timestamps are spread uniformly over this many days before the moment they are sent.
    #[arg(long, default_value_t = 14.0)]
    spread_days: f64,
    /// Distinct users (`user.id`) the events come from.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Ingest connections while filling.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events sent per chunk while filling; a chunk starts once at most one chunk is still
    /// undigested (keeps the spool backlog below the server's 503 limit).
    #[arg(long, default_value_t = 20_000)]
    fill_chunk: u64,
    /// Stop waiting for digestion when the digested count has not grown for this many seconds.
    #[arg(long, default_value_t = 120.0)]
    digest_idle: f64,
    /// Issues of the nearly-empty baseline (a separate fresh server, measured first).
    #[arg(long, default_value_t = 10)]
    baseline_issues: usize,
    /// Events of the baseline.
    #[arg(long, default_value_t = 200)]
    baseline_events: u64,
    /// No baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Word searched by the `/issues/?query=` page (a noun of the generated titles: ~1 in 13).
    #[arg(long, default_value = "order")]
    query: String,
    /// The server-side p95 the requirement sets, ms.
    #[arg(long, default_value_t = 50.0)]
    target_ms: f64,
    /// Seed of the generated content and of the random issue picks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Before measuring, wait up to this many seconds for the machine to be quiet (other
    /// processes using < 15% of a core over 2 s); 0 = don't wait.
    #[arg(long, default_value_t = 60.0)]
    wait_quiet: f64,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

impl UiArgs {
    fn distribution(&self) -> &'static str {
        if self.uniform { "uniform" } else { "skewed" }
    }
    fn corpus(&self, dsn: &str, groups: usize) -> anyhow::Result<Arc<Corpus>> {
        let t = Instant::now();
        let c = Corpus::build_ui(
            dsn,
            groups,
            self.seed,
            self.spread_days * 86400.0,
            self.users,
            !self.uniform,
        );
        c.verify_all()
            .context("UI corpus: bodies do not decompress to valid envelopes")?;
        let (gz, raw) = c.mean_sizes();
        eprintln!(
            "   built {groups} event templates in {:.1}s, verified; mean body {gz:.0} B gzip / {raw:.0} B uncompressed",
            t.elapsed().as_secs_f64()
        );
        Ok(Arc::new(c))
    }
}

// ------------------------------------------------------------------------------------------------
// A browser: one keep-alive connection, cookies, one request at a time.
// ------------------------------------------------------------------------------------------------

struct Browser {
    addr: SocketAddr,
    host: String,
    conn: Option<SendRequest<Full<Bytes>>>,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    /// `Server-Timing: app;dur=…`, ms.
    server_ms: Option<f64>,
    /// Request written → whole answer read, ms.
    client_ms: f64,
    body: Bytes,
}

impl Browser {
    fn new(base: &str) -> anyhow::Result<Browser> {
        let host = base
            .strip_prefix("http://")
            .context("server URL is not http://")?
            .trim_end_matches('/');
        Ok(Browser {
            addr: crate::load::resolve(host)?,
            host: host.to_string(),
            conn: None,
            cookies: BTreeMap::new(),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<Page> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(
                USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) faultline-bench/0.1",
            )
            .header(
                ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            );
        if !self.cookies.is_empty() {
            let c = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(COOKIE, c);
        }
        let body = match form {
            Some(f) => {
                req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(f)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body))?;
        let t = Instant::now();
        let ready = match self.conn.take() {
            Some(mut c) => c.ready().await.is_ok().then_some(c),
            None => None,
        };
        let mut sender = match ready {
            Some(c) => c,
            None => self.connect().await?,
        };
        let timeout = Duration::from_secs(120);
        let resp = tokio::time::timeout(timeout, sender.send_request(req))
            .await
            .with_context(|| format!("{path}: no answer within {timeout:?}"))??;
        let status = resp.status().as_u16();
        let h = resp.headers();
        let location = h
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let server_ms = h
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(server_timing_ms);
        for c in h.get_all(SET_COOKIE) {
            if let Ok(c) = c.to_str() {
                self.set_cookie(c);
            }
        }
        let body = tokio::time::timeout(timeout, resp.into_body().collect())
            .await
            .with_context(|| format!("{path}: body not read within {timeout:?}"))??
            .to_bytes();
        let client_ms = t.elapsed().as_secs_f64() * 1000.0;
        self.conn = Some(sender);
        Ok(Page {
            status,
            location,
            server_ms,
            client_ms,
            body,
        })
    }

    fn set_cookie(&mut self, header: &str) {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        if value.is_empty() || expired {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }

    /// `GET /login` (hidden `csrf` input, `faultline_login` cookie), `POST /login` → 303 with a
    /// `faultline_session` cookie.
    async fn login(&mut self) -> anyhow::Result<()> {
        let p = self.send(Method::GET, "/login", None).await?;
        ensure!(p.status == 200, "GET /login: status {}", p.status);
        let csrf = hidden_input(&p.body, "csrf")
            .context("GET /login: no hidden csrf input in the form")?;
        ensure!(
            self.cookies.contains_key("faultline_login"),
            "GET /login set no faultline_login cookie"
        );
        let form = form_encode(&[
            ("email", BENCH_EMAIL),
            ("password", BENCH_PASSWORD),
            ("csrf", &csrf),
            ("next", "/"),
        ]);
        let p = self.send(Method::POST, "/login", Some(form)).await?;
        ensure!(
            p.status == 303,
            "POST /login: status {} (expected 303): {}",
            p.status,
            String::from_utf8_lossy(&p.body[..p.body.len().min(300)])
        );
        ensure!(
            self.cookies.contains_key("faultline_session"),
            "POST /login: 303 without a faultline_session cookie"
        );
        Ok(())
    }
}

/// `app;dur=12.34` (possibly among other metrics) → 12.34.
fn server_timing_ms(v: &str) -> Option<f64> {
    v.split(',')
        .find(|m| m.trim().starts_with("app"))
        .and_then(|m| m.split(';').find_map(|p| p.trim().strip_prefix("dur=")))
        .and_then(|d| d.trim().parse().ok())
}

/// The `value` of `<input … name="NAME" … value="…">`.
fn hidden_input(html: &[u8], name: &str) -> Option<String> {
    let html = String::from_utf8_lossy(html);
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.find("value=\"")? + 7;
    let len = tag[v..].find('"')?;
    Some(
        tag[v..v + len]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#x2B;", "+"),
    )
}

/// `application/x-www-form-urlencoded`.
fn form_encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Why an answer is not the page asked for, if it is not.
fn check_page(p: &Page) -> Result<(), String> {
    if p.status != 200 {
        return Err(match &p.location {
            Some(l) => format!("status {} → {l}", p.status),
            None => format!("status {}", p.status),
        });
    }
    if p.body.len() < MIN_PAGE_BYTES {
        return Err(format!("200 but only {} bytes", p.body.len()));
    }
    if contains(&p.body, b"action=\"/login\"") && contains(&p.body, b"name=\"password\"") {
        return Err("200 but the login form".into());
    }
    Ok(())
}

/// The first `max` characters of a page's text (tags, `<head>` and runs of blanks left out).
fn text_of(html: &[u8], max: usize) -> String {
    let html = String::from_utf8_lossy(html);
    let body = html.find("<body").map(|i| &html[i..]).unwrap_or(&html);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
        if out.chars().count() >= max {
            break;
        }
    }
    out.trim().to_string()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------------------------------------
// Page kinds and their measurements
// ------------------------------------------------------------------------------------------------

enum Paths {
    Fixed(String),
    /// An issue page of an issue picked at random among these ids.
    RandomIssue(Vec<i64>),
    /// An issue page of these ids in turn.
    CycleIssues(Vec<i64>),
}

struct Kind {
    /// Short name for the JSON line.
    id: &'static str,
    name: String,
    paths: Paths,
    server_ms: Vec<f64>,
    client_ms: Vec<f64>,
    bytes: u64,
    failures: BTreeMap<String, u64>,
    first_failure_body: Option<String>,
    /// Server time of the very first request (cold caches, statements not yet prepared).
    first_server_ms: Option<f64>,
    /// 200 pages without a `Server-Timing` header.
    no_timing: u64,
    /// Every warm-up request failed: not measured further.
    skipped: bool,
}

impl Kind {
    fn new(id: &'static str, name: impl Into<String>, paths: Paths) -> Kind {
        Kind {
            id,
            name: name.into(),
            paths,
            server_ms: Vec::new(),
            client_ms: Vec::new(),
            bytes: 0,
            failures: BTreeMap::new(),
            first_failure_body: None,
            first_server_ms: None,
            no_timing: 0,
            skipped: false,
        }
    }

    fn path(&self, rng: &mut Rng, n: usize) -> String {
        let issue = |id: i64| format!("/organizations/{ORG}/issues/{id}/");
        match &self.paths {
            Paths::Fixed(p) => p.clone(),
            Paths::RandomIssue(ids) => issue(*rng.pick(ids)),
            Paths::CycleIssues(ids) => issue(ids[n % ids.len()]),
        }
    }

    /// One request; `record` = a measured sample. Returns whether it was a good page.
    async fn request(&mut self, b: &mut Browser, rng: &mut Rng, n: usize, record: bool) -> bool {
        let path = self.path(rng, n);
        let (outcome, body) = match b.send(Method::GET, &path, None).await {
            Ok(p) => {
                if self.first_server_ms.is_none() {
                    self.first_server_ms = p.server_ms;
                }
                match check_page(&p) {
                    Ok(()) => {
                        if record {
                            match p.server_ms {
                                Some(s) => self.server_ms.push(s),
                                None => self.no_timing += 1,
                            }
                            self.client_ms.push(p.client_ms);
                            self.bytes += p.body.len() as u64;
                        }
                        return true;
                    }
                    Err(e) => (e, Some(text_of(&p.body, 300))),
                }
            }
            Err(e) => {
                b.conn = None;
                (format!("{e:#}"), None)
            }
        };
        *self.failures.entry(outcome.clone()).or_default() += 1;
        if self.first_failure_body.is_none() {
            self.first_failure_body = Some(format!(
                "GET {path}: {outcome}{}",
                body.map(|b| format!(": {b}")).unwrap_or_default()
            ));
        }
        false
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn summary(&self) -> KindSummary {
        KindSummary {
            id: self.id,
            name: self.name.clone(),
            samples: self.client_ms.len(),
            failed: self.failed(),
            skipped: self.skipped,
            failure: self
                .failures
                .iter()
                .max_by_key(|f| f.1)
                .map(|(k, v)| format!("{v}× {k}")),
            first_failure: self.first_failure_body.clone(),
            server: Stats::of(&self.server_ms),
            client: Stats::of(&self.client_ms),
            first_server_ms: self.first_server_ms,
            no_timing: self.no_timing,
            mean_kib: if self.client_ms.is_empty() {
                0.0
            } else {
                self.bytes as f64 / self.client_ms.len() as f64 / 1024.0
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Stats {
    p50: f64,
    p95: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles.
    fn of(xs: &[f64]) -> Option<Stats> {
        if xs.is_empty() {
            return None;
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Stats {
            p50: q(0.5),
            p95: q(0.95),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
    fn json(&self) -> Value {
        json!({"p50": round2(self.p50), "p95": round2(self.p95), "max": round2(self.max), "mean": round2(self.mean)})
    }
}

struct KindSummary {
    id: &'static str,
    name: String,
    samples: usize,
    failed: u64,
    skipped: bool,
    failure: Option<String>,
    first_failure: Option<String>,
    server: Option<Stats>,
    client: Option<Stats>,
    first_server_ms: Option<f64>,
    no_timing: u64,
    mean_kib: f64,
}

impl KindSummary {
    fn json(&self, target: f64) -> Value {
        json!({
            "page": self.name,
            "samples": self.samples,
            "failed": self.failed,
            "skipped": self.skipped,
            "failure": self.failure,
            "server_ms": self.server.map(|s| s.json()),
            "client_ms": self.client.map(|s| s.json()),
            "first_request_server_ms": self.first_server_ms.map(round2),
            "without_server_timing": self.no_timing,
            "mean_page_kib": round1(self.mean_kib),
            "p95_under_target": self.meets(target),
        })
    }
    /// Server p95 under the target, every sample good.
    fn meets(&self, target: f64) -> Option<bool> {
        if self.skipped || self.samples == 0 {
            return None;
        }
        Some(self.failed == 0 && self.server.is_some_and(|s| s.p95 < target))
    }
}

/// Every page kind, measured on one logged-in browser session.
async fn measure_pages(
    base: &str,
    issues: &[IssueRow],
    a: &UiArgs,
    what: &str,
) -> anyhow::Result<Vec<KindSummary>> {
    let mut b = Browser::new(base)?;
    b.login().await.context("logging in through the web UI")?;
    let ids: Vec<i64> = issues.iter().map(|i| i.id).filter(|id| *id >= 0).collect();
    ensure!(!ids.is_empty(), "no issue ids in the API list");
    let mut by_size: Vec<&IssueRow> = issues.iter().collect();
    by_size.sort_by_key(|i| std::cmp::Reverse(i.count));
    let largest: Vec<i64> = by_size.iter().take(10).map(|i| i.id).collect();
    let q = form_encode(&[("query", &a.query)]);
    let mut kinds = [
        Kind::new(
            "issues",
            "issue list `/issues/`",
            Paths::Fixed("/issues/".into()),
        ),
        Kind::new(
            "issues_sort_freq",
            "issue list `?sort=freq`",
            Paths::Fixed("/issues/?sort=freq".into()),
        ),
        Kind::new(
            "issues_query",
            format!("issue list `?{q}`"),
            Paths::Fixed(format!("/issues/?{q}")),
        ),
        Kind::new(
            "issues_period_14d",
            "issue list `?period=14d`",
            Paths::Fixed("/issues/?period=14d".into()),
        ),
        Kind::new(
            "issues_page_5",
            "issue list `?page=5`",
            Paths::Fixed("/issues/?page=5".into()),
        ),
        Kind::new(
            "issue_random",
            "issue page, random issue",
            Paths::RandomIssue(ids),
        ),
        Kind::new(
            "issue_largest",
            format!("issue page, {} largest issues", largest.len()),
            Paths::CycleIssues(largest),
        ),
        Kind::new("home", "home `/`", Paths::Fixed("/".into())),
    ];
    let mut rng = Rng::new(a.seed ^ 0x7AB1E);
    let warmup = a.warmup.max(1);
    for k in kinds.iter_mut() {
        let mut ok = false;
        for w in 0..warmup {
            ok |= k.request(&mut b, &mut rng, w, false).await;
        }
        if !ok {
            k.skipped = true;
            eprintln!(
                "   {what}: {}: every warm-up request failed ({}): not measured",
                k.name,
                k.first_failure_body.as_deref().unwrap_or("?")
            );
        }
    }
    let t = Instant::now();
    let mut last = Instant::now();
    for n in 0..a.samples {
        for k in kinds.iter_mut().filter(|k| !k.skipped) {
            k.request(&mut b, &mut rng, warmup + n, true).await;
        }
        if last.elapsed() >= Duration::from_secs(5) || n + 1 == a.samples {
            eprintln!(
                "   {what}: {}/{} rounds of {} pages, {:.1}s",
                n + 1,
                a.samples,
                kinds.iter().filter(|k| !k.skipped).count(),
                t.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    }
    Ok(kinds.iter().map(Kind::summary).collect())
}

// ------------------------------------------------------------------------------------------------
// Filling
// ------------------------------------------------------------------------------------------------

struct Fill {
    accepted: u64,
    sent: u64,
    /// First request → last answer.
    load_s: f64,
    /// First request → everything digested.
    total_s: f64,
    digested: u64,
    caught_up: bool,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    error_bodies: BTreeMap<u16, String>,
    verify_errors: Vec<String>,
}

/// Sends `total` events of `corpus` in chunks of `--fill-chunk` (a chunk starts once at most one
/// chunk is undigested), then waits until the server has digested them all.
async fn fill(
    target: &Target,
    corpus: Arc<Corpus>,
    verifier: &Verifier,
    total: u64,
    a: &UiArgs,
    what: &str,
) -> anyhow::Result<Fill> {
    let before = verifier
        .count()
        .await
        .context("issue list before filling (is the token accepted?)")?
        .0;
    let t0 = Instant::now();
    let mut f = Fill {
        accepted: 0,
        sent: 0,
        load_s: 0.0,
        total_s: 0.0,
        digested: 0,
        caught_up: false,
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
        error_bodies: BTreeMap::new(),
        verify_errors: Vec::new(),
    };
    let chunk = a.fill_chunk.max(1);
    let mut poll_cost = Duration::ZERO;
    let mut failed_chunks = 0;
    let mut failed_counts = 0;
    while f.accepted < total {
        if f.accepted > 0 {
            // Count; the next chunk starts once at most one chunk is undigested.
            loop {
                let tp = Instant::now();
                match verifier.count().await {
                    Ok((c, _)) => {
                        f.digested = c.saturating_sub(before);
                        failed_counts = 0;
                    }
                    Err(e) => {
                        if f.verify_errors.len() < 5 {
                            f.verify_errors.push(format!("{e:#}"));
                        }
                        eprintln!("   fill {what}: counting digested events failed: {e:#}");
                        failed_counts += 1;
                        if failed_counts >= 10 {
                            bail!("counting digested events failed 10 times in a row: {e:#}");
                        }
                    }
                }
                poll_cost = tp.elapsed();
                if f.accepted.saturating_sub(f.digested) <= chunk {
                    break;
                }
                tokio::time::sleep(
                    (poll_cost * 4).clamp(Duration::from_millis(500), Duration::from_secs(15)),
                )
                .await;
            }
            let el = t0.elapsed().as_secs_f64();
            let rate = f.digested as f64 / el.max(1e-9);
            eprintln!(
                "   fill {what}: {}/{total} accepted, {} digested ({:.0}/s), {:.0}s{} (counting took {:.2}s)",
                f.accepted,
                f.digested,
                rate,
                el,
                if rate > 0.0 {
                    format!(", ~{:.0}s to go", (total - f.digested) as f64 / rate)
                } else {
                    String::new()
                },
                poll_cost.as_secs_f64(),
            );
        }
        let n = chunk.min(total - f.accepted);
        let opts = LoadOpts {
            concurrency: a.concurrency,
            rate: None,
            duration: None,
            events: Some(n),
            timeout: Duration::from_secs(60),
            progress: Duration::ZERO,
            check_ids: true,
            first_index: f.sent,
        };
        let r = crate::load::run(target, corpus.clone(), &opts).await?;
        f.sent += r.sent;
        f.accepted += r.accepted;
        for (k, v) in &r.statuses {
            *f.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &r.errors {
            *f.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.error_bodies {
            f.error_bodies.entry(*k).or_insert_with(|| v.clone());
        }
        if r.accepted < n {
            eprintln!(
                "   fill {what}: {} of {n} not accepted: statuses {:?}, errors {:?}, bodies {:?}; retrying in 5 s",
                n - r.accepted,
                r.statuses,
                r.errors,
                r.error_bodies
            );
            failed_chunks += 1;
            if r.accepted == 0 && failed_chunks >= 3 {
                bail!(
                    "the server accepts no events: statuses {:?}, errors {:?}, bodies {:?}",
                    r.statuses,
                    r.errors,
                    r.error_bodies
                );
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    let load_end = Instant::now();
    f.load_s = (load_end - t0).as_secs_f64();
    eprintln!(
        "   fill {what}: all {} accepted in {:.1}s; waiting for digestion",
        f.accepted, f.load_s
    );
    let d = crate::verify::wait(
        verifier,
        before,
        f.accepted,
        load_end,
        (poll_cost * 4).clamp(Duration::from_millis(200), Duration::from_secs(15)),
        Duration::from_secs_f64(a.digest_idle),
        Duration::from_secs(4 * 3600),
    )
    .await;
    f.digested = d.digested;
    f.caught_up = d.caught_up;
    f.total_s = (d.done_at.max(load_end) - t0).as_secs_f64();
    f.verify_errors.extend(d.errors);
    eprintln!(
        "   fill {what}: {} digested{} after {:.1}s ({:.0} events/s end to end)",
        f.digested,
        if f.caught_up {
            ""
        } else {
            " (did NOT catch up)"
        },
        f.total_s,
        f.digested as f64 / f.total_s.max(1e-9)
    );
    Ok(f)
}

impl Fill {
    fn json(&self) -> Value {
        json!({
            "sent": self.sent,
            "accepted": self.accepted,
            "load_s": round1(self.load_s),
            "total_s": round1(self.total_s),
            "accepted_per_s": round1(self.accepted as f64 / self.load_s.max(1e-9)),
            "digested": self.digested,
            "digested_per_s": round1(self.digested as f64 / self.total_s.max(1e-9)),
            "caught_up": self.caught_up,
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "transport_errors": self.errors,
            "non200_example_bodies": self.error_bodies.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "verify_errors": self.verify_errors,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// One server: start, (fill), count, measure, stop
// ------------------------------------------------------------------------------------------------

struct Measured {
    pages: Vec<KindSummary>,
    issues: Vec<IssueRow>,
    events: u64,
    fill: Option<Fill>,
    data_bytes: u64,
    data_parts: String,
    rss_mib: Option<f64>,
    startup_s: f64,
    log_notes: Vec<String>,
    graceful: bool,
}

/// After a failure: the end of the server's log (the data dir may be removed next).
fn print_log_tail(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("server-stderr.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("last lines of {}:", dir.join("server-stderr.log").display());
    for l in &lines[lines.len().saturating_sub(20)..] {
        eprintln!("    {l}");
    }
}

/// What a `--reuse` data dir must have been filled with.
fn marker_json(a: &UiArgs, groups: usize, events: u64) -> Value {
    json!({
        "issues": groups,
        "events": events,
        "seed": a.seed,
        "distribution": a.distribution(),
        "spread_days": a.spread_days,
        "users": a.users,
    })
}

/// Starts a server on `dir`; fills it with `events` over `groups` unless `reuse`; counts;
/// measures the pages; stops it.
async fn run_server(
    faultline: &Path,
    dir: &Path,
    groups: usize,
    events: u64,
    reuse: bool,
    a: &UiArgs,
    what: &str,
) -> anyhow::Result<Measured> {
    let Server {
        proc: mut server,
        base,
        startup_s,
        log_path,
        ..
    } = start_faultline(faultline, dir)?;
    let pid = server.pid();
    let url = format!("{base}{ISSUES_API}");
    let (token, fill_result) = if reuse {
        eprintln!(
            "   listening on {base} (pid {pid}, up in {startup_s:.2}s); reusing the data in {}",
            dir.display()
        );
        (bench_token(faultline, dir)?, None)
    } else {
        let (dsn, token) = setup_bench_project(faultline, dir, &base)?;
        eprintln!("   listening on {base} (pid {pid}, up in {startup_s:.2}s), DSN {dsn}");
        let verifier = Verifier::Url {
            url: url.clone(),
            token: token.clone(),
        };
        let corpus = a.corpus(&dsn, groups)?;
        let f = fill(&Target::from_dsn(&dsn)?, corpus, &verifier, events, a, what).await?;
        (token, Some(f))
    };
    let t = Instant::now();
    let issues = crate::verify::list_issues(&url, &token)
        .await
        .context("listing the issues through the API")?;
    let counted: u64 = issues.iter().map(|i| i.count).sum();
    eprintln!(
        "   {what}: the API lists {} issues holding {counted} events (listed in {:.2}s, {} pages of 100)",
        issues.len(),
        t.elapsed().as_secs_f64(),
        issues.len().div_ceil(100)
    );
    if issues.len() != groups {
        eprintln!(
            "   WARNING {what}: {} issues, expected {groups}",
            issues.len()
        );
    }
    if counted != events {
        eprintln!("   WARNING {what}: {counted} events, expected {events}");
    }
    if !reuse && issues.len() == groups && counted == events {
        std::fs::write(
            dir.join(MARKER),
            serde_json::to_string_pretty(&{
                let mut m = marker_json(a, groups, events);
                m["filled_at_unix"] = json!(crate::content::now_micros() / 1_000_000);
                m["filled_at"] = json!(chrono_now());
                m["fill"] = fill_result.as_ref().map(Fill::json).unwrap_or(Value::Null);
                m
            })?,
        )?;
    }
    wait_quiet(
        a.wait_quiet,
        &format!("the {what} page measurements"),
        Some(pid),
    );
    eprintln!("== {what}: measuring {} samples per page", a.samples);
    let pages = measure_pages(&base, &issues, a, what).await?;
    let rss_mib = procstat::rss_kib(pid).map(|r| r.0 as f64 / 1024.0);
    let (graceful, _, _) = server.stop(Duration::from_secs(30));
    drop(server);
    let (_, examples, lines) = scan_log(&log_path);
    let mut log_notes = Vec::new();
    if !examples.is_empty() {
        log_notes.push(format!(
            "{what} server stderr ({lines} lines), distinct WARN/ERROR/other lines:"
        ));
        log_notes.extend(examples.iter().map(|l| format!("    {l}")));
    }
    let (_, data_parts) = dir_parts(dir);
    Ok(Measured {
        pages,
        events: counted,
        issues,
        fill: fill_result,
        data_bytes: dir_size(dir),
        data_parts,
        rss_mib,
        startup_s,
        log_notes,
        graceful,
    })
}

// ------------------------------------------------------------------------------------------------
// The command
// ------------------------------------------------------------------------------------------------

pub async fn run(a: UiArgs) -> anyhow::Result<()> {
    let faultline = a.faultline.canonicalize().with_context(|| {
        format!(
            "faultline binary not found at {} (cargo build --release first)",
            a.faultline.display()
        )
    })?;
    ensure!(
        a.issues >= 1 && a.events >= a.issues as u64,
        "--events must be at least --issues (every issue needs an event)"
    );
    ensure!(!a.reuse || a.data_dir.is_some(), "--reuse needs --data-dir");
    let started = chrono_now();
    let t_run = Instant::now();

    // Decide about the filled data dir before spending time on the baseline.
    let (data_dir, temp) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (crate::fresh_temp_dir("ui-data")?, true),
    };
    let marker_path = data_dir.join(MARKER);
    let has_db = data_dir.join("faultline.db").exists();
    let mut reuse = false;
    let mut filled_at: Option<i64> = None;
    if has_db {
        if !a.reuse {
            bail!(
                "{} already holds a database: pass --reuse to measure it, or use an empty or new dir",
                data_dir.display()
            );
        }
        let text = std::fs::read_to_string(&marker_path).with_context(|| {
            format!(
                "{} holds a database but no {MARKER}: the fill did not complete; remove the dir and fill again",
                data_dir.display()
            )
        })?;
        let m: Value =
            serde_json::from_str(&text).with_context(|| format!("{}", marker_path.display()))?;
        let want = marker_json(&a, a.issues, a.events);
        for (k, v) in want.as_object().unwrap() {
            if &m[k] != v {
                bail!(
                    "{} was filled with {k} = {}, this run asks for {v}: use another --data-dir",
                    data_dir.display(),
                    m[k]
                );
            }
        }
        filled_at = m["filled_at_unix"].as_i64();
        reuse = true;
    } else if a.reuse {
        eprintln!(
            "nothing to reuse in {} yet: filling it (kept for the next --reuse)",
            data_dir.display()
        );
    }

    // ---------------------------------------------------------------- 1. baseline
    let baseline = if a.no_baseline {
        None
    } else {
        let dir = crate::fresh_temp_dir("ui-baseline")?;
        eprintln!(
            "== baseline: a fresh server with {} issues / {} events, data dir {}",
            a.baseline_issues,
            a.baseline_events,
            dir.display()
        );
        let m = run_server(
            &faultline,
            &dir,
            a.baseline_issues,
            a.baseline_events,
            false,
            &a,
            "baseline",
        )
        .await;
        if m.is_err() {
            print_log_tail(&dir);
        }
        if a.keep_data {
            eprintln!("baseline data dir kept: {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Some(m?)
    };

    // ---------------------------------------------------------------- 2-3. filled
    eprintln!(
        "== filled: {} issues / {} events ({}, timestamps over {} days, {} users), data dir {}",
        a.issues,
        a.events,
        a.distribution(),
        a.spread_days,
        a.users,
        data_dir.display()
    );
    let filled = run_server(
        &faultline, &data_dir, a.issues, a.events, reuse, &a, "filled",
    )
    .await;
    if filled.is_err() {
        print_log_tail(&data_dir);
    }
    if temp && !a.keep_data {
        let _ = std::fs::remove_dir_all(&data_dir);
    } else {
        eprintln!("data dir kept: {}", data_dir.display());
    }
    let filled = filled?;

    // ---------------------------------------------------------------- 4. report
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut counts: Vec<u64> = filled.issues.iter().map(|i| i.count).collect();
    counts.sort_unstable();
    let median = counts.get(counts.len() / 2).copied().unwrap_or(0);
    let largest = counts.last().copied().unwrap_or(0);
    let top10: u64 = counts.iter().rev().take(10).sum();
    let query_hits = filled
        .issues
        .iter()
        .filter(|i| i.title.to_lowercase().contains(&a.query.to_lowercase()))
        .count();
    let age_h = filled_at.map(|t| (crate::content::now_micros() / 1_000_000 - t) as f64 / 3600.0);
    let target = a.target_ms;

    let mut md = format!("\n## Faultline UI page speed ({started})\n\n");
    md += &format!(
        "{cores} cores; `faultline serve` on SQLite; one logged-in browser session, one request at a time \
         (HTTP/1.1 keep-alive); per page kind {} warm-up requests, then **{} samples**, kinds interleaved. \
         Server time = the page's `Server-Timing: app;dur` (handler + template); client time = request \
         written → whole page read.\n\n",
        a.warmup.max(1),
        a.samples
    );
    md += &format!(
        "Data: **{} issues, {} events** (through the ingest endpoint; {}; timestamps over the last {} days; \
         {} users); largest issue {largest} events, 10 largest {top10}, median {median}. \
         `query={}` matches {query_hits} titles. Data dir **{:.1} MiB** ({}).\n\n",
        filled.issues.len(),
        filled.events,
        if a.uniform {
            "every issue the same share".to_string()
        } else {
            "half of the events uniformly over the issues, half Zipf-like".to_string()
        },
        a.spread_days,
        a.users,
        a.query,
        filled.data_bytes as f64 / 1048576.0,
        filled.data_parts,
    );
    match (&filled.fill, age_h) {
        (Some(f), _) => {
            md += &format!(
                "Filled in {:.0} s: {} accepted in {:.0} s ({:.0}/s, chunks of {}, {} connections), digested {:.0} events/s end to end{}.\n\n",
                f.total_s,
                f.accepted,
                f.load_s,
                f.accepted as f64 / f.load_s.max(1e-9),
                a.fill_chunk,
                a.concurrency,
                f.digested as f64 / f.total_s.max(1e-9),
                if f.caught_up {
                    String::new()
                } else {
                    " — **digestion did NOT catch up**".into()
                }
            )
        }
        (None, Some(h)) => {
            md += &format!(
                "Reused a data dir filled {h:.1} h ago{}.\n\n",
                if h > 12.0 {
                    " (**its events have aged: the 24 h sparklines and the 14 d charts hold less than right after filling**)"
                } else {
                    ""
                }
            )
        }
        (None, None) => {}
    }
    if let Some(b) = &baseline {
        md += &format!(
            "Nearly empty baseline: a fresh server with {} issues / {} events, measured first in the same run.\n\n",
            b.issues.len(),
            b.events
        );
    }
    md += &format!(
        "| page | samples | server p50 (ms) | server p95 (ms) | server max (ms) | client p50 (ms) | client p95 (ms) | server p95 < {target:.0} ms | nearly empty: server p50 / p95 (ms) | p95 ÷ nearly empty | first request, server (ms) | page (KiB) |\n\
         |---|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|\n"
    );
    let f2 = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
    let mut ratios = serde_json::Map::new();
    for k in &filled.pages {
        let base_k = baseline
            .as_ref()
            .and_then(|b| b.pages.iter().find(|p| p.id == k.id));
        let ratio = k
            .server
            .zip(base_k.and_then(|b| b.server))
            .map(|(x, y)| x.p95 / y.p95.max(1e-3));
        if let Some(r) = ratio {
            ratios.insert(k.id.to_string(), json!(round1(r)));
        }
        let verdict = match k.meets(target) {
            None => format!("**not measured**: {}", k.failure.as_deref().unwrap_or("?")),
            Some(true) => "yes".into(),
            Some(false) if k.failed > 0 => format!(
                "**no**: {} failed ({})",
                k.failed,
                k.failure.as_deref().unwrap_or("?")
            ),
            Some(false) => "**no**".into(),
        };
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {verdict} | {} | {} | {} | {:.1} |\n",
            k.name,
            k.samples,
            f2(k.server.map(|s| s.p50)),
            f2(k.server.map(|s| s.p95)),
            f2(k.server.map(|s| s.max)),
            f2(k.client.map(|s| s.p50)),
            f2(k.client.map(|s| s.p95)),
            base_k
                .and_then(|b| b.server)
                .map(|s| format!("{:.2} / {:.2}", s.p50, s.p95))
                .unwrap_or_else(|| "–".into()),
            ratio
                .map(|r| format!("{r:.1}×"))
                .unwrap_or_else(|| "–".into()),
            f2(k.first_server_ms),
            k.mean_kib,
        );
    }
    let measured: Vec<&KindSummary> = filled
        .pages
        .iter()
        .filter(|k| k.meets(target).is_some())
        .collect();
    let all_ok = !measured.is_empty()
        && measured.len() == filled.pages.len()
        && measured.iter().all(|k| k.meets(target) == Some(true));
    md += &format!(
        "\n**Requirement (issue list and issue page under {target:.0} ms at p95, server side): {}**\n",
        if all_ok {
            "met for every page kind".to_string()
        } else {
            let bad: Vec<&str> = filled
                .pages
                .iter()
                .filter(|k| k.meets(target) != Some(true))
                .map(|k| k.name.as_str())
                .collect();
            format!("not met or not measured: {}", bad.join("; "))
        }
    );
    md += "\n| server | value |\n|---|---:|\n";
    md += &format!(
        "| startup until listening (s) | {:.2} |\n",
        filled.startup_s
    );
    md += &format!(
        "| RSS after the measurements (MiB) | {} |\n",
        f2(filled.rss_mib)
    );
    md += &format!(
        "| graceful shutdown (SIGTERM) | {} |\n",
        if filled.graceful {
            "yes"
        } else {
            "**no, killed**"
        }
    );
    md += &format!("| whole run (s) | {:.0} |\n", t_run.elapsed().as_secs_f64());
    let mut notes: Vec<String> = Vec::new();
    for (label, m) in [("filled", Some(&filled)), ("baseline", baseline.as_ref())] {
        let Some(m) = m else { continue };
        for k in &m.pages {
            if let Some(f) = &k.first_failure {
                notes.push(format!(
                    "{label}: {}: {} failed; first: `{}`",
                    k.name,
                    k.failed,
                    f.replace('\n', " ")
                ));
            }
            if k.no_timing > 0 {
                notes.push(format!(
                    "{label}: {}: {} pages without a Server-Timing header",
                    k.name, k.no_timing
                ));
            }
        }
        if let Some(f) = &m.fill {
            for e in &f.verify_errors {
                notes.push(format!("{label}: verify error: {e}"));
            }
            if !f.statuses.keys().all(|s| *s == 200) || !f.errors.is_empty() {
                notes.push(format!(
                    "{label}: fill statuses {:?}, transport errors {:?}",
                    f.statuses, f.errors
                ));
            }
        }
        notes.extend(m.log_notes.iter().cloned());
    }
    if !notes.is_empty() {
        md += "\nNotes:\n";
        for n in &notes {
            md += &format!("- {n}\n");
        }
    }
    println!("{md}");

    let pages_json = |m: &Measured| {
        m.pages
            .iter()
            .map(|k| (k.id.to_string(), k.json(target)))
            .collect::<serde_json::Map<_, _>>()
    };
    let j = json!({
        "bench": "faultline-ui",
        "date": started,
        "cores": cores,
        "requested": {"issues": a.issues, "events": a.events},
        "issues": filled.issues.len(),
        "events": filled.events,
        "distribution": a.distribution(),
        "spread_days": a.spread_days,
        "users": a.users,
        "largest_issue_events": largest,
        "median_issue_events": median,
        "query": a.query,
        "query_title_matches": query_hits,
        "samples": a.samples,
        "warmup": a.warmup.max(1),
        "target_ms": target,
        "requirement_met": all_ok,
        "data_dir_mib": round1(filled.data_bytes as f64 / 1048576.0),
        "reused": reuse,
        "reused_data_age_h": age_h.map(round1),
        "fill": filled.fill.as_ref().map(Fill::json),
        "rss_after_mib": filled.rss_mib.map(round1),
        "pages": pages_json(&filled),
        "baseline": baseline.as_ref().map(|b| json!({
            "issues": b.issues.len(),
            "events": b.events,
            "pages": pages_json(b),
        })),
        "p95_ratio_vs_baseline": ratios,
        "run_s": round1(t_run.elapsed().as_secs_f64()),
    });
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pages_carry() {
        assert_eq!(server_timing_ms("app;dur=12.34"), Some(12.34));
        assert_eq!(
            server_timing_ms("db;dur=1, app;desc=\"x\";dur=3.5"),
            Some(3.5)
        );
        assert_eq!(server_timing_ms("db;dur=1"), None);
        let html = br#"<form method="post" action="/login" class="card stack" id="login">
  <input type="hidden" name="csrf" value="0123abcd">
  <input type="hidden" name="next" value="/">"#;
        assert_eq!(hidden_input(html, "csrf").as_deref(), Some("0123abcd"));
        assert_eq!(hidden_input(html, "next").as_deref(), Some("/"));
        assert_eq!(hidden_input(html, "nope"), None);
        assert_eq!(
            form_encode(&[("email", "a+b@x.com"), ("p", "a b/c")]),
            "email=a%2Bb%40x.com&p=a+b%2Fc"
        );
        let s = Stats::of(&(1..=200).map(f64::from).collect::<Vec<_>>()).unwrap();
        assert_eq!((s.p50, s.p95, s.max), (100.0, 190.0, 200.0));
    }

    #[test]
    fn cookies_are_kept_and_removed() {
        let mut b = Browser::new("http://127.0.0.1:1").unwrap();
        b.set_cookie("faultline_login=abc; Path=/login; HttpOnly; SameSite=Strict");
        b.set_cookie("faultline_session=s1; Path=/; HttpOnly");
        assert_eq!(b.cookies.len(), 2);
        b.set_cookie(
            "faultline_login=; Path=/login; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        );
        assert_eq!(b.cookies.keys().collect::<Vec<_>>(), ["faultline_session"]);
    }
}
