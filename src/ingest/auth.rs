//! Finding the DSN key of an ingest request.
//!
//! Sentry SDKs authenticate with the public key of the DSN, sent in one of: the `X-Sentry-Auth`
//! header (Python, Rust), an `Authorization: Sentry …` header, the `sentry_key` query parameter
//! (JavaScript), or the `dsn` field of the envelope header (tunnels). More than one request-level
//! source is an error, as in Relay.

use axum::http::HeaderMap;
use base64::Engine;

use crate::http::ApiError;

/// The key a request authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub public_key: String,
    pub client: Option<String>,
}

/// Reads credentials from the headers and query string. `Ok(None)` when there are none.
pub fn from_request(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Credentials>, ApiError> {
    let mut found = Vec::new();
    if let Some(v) = headers.get("x-sentry-auth") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::unauthorized("bad x-sentry-auth header"))?;
        found.push(
            parse_sentry_header(v)
                .ok_or_else(|| ApiError::unauthorized("bad x-sentry-auth header"))?,
        );
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION)
        && let Ok(v) = v.to_str()
    {
        if let Some(c) = parse_sentry_header(v) {
            found.push(c);
        } else if let Some(b) = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| ApiError::unauthorized("bad authorization header"))?;
            let key = decoded.split(':').next().unwrap_or_default();
            found.push(Credentials {
                public_key: valid_key(key)?,
                client: None,
            });
        }
    }
    if let Some(q) = query
        && q.contains("sentry_")
    {
        let mut key = None;
        let mut client = None;
        for (k, v) in form_urlencoded(q) {
            match k.as_str() {
                "sentry_key" => key = Some(v),
                "sentry_client" => client = Some(v),
                _ => {}
            }
        }
        if let Some(key) = key {
            found.push(Credentials {
                public_key: valid_key(&key)?,
                client,
            });
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ApiError::unauthorized(
            "multiple authorization payloads detected",
        )),
    }
}

/// Parses `Sentry sentry_key=K, sentry_version=7, sentry_client=…`.
fn parse_sentry_header(v: &str) -> Option<Credentials> {
    let v = v.trim();
    let rest = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sentry "))
        .and_then(|_| v.get(7..))?;
    let mut key = None;
    let mut client = None;
    for pair in rest.split(',') {
        let Some((k, val)) = pair.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let k = k.strip_prefix("sentry_").unwrap_or(k);
        let val = val.trim().to_string();
        match k {
            "key" => key = Some(val),
            "client" => client = Some(val),
            _ => {}
        }
    }
    let public_key = valid_key(&key?).ok()?;
    Some(Credentials { public_key, client })
}

/// Extracts the key and project id from a DSN (`http://KEY@host/path/PROJECT`).
pub fn parse_dsn(dsn: &str) -> Option<(String, i64)> {
    let rest = dsn.split_once("://")?.1;
    let (userinfo, hostpath) = rest.split_once('@')?;
    let key = userinfo.split(':').next()?;
    let project = hostpath.trim_end_matches('/').rsplit('/').next()?;
    let project = project.parse().ok()?;
    Some((valid_key(key).ok()?, project))
}

fn valid_key(key: &str) -> Result<String, ApiError> {
    if !key.is_empty() && key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(key.to_string())
    } else {
        Err(ApiError::unauthorized("bad public key"))
    }
}

/// Decodes an `application/x-www-form-urlencoded` query string.
pub fn form_urlencoded(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_source() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-sentry-auth",
            "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.0"
                .parse()
                .unwrap(),
        );
        let c = from_request(&h, None).unwrap().unwrap();
        assert_eq!(c.public_key, "abc123");
        assert_eq!(c.client.as_deref(), Some("sentry.python/2.0"));

        let q = "sentry_version=7&sentry_key=def456&sentry_client=sentry.javascript.browser%2F10.0";
        let c = from_request(&HeaderMap::new(), Some(q)).unwrap().unwrap();
        assert_eq!(c.public_key, "def456");
        assert_eq!(c.client.as_deref(), Some("sentry.javascript.browser/10.0"));

        assert_eq!(from_request(&HeaderMap::new(), Some("a=b")).unwrap(), None);
    }

    #[test]
    fn two_sources_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-sentry-auth", "Sentry sentry_key=abc".parse().unwrap());
        let e = from_request(&h, Some("sentry_key=abc")).unwrap_err();
        assert_eq!(e.status, 401);
        assert_eq!(e.detail, "multiple authorization payloads detected");
    }

    #[test]
    fn non_ascii_auth_headers_do_not_panic() {
        assert_eq!(parse_sentry_header("Séntry sentry_key=abc"), None);
        assert_eq!(parse_sentry_header("Sentr"), None);
        assert!(parse_sentry_header("sentry sentry_key=abc").is_some());
    }

    #[test]
    fn bad_keys_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-sentry-auth", "Sentry sentry_key=../x".parse().unwrap());
        assert_eq!(from_request(&h, None).unwrap_err().status, 401);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn dsn_parsing() {
        assert_eq!(
            parse_dsn("http://abc123@127.0.0.1:9911/42"),
            Some(("abc123".into(), 42))
        );
        assert_eq!(
            parse_dsn("https://abc:secret@h.example/sub/path/7/"),
            Some(("abc".into(), 7))
        );
        assert_eq!(parse_dsn("nonsense"), None);
    }
}
