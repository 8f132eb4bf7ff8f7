//! Ingestion from the outside: bad input gets the right 4xx and a JSON `detail`, the server stays
//! healthy, CORS works for browsers, and every body encoding is accepted.

mod common;

use std::io::Write;

use common::{Answer, Server, agent, answer};
use serde_json::{Value, json};

fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut req = agent().post(&format!("{}{path}", server.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(format!("POST {path}"), req.send(body))
}

fn envelope_for(event: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(event).unwrap();
    let mut out = br#"{"sent_at":"2026-11-25T00:00:00Z"}"#.to_vec();
    out.extend_from_slice(b"\n{\"type\":\"event\"}\n");
    out.extend_from_slice(&payload);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn send_envelope(server: &Server, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let (key, project) = common::dsn_parts(&server.dsn);
    let auth = format!("Sentry sentry_key={key}, sentry_version=7");
    let mut all = vec![("X-Sentry-Auth", auth.as_str())];
    all.extend_from_slice(headers);
    post(server, &format!("/api/{project}/envelope/"), &all, body)
}

/// Sends only the headers of an envelope request declaring a `len`-byte body; returns the
/// status line the server answers with (before the body is sent).
fn declare_oversized_body(server: &Server, len: usize) -> String {
    use std::io::{BufRead, BufReader};
    let (key, project) = common::dsn_parts(&server.dsn);
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/{project}/envelope/ HTTP/1.1\r\nHost: {addr}\r\n\
         X-Sentry-Auth: Sentry sentry_key={key}, sentry_version=7\r\n\
         Content-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

fn assert_healthy(server: &Server) {
    let (status, body) = server.get("/_health/");
    assert_eq!(status, 200, "health: {body}");
}

#[test]
fn bad_input_gets_the_right_4xx_and_the_server_stays_healthy() {
    let server = Server::start();
    let (key, project) = common::dsn_parts(&server.dsn);

    let a = send_envelope(
        &server,
        &[],
        b"{}\n{\"type\":\"event\",\"length\":50}\n{\"short\":1}",
    );
    a.expect_error(400);
    let a = send_envelope(&server, &[], b"this is not an envelope");
    a.expect_error(400);
    let a = send_envelope(&server, &[], b"");
    a.expect_error(400);

    let a = post(
        &server,
        &format!("/api/{project}/envelope/"),
        &[(
            "X-Sentry-Auth",
            "Sentry sentry_key=0000000000000000ffffffffffffffff, sentry_version=7",
        )],
        &envelope_for(&json!({"message": "x"})),
    );
    a.expect_error(401);
    let a = post(
        &server,
        &format!("/api/{project}/envelope/"),
        &[],
        &envelope_for(&json!({"message": "x"})),
    );
    a.expect_error(401);
    let a = post(
        &server,
        "/api/999999/envelope/",
        &[(
            "X-Sentry-Auth",
            &format!("Sentry sentry_key={key}, sentry_version=7"),
        )],
        &envelope_for(&json!({"message": "x"})),
    );
    a.expect_error(401);

    let a = send_envelope(
        &server,
        &[],
        b"{}\n{\"type\":\"event\"}\n{\"message\": oops}",
    );
    a.expect_error(400);
    let deep = format!(
        "{{}}\n{{\"type\":\"event\"}}\n{{\"extra\":{}1{}}}",
        "[".repeat(500),
        "]".repeat(500)
    );
    let a = send_envelope(&server, &[], deep.as_bytes());
    a.expect_error(400);

    let big_event = json!({"message": "x".repeat(2 * 1024 * 1024)});
    let a = send_envelope(&server, &[], &envelope_for(&big_event));
    a.expect_error(413);
    // An oversized body is refused from its declared length, before the client sends it.
    let status_line = declare_oversized_body(&server, 21 * 1024 * 1024);
    assert!(status_line.contains(" 413 "), "answered {status_line:?}");

    let bomb = gzip(&vec![b'a'; 20 * 1024 * 1024]);
    let a = send_envelope(&server, &[("Content-Encoding", "gzip")], &bomb);
    a.expect_error(413);
    let a = send_envelope(
        &server,
        &[("Content-Encoding", "gzip")],
        b"definitely not gzip",
    );
    a.expect_error(400);
    let a = send_envelope(&server, &[("Content-Encoding", "compress")], b"x");
    a.expect_error(415);

    assert_healthy(&server);
    let a = send_envelope(
        &server,
        &[],
        &envelope_for(&json!({"message": "still works"})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"].as_str().map(str::len), Some(32), "{}", a.body);
}

#[test]
fn every_encoding_and_shape_is_accepted_and_stored() {
    let server = Server::start();
    let (key, project) = common::dsn_parts(&server.dsn);
    let event = |m: &str| json!({"message": m, "level": "error"});

    let a = send_envelope(
        &server,
        &[("Content-Encoding", "gzip")],
        &gzip(&envelope_for(&event("gzip body"))),
    );
    assert_eq!(a.status, 200, "gzip: {}", a.body);
    let mut br = Vec::new();
    brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
        .write_all(&envelope_for(&event("brotli body")))
        .unwrap();
    let a = send_envelope(&server, &[("Content-Encoding", "br")], &br);
    assert_eq!(a.status, 200, "br: {}", a.body);
    let zs = zstd::encode_all(&envelope_for(&event("zstd body"))[..], 3).unwrap();
    let a = send_envelope(&server, &[("Content-Encoding", "zstd")], &zs);
    assert_eq!(a.status, 200, "zstd: {}", a.body);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&envelope_for(&event("deflate body"))).unwrap();
    let a = send_envelope(
        &server,
        &[("Content-Encoding", "deflate")],
        &z.finish().unwrap(),
    );
    assert_eq!(a.status, 200, "deflate: {}", a.body);

    // Browser style: query auth and text/plain, with the id only in the envelope header.
    let body = format!(
        "{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\"}}\n{}",
        "ab".repeat(16),
        json!({"message": "text plain body"})
    );
    let a = post(
        &server,
        &format!("/api/{project}/envelope/?sentry_key={key}&sentry_version=7"),
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], "ab".repeat(16));

    // Legacy store endpoint, and an event without any id.
    let a = post(
        &server,
        &format!("/api/{project}/store/"),
        &[(
            "X-Sentry-Auth",
            &format!("Sentry sentry_key={key}, sentry_version=7"),
        )],
        json!({"message": "legacy store"}).to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "store: {}", a.body);

    // Sessions, client reports and unknown item types are accepted without breaking anything.
    let body = b"{}\n{\"type\":\"session\"}\n{\"sid\":\"7c7c7c7c7c7c4c7c8c7c7c7c7c7c7c7c\",\"init\":true,\"started\":\"2026-11-25T00:00:00Z\",\"status\":\"ok\",\"attrs\":{\"release\":\"r@1\"}}\n{\"type\":\"client_report\"}\n{\"timestamp\":1795500000.5,\"discarded_events\":[{\"reason\":\"queue_overflow\",\"category\":\"error\",\"quantity\":4}]}\n{\"type\":\"some_future_item\"}\n{\"x\":1}";
    let a = send_envelope(&server, &[], body);
    assert_eq!(a.status, 200, "sessions: {}", a.body);
    assert_eq!(a.body, json!({}));

    let wanted = [
        "gzip body",
        "brotli body",
        "zstd body",
        "deflate body",
        "text plain body",
        "legacy store",
    ];
    common::wait_until("every encoding's event is an issue", || {
        let titles: Vec<String> = server
            .issues()
            .iter()
            .filter_map(|i| i["title"].as_str().map(str::to_string))
            .collect();
        if wanted.iter().all(|w| titles.iter().any(|t| t == w)) {
            Ok(())
        } else {
            Err(format!("{titles:?}"))
        }
    });
}

#[test]
fn browsers_get_cors_answers_from_any_origin() {
    let server = Server::start();
    let (_, project) = common::dsn_parts(&server.dsn);
    let resp = agent()
        .options(&format!("{}/api/{project}/envelope/", server.url))
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, sentry-trace, baggage",
        )
        .call()
        .expect("preflight");
    assert!(
        resp.status().is_success(),
        "preflight answered {}",
        resp.status()
    );
    let h = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_lowercase()
    };
    assert_eq!(h("access-control-allow-origin"), "*");
    for header in ["content-type", "sentry-trace", "baggage", "x-sentry-auth"] {
        assert!(
            h("access-control-allow-headers").contains(header),
            "{header} not allowed"
        );
    }

    let a = send_envelope(
        &server,
        &[("Origin", "https://shop.example.com")],
        &envelope_for(&json!({"message": "x"})),
    );
    let exposed = a
        .headers
        .iter()
        .find(|(k, _)| k == "access-control-expose-headers")
        .map(|(_, v)| v.to_lowercase())
        .unwrap_or_default();
    assert!(
        exposed.contains("x-sentry-rate-limits") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

#[test]
fn duplicate_event_ids_are_stored_once() {
    let server = Server::start();
    let id = "cd".repeat(16);
    let body = format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{}",
        json!({"message": "only once"})
    );
    for _ in 0..3 {
        let a = send_envelope(&server, &[], body.as_bytes());
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let marker = send_envelope(&server, &[], &envelope_for(&json!({"message": "marker"})));
    assert_eq!(marker.status, 200);
    common::wait_until("the marker is digested", || {
        let issues = server.issues();
        if issues.iter().any(|i| i["title"] == "marker") {
            Ok(issues)
        } else {
            Err(format!("{issues:?}"))
        }
    });
    let issue = server
        .issues()
        .into_iter()
        .find(|i| i["title"] == "only once")
        .expect("the issue");
    assert_eq!(issue["count"], "1");
}

#[test]
fn a_rate_limited_key_gets_429_with_retry_after() {
    let server = Server::start();
    let (key, _) = common::dsn_parts(&server.dsn);
    let resp = agent()
        .put(&format!(
            "{}/api/0/projects/{}/{}/keys/{key}/",
            server.url,
            common::ORG,
            common::PROJECT
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .send_json(json!({"rateLimit": {"count": 2, "window": 3600}}))
        .expect("update the key");
    assert_eq!(resp.status(), 200);
    for i in 0..2 {
        let a = send_envelope(
            &server,
            &[],
            &envelope_for(&json!({"message": format!("allowed {i}")})),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = send_envelope(
        &server,
        &[],
        &envelope_for(&json!({"message": "one too many"})),
    );
    a.expect_error(429);
    let header = |k: &str| {
        a.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let retry: u64 = header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry > 0 && retry <= 3600);
    assert!(
        header("x-sentry-rate-limits")
            .expect("X-Sentry-Rate-Limits")
            .contains("::key")
    );
}

#[test]
fn odd_characters_are_stored_on_every_backend() {
    let server = Server::start();
    // NUL (which PostgreSQL text refuses), lone surrogates' replacement, emoji, RTL marks.
    let event = json!({
        "message": "nul\u{0}inside \u{202e}reversed 🔥",
        "tags": {"weird": "a\u{0}b"},
        "user": {"id": "\u{0}"},
    });
    let a = send_envelope(&server, &[], &envelope_for(&event));
    assert_eq!(a.status, 200, "{}", a.body);
    let marker = send_envelope(
        &server,
        &[],
        &envelope_for(&json!({"message": "after the odd one"})),
    );
    assert_eq!(marker.status, 200);
    let issues = common::wait_until("both events are issues", || {
        let issues = server.issues();
        if issues.len() == 2 {
            Ok(issues)
        } else {
            Err(format!("{issues:?}"))
        }
    });
    assert!(
        issues.iter().any(|i| i["title"]
            .as_str()
            .is_some_and(|t| t.contains("reversed 🔥"))),
        "{issues:?}"
    );
}
