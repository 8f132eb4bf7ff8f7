//! The load itself: C keep-alive HTTP/1.1 connections (hyper 1 client), closed loop or open loop
//! at a fixed rate, one unique event id per request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::content::{Corpus, Rng, iso_utc_into, now_micros};

/// Where to send: parsed from a DSN `http://KEY@HOST:PORT[/prefix]/PROJECT`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
    pub key: String,
    pub dsn: String,
}

impl Target {
    pub fn from_dsn(dsn: &str) -> anyhow::Result<Target> {
        let rest = dsn
            .strip_prefix("http://")
            .context("only http:// DSNs are supported")?;
        let (key, rest) = rest.split_once('@').context("DSN without a public key")?;
        let key = key.split(':').next().unwrap_or(key).to_string();
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => bail!("DSN without a project id"),
        };
        let (prefix, project) = path.rsplit_once('/').context("DSN without a project id")?;
        if project.is_empty() || !project.bytes().all(|b| b.is_ascii_digit()) {
            bail!("DSN project id must be a number: {project:?}");
        }
        let addr = resolve(hostport)?;
        Ok(Target {
            addr,
            host_header: hostport.to_string(),
            path: format!("{prefix}/api/{project}/envelope/"),
            key,
            dsn: dsn.to_string(),
        })
    }
}

/// `host:port` (port 80 if absent) to a loopback socket address; refuses other targets.
pub fn resolve(hostport: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let hp = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addrs: Vec<SocketAddr> = hp
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hp}"))?
        .collect();
    let Some(a) = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
    else {
        bail!("{hp} resolves to nothing");
    };
    if !a.ip().is_loopback() {
        bail!("refusing to send load to non-loopback address {a}; loopback targets only");
    }
    Ok(a)
}

#[derive(Clone, Debug)]
pub struct LoadOpts {
    pub concurrency: usize,
    /// Open loop at this many requests/s; `None` = closed loop (max throughput).
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub events: Option<u64>,
    pub timeout: Duration,
    /// Progress line on stderr every this often (0 = off).
    pub progress: Duration,
    /// Check that a 200 answer carries our event id.
    pub check_ids: bool,
    /// Index of this load's first request in a longer sequence (a fill sent in chunks): which
    /// body a request gets depends on its index (see [`Corpus::request_body`]).
    pub first_index: u64,
}

#[derive(Debug)]
pub struct LoadResult {
    pub wall: Duration,
    pub sent: u64,
    pub accepted: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// One example body per non-200 status.
    pub error_bodies: BTreeMap<u16, String>,
    pub id_mismatches: u64,
    pub connects: u64,
    pub bytes_sent: u64,
    /// Microseconds; open loop: measured from the scheduled send time when the request was late
    /// because every connection was busy (no coordinated omission).
    pub hist: Histogram<u64>,
    pub client_cpu_s: f64,
    /// Open loop: slots scheduled before the end that were never sent because every connection
    /// stayed busy until the end + [`OPEN_LOOP_GRACE`] (the server is slower than the rate).
    pub unsent: u64,
}

/// Open loop: how long after the end of the schedule late requests are still sent.
pub const OPEN_LOOP_GRACE: Duration = Duration::from_secs(5);

impl LoadResult {
    pub fn accepted_per_s(&self) -> f64 {
        self.accepted as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    pub fn ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return f64::NAN;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.max() as f64 / 1000.0
        }
    }
}

/// Where one connection sends: a target with its pre-built headers.
struct Dest {
    addr: SocketAddr,
    path: String,
    auth: HeaderValue,
    host: HeaderValue,
}

struct Shared {
    corpus: Arc<Corpus>,
    /// Connection `w` sends to `dests[w % dests.len()]`.
    dests: Vec<Dest>,
    opts: LoadOpts,
    next: AtomicU64,
    done: AtomicU64,
    ok: AtomicU64,
    /// Every worker connects first, then waits here; the clock starts when all are connected.
    ready: tokio::sync::Barrier,
    start: tokio::sync::watch::Receiver<Option<Instant>>,
    error_bodies: Mutex<BTreeMap<u16, String>>,
}

#[derive(Default)]
struct WorkerStats {
    sent: u64,
    accepted: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    id_mismatches: u64,
    connects: u64,
    bytes_sent: u64,
}

pub fn cpu_self_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub async fn run(
    target: &Target,
    corpus: Arc<Corpus>,
    opts: &LoadOpts,
) -> anyhow::Result<LoadResult> {
    run_split(std::slice::from_ref(target), corpus, opts).await
}

/// [`run`] with the connections split between several targets (round robin: connection `w`
/// sends to `targets[w % targets.len()]`), e.g. the nodes of a cluster.
pub async fn run_split(
    targets: &[Target],
    corpus: Arc<Corpus>,
    opts: &LoadOpts,
) -> anyhow::Result<LoadResult> {
    if opts.duration.is_none() && opts.events.is_none() {
        bail!("give --duration or --events");
    }
    if targets.is_empty() {
        bail!("no target to send to");
    }
    let dests = targets
        .iter()
        .map(|t| {
            Ok(Dest {
                addr: t.addr,
                path: t.path.clone(),
                auth: HeaderValue::from_str(&format!(
                    "Sentry sentry_key={}, sentry_version=7, sentry_client=faultline-bench/0.1",
                    t.key
                ))?,
                host: HeaderValue::from_str(&t.host_header)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (start_tx, start_rx) = tokio::sync::watch::channel(None);
    let shared = Arc::new(Shared {
        corpus,
        dests,
        opts: opts.clone(),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        ready: tokio::sync::Barrier::new(opts.concurrency + 1),
        start: start_rx,
        error_bodies: Mutex::new(BTreeMap::new()),
    });
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let s = shared.clone();
            tokio::spawn(async move { worker(w as u64, s).await })
        })
        .collect();
    shared.ready.wait().await;
    let cpu0 = cpu_self_s();
    let t0 = Instant::now();
    start_tx.send(Some(t0))?;
    let progress = if !opts.progress.is_zero() {
        let s = shared.clone();
        Some(tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + s.opts.progress,
                s.opts.progress,
            );
            loop {
                tick.tick().await;
                let done = s.done.load(Ordering::Relaxed);
                eprintln!(
                    "  [{:5.1}s] {done} done ({} accepted), {:.0}/s now",
                    t0.elapsed().as_secs_f64(),
                    s.ok.load(Ordering::Relaxed),
                    (done - last) as f64 / s.opts.progress.as_secs_f64()
                );
                last = done;
            }
        }))
    } else {
        None
    };
    let mut total = WorkerStats::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for w in workers {
        let (ws, h) = w.await?;
        total.sent += ws.sent;
        total.accepted += ws.accepted;
        total.id_mismatches += ws.id_mismatches;
        total.connects += ws.connects;
        total.bytes_sent += ws.bytes_sent;
        for (k, v) in ws.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in ws.errors {
            *total.errors.entry(k).or_default() += v;
        }
        hist.add(&h)?;
    }
    let wall = t0.elapsed();
    if let Some(p) = progress {
        p.abort();
    }
    let error_bodies = std::mem::take(&mut *shared.error_bodies.lock().unwrap());
    let unsent = match (opts.rate, opts.duration) {
        (Some(r), Some(d)) => {
            let slots = (d.as_secs_f64() * r).ceil() as u64;
            opts.events
                .map_or(slots, |n| n.min(slots))
                .saturating_sub(total.sent)
        }
        _ => 0,
    };
    Ok(LoadResult {
        wall,
        sent: total.sent,
        accepted: total.accepted,
        statuses: total.statuses,
        errors: total.errors,
        error_bodies,
        id_mismatches: total.id_mismatches,
        connects: total.connects,
        bytes_sent: total.bytes_sent,
        hist,
        client_cpu_s: cpu_self_s() - cpu0,
        unsent,
    })
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn classify(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "connection closed before the response (incomplete message)".into()
    } else if e.is_closed() {
        "connection closed".into()
    } else if e.is_canceled() {
        "request canceled (connection closed)".into()
    } else if e.is_parse() {
        "response parse error".into()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        s
    }
}

async fn worker(w: u64, s: Arc<Shared>) -> (WorkerStats, Histogram<u64>) {
    let mut st = WorkerStats::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let mut rng = Rng::from_entropy(w);
    let dest = &s.dests[w as usize % s.dests.len()];
    st.connects += 1;
    let mut conn: Option<SendRequest<Full<Bytes>>> = connect(dest.addr).await.ok();
    s.ready.wait().await;
    let t0 = {
        let mut rx = s.start.clone();
        match rx.wait_for(|t| t.is_some()).await {
            Ok(t) => t.unwrap(),
            Err(_) => return (st, hist),
        }
    };
    let deadline = s.opts.duration.map(|d| t0 + d);
    let mut id = [0u8; 32];
    let mut sent_at = [0u8; 27];
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if s.opts.events.is_some_and(|n| i >= n) {
            break;
        }
        // When does this request count as started?
        let start = match s.opts.rate {
            Some(rate) => {
                let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                if deadline.is_some_and(|d| at >= d) {
                    break;
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d + OPEN_LOOP_GRACE) {
                    break;
                }
                if at > now {
                    // Idle connection: wait for the slot; timer lateness is the client's, so
                    // measure from the actual start.
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                } else {
                    // Every connection was busy: the request queued since its slot.
                    at
                }
            }
            None => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        rng.uuid4_hex(&mut id);
        iso_utc_into(now_micros(), &mut sent_at);
        let body = s
            .corpus
            .request_body(s.opts.first_index + i, &id, &sent_at, &mut rng);
        let len = body.len() as u64;

        let res = tokio::time::timeout(s.opts.timeout, async {
            let ready = match conn.take() {
                Some(mut c) => c.ready().await.is_ok().then_some(c),
                None => None,
            };
            let mut sender = match ready {
                Some(c) => c,
                None => {
                    st.connects += 1;
                    let mut c = connect(dest.addr)
                        .await
                        .map_err(|e| format!("connect: {e}"))?;
                    c.ready()
                        .await
                        .map_err(|e| format!("connect: {}", classify(&e)))?;
                    c
                }
            };
            let req = Request::builder()
                .method(Method::POST)
                .uri(&dest.path)
                .header(HOST, dest.host.clone())
                .header("x-sentry-auth", dest.auth.clone())
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-sentry-envelope"),
                )
                .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                .body(Full::new(body))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| classify(&e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| classify(&e))?
                .to_bytes();
            conn = Some(sender);
            Ok::<_, String>((status, body))
        })
        .await;
        let elapsed = start.elapsed().as_micros() as u64;
        hist.saturating_record(elapsed.max(1));
        st.sent += 1;
        st.bytes_sent += len;
        s.done.fetch_add(1, Ordering::Relaxed);
        match res {
            Ok(Ok((status, rbody))) => {
                *st.statuses.entry(status).or_default() += 1;
                if status == 200 {
                    st.accepted += 1;
                    s.ok.fetch_add(1, Ordering::Relaxed);
                    if s.opts.check_ids && !rbody.windows(32).any(|x| x == id) {
                        st.id_mismatches += 1;
                    }
                } else {
                    let mut eb = s.error_bodies.lock().unwrap();
                    eb.entry(status).or_insert_with(|| {
                        String::from_utf8_lossy(&rbody[..rbody.len().min(400)]).into_owned()
                    });
                }
            }
            Ok(Err(e)) => {
                *st.errors.entry(e).or_default() += 1;
                conn = None;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {
                *st.errors
                    .entry(format!("timeout after {:?}", s.opts.timeout))
                    .or_default() += 1;
                conn = None;
            }
        }
    }
    (st, hist)
}
