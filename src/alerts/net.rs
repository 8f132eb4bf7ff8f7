//! Safe outgoing HTTP for webhooks and Slack: the SSRF guard and the one POST every HTTP
//! channel makes.
//!
//! A URL an organization member typed must not reach into the server's own network: only
//! `http`/`https`; the host is resolved once and refused when any of its addresses is
//! loopback, private, link-local, unspecified, multicast, CGNAT, reserved, or an IPv4-mapped /
//! IPv4-compatible / NAT64 form of one of those (unless `--allow-private-webhooks`). The request
//! then connects to exactly the address that was checked (no second DNS lookup), follows no
//! redirect, gives up after 10 s, and reads at most [`MAX_RESPONSE`] bytes of the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;

/// Most bytes of a response body read (kept for the error message).
pub const MAX_RESPONSE: usize = 4096;

/// Why a POST did not deliver; [`HttpError::is_permanent`] says whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error(
        "refused: {host} resolves to {addr}, a private or reserved address (allow with --allow-private-webhooks)"
    )]
    Forbidden { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

impl HttpError {
    /// Permanent failures are not retried: bad URLs, refused addresses, and 4xx answers other
    /// than 408 and 429.
    pub fn is_permanent(&self) -> bool {
        match self {
            HttpError::InvalidUrl(_) | HttpError::Forbidden { .. } => true,
            HttpError::Resolve { .. } | HttpError::Request(_) => false,
            HttpError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
        }
    }
}

/// Whether an outgoing request to `ip` is refused unless private targets are allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_loopback()              // 127/8
        || ip.is_private()        // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()     // 169.254/16
        || ip.is_unspecified()    // 0.0.0.0
        || ip.is_multicast()      // 224/4
        || ip.is_broadcast()      // 255.255.255.255
        || a == 0                 // 0/8 "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 CGNAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // 192.0.0/24 IETF protocol assignments
        || a >= 240 // 240/4 reserved
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()                      // ::1
        || ip.is_unspecified()            // ::
        || ip.is_multicast()              // ff00::/8
        || (first & 0xfe00) == 0xfc00     // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80     // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) or
/// NAT64 (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d, but not :: and ::1 themselves (checked as IPv6).
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// Parses and checks a webhook URL without resolving it: `http(s)` with a host, no userinfo.
pub fn parse_url(url: &str) -> Result<Url, HttpError> {
    let parsed = Url::parse(url.trim()).map_err(|e| HttpError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HttpError::InvalidUrl(format!(
            "only http and https URLs are allowed, not {}:",
            parsed.scheme()
        )));
    }
    if parsed.host().is_none() {
        return Err(HttpError::InvalidUrl("the URL has no host".into()));
    }
    Ok(parsed)
}

/// Resolves `url`'s host once and checks every address; returns the addresses to connect to.
pub async fn resolve_checked(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, HttpError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| HttpError::InvalidUrl("the URL has no port".into()))?;
    let (host, addrs): (String, Vec<SocketAddr>) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Domain(d)) => {
            let found =
                tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((d, port)))
                    .await
                    .map_err(|_| HttpError::Resolve {
                        host: d.to_string(),
                        reason: "timed out".into(),
                    })?
                    .map_err(|e| HttpError::Resolve {
                        host: d.to_string(),
                        reason: e.to_string(),
                    })?
                    .collect();
            (d.to_string(), found)
        }
        None => return Err(HttpError::InvalidUrl("the URL has no host".into())),
    };
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(HttpError::Forbidden {
            host,
            addr: bad.ip(),
        });
    }
    if addrs.is_empty() {
        return Err(HttpError::Resolve {
            host,
            reason: "no address".into(),
        });
    }
    Ok(addrs)
}

/// POSTs `body` to `url` with `headers` under the SSRF guard; `Ok` for a 2xx answer.
pub async fn post(
    url: &str,
    headers: HeaderMap,
    body: Vec<u8>,
    allow_private: bool,
    timeout: Duration,
) -> Result<u16, HttpError> {
    let parsed = parse_url(url)?;
    let addrs = resolve_checked(&parsed, allow_private).await?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .user_agent("Faultline");
    if let Some(url::Host::Domain(d)) = parsed.host() {
        // Pin the name to the addresses checked above: no second lookup can swap them.
        builder = builder.resolve_to_addrs(d, &addrs);
    }
    let client = builder
        .build()
        .map_err(|e| HttpError::Request(format!("cannot build the HTTP client: {e}")))?;
    let mut resp = client
        .post(parsed)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError::Request(describe(&e)))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(status);
    }
    // Keep the start of the answer for the error shown in the UI, never more.
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(MAX_RESPONSE);
    let text = String::from_utf8_lossy(&bytes);
    Err(HttpError::Status {
        status,
        body: super::message::clean_line(&text, 200),
    })
}

/// A reqwest error with its causes (reqwest's own message alone is often just "error sending
/// request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        out.push_str(" (timed out)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().unwrap())
    }

    #[test]
    fn private_and_reserved_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("ftp://x.example/").is_err());
        assert!(parse_url("file:///etc/passwd").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("https://hooks.example.com/x").is_ok());
    }

    #[tokio::test]
    async fn literal_and_resolved_private_hosts_are_refused() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://[::ffff:7f00:1]/",
            "http://localhost:9/x",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let parsed = parse_url(url).unwrap();
            match resolve_checked(&parsed, false).await {
                Err(e @ HttpError::Forbidden { .. }) => assert!(e.is_permanent()),
                other => panic!("{url}: {other:?}"),
            }
        }
        let parsed = parse_url("http://127.0.0.1:9/x").unwrap();
        assert!(resolve_checked(&parsed, true).await.is_ok());
    }

    #[test]
    fn status_classification() {
        let status = |s| HttpError::Status {
            status: s,
            body: String::new(),
        };
        assert!(status(404).is_permanent());
        assert!(status(400).is_permanent());
        assert!(status(410).is_permanent());
        assert!(!status(408).is_permanent());
        assert!(!status(429).is_permanent());
        assert!(!status(500).is_permanent());
        assert!(!status(503).is_permanent());
        assert!(!status(302).is_permanent());
        assert!(!HttpError::Request("x".into()).is_permanent());
    }
}
