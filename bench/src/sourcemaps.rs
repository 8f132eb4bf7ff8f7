//! `sourcemaps`: digest throughput of minified browser events whose frames are resolved with an
//! uploaded source map, next to the same events in a project without maps.
//!
//! 1. `faultline serve` on a fresh data dir; projects `bench/bench` (with maps) and
//!    `bench/plain` (without), a superuser and a token via the CLI;
//! 2. the fixture bundle `fixtures/sourcemaps/dist/app.min.js` and its map uploaded to
//!    `bench/bench` through `POST /api/0/projects/{org}/{project}/releases/{version}/files/`;
//! 3. browser error events (platform `javascript`, release set) whose frames sit on real call
//!    sites and `throw`s of the bundle, found with its map;
//! 4. a warm-up in both projects (maps parsed and cached, misses remembered), then a check that
//!    a stored event of `bench/bench` shows the original function names and one of `bench/plain`
//!    the minified ones;
//! 5. alternating rounds of max throughput (closed loop) into each project: digested events/s
//!    (issue-list counts, as `run-all`) and the ratio with maps / without.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::content::{Corpus, Rng, iso_utc, now_micros};
use crate::load::{LoadOpts, Target};
use crate::runall::{
    Server, chrono_now, cli, scan_log, setup_bench_project, start_faultline, wait_quiet,
};
use crate::verify::Verifier;
use crate::{DigestArgs, Phase, measure, procstat, round2};

/// The minified bundle and its map (built from `fixtures/sourcemaps/src`, see its README).
const BUNDLE: &str = include_str!("../fixtures/sourcemaps/dist/app.min.js");
const MAP: &[u8] = include_bytes!("../fixtures/sourcemaps/dist/app.min.js.map");
/// Where the bundle is served, as browsers report it, and its upload name.
const BUNDLE_URL: &str = "https://shop.example/static/app.min.js";
const UPLOAD_DIR: &str = "~/static";
const RELEASE: &str = "shop@1.4.2";

/// Call chains of the fixture app (original names, outermost first), each ending where it
/// throws, with the error it throws.
const CHAINS: &[(&[&str], &str, &str)] = &[
    (
        &["onCheckoutSubmit", "submitOrder", "addLine", "findProduct"],
        "Error",
        "unknown product hat",
    ),
    (
        &[
            "onCheckoutSubmit",
            "submitOrder",
            "addLine",
            "parseQuantity",
        ],
        "RangeError",
        "invalid quantity: -1",
    ),
    (
        &[
            "onCheckoutSubmit",
            "submitOrder",
            "buildPaymentRequest",
            "applyDiscountCode",
        ],
        "TypeError",
        "unknown discount code SPRING5",
    ),
    (
        &[
            "onCheckoutSubmit",
            "submitOrder",
            "buildPaymentRequest",
            "computeTotal",
        ],
        "Error",
        "line without a price: cap",
    ),
    (
        &["onCheckoutSubmit", "submitOrder", "buildPaymentRequest"],
        "RangeError",
        "nothing to pay for cart c-1764070000000",
    ),
];

#[derive(Args, Clone, Debug)]
pub struct SourcemapsArgs {
    /// Path of the faultline binary (build it first: cargo build --release).
    #[arg(long, default_value = "target/release/faultline")]
    faultline: PathBuf,
    /// Seconds of max-throughput load per project and round.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Rounds; each measures the project without maps, then the one with maps.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events sent to each project before measuring (maps parsed and cached).
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Pre-rendered event bodies (cycled; each request gets a unique event_id).
    #[arg(long, default_value_t = 1000)]
    variants: usize,
    /// Before each measurement, wait up to this many seconds for the machine to be quiet.
    #[arg(long, default_value_t = 60.0)]
    wait_quiet: f64,
    /// Keep the temporary data directory (and the server log in it).
    #[arg(long)]
    keep_data: bool,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// A frame position in the bundle: the minified function name, line and column (1-based).
#[derive(Debug, Clone)]
struct Position {
    function: String,
    lineno: u32,
    colno: u32,
}

/// A declared function of the bundle: its minified name and where its text starts and ends.
struct Declared {
    minified: String,
    line: u32,
    start: u32,
    end: u32,
}

/// Finds, with the map, each original function's minified declaration, then a call site of
/// `callee` inside `caller`, or the `throw` inside a function.
struct Bundle {
    map: sourcemap::SourceMap,
    lines: Vec<String>,
    functions: HashMap<String, Declared>,
}

impl Bundle {
    fn parse() -> anyhow::Result<Bundle> {
        let map = sourcemap::SourceMap::from_slice(MAP).context("the fixture map")?;
        let lines: Vec<String> = BUNDLE.lines().map(str::to_string).collect();
        let mut starts: Vec<(u32, u32, String, String)> = Vec::new();
        for token in map.tokens() {
            let (Some(name), line, col) =
                (token.get_name(), token.get_dst_line(), token.get_dst_col())
            else {
                continue;
            };
            let Some(text) = lines.get(line as usize) else {
                continue;
            };
            let Some(before) = text.get(..col as usize) else {
                continue;
            };
            if !before.ends_with("function ") {
                continue;
            }
            let ident: String = text[col as usize..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
                .collect();
            starts.push((line, col, ident, name.to_string()));
        }
        starts.sort();
        let mut functions = HashMap::new();
        for (i, (line, col, ident, name)) in starts.iter().enumerate() {
            let end = match starts.get(i + 1) {
                Some((l, c, _, _)) if l == line => *c,
                _ => lines.get(*line as usize).map_or(0, |t| t.len() as u32),
            };
            functions.insert(
                name.clone(),
                Declared {
                    minified: ident.clone(),
                    line: *line,
                    start: *col,
                    end,
                },
            );
        }
        Ok(Bundle {
            map,
            lines,
            functions,
        })
    }

    fn declared(&self, name: &str) -> anyhow::Result<&Declared> {
        self.functions
            .get(name)
            .with_context(|| format!("the fixture map declares no function {name}"))
    }

    /// The first token inside `f` (after its name) whose minified text passes `pick`.
    fn inside(
        &self,
        f: &Declared,
        pick: impl Fn(&sourcemap::Token<'_>, &str) -> bool,
    ) -> Option<Position> {
        let text = self.lines.get(f.line as usize)?;
        self.map.tokens().find_map(|t| {
            let (line, col) = (t.get_dst_line(), t.get_dst_col());
            let inside = line == f.line && col > f.start && col < f.end;
            let rest = text.get(col as usize..)?;
            (inside && pick(&t, rest)).then(|| Position {
                function: f.minified.clone(),
                lineno: line + 1,
                colno: col + 1,
            })
        })
    }

    /// The frames of a chain, outermost first: call sites, then the `throw`.
    fn frames(&self, chain: &[&str]) -> anyhow::Result<Vec<Position>> {
        let mut out = Vec::new();
        for pair in chain.windows(2) {
            let (caller, callee) = (self.declared(pair[0])?, self.declared(pair[1])?);
            let call = format!("{}(", callee.minified);
            let at = self
                .inside(caller, |t, rest| {
                    t.get_name() == Some(pair[1]) && rest.starts_with(&call)
                })
                .with_context(|| format!("no call of {} in {}", pair[1], pair[0]))?;
            out.push(at);
        }
        let last = chain.last().context("an empty chain")?;
        let at = self
            .inside(self.declared(last)?, |_, rest| rest.starts_with("throw"))
            .with_context(|| format!("no throw in {last}"))?;
        out.push(at);
        Ok(out)
    }
}

/// A browser error event like @sentry/browser's for the chain's frames.
fn browser_event(frames: &[Position], ty: &str, value: &str, r: &mut Rng) -> Value {
    let frames: Vec<Value> = frames
        .iter()
        .map(|p| {
            json!({"filename": BUNDLE_URL, "abs_path": BUNDLE_URL, "function": p.function,
                   "lineno": p.lineno, "colno": p.colno, "in_app": true})
        })
        .collect();
    let browsers = [
        ("Chrome", "131.0.0", "Windows", "10"),
        ("Firefox", "133.0", "Mac OS X", "14.6"),
        ("Safari", "18.1", "iOS", "18.1"),
        ("Edge", "131.0.0", "Windows", "11"),
    ];
    let (browser, bver, os, over) = *r.pick(&browsers);
    let ts = now_micros() - r.int(0, 2_000_000);
    let user = r.int(1, 5000);
    let page = *r.pick(&["/checkout", "/cart", "/checkout?step=2", "/products/mug"]);
    let crumbs: Vec<Value> = (0..r.int(3, 8))
        .map(|i| match i % 3 {
            0 => json!({"timestamp": (ts / 1000) as f64 / 1000.0 - 5.0, "category": "ui.click",
                        "message": "form#checkout > button.submit"}),
            1 => json!({"timestamp": (ts / 1000) as f64 / 1000.0 - 4.0, "category": "fetch",
                        "type": "http", "data": {"method": "GET", "url": "/api/cart",
                        "status_code": 200}}),
            _ => json!({"timestamp": (ts / 1000) as f64 / 1000.0 - 9.0, "category": "navigation",
                        "data": {"from": "/products/mug", "to": page}}),
        })
        .collect();
    json!({
        "timestamp": iso_utc(ts),
        "platform": "javascript",
        "level": "error",
        "release": RELEASE,
        "environment": "production",
        "exception": {"values": [{
            "type": ty, "value": value,
            "mechanism": {"type": "onerror", "handled": false},
            "stacktrace": {"frames": frames},
        }]},
        "breadcrumbs": {"values": crumbs},
        "request": {"url": format!("https://shop.example{page}"),
                    "headers": {"User-Agent": format!("Mozilla/5.0 ({os} {over}) {browser}/{bver}"),
                                "Referer": "https://shop.example/cart"}},
        "user": {"id": user.to_string(), "ip_address": "{{auto}}"},
        "contexts": {"browser": {"name": browser, "version": bver},
                     "os": {"name": os, "version": over}},
        "tags": {"page": page, "transaction": page},
        "sdk": {"name": "sentry.javascript.browser", "version": "9.1.0",
                "packages": [{"name": "npm:@sentry/browser", "version": "9.1.0"}]},
    })
}

/// A request on a fresh connection with a bearer token: (status, body).
async fn call(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let hostport = base.strip_prefix("http://").context("an http:// server")?;
    let addr = crate::load::resolve(hostport)?;
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, hostport)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    let resp = sender.send_request(req.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// Uploads one release file (`name`, e.g. `~/static/app.min.js`) with the legacy files route.
async fn upload(base: &str, token: &str, name: &str, data: &[u8]) -> anyhow::Result<()> {
    let boundary = "faultline-bench-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            name.rsplit('/').next().unwrap_or(name)
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let path = format!("/api/0/projects/bench/bench/releases/{RELEASE}/files/");
    let (status, answer) = call(
        base,
        token,
        "POST",
        &path,
        Some(&format!("multipart/form-data; boundary={boundary}")),
        Bytes::from(body),
    )
    .await?;
    ensure!(
        status == 201 || status == 200,
        "upload of {name}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// The functions of the top exception's frames of the latest stored event of a project.
async fn stored_functions(base: &str, token: &str, project: &str) -> anyhow::Result<Vec<String>> {
    let get = |path: String| async move {
        let (status, body) = call(base, token, "GET", &path, None, Bytes::new()).await?;
        ensure!(status == 200, "GET {path}: {status}");
        Ok::<Value, anyhow::Error>(serde_json::from_slice(&body)?)
    };
    let list = get(format!("/api/0/projects/bench/{project}/events/")).await?;
    let id = list[0]["eventID"]
        .as_str()
        .or_else(|| list[0]["id"].as_str())
        .with_context(|| format!("no stored event in {project}: {list}"))?
        .to_string();
    let event = get(format!("/api/0/projects/bench/{project}/events/{id}/")).await?;
    let frames = event["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "exception"))
        .and_then(|e| e["data"]["values"][0]["stacktrace"]["frames"].as_array())
        .with_context(|| format!("event {id} of {project} has no exception frames"))?;
    Ok(frames
        .iter()
        .map(|f| f["function"].as_str().unwrap_or_default().to_string())
        .collect())
}

pub async fn run(a: SourcemapsArgs) -> anyhow::Result<()> {
    let faultline = a.faultline.canonicalize().with_context(|| {
        format!(
            "faultline binary not found at {} (cargo build --release first)",
            a.faultline.display()
        )
    })?;
    let started = chrono_now();
    let bundle = Bundle::parse()?;
    let chains: Vec<Vec<Position>> = CHAINS
        .iter()
        .map(|(chain, _, _)| bundle.frames(chain))
        .collect::<anyhow::Result<_>>()?;
    let originals: BTreeSet<&str> = CHAINS.iter().flat_map(|c| c.0.iter().copied()).collect();
    let minified: BTreeSet<String> = chains
        .iter()
        .flatten()
        .map(|p| p.function.clone())
        .collect();
    eprintln!(
        "== {} call chains over {} functions of the fixture bundle ({} B, map {} B)",
        chains.len(),
        originals.len(),
        BUNDLE.len(),
        MAP.len()
    );

    let data_dir = crate::fresh_temp_dir("maps")?;
    let Server {
        proc: mut server,
        base,
        log_path,
        ..
    } = start_faultline(&faultline, &data_dir)?;
    let pid = server.pid();
    let (dsn_maps, token) = setup_bench_project(&faultline, &data_dir, &base)?;
    let data = data_dir.to_str().context("data dir path is not UTF-8")?;
    let dsn_plain = cli(
        &faultline,
        &[
            "project",
            "create",
            "bench/plain",
            "--data-dir",
            data,
            "--public-url",
            &base,
        ],
        &[],
    )?;
    eprintln!("   listening on {base} (pid {pid}); uploading the bundle and its map");
    upload(
        &base,
        &token,
        &format!("{UPLOAD_DIR}/app.min.js"),
        BUNDLE.as_bytes(),
    )
    .await?;
    upload(&base, &token, &format!("{UPLOAD_DIR}/app.min.js.map"), MAP).await?;

    let mut rng = Rng::new(7);
    let events: Vec<(usize, Value)> = (0..a.variants.max(chains.len()))
        .map(|v| {
            let g = v % chains.len();
            let (_, ty, value) = CHAINS[g];
            (g, browser_event(&chains[g], ty, value, &mut rng))
        })
        .collect();
    let corpus_maps = Arc::new(Corpus::from_events(&dsn_maps, &events)?);
    corpus_maps.verify_all()?;
    let corpus_plain = Arc::new(corpus_maps.with_dsn(&dsn_plain));
    let (gz, raw) = corpus_maps.mean_sizes();
    let target_maps = Target::from_dsn(&dsn_maps)?;
    let target_plain = Target::from_dsn(&dsn_plain)?;
    let verifier = |project: &str| Verifier::Url {
        url: format!("{base}/api/0/projects/bench/{project}/issues/?query=&limit=100&statsPeriod="),
        token: token.clone(),
    };
    let (v_maps, v_plain) = (verifier("bench"), verifier("plain"));
    let digest = DigestArgs {
        verify_interval_ms: 200,
        verify_idle: 30.0,
        verify_timeout: 900.0,
    };
    let opts = |events: Option<u64>, secs: Option<f64>| LoadOpts {
        concurrency: a.concurrency,
        rate: None,
        duration: secs.map(Duration::from_secs_f64),
        events,
        timeout: Duration::from_secs(30),
        progress: Duration::from_secs(5),
        check_ids: true,
        first_index: 0,
    };

    eprintln!("== warm-up: {} events into each project", a.warmup);
    for (label, target, corpus, v) in [
        ("warm-up with maps", &target_maps, &corpus_maps, &v_maps),
        (
            "warm-up without maps",
            &target_plain,
            &corpus_plain,
            &v_plain,
        ),
    ] {
        let p = measure(
            label,
            target,
            corpus.clone(),
            &opts(Some(a.warmup), None),
            Some(v),
            Some(pid),
            &digest,
        )
        .await?;
        ensure!(
            p.digest.as_ref().is_some_and(|d| d.caught_up),
            "{label}: the server did not digest the warm-up events"
        );
    }
    let with_maps = stored_functions(&base, &token, "bench").await?;
    let without = stored_functions(&base, &token, "plain").await?;
    eprintln!("   stored frames with maps: {with_maps:?}; without: {without:?}");
    if !with_maps.iter().all(|f| originals.contains(f.as_str())) {
        bail!("frames were not resolved with the map: {with_maps:?}");
    }
    if !without.iter().all(|f| minified.contains(f)) {
        bail!("frames of the project without maps changed: {without:?}");
    }

    let mut rounds: Vec<(Phase, f64, Phase, f64)> = Vec::new();
    for round in 1..=a.rounds {
        let (quiet_plain, _) = wait_quiet(a.wait_quiet, "the run without maps", Some(pid));
        eprintln!(
            "== round {round}: without maps, closed loop {}s, {} connections",
            a.duration, a.concurrency
        );
        let plain = measure(
            "without maps",
            &target_plain,
            corpus_plain.clone(),
            &opts(None, Some(a.duration)),
            Some(&v_plain),
            Some(pid),
            &digest,
        )
        .await?;
        eprint!("{}", plain.human());
        let (quiet_maps, _) = wait_quiet(a.wait_quiet, "the run with maps", Some(pid));
        eprintln!("== round {round}: with maps");
        let maps = measure(
            "with maps",
            &target_maps,
            corpus_maps.clone(),
            &opts(None, Some(a.duration)),
            Some(&v_maps),
            Some(pid),
            &digest,
        )
        .await?;
        eprint!("{}", maps.human());
        rounds.push((plain, quiet_plain, maps, quiet_maps));
    }
    // Resolution still happened under load.
    let after = stored_functions(&base, &token, "bench").await?;
    ensure!(
        after.iter().all(|f| originals.contains(f.as_str())),
        "frames digested under load were not resolved: {after:?}"
    );
    let rss = procstat::rss_kib(pid).map(|r| r.1);
    let (graceful, _, _) = server.stop(Duration::from_secs(30));
    drop(server);
    let (levels, examples, _) = scan_log(&log_path);

    let rate = |p: &Phase| p.digested_per_s.unwrap_or(0.0);
    let sum_plain: f64 = rounds.iter().map(|r| rate(&r.0)).sum();
    let sum_maps: f64 = rounds.iter().map(|r| rate(&r.2)).sum();
    let ratio = if sum_plain > 0.0 {
        sum_maps / sum_plain
    } else {
        0.0
    };
    let cores = |x: Option<f64>| x.map_or("–".to_string(), |c| format!("{:.0}%", c * 100.0));
    let mut md = format!(
        "\n## Source map digest throughput ({started})\n\n\
         Minified browser events (platform `javascript`, {}–{} frames in {} call chains of a \
         {} B esbuild bundle, map {} B), mean body {gz:.0} B gzip / {raw:.0} B; closed loop, \
         {} connections, {} s per run; runs alternate between the project without maps and the \
         one with maps (after a warm-up of {} events each).\n\n\
         | round | without maps: digested/s | other CPU | with maps: digested/s | other CPU | ratio |\n\
         |---|---:|---:|---:|---:|---:|\n",
        chains.iter().map(Vec::len).min().unwrap_or(0),
        chains.iter().map(Vec::len).max().unwrap_or(0),
        chains.len(),
        BUNDLE.len(),
        MAP.len(),
        a.concurrency,
        a.duration,
        a.warmup,
    );
    for (i, (plain, _, maps, _)) in rounds.iter().enumerate() {
        md += &format!(
            "| {} | {:.0} | {} | {:.0} | {} | {:.2} |\n",
            i + 1,
            rate(plain),
            cores(plain.other_cores_load),
            rate(maps),
            cores(maps.other_cores_load),
            if rate(plain) > 0.0 {
                rate(maps) / rate(plain)
            } else {
                0.0
            }
        );
    }
    md += &format!(
        "| all | {:.0} | | {:.0} | | **{ratio:.2}** |\n\n\
         Resolution checked on stored events (functions {} with maps, {} without). Server peak \
         RSS {} MiB; graceful stop: {graceful}; log levels {levels:?}.\n",
        sum_plain / rounds.len().max(1) as f64,
        sum_maps / rounds.len().max(1) as f64,
        after.join(" → "),
        without.join(" → "),
        rss.map_or("–".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    for e in examples.iter().take(5) {
        md += &format!("    {e}\n");
    }
    println!("{md}");
    let j = json!({
        "bench": "sourcemaps",
        "started": started,
        "duration_s": a.duration,
        "concurrency": a.concurrency,
        "rounds": rounds.iter().map(|(p, qp, m, qm)| json!({
            "without_maps_digested_per_s": round2(rate(p)),
            "with_maps_digested_per_s": round2(rate(m)),
            "other_cores_without": p.other_cores_load.map(round2),
            "other_cores_with": m.other_cores_load.map(round2),
            "quiet_before_without": round2(*qp),
            "quiet_before_with": round2(*qm),
        })).collect::<Vec<_>>(),
        "ratio": round2(ratio),
        "resolved_functions": after,
    });
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    if a.keep_data {
        eprintln!("kept {}", data_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}
