//! `alerts`: alert latency — time from the SDK's event being acknowledged (its 200 answer read)
//! to the rule's webhook request arriving, for brand-new issues, under a background load.
//!
//! 1. `faultline serve --allow-private-webhooks` on a fresh data dir; project, user, token via CLI;
//! 2. a webhook receiver in this process (hyper, 127.0.0.1:0) recording each request's arrival
//!    instant and the `event.event_id`s it carries (every inner alert of a digest);
//! 3. warm-up: one event of each background group, waited for until digested (so background
//!    events are not new issues), then the rule `new_issue`, `interval_minutes: 0`, webhook;
//! 4. open-loop background load of the realistic envelopes over a few existing groups;
//! 5. meanwhile N events with unique fingerprints at a fixed rate, each with a known event id;
//!    latency = webhook arrival − acknowledgement; stragglers waited for (default 60 s).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::content::{Rng, iso_utc, make_groups, new_issue_event, now_micros};
use crate::load::{LoadOpts, Target};
use crate::runall::{
    Server, chrono_now, dir_size, scan_log, setup_bench_project, start_faultline_with,
};
use crate::verify::Verifier;
use crate::{CorpusArgs, build_corpus, procstat, round1, round2};

#[derive(Args, Clone, Debug)]
pub struct AlertsArgs {
    /// Path of the faultline binary (build it first: cargo build --release).
    #[arg(long, default_value = "target/release/faultline")]
    faultline: PathBuf,
    /// Events that each open a new issue (unique fingerprint) and should each fire the webhook.
    #[arg(long, default_value_t = 1000)]
    new_issues: usize,
    /// New-issue events per second (open loop).
    #[arg(long, default_value_t = 20.0)]
    new_issue_rate: f64,
    /// Background load, events/s (open loop) into existing issues, during the whole measurement.
    #[arg(long, default_value_t = 1000.0)]
    background_rate: f64,
    /// Background load keeps going this many seconds after the last new-issue event.
    #[arg(long, default_value_t = 5.0)]
    background_tail: f64,
    /// Connections of the background load.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connections sending the new-issue events.
    #[arg(long, default_value_t = 4)]
    new_issue_connections: usize,
    /// Existing issues the background events fall into (and `--variants`, `--seed`).
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Wait this long after the last new-issue acknowledgement for late webhooks.
    #[arg(long, default_value_t = 60.0)]
    straggler_wait: f64,
    /// Keep the temporary data directory (and the server log in it).
    #[arg(long)]
    keep_data: bool,
    /// Append the JSON result line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// One webhook request as it arrived.
struct Arrival {
    at: Instant,
    /// `event.event_id` of the alert, or of every alert of a digest (normalized: hex, lower case).
    ids: Vec<String>,
    digest: bool,
    /// Body that was not the expected JSON (first 200 bytes).
    bad: Option<String>,
}

#[derive(Default)]
struct Received {
    arrivals: Mutex<Vec<Arrival>>,
}

fn norm_id(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

fn parse_hook(body: &[u8]) -> (Vec<String>, bool, Option<String>) {
    let bad = || Some(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (Vec::new(), false, bad());
    };
    let id_of = |a: &Value| a["event"]["event_id"].as_str().map(norm_id);
    if v["trigger"] == "digest" {
        let ids = v["alerts"]
            .as_array()
            .map(|xs| xs.iter().filter_map(id_of).collect())
            .unwrap_or_default();
        (ids, true, None)
    } else {
        match id_of(&v) {
            Some(id) => (vec![id], false, None),
            None => (Vec::new(), false, bad()),
        }
    }
}

/// Starts the webhook receiver; returns its URL.
async fn start_receiver(rx: Arc<Received>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let rx = rx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let rx = rx.clone();
                    async move {
                        // The request counts as arrived when its whole body is read.
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let at = Instant::now();
                        let (ids, digest, bad) = parse_hook(&body);
                        rx.arrivals.lock().unwrap().push(Arrival {
                            at,
                            ids,
                            digest,
                            bad,
                        });
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(url)
}

/// One request on a fresh connection; (status, body).
async fn request(
    addr: std::net::SocketAddr,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(u16, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Result of one new-issue event.
#[derive(Clone, Copy)]
struct Ack {
    sent: Instant,
    acked: Instant,
    ok: bool,
}

/// A gzip envelope with one event opening a new issue (fingerprint `tag`); (event id, body).
fn new_issue_body(
    gs: &[crate::content::Group],
    n: usize,
    tag: &str,
    rng: &mut Rng,
    hdr_dsn: &str,
) -> anyhow::Result<(String, Bytes)> {
    let mut id = [0u8; 32];
    rng.uuid4_hex(&mut id);
    let id = String::from_utf8(id.to_vec())?;
    let mut ev = new_issue_event(gs, n, tag, rng, now_micros());
    ev["event_id"] = json!(id);
    let payload = serde_json::to_vec(&ev)?;
    let mut env = format!(
        "{{\"event_id\":\"{id}\",\"sent_at\":\"{}Z\",\"dsn\":{hdr_dsn}}}\n\
         {{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
        &iso_utc(now_micros())[..23],
        payload.len()
    )
    .into_bytes();
    env.extend_from_slice(&payload);
    env.push(b'\n');
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&env)?;
    Ok((id, Bytes::from(enc.finish()?)))
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub async fn run(a: AlertsArgs) -> anyhow::Result<()> {
    let faultline = a.faultline.canonicalize().with_context(|| {
        format!(
            "faultline binary not found at {} (cargo build --release first)",
            a.faultline.display()
        )
    })?;
    if a.new_issues == 0 || a.new_issue_rate <= 0.0 || a.background_rate < 0.0 {
        bail!("--new-issues and --new-issue-rate must be positive");
    }
    let started = chrono_now();
    let data_dir = crate::fresh_temp_dir("alerts")?;

    // ------------------------------------------------------------ 1. server, project, receiver
    let Server {
        proc: mut server,
        base,
        startup_s,
        log_path,
        ..
    } = start_faultline_with(&faultline, &data_dir, &["--allow-private-webhooks"])?;
    let pid = server.pid();
    let (dsn, token) = setup_bench_project(&faultline, &data_dir, &base)?;
    eprintln!("   listening on {base} (pid {pid}, up in {startup_s:.2}s), DSN {dsn}");
    let target = Target::from_dsn(&dsn)?;
    let corpus = build_corpus(&dsn, &a.corpus)?;
    let received = Arc::new(Received::default());
    let hook_url = start_receiver(received.clone()).await?;
    eprintln!("   webhook receiver {hook_url}");

    // ------------------------------------------------------------ 2. warm-up: background issues
    let groups = a.corpus.groups as u64;
    let warm = crate::load::run(
        &target,
        corpus.clone(),
        &LoadOpts {
            concurrency: (groups as usize).clamp(1, 8),
            rate: None,
            duration: None,
            events: Some(groups),
            timeout: Duration::from_secs(30),
            progress: Duration::ZERO,
            check_ids: true,
            first_index: 0,
        },
    )
    .await?;
    if warm.accepted != groups {
        bail!(
            "warm-up: {} of {groups} events accepted ({:?})",
            warm.accepted,
            warm.statuses
        );
    }
    let verifier = Verifier::Url {
        url: format!("{base}/api/0/projects/bench/bench/issues/?query=&limit=100&statsPeriod="),
        token: token.clone(),
    };
    let t = Instant::now();
    loop {
        let (n, _) = verifier.count().await.context("issue list after warm-up")?;
        if n >= groups {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("warm-up events not digested after 60 s ({n}/{groups})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "   warm-up: {groups} background issues exist after {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // ------------------------------------------------------------ 3. the rule
    let rules_url = "/api/0/projects/bench/bench/alert-rules/";
    let rule = json!({"name": "bench", "trigger": "new_issue", "interval_minutes": 0,
                      "actions": [{"type": "webhook", "url": hook_url}]});
    let host = base.trim_start_matches("http://").to_string();
    let (st, body) = request(
        target.addr,
        Request::builder()
            .method(Method::POST)
            .uri(rules_url)
            .header(HOST, &host)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&rule)?)))?,
    )
    .await?;
    if st != 201 {
        bail!(
            "creating the rule: {st} {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        );
    }
    let (_, rules_body) = request(
        target.addr,
        Request::builder()
            .uri(rules_url)
            .header(HOST, &host)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?,
    )
    .await?;
    let rules: Value = serde_json::from_slice(&rules_body).unwrap_or(Value::Null);
    let rule_names: Vec<String> = rules
        .as_array()
        .map(|xs| {
            xs.iter()
                .map(|r| {
                    format!(
                        "{} ({})",
                        r["name"].as_str().unwrap_or("?"),
                        r["trigger"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    eprintln!("   rules: {}", rule_names.join(", "));

    // ------------------------------------------------------------ 4. new-issue bodies
    let run_tag = format!("{:x}", now_micros());
    let gs = make_groups(20, a.corpus.seed.wrapping_add(7));
    let mut rng = Rng::from_entropy(99);
    let hdr_dsn = serde_json::to_string(&dsn)?;
    let mut ids: Vec<String> = Vec::with_capacity(a.new_issues);
    let mut bodies: Vec<Bytes> = Vec::with_capacity(a.new_issues);
    let t = Instant::now();
    for n in 0..a.new_issues {
        let (id, body) = new_issue_body(
            &gs,
            n,
            &format!("bench-new-{run_tag}-{n}"),
            &mut rng,
            &hdr_dsn,
        )?;
        bodies.push(body);
        ids.push(id);
    }
    eprintln!(
        "   {} new-issue envelopes built in {:.2}s (unique fingerprints, mean {:.0} B gzip)",
        a.new_issues,
        t.elapsed().as_secs_f64(),
        bodies.iter().map(|b| b.len()).sum::<usize>() as f64 / a.new_issues as f64
    );

    // ------------------------------------------------------------ 4b. wait for the rule to apply
    // Rules are cached per node for a few seconds: probe with new issues (one a second) until
    // one alerts, so the measurement does not start before the rule is in effect.
    let auth = HeaderValue::from_str(&format!(
        "Sentry sentry_key={}, sentry_version=7, sentry_client=faultline-bench/0.1",
        target.key
    ))?;
    let mut probe_ids: HashSet<String> = HashSet::new();
    let t_probe = Instant::now();
    let rule_active_s = 'probe: loop {
        if t_probe.elapsed() > Duration::from_secs(60) {
            bail!("the rule did not fire for any probe issue within 60 s");
        }
        let n = probe_ids.len();
        let (id, body) = new_issue_body(
            &gs,
            n,
            &format!("bench-probe-{run_tag}-{n}"),
            &mut rng,
            &hdr_dsn,
        )?;
        let (st, _) = request(
            target.addr,
            Request::builder()
                .method(Method::POST)
                .uri(&target.path)
                .header(HOST, &target.host_header)
                .header("x-sentry-auth", auth.clone())
                .header(CONTENT_TYPE, "application/x-sentry-envelope")
                .header(CONTENT_ENCODING, "gzip")
                .body(Full::new(body))?,
        )
        .await?;
        if st != 200 {
            bail!("probe event answered {st}");
        }
        probe_ids.insert(id);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) {
            if received
                .arrivals
                .lock()
                .unwrap()
                .iter()
                .any(|x| x.ids.iter().any(|i| probe_ids.contains(i)))
            {
                break 'probe t_probe.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    eprintln!(
        "   rule in effect after {rule_active_s:.2}s ({} probe issue(s))",
        probe_ids.len()
    );
    // Let late probe alerts arrive before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe_alerts = std::mem::take(&mut *received.arrivals.lock().unwrap()).len();

    // ------------------------------------------------------------ 5. measurement
    let send_s = a.new_issues as f64 / a.new_issue_rate;
    let bg_s = send_s + a.background_tail;
    eprintln!(
        "== alerts: {} new issues at {}/s ({send_s:.0}s) under {}/s background for {bg_s:.0}s",
        a.new_issues, a.new_issue_rate, a.background_rate
    );
    let sampler = procstat::RssSampler::start(pid);
    let cpu0 = procstat::cpu_s(pid);
    let machine0 = procstat::machine_cpu();
    let me0 = crate::load::cpu_self_s();
    let t_start = Instant::now();
    let background = if a.background_rate > 0.0 {
        let (target, corpus) = (target.clone(), corpus.clone());
        let opts = LoadOpts {
            concurrency: a.concurrency,
            rate: Some(a.background_rate),
            duration: Some(Duration::from_secs_f64(bg_s)),
            events: None,
            timeout: Duration::from_secs(30),
            progress: Duration::from_secs(10),
            check_ids: true,
            first_index: groups,
        };
        Some(tokio::spawn(async move {
            crate::load::run(&target, corpus, &opts).await
        }))
    } else {
        None
    };

    let ids = Arc::new(ids);
    let bodies = Arc::new(bodies);
    let acks: Arc<Vec<Mutex<Option<Ack>>>> =
        Arc::new((0..a.new_issues).map(|_| Mutex::new(None)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let errors: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let senders: Vec<_> = (0..a.new_issue_connections.max(1))
        .map(|_| {
            let (bodies, acks, next, target, auth, errors) = (
                bodies.clone(),
                acks.clone(),
                next.clone(),
                target.clone(),
                auth.clone(),
                errors.clone(),
            );
            let rate = a.new_issue_rate;
            tokio::spawn(async move {
                let mut conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                    let sent = Instant::now();
                    let res: anyhow::Result<(u16, Bytes)> = async {
                        let mut s = None;
                        if let Some(mut c) = conn.take()
                            && c.ready().await.is_ok()
                        {
                            s = Some(c);
                        }
                        if s.is_none() {
                            let stream = TcpStream::connect(target.addr).await?;
                            stream.set_nodelay(true)?;
                            let (sender, c) =
                                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                            tokio::spawn(async move {
                                let _ = c.await;
                            });
                            s = Some(sender);
                        }
                        let mut s = s.unwrap();
                        let req = Request::builder()
                            .method(Method::POST)
                            .uri(&target.path)
                            .header(HOST, &target.host_header)
                            .header("x-sentry-auth", auth.clone())
                            .header(CONTENT_TYPE, "application/x-sentry-envelope")
                            .header(CONTENT_ENCODING, "gzip")
                            .body(Full::new(bodies[i].clone()))?;
                        let resp = s.send_request(req).await?;
                        let status = resp.status().as_u16();
                        let b = resp.into_body().collect().await?.to_bytes();
                        conn = Some(s);
                        Ok((status, b))
                    }
                    .await;
                    let acked = Instant::now();
                    let ok = matches!(&res, Ok((200, _)));
                    match res {
                        Ok((200, _)) => {}
                        Ok((st, b)) => {
                            *errors
                                .lock()
                                .unwrap()
                                .entry(format!(
                                    "{st}: {}",
                                    String::from_utf8_lossy(&b[..b.len().min(200)])
                                ))
                                .or_default() += 1
                        }
                        Err(e) => *errors.lock().unwrap().entry(e.to_string()).or_default() += 1,
                    }
                    *acks[i].lock().unwrap() = Some(Ack { sent, acked, ok });
                }
            })
        })
        .collect();
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let mut all_senders = std::pin::pin!(futures_join(senders));
    loop {
        tokio::select! {
            _ = &mut all_senders => break,
            _ = progress.tick() => {
                let n = received.arrivals.lock().unwrap().iter().map(|x| x.ids.len()).sum::<usize>();
                eprintln!("  [{:5.1}s] {} new-issue events sent, {n} alerts received",
                    t0.elapsed().as_secs_f64(), next.load(Ordering::Relaxed).min(a.new_issues));
            }
        }
    }
    let sent_end = Instant::now();
    let id_set: HashSet<&str> = ids.iter().map(|s| s.as_str()).collect();
    let acked_ok = acks
        .iter()
        .filter(|x| x.lock().unwrap().is_some_and(|a| a.ok))
        .count();
    // Stragglers: until every acknowledged event alerted, or the wait is over.
    let last_ack = acks
        .iter()
        .filter_map(|x| x.lock().unwrap().map(|a| a.acked))
        .max()
        .unwrap_or(sent_end);
    let wait_end = last_ack + Duration::from_secs_f64(a.straggler_wait);
    loop {
        let seen: HashSet<String> = received
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .flat_map(|x| x.ids.iter().cloned())
            .filter(|i| id_set.contains(i.as_str()))
            .collect();
        if seen.len() >= acked_ok || Instant::now() >= wait_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alerts_done = Instant::now();
    let bg = match background {
        Some(h) => Some(h.await??),
        None => None,
    };
    let meas_end = Instant::now();
    let cpu1 = procstat::cpu_s(pid);
    let machine1 = procstat::machine_cpu();
    let me1 = crate::load::cpu_self_s();
    let (peak_rss, hwm) = sampler.stop();

    // ------------------------------------------------------------ 6. results
    let arrivals = std::mem::take(&mut *received.arrivals.lock().unwrap());
    let mut first: HashMap<&str, Instant> = HashMap::new();
    let mut dup = 0u64;
    let mut other = 0u64;
    let mut digests = 0u64;
    let mut in_digests = 0u64;
    let mut bad: Vec<String> = Vec::new();
    for x in &arrivals {
        if x.digest {
            digests += 1;
            in_digests += x.ids.len() as u64;
        }
        if let Some(b) = &x.bad {
            bad.push(b.clone());
        }
        for id in &x.ids {
            match id_set.get(id.as_str()) {
                Some(k) => {
                    if first.insert(k, x.at).is_some() {
                        dup += 1;
                    }
                }
                None if probe_ids.contains(id) => {}
                None => other += 1,
            }
        }
    }
    let mut lat_ms: Vec<f64> = Vec::new();
    let mut ack_ms: Vec<f64> = Vec::new();
    let mut before_ack = 0u64;
    let mut missing: Vec<&str> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let Some(ack) = *acks[i].lock().unwrap() else {
            continue;
        };
        if !ack.ok {
            continue;
        }
        ack_ms.push((ack.acked - ack.sent).as_secs_f64() * 1e3);
        match first.get(id.as_str()) {
            Some(at) => {
                if *at < ack.acked {
                    before_ack += 1;
                }
                lat_ms.push(at.saturating_duration_since(ack.acked).as_secs_f64() * 1e3);
            }
            None => missing.push(id),
        }
    }
    lat_ms.sort_by(f64::total_cmp);
    ack_ms.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = (
        pct(&lat_ms, 0.5),
        pct(&lat_ms, 0.9),
        pct(&lat_ms, 0.99),
        lat_ms.last().copied().unwrap_or(f64::NAN),
    );
    let meets = !lat_ms.is_empty() && missing.is_empty() && p99 < 1000.0;
    let meas_s = (meas_end - t_start).as_secs_f64();
    let cpu_pct = cpu0.zip(cpu1).map(|(x, y)| 100.0 * (y - x) / meas_s);
    let client_pct = 100.0 * (me1 - me0) / meas_s;
    // Other processes on the machine (noise): busy CPU minus server, this client, kernel threads.
    let other_pct = machine0.zip(machine1).map(|(m0, m1)| {
        let server = cpu_pct.unwrap_or(0.0) * meas_s / 100.0;
        let kt = m1.kthreads_s - m0.kthreads_s;
        (100.0 * (m1.tasks_s - m0.tasks_s - kt - server - (me1 - me0)) / meas_s).max(0.0)
    });

    let hwm_end = procstat::rss_kib(pid).map(|r| r.1);
    let (graceful, stop_s, exit) = server.stop(Duration::from_secs(30));
    drop(server);
    let (levels, log_examples, _) = scan_log(&log_path);
    let data_mib = dir_size(&data_dir) as f64 / 1048576.0;

    let mut md = format!(
        "\n## Faultline alert latency ({started})\n\n\
         {} cores, client, webhook receiver and server on the same machine, SQLite. Rule \
         `new_issue`, `interval_minutes: 0`, one webhook action to a receiver in the bench \
         process; {} new-issue events (unique `fingerprint`) at {}/s over {} connection(s), \
         open loop, under a background of {}/s realistic envelopes into {} existing issues \
         ({} connections, open loop). Latency = webhook request fully read − the event's 200 \
         acknowledgement read by the client.\n\n| | value |\n|---|---:|\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        a.new_issues,
        a.new_issue_rate,
        a.new_issue_connections,
        a.background_rate,
        a.corpus.groups,
        a.concurrency
    );
    let mut row = |k: &str, v: String| md += &format!("| {k} | {v} |\n");
    row(
        "new issues sent / acknowledged (200)",
        format!("{} / {acked_ok}", a.new_issues),
    );
    row("alerted (webhook received)", lat_ms.len().to_string());
    row(
        "**missing** (no webhook within the wait)",
        format!("**{}**", missing.len()),
    );
    row(
        "**alert latency p50 / p90 / p99 (ms)**",
        format!("**{p50:.0} / {p90:.0} / {p99:.0}**"),
    );
    row("alert latency max (ms)", format!("{max:.0}"));
    row(
        "**p99 < 1 s**",
        format!("**{}**", if meets { "yes" } else { "no" }),
    );
    row(
        "new-issue events: ack latency p50 / p99 (ms)",
        format!("{:.1} / {:.1}", pct(&ack_ms, 0.5), pct(&ack_ms, 0.99)),
    );
    row(
        "webhook requests / digests among them (alerts in digests)",
        format!("{} / {digests} ({in_digests})", arrivals.len()),
    );
    row(
        "duplicate alerts / alerts for other events / webhook before ack read",
        format!("{dup} / {other} / {before_ack}"),
    );
    if let Some(b) = &bg {
        row(
            "background: target / achieved events/s",
            format!("{} / {:.0}", a.background_rate, b.accepted_per_s()),
        );
        row(
            "background: sent / accepted / not sent (behind)",
            format!("{} / {} / {}", b.sent, b.accepted, b.unsent),
        );
        row(
            "background: ack latency p50 / p99 / max (ms)",
            format!("{:.1} / {:.1} / {:.1}", b.ms(0.5), b.ms(0.99), b.max_ms()),
        );
    }
    row(
        "server CPU over the measurement (% of one core)",
        cpu_pct
            .map(|c| format!("{c:.0}%"))
            .unwrap_or_else(|| "–".into()),
    );
    row(
        "bench client CPU / other processes' CPU (noise)",
        format!(
            "{client_pct:.0}% / {}",
            other_pct
                .map(|o| format!("{o:.0}%{}", if o > 15.0 { " (NOISY)" } else { "" }))
                .unwrap_or_else(|| "–".into())
        ),
    );
    row(
        "server peak RSS (100 ms samples) / VmHWM (MiB)",
        format!(
            "{:.1} / {:.1}",
            peak_rss as f64 / 1024.0,
            hwm_end.unwrap_or(hwm) as f64 / 1024.0
        ),
    );
    row(
        "measurement: sending / until last alert / whole (s)",
        format!(
            "{:.1} / {:.1} / {meas_s:.1}",
            (sent_end - t0).as_secs_f64(),
            (alerts_done - t0).as_secs_f64()
        ),
    );
    row(
        "graceful shutdown (SIGTERM)",
        format!(
            "{} in {stop_s:.2}s ({exit})",
            if graceful { "yes" } else { "**no, killed**" }
        ),
    );
    row(
        "server stderr lines by level",
        levels
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut notes = vec![
        format!(
            "rules of the project: {}; the two defaults e-mail members, which fails at once \
             without SMTP (marked failed on the Alerts page, logged once at start-up) and \
             does not touch the webhook",
            rule_names.join("; ")
        ),
        format!(
            "the new rule took effect {rule_active_s:.2}s after creation (rules are cached per \
             node for a few seconds); measured after a probe issue alerted ({} probe issues, \
             {probe_alerts} probe webhook requests, not counted)",
            probe_ids.len()
        ),
    ];
    let errs = errors.lock().unwrap();
    for (e, n) in errs.iter() {
        notes.push(format!("new-issue send failed {n}×: {e}"));
    }
    if !missing.is_empty() {
        notes.push(format!(
            "missing event ids (first 5): {}",
            missing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for b in bad.iter().take(3) {
        notes.push(format!("unparsed webhook body: {b}"));
    }
    if !log_examples.is_empty() {
        notes.push("server stderr, distinct WARN/ERROR lines:".into());
        notes.extend(log_examples.iter().map(|l| format!("    {l}")));
    }
    md += "\nNotes:\n";
    for n in &notes {
        md += &format!("- {n}\n");
    }
    println!("{md}");

    let j = json!({
        "bench": "faultline-alerts",
        "date": started,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "new_issues": a.new_issues,
        "new_issue_rate": a.new_issue_rate,
        "acknowledged": acked_ok,
        "alerted": lat_ms.len(),
        "missing": missing.len(),
        "latency_ms": {"p50": round1(p50), "p90": round1(p90), "p99": round1(p99), "max": round1(max)},
        "p99_under_1s": meets,
        "new_issue_ack_ms": {"p50": round2(pct(&ack_ms, 0.5)), "p99": round2(pct(&ack_ms, 0.99))},
        "webhook_requests": arrivals.len(),
        "digests": digests,
        "alerts_in_digests": in_digests,
        "duplicates": dup,
        "other_alerts": other,
        "webhook_before_ack": before_ack,
        "background": bg.as_ref().map(|b| json!({
            "rate": a.background_rate,
            "groups": a.corpus.groups,
            "accepted_per_s": round1(b.accepted_per_s()),
            "sent": b.sent, "accepted": b.accepted, "unsent": b.unsent,
            "ack_ms": {"p50": round2(b.ms(0.5)), "p99": round2(b.ms(0.99)), "max": round2(b.max_ms())},
        })),
        "server_cpu_pct": cpu_pct.map(round1),
        "client_cpu_pct": round1(client_pct),
        "other_processes_cpu_pct": other_pct.map(round1),
        "peak_rss_mib": round1(peak_rss as f64 / 1024.0),
        "vmhwm_mib": hwm_end.map(|k| round1(k as f64 / 1024.0)),
        "measurement_s": round2(meas_s),
        "data_dir_mib": round1(data_mib),
        "graceful_shutdown": graceful,
        "server_log_levels": levels,
        "rule_in_effect_after_s": round2(rule_active_s),
        "probe_issues": probe_ids.len(),
    });
    crate::emit_json_line(&j, a.json_out.as_deref())?;
    if a.keep_data {
        eprintln!("data dir kept: {}", data_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

/// Waits for every task (panics are ignored: the acks they did not record count as unsent).
async fn futures_join(hs: Vec<tokio::task::JoinHandle<()>>) {
    for h in hs {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_bodies() {
        let (ids, d, bad) = parse_hook(br#"{"trigger":"new_issue","event":{"event_id":"AB-cd"}}"#);
        assert_eq!((ids, d, bad), (vec!["abcd".to_string()], false, None));
        let (ids, d, _) = parse_hook(
            br#"{"trigger":"digest","alerts":[{"event":{"event_id":"a1"}},{"event":null},{"event":{"event_id":"b2"}}]}"#,
        );
        assert_eq!((ids, d), (vec!["a1".to_string(), "b2".to_string()], true));
        assert!(parse_hook(b"nope").2.is_some());
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 50.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v, 1.0), 100.0);
    }
}
