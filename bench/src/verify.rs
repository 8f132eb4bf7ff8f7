//! "Digested": how many events the server has processed, from Faultline's issue list (sum of the
//! issues' `count`) or from a shell command printing a number; and the wait for it to catch up.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HOST, LINK};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub enum Verifier {
    /// `GET URL` with `Authorization: Bearer TOKEN`; JSON array of issues with `count`.
    Url { url: String, token: String },
    /// Shell command printing the processed-event count (last number on stdout).
    Cmd(String),
}

impl Verifier {
    /// (processed events, number of issues if known).
    pub async fn count(&self) -> anyhow::Result<(u64, Option<u64>)> {
        match self {
            Verifier::Url { url, token } => {
                let issues = list_issues(url, token).await?;
                Ok((
                    issues.iter().map(|i| i.count).sum(),
                    Some(issues.len() as u64),
                ))
            }
            Verifier::Cmd(cmd) => {
                let cmd = cmd.clone();
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new("sh")
                        .arg("-c")
                        .arg(&cmd)
                        .output()
                })
                .await??;
                if !out.status.success() {
                    bail!(
                        "verify command failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let s = String::from_utf8_lossy(&out.stdout);
                let n = s
                    .split_whitespace()
                    .last()
                    .context("verify command printed nothing")?
                    .parse()
                    .context("verify command did not print a number")?;
                Ok((n, None))
            }
        }
    }
}

/// One issue of an API issue list.
#[derive(Debug, Clone)]
pub struct IssueRow {
    pub id: i64,
    pub count: u64,
    pub title: String,
}

/// Every issue of a Sentry-style issue list URL (`GET URL` with `Authorization: Bearer TOKEN`,
/// following `Link: …; rel="next"; results="true"`).
pub async fn list_issues(url: &str, token: &str) -> anyhow::Result<Vec<IssueRow>> {
    let mut out = Vec::new();
    let mut next = Some(url.to_string());
    let mut pages = 0;
    while let Some(u) = next.take() {
        pages += 1;
        if pages > 1000 {
            bail!("more than 1000 pages of issues");
        }
        let (body, link) = get(&u, token).await?;
        let v: Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "issue list is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
        let arr = v.as_array().context("issue list is not a JSON array")?;
        for issue in arr {
            let count = match &issue["count"] {
                Value::String(s) => s.parse::<u64>().with_context(|| format!("count {s:?}"))?,
                Value::Number(n) => n.as_u64().context("count")?,
                other => bail!("issue without count: {other}"),
            };
            let id = match &issue["id"] {
                Value::String(s) => s.parse::<i64>().unwrap_or(-1),
                Value::Number(n) => n.as_i64().unwrap_or(-1),
                _ => -1,
            };
            let title = issue["title"].as_str().unwrap_or_default().to_string();
            out.push(IssueRow { id, count, title });
        }
        // Keep our host: the server may advertise another public URL in links.
        next = link.as_deref().and_then(next_link).map(|n| rebase(url, &n));
        if arr.is_empty() {
            next = None;
        }
    }
    Ok(out)
}

/// The `rel="next"` URL of a Sentry-style `Link` header if its `results="true"`.
pub fn next_link(link: &str) -> Option<String> {
    let mut rest = link;
    while let Some(i) = rest.find('<') {
        let j = rest[i..].find('>')? + i;
        let url = &rest[i + 1..j];
        let params_end = rest[j..].find('<').map(|k| k + j).unwrap_or(rest.len());
        let params = &rest[j + 1..params_end];
        let has = |k: &str, v: &str| {
            params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.split_once('=')
                    .is_some_and(|(a, b)| a.trim() == k && b.trim().trim_matches('"') == v)
            })
        };
        if has("rel", "next") && has("results", "true") {
            return Some(url.to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

/// `next`'s path and query on `base`'s scheme, host and port.
fn rebase(base: &str, next: &str) -> String {
    let origin_len = |u: &str| {
        u.find("://")
            .map(|i| i + 3 + u[i + 3..].find('/').unwrap_or(u.len() - i - 3))
            .unwrap_or(0)
    };
    let b = &base[..origin_len(base)];
    let n = &next[origin_len(next)..];
    format!("{b}{n}")
}

/// A plain HTTP/1.1 GET on a fresh connection: (body, Link header).
pub async fn get(url: &str, token: &str) -> anyhow::Result<(Bytes, Option<String>)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// verify URLs")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = crate::load::resolve(hostport)?;
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(HOST, hostport)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
        .await
        .context("verify request timed out")??;
    let status = resp.status();
    let link = resp
        .headers()
        .get(LINK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok((body, link))
}

#[derive(Debug, Clone)]
pub struct Digest {
    pub digested: u64,
    pub caught_up: bool,
    /// When the last increase (or the catch-up) was observed.
    pub done_at: Instant,
    pub polls: u64,
    pub errors: Vec<String>,
    pub issues: Option<u64>,
}

/// Polls until `baseline + target` is reached, the count has not grown for `idle`, or `timeout`
/// after `load_end` passed.
pub async fn wait(
    v: &Verifier,
    baseline: u64,
    target: u64,
    load_end: Instant,
    interval: Duration,
    idle: Duration,
    timeout: Duration,
) -> Digest {
    let mut last = baseline;
    let mut last_change = load_end;
    let mut polls = 0;
    let mut errors = Vec::new();
    let mut last_print = Instant::now();
    let mut issues = None;
    loop {
        polls += 1;
        match v.count().await {
            Ok((c, n)) => {
                issues = n;
                if c != last {
                    last = c;
                    last_change = Instant::now();
                }
            }
            Err(e) => {
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
            }
        }
        let digested = last.saturating_sub(baseline);
        if digested >= target {
            return Digest {
                digested,
                caught_up: true,
                done_at: last_change.max(load_end),
                polls,
                errors,
                issues,
            };
        }
        let now = Instant::now();
        if now - last_change > idle || now - load_end > timeout {
            return Digest {
                digested,
                caught_up: false,
                done_at: last_change,
                polls,
                errors,
                issues,
            };
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  digest: {digested}/{target} after {:.1}s",
                (now - load_end).as_secs_f64()
            );
            last_print = now;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn link_next() {
        let l = "<http://x/api/?query=&cursor=0:0:1>; rel=\"previous\"; results=\"false\"; cursor=\"0:0:1\", \
                 <http://x/api/?query=&cursor=0:100:0>; rel=\"next\"; results=\"true\"; cursor=\"0:100:0\"";
        assert_eq!(
            super::next_link(l).as_deref(),
            Some("http://x/api/?query=&cursor=0:100:0")
        );
        assert_eq!(
            super::rebase("http://127.0.0.1:5/a?b", "http://127.0.0.1:0/api/?c=1"),
            "http://127.0.0.1:5/api/?c=1"
        );
        assert_eq!(super::next_link(&l.replace("\"true\"", "\"false\"")), None);
    }
}
