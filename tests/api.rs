//! Sentry's web API (`/api/0/…`) as a user of it observes it: events posted the way SDKs post
//! them (envelopes with `X-Sentry-Auth`), then read, searched, sorted, paginated and updated
//! through the API with a Bearer token.

mod common;

use std::collections::BTreeSet;

use common::scenario::entry;
use common::{Answer, ORG, PROJECT, Server, agent, answer, twice_on_one_connection, wait_until};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

/// `METHOD url` with optional Bearer token and JSON body. `url` is a full URL or a path.
fn call(
    server: &Server,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let url = if url.starts_with("http") {
        url.to_string()
    } else {
        format!("{}{url}", server.url)
    };
    let what = match body {
        Some(b) => format!("{method} {url} {b}"),
        None => format!("{method} {url}"),
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let agent = agent();
    let resp = match method {
        "GET" => {
            let mut req = agent.get(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        "PUT" | "POST" => {
            let mut req = if method == "PUT" {
                agent.put(&url)
            } else {
                agent.post(&url)
            };
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            match body {
                Some(b) => req.send_json(b),
                None => req.send_empty(),
            }
        }
        other => panic!("unsupported method {other}"),
    };
    answer(what, resp)
}

/// `GET /api/0/{path}` as the superuser.
fn get(server: &Server, path: &str) -> Answer {
    call(
        server,
        "GET",
        &format!("/api/0/{path}"),
        Some(&server.token),
        None,
    )
}

/// `PUT /api/0/{path}` as the superuser.
fn put(server: &Server, path: &str, body: Value) -> Answer {
    call(
        server,
        "PUT",
        &format!("/api/0/{path}"),
        Some(&server.token),
        Some(&body),
    )
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The project's issues for `query` (`None` = no `query` parameter at all).
fn issues_for(server: &Server, query: Option<&str>) -> Vec<Value> {
    let path = match query {
        Some(q) => format!("projects/{ORG}/{PROJECT}/issues/?query={}", enc(q)),
        None => format!("projects/{ORG}/{PROJECT}/issues/"),
    };
    get(server, &path).array()
}

fn titles(issues: &[Value]) -> BTreeSet<String> {
    issues
        .iter()
        .map(|i| i["title"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn ids(issues: &[Value]) -> Vec<String> {
    issues
        .iter()
        .map(|i| i["id"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// `[(rel, url, results)]` of a `Link` header.
fn links(header: &str) -> Vec<(String, String, String)> {
    header
        .split('<')
        .skip(1)
        .map(|part| {
            let (url, params) = part.split_once('>').expect("Link: <url>; params");
            let param = |name: &str| {
                params
                    .split(';')
                    .filter_map(|p| p.trim().trim_end_matches(',').split_once('='))
                    .find(|(k, _)| k.trim() == name)
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            (param("rel"), url.to_string(), param("results"))
        })
        .collect()
}

/// Follows `rel="next"` from `first` while `results="true"`; returns the pages' bodies and the
/// `results` flags of each page's `next` and `previous` links.
fn all_pages(server: &Server, first: &str) -> (Vec<Vec<Value>>, Vec<String>, Vec<String>) {
    let mut pages = Vec::new();
    let mut flags = Vec::new();
    let mut prev_flags = Vec::new();
    let mut url = format!("/api/0/{first}");
    for _ in 0..10 {
        let a = call(server, "GET", &url, Some(&server.token), None);
        let page = a.array();
        let header = a
            .header("link")
            .unwrap_or_else(|| panic!("{} answered no Link header", a.what))
            .to_string();
        let all = links(&header);
        let next = all
            .iter()
            .find(|(rel, _, _)| rel == "next")
            .unwrap_or_else(|| panic!("{}: Link has no rel=\"next\": {header}", a.what));
        let previous = all
            .iter()
            .find(|(rel, _, _)| rel == "previous")
            .unwrap_or_else(|| panic!("{}: Link has no rel=\"previous\": {header}", a.what));
        pages.push(page);
        flags.push(next.2.clone());
        prev_flags.push(previous.2.clone());
        if next.2 != "true" {
            return (pages, flags, prev_flags);
        }
        url = next.1.clone();
    }
    panic!("pagination from {first} never ended: {flags:?}");
}

// ---------------------------------------------------------------------------------------------
// Sending events the way SDKs do
// ---------------------------------------------------------------------------------------------

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Unix seconds `secs` ago.
fn ago(secs: f64) -> f64 {
    now() - secs
}

fn rfc3339(ts: f64) -> String {
    chrono::DateTime::from_timestamp_micros((ts * 1e6) as i64)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An envelope of `items` (item header, payload) with `header`.
fn envelope(header: &Value, items: &[(Value, Vec<u8>)]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap();
    for (h, payload) in items {
        out.push(b'\n');
        out.extend_from_slice(&serde_json::to_vec(h).unwrap());
        out.push(b'\n');
        out.extend_from_slice(payload);
    }
    out.push(b'\n');
    out
}

/// `POST /api/{project}/envelope/` with the DSN's key in `X-Sentry-Auth`, no API token.
fn post_envelope(server: &Server, dsn: &str, body: &[u8]) -> Answer {
    let (key, project) = common::dsn_parts(dsn);
    let url = format!("{}/api/{project}/envelope/", server.url);
    let resp = agent()
        .post(&url)
        .header(
            "X-Sentry-Auth",
            &format!(
                "Sentry sentry_key={key}, sentry_version=7, sentry_client=sentry.python/2.0.0"
            ),
        )
        .header("Content-Type", "application/x-sentry-envelope")
        .send(body);
    answer(format!("POST {url} (envelope)"), resp)
}

/// Sends `event` in an envelope as an SDK does (an `event_id` is added when it has none);
/// returns the event id, which the answer must echo.
fn send_to(server: &Server, dsn: &str, mut event: Value) -> String {
    if event.get("event_id").is_none() {
        event["event_id"] = json!(new_id());
    }
    let id = event["event_id"].as_str().unwrap().to_string();
    let header = json!({"event_id": id, "sent_at": rfc3339(now()), "dsn": dsn});
    let payload = serde_json::to_vec(&event).unwrap();
    let a = post_envelope(
        server,
        dsn,
        &envelope(
            &header,
            &[(json!({"type": "event", "length": payload.len()}), payload)],
        ),
    );
    assert_eq!(
        a.expect(200)["id"],
        json!(id),
        "the answer should carry the event id: {}",
        a.body
    );
    id
}

fn send(server: &Server, event: Value) -> String {
    send_to(server, &server.dsn, event)
}

/// `GET /api/0/projects/acme/{project}/events/{id}/` once the event is digested.
fn wait_event_in(server: &Server, project: &str, id: &str) -> Value {
    let path = format!("projects/{ORG}/{project}/events/{id}/");
    wait_until(&format!("event {id} is readable at {path}"), || {
        let a = get(server, &path);
        if a.status == 200 {
            Ok(a.body)
        } else {
            Err(format!("{} {}", a.status, a.body))
        }
    })
}

fn wait_event(server: &Server, id: &str) -> Value {
    wait_event_in(server, PROJECT, id)
}

/// The issue id of a digested event.
fn issue_of(server: &Server, event_id: &str) -> String {
    let e = wait_event(server, event_id);
    e["groupID"]
        .as_str()
        .unwrap_or_else(|| panic!("event `groupID` should be a string: {e:#}"))
        .to_string()
}

/// A message event, as `capture_message` sends it.
fn message(text: &str, ts: f64) -> Value {
    json!({
        "message": text,
        "level": "error",
        "platform": "python",
        "timestamp": ts,
    })
}

/// A Python exception raised in `functions` (outermost first) of the app, under a library frame.
fn python_error(ty: &str, value: &str, functions: &[(&str, u64)]) -> Value {
    let mut frames = vec![json!({
        "module": "flask.app", "filename": "flask/app.py", "function": "dispatch_request",
        "lineno": 1498, "in_app": false,
        "abs_path": "/usr/lib/python3/site-packages/flask/app.py",
    })];
    for (function, line) in functions {
        frames.push(json!({
            "module": "shop.checkout",
            "filename": "shop/checkout.py",
            "abs_path": "/srv/shop/checkout.py",
            "function": function,
            "lineno": line,
            "in_app": true,
            "context_line": format!("    {function}_body()"),
        }));
    }
    json!({
        "level": "error",
        "platform": "python",
        "timestamp": now(),
        "exception": {"values": [{
            "type": ty,
            "value": value,
            "module": "shop.errors",
            "mechanism": {"type": "generic", "handled": true},
            "stacktrace": {"frames": frames},
        }]},
    })
}

/// The value of tag `key` in an event's `tags: [{key, value}]`.
fn tag<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("event `tags` should be an array of {{key, value}}: {event:#}"))
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// Issue `count` as a number (it is a string in Sentry's API).
fn count(issue: &Value) -> u64 {
    issue["count"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("issue `count` should be a numeric string: {issue:#}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Status and regressions
// ---------------------------------------------------------------------------------------------

#[test]
fn resolving_ignoring_and_regressions() {
    let server = Server::start();
    let first = send(
        &server,
        python_error("CardDeclined", "card declined", &[("pay", 10)]),
    );
    let id = issue_of(&server, &first);
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(issue["status"], "unresolved", "new issue: {issue:#}");
    assert_eq!(issue["isRegression"], false, "new issue: {issue:#}");

    // Resolve.
    let updated = put(
        &server,
        &format!("issues/{id}/"),
        json!({"status": "resolved"}),
    );
    assert_eq!(
        updated.expect(200)["status"],
        "resolved",
        "PUT answer: {}",
        updated.body
    );
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(issue["status"], "resolved", "after resolving: {issue:#}");
    assert!(
        !ids(&issues_for(&server, None)).contains(&id),
        "a resolved issue must not be in the default list (query absent = is:unresolved): {:#}",
        Value::Array(issues_for(&server, None))
    );
    assert!(
        !ids(&issues_for(&server, Some("is:unresolved"))).contains(&id),
        "is:unresolved must not list a resolved issue"
    );
    assert!(
        ids(&issues_for(&server, Some("is:resolved"))).contains(&id),
        "is:resolved must list the resolved issue: {:#}",
        Value::Array(issues_for(&server, Some("is:resolved")))
    );
    assert!(
        ids(&issues_for(&server, Some(""))).contains(&id),
        "query= (empty) lists issues of every status"
    );

    // A new event of the resolved issue reopens it as a regression.
    let again = send(
        &server,
        python_error("CardDeclined", "card declined", &[("pay", 10)]),
    );
    assert_eq!(issue_of(&server, &again), id, "same error, same issue");
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(
        issue["status"], "unresolved",
        "after a new event: {issue:#}"
    );
    assert_eq!(issue["isRegression"], true, "after a new event: {issue:#}");
    assert_eq!(
        issue["substatus"], "regressed",
        "after a new event: {issue:#}"
    );
    assert_eq!(issue["count"], "2", "after a new event: {issue:#}");
    let listed = issues_for(&server, None);
    let in_list = listed
        .iter()
        .find(|i| i["id"] == json!(id))
        .unwrap_or_else(|| {
            panic!(
                "the regressed issue should be back in the default list: {:#}",
                Value::Array(listed.clone())
            )
        });
    assert_eq!(in_list["isRegression"], true, "listed: {in_list:#}");

    // Ignore.
    let updated = put(
        &server,
        &format!("issues/{id}/"),
        json!({"status": "ignored"}),
    );
    assert_eq!(
        updated.expect(200)["status"],
        "ignored",
        "PUT answer: {}",
        updated.body
    );
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(issue["status"], "ignored", "after ignoring: {issue:#}");
    assert!(
        !ids(&issues_for(&server, None)).contains(&id),
        "an ignored issue is not in the default list"
    );
    assert!(
        ids(&issues_for(&server, Some("is:ignored"))).contains(&id),
        "is:ignored lists the ignored issue"
    );

    // An invalid status is refused and changes nothing.
    put(
        &server,
        &format!("issues/{id}/"),
        json!({"status": "bogus"}),
    )
    .expect_error(400);
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(
        issue["status"], "ignored",
        "a refused update changes nothing: {issue:#}"
    );

    // And back to unresolved.
    let updated = put(
        &server,
        &format!("issues/{id}/"),
        json!({"status": "unresolved"}),
    );
    assert_eq!(
        updated.expect(200)["status"],
        "unresolved",
        "{}",
        updated.body
    );
    assert!(ids(&issues_for(&server, None)).contains(&id));

    // The organization-scoped path updates the same issue.
    let updated = put(
        &server,
        &format!("organizations/{ORG}/issues/{id}/"),
        json!({"status": "resolved"}),
    );
    assert_eq!(
        updated.expect(200)["status"],
        "resolved",
        "{}",
        updated.body
    );
    let issue = get(&server, &format!("issues/{id}/")).expect(200).clone();
    assert_eq!(issue["status"], "resolved", "{issue:#}");

    // An unknown issue is a 404 with a detail.
    get(&server, "issues/987654321/").expect_error(404);
    put(&server, "issues/987654321/", json!({"status": "resolved"})).expect_error(404);
}

// ---------------------------------------------------------------------------------------------
// 2. Search and sort
// ---------------------------------------------------------------------------------------------

#[test]
fn search_matches_text_tags_release_environment_level_and_user() {
    let server = Server::start();
    let mut a = python_error(
        "TypeError",
        "cannot read the cart total",
        &[("checkout", 12)],
    );
    a["tags"] = json!({"customer_tier": "pro"});
    a["release"] = json!("shop@1.0.0");
    a["environment"] = json!("production");
    a["user"] = json!({"id": "u-1", "email": "jane@example.com"});
    let mut b = message("Payment gateway timeout", now());
    b["level"] = json!("warning");
    b["tags"] = json!({"customer_tier": "free"});
    b["release"] = json!("shop@2.0.0");
    b["environment"] = json!("staging");
    b["user"] = json!({"id": "u-2", "email": "bob@example.com"});
    let mut c = message("Inventory sync finished with gaps", now());
    c["level"] = json!("info");
    c["release"] = json!("shop@2.0.0");
    c["environment"] = json!("production");

    let (ta, tb, tc) = (
        "TypeError: cannot read the cart total",
        "Payment gateway timeout",
        "Inventory sync finished with gaps",
    );
    for (event, title) in [(a, ta), (b, tb), (c, tc)] {
        let id = send(&server, event);
        let e = wait_event(&server, &id);
        assert_eq!(e["title"], title, "event title: {e:#}");
    }

    let cases: &[(&str, &[&str])] = &[
        ("", &[ta, tb, tc]),
        ("gateway", &[tb]),
        ("cart total", &[ta]),
        ("customer_tier:pro", &[ta]),
        ("customer_tier:free", &[tb]),
        ("!customer_tier:pro", &[tb, tc]),
        ("release:shop@2.0.0", &[tb, tc]),
        ("release:shop@1.0.0", &[ta]),
        ("environment:production", &[ta, tc]),
        ("environment:staging", &[tb]),
        ("level:warning", &[tb]),
        ("level:info", &[tc]),
        ("has:customer_tier", &[ta, tb]),
        ("has:user", &[ta, tb]),
        ("user.email:jane@example.com", &[ta]),
        ("user.email:bob@example.com", &[tb]),
        ("user.id:u-2", &[tb]),
        ("environment:production level:info", &[tc]),
        ("is:unresolved customer_tier:pro gateway", &[]),
        ("customer_tier:nobody", &[]),
        ("customer_tier:pr*", &[ta]),
        ("customer_tier:\"pro\"", &[ta]),
    ];
    let mut failures = Vec::new();
    for (query, expected) in cases {
        let got = titles(&issues_for(&server, Some(query)));
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        if got != expected {
            failures.push(format!(
                "GET /api/0/projects/{ORG}/{PROJECT}/issues/?query={} → {got:?}, expected {expected:?}",
                enc(query)
            ));
        }
    }
    // The `environment` parameter narrows the list like `environment:` does.
    let got = titles(
        &get(
            &server,
            &format!("projects/{ORG}/{PROJECT}/issues/?query=&environment=staging"),
        )
        .array(),
    );
    if got != BTreeSet::from([tb.to_string()]) {
        failures.push(format!("?query=&environment=staging → {got:?}"));
    }
    assert!(
        failures.is_empty(),
        "search results differ:\n{}",
        failures.join("\n")
    );
}

#[test]
fn sort_orders_and_stats_periods() {
    let server = Server::start();
    let min = 60.0;
    let day = 86400.0;
    // Alpha: 5 events, 1 user, first seen 10 min ago, last seen 6 min ago.
    // Bravo: 3 events, 3 users, first seen 50 min ago, last seen 5 min ago.
    // Charlie: 2 events, 2 users, first seen 30 min ago, last seen 20 min ago.
    // Delta: 4 events, 4 users, three of them 2-3 days old, the last 1 min ago.
    let mut sent = Vec::new();
    let plan: &[(&str, &[(f64, &str)])] = &[
        (
            "Alpha failure",
            &[
                (10.0 * min, "a1"),
                (9.0 * min, "a1"),
                (8.0 * min, "a1"),
                (7.0 * min, "a1"),
                (6.0 * min, "a1"),
            ],
        ),
        (
            "Bravo failure",
            &[(50.0 * min, "b1"), (40.0 * min, "b2"), (5.0 * min, "b3")],
        ),
        ("Charlie failure", &[(30.0 * min, "c1"), (20.0 * min, "c2")]),
        (
            "Delta failure",
            &[
                (3.0 * day, "d1"),
                (3.0 * day - min, "d2"),
                (2.0 * day, "d3"),
                (min, "d4"),
            ],
        ),
    ];
    for (text, events) in plan {
        for (secs, user) in *events {
            let mut e = message(text, ago(*secs));
            e["user"] = json!({"id": user});
            sent.push(send(&server, e));
        }
    }
    for id in &sent {
        wait_event(&server, id);
    }
    let order = |params: &str| -> Vec<String> {
        get(
            &server,
            &format!("projects/{ORG}/{PROJECT}/issues/{params}"),
        )
        .array()
        .iter()
        .map(|i| i["title"].as_str().unwrap_or("?").to_string())
        .collect()
    };
    let (a, b, c, d) = (
        "Alpha failure",
        "Bravo failure",
        "Charlie failure",
        "Delta failure",
    );
    let mut failures = Vec::new();
    for (params, expected) in [
        ("?sort=freq", vec![a, d, b, c]),
        ("?sort=user", vec![d, b, c, a]),
        ("?sort=new", vec![a, c, b, d]),
        ("?sort=date", vec![d, b, a, c]),
        ("", vec![d, b, a, c]),
        // Filters keep the order.
        ("?sort=freq&query=times_seen%3A%3E2", vec![a, d, b]),
        ("?sort=new&query=firstSeen%3A-24h", vec![a, c, b]),
    ] {
        let got = order(params);
        if got != expected {
            failures.push(format!(
                "GET /api/0/projects/{ORG}/{PROJECT}/issues/{params}: got {got:?}, expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "orderings:\n{}", failures.join("\n"));

    let issues = issues_for(&server, None);
    // (title, events, users, events in the last 24 h)
    let expected = [(a, 5, 1, 5), (b, 3, 3, 3), (c, 2, 2, 2), (d, 4, 4, 1)];
    for (title, events, users, _) in expected {
        let issue = issues
            .iter()
            .find(|i| i["title"] == title)
            .unwrap_or_else(|| panic!("no issue {title}"));
        assert_eq!(count(issue), events, "count: {issue:#}");
        assert_eq!(issue["userCount"], users, "userCount: {issue:#}");
    }

    // statsPeriod: 24 hourly buckets, 14 daily buckets, or none.
    for (period, n, step) in [("24h", 24, 3600), ("14d", 14, 86400)] {
        let path = format!("projects/{ORG}/{PROJECT}/issues/?statsPeriod={period}");
        let listed = get(&server, &path).array();
        assert_eq!(listed.len(), 4, "GET {path}");
        for issue in listed {
            let series = issue["stats"][period]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: issue has no stats.{period}: {issue:#}"));
            assert_eq!(series.len(), n, "GET {path}: stats.{period}: {issue:#}");
            let mut sum = 0;
            let mut last_ts = None;
            for bucket in series {
                let ts = bucket[0]
                    .as_i64()
                    .unwrap_or_else(|| panic!("bucket should be [ts, n]: {bucket}"));
                let n = bucket[1]
                    .as_u64()
                    .unwrap_or_else(|| panic!("bucket should be [ts, n]: {bucket}"));
                if let Some(prev) = last_ts {
                    assert_eq!(ts - prev, step, "buckets {step}s apart: {series:?}");
                }
                last_ts = Some(ts);
                sum += n;
            }
            assert!(
                last_ts.is_some_and(|t| (now() as i64) - t < step + 60),
                "the last bucket is the current one: {series:?}"
            );
            let (_, total, _, recent) = expected
                .iter()
                .find(|e| issue["title"] == e.0)
                .unwrap_or_else(|| panic!("unexpected issue {issue:#}"));
            let want = if period == "24h" { *recent } else { *total };
            assert_eq!(
                sum, want,
                "GET {path}: the {period} buckets add up to the events of that period: {issue:#}"
            );
        }
    }
    let path = format!("projects/{ORG}/{PROJECT}/issues/?statsPeriod=");
    for issue in get(&server, &path).array() {
        assert!(
            issue.get("stats").is_none(),
            "GET {path} omits `stats`: {issue:#}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Pagination
// ---------------------------------------------------------------------------------------------

#[test]
fn cursor_pagination_of_issues_and_events() {
    let server = Server::start();
    let words = ["Apple", "Banana", "Cherry", "Damson", "Elderberry"];
    let mut sent = Vec::new();
    for (i, w) in words.iter().enumerate() {
        sent.push(send(
            &server,
            message(&format!("{w} crate fell over"), ago(600.0 - i as f64)),
        ));
    }
    // Four more events of the first issue: five in all.
    let mut apple = vec![sent[0].clone()];
    for i in 0..4 {
        apple.push(send(
            &server,
            message("Apple crate fell over", ago(300.0 - i as f64)),
        ));
    }
    for id in sent.iter().chain(&apple) {
        wait_event(&server, id);
    }

    let (pages, flags, previous) = all_pages(
        &server,
        &format!("projects/{ORG}/{PROJECT}/issues/?limit=2"),
    );
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1], "issue page sizes (next flags {flags:?})");
    assert_eq!(flags, ["true", "true", "false"], "rel=next results flags");
    assert_eq!(
        previous,
        ["false", "true", "true"],
        "rel=previous results flags"
    );
    let listed: Vec<String> = pages
        .iter()
        .flatten()
        .map(|i| i["title"].as_str().unwrap_or("?").to_string())
        .collect();
    // Last seen first: Apple got the newest events, then the others newest first.
    let expected: Vec<String> = ["Apple", "Elderberry", "Damson", "Cherry", "Banana"]
        .iter()
        .map(|w| format!("{w} crate fell over"))
        .collect();
    assert_eq!(
        listed, expected,
        "every issue exactly once across pages, in the sort order"
    );

    let issue = issue_of(&server, &apple[0]);
    let (pages, flags, previous) = all_pages(&server, &format!("issues/{issue}/events/?limit=2"));
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1], "event page sizes (next flags {flags:?})");
    assert_eq!(flags, ["true", "true", "false"], "rel=next results flags");
    assert_eq!(
        previous,
        ["false", "true", "true"],
        "rel=previous results flags"
    );
    let listed: Vec<String> = pages
        .iter()
        .flatten()
        .map(|e| e["eventID"].as_str().unwrap_or("?").to_string())
        .collect();
    let expected: Vec<String> = apple.iter().rev().cloned().collect();
    assert_eq!(
        listed, expected,
        "every event exactly once across pages, newest first"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Organization-wide issues
// ---------------------------------------------------------------------------------------------

#[test]
fn organization_issues_span_its_projects() {
    let server = Server::start();
    let api_dsn = server.cli(
        &[
            "project",
            "create",
            &format!("{ORG}/api"),
            "--public-url",
            &server.url,
        ],
        &[],
    );
    assert!(
        api_dsn.starts_with("http://") && api_dsn != server.dsn,
        "a second project has its own DSN: {api_dsn:?} vs {:?}",
        server.dsn
    );
    let checkout_event = send(&server, message("Checkout page broke", now()));
    let api_event = send_to(&server, &api_dsn, message("API worker broke", now()));
    wait_event(&server, &checkout_event);
    let e = wait_event_in(&server, "api", &api_event);
    assert_eq!(e["title"], "API worker broke", "{e:#}");

    let issues = get(&server, &format!("organizations/{ORG}/issues/?query=")).array();
    let slug_of = |title: &str| {
        let issue = issues
            .iter()
            .find(|i| i["title"] == title)
            .unwrap_or_else(|| {
                panic!(
                    "organization issues should list {title:?}: {:#}",
                    Value::Array(issues.clone())
                )
            });
        let permalink = issue["permalink"].as_str().unwrap_or_default();
        assert!(
            permalink.starts_with("http") && permalink.contains(issue["id"].as_str().unwrap()),
            "`permalink` should be a URL naming the issue: {issue:#}"
        );
        issue["project"]["slug"].as_str().unwrap_or("?").to_string()
    };
    assert_eq!(slug_of("Checkout page broke"), PROJECT);
    assert_eq!(slug_of("API worker broke"), "api");
    // `project=ID` narrows to one project.
    let api_id = issues
        .iter()
        .find(|i| i["title"] == "API worker broke")
        .map(|i| i["project"]["id"].as_str().unwrap_or("?").to_string())
        .unwrap();
    let narrowed = titles(
        &get(
            &server,
            &format!("organizations/{ORG}/issues/?query=&project={api_id}"),
        )
        .array(),
    );
    assert_eq!(
        narrowed,
        BTreeSet::from(["API worker broke".to_string()]),
        "organizations/{ORG}/issues/?project={api_id}"
    );
    // Default query (is:unresolved) lists both too.
    let default = titles(&get(&server, &format!("organizations/{ORG}/issues/")).array());
    assert!(
        default.contains("Checkout page broke") && default.contains("API worker broke"),
        "{default:?}"
    );
    // The project endpoint lists only its own.
    let own = titles(&issues_for(&server, Some("")));
    assert_eq!(
        own,
        BTreeSet::from(["Checkout page broke".to_string()]),
        "projects/{ORG}/{PROJECT}/issues/ lists only that project's issues"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Access control
// ---------------------------------------------------------------------------------------------

#[test]
fn tokens_and_membership_decide_what_is_visible() {
    let server = Server::start();
    // Ingestion needs only the DSN key (post_envelope sends no Authorization header).
    let event = send(&server, message("Private failure", now()));
    let issue = issue_of(&server, &event);

    let paths = [
        format!("/api/0/projects/{ORG}/{PROJECT}/issues/"),
        format!("/api/0/organizations/{ORG}/issues/"),
        format!("/api/0/issues/{issue}/"),
        format!("/api/0/issues/{issue}/events/"),
    ];
    for path in &paths {
        call(&server, "GET", path, None, None).expect_error(401);
        call(
            &server,
            "GET",
            path,
            Some("this-is-not-a-token-0123456789abcdef"),
            None,
        )
        .expect_error(401);
    }

    server.cli(
        &["user", "create", "--email", "b@example.com"],
        &[("FAULTLINE_PASSWORD", "another correct horse battery")],
    );
    let token = server.cli(&["token", "create", "--email", "b@example.com"], &[]);
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "`faultline token create` prints only a token: {token:?}"
    );
    let as_b = |path: &str| {
        call(
            &server,
            "GET",
            &format!("/api/0/{path}"),
            Some(&token),
            None,
        )
    };
    let who = as_b("");
    assert_eq!(
        who.expect(200)["user"]["email"],
        "b@example.com",
        "{}",
        who.body
    );
    for path in [
        format!("projects/{ORG}/{PROJECT}/issues/"),
        format!("projects/{ORG}/{PROJECT}/"),
        format!("projects/{ORG}/{PROJECT}/events/{event}/"),
        format!("projects/{ORG}/{PROJECT}/keys/"),
        format!("issues/{issue}/"),
        format!("issues/{issue}/events/"),
        format!("issues/{issue}/events/latest/"),
        format!("issues/{issue}/tags/"),
    ] {
        as_b(&path).expect_error(404);
    }
    call(
        &server,
        "PUT",
        &format!("/api/0/issues/{issue}/"),
        Some(&token),
        Some(&json!({"status": "resolved"})),
    )
    .expect_error(404);
    assert_eq!(
        as_b(&format!("organizations/{ORG}/issues/?query=")).array(),
        Vec::<Value>::new(),
        "a non-member sees no issues of the organization"
    );
    assert_eq!(
        as_b("organizations/").array(),
        Vec::<Value>::new(),
        "a non-member sees no organizations"
    );
    // The issue is untouched and still visible to the superuser.
    let i = get(&server, &format!("issues/{issue}/"))
        .expect(200)
        .clone();
    assert_eq!(i["status"], "unresolved", "{i:#}");
}

// ---------------------------------------------------------------------------------------------
// 6. Events
// ---------------------------------------------------------------------------------------------

const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                         (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// A browser `TypeError` thrown in `validateCart`, called from `submitOrder`, called from a
/// vendor (not in-app) frame.
fn browser_error(ts: Value, validate_line: u64) -> Value {
    json!({
        "event_id": new_id(),
        "platform": "javascript",
        "level": "error",
        "timestamp": ts,
        "release": "shop@1.4.2",
        "environment": "production",
        "tags": {"customer_tier": "pro"},
        "sdk": {"name": "sentry.javascript.browser", "version": "8.40.0"},
        "user": {"id": "user-7", "email": "jane@example.com", "ip_address": "{{auto}}"},
        "request": {
            "url": "https://shop.example.com/checkout?step=2",
            "method": "POST",
            "headers": {"User-Agent": CHROME_UA, "Referer": "https://shop.example.com/cart"},
        },
        "breadcrumbs": {"values": [
            {"timestamp": ago(5.0), "category": "ui.click", "message": "button#pay", "level": "info"},
            {"timestamp": ago(4.0), "type": "http", "category": "fetch",
             "data": {"url": "/api/cart", "method": "GET", "status_code": 200}},
        ]},
        "exception": {"values": [{
            "type": "TypeError",
            "value": "cart is empty",
            "mechanism": {"type": "onerror", "handled": false},
            "stacktrace": {"frames": [
                {"abs_path": "https://shop.example.com/static/vendor.js", "filename": "/static/vendor.js",
                 "function": "dispatchEvent", "lineno": 10, "colno": 5, "in_app": false},
                {"abs_path": "https://shop.example.com/static/app.js", "filename": "/static/app.js",
                 "function": "submitOrder", "lineno": 42, "colno": 7, "in_app": true,
                 "pre_context": ["function submitOrder(cart) {"],
                 "context_line": "  validateCart(cart);",
                 "post_context": ["  return post(cart);", "}"]},
                {"abs_path": "https://shop.example.com/static/app.js", "filename": "/static/app.js",
                 "function": "validateCart", "lineno": validate_line, "colno": 11, "in_app": true,
                 "pre_context": ["function validateCart(cart) {", "  if (!cart.items.length)"],
                 "context_line": "    throw new TypeError('cart is empty');",
                 "post_context": ["}"]},
            ]},
        }]},
    })
}

/// `dateCreated` as Unix seconds.
fn date_created(event: &Value) -> f64 {
    let s = event["dateCreated"]
        .as_str()
        .unwrap_or_else(|| panic!("event `dateCreated` should be a string: {event:#}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("`dateCreated` {s:?} is not RFC 3339: {e}"))
        .timestamp_micros() as f64
        / 1e6
}

#[test]
fn event_details_links_and_shapes() {
    let server = Server::start();
    // Three events of one issue: the oldest with an RFC 3339 timestamp, the others with floats;
    // the newest with its tags as a list of pairs.
    let t1 = (ago(1800.0) as i64) as f64;
    let t2 = ago(1200.0);
    let t3 = ago(600.0);
    let first = browser_error(json!(rfc3339(t1)), 88);
    let middle = browser_error(json!(t2), 88);
    let mut last = browser_error(json!(t3), 88);
    last["tags"] = json!([["customer_tier", "enterprise"], ["team", "payments"]]);
    let ids: Vec<String> = [first, middle, last]
        .into_iter()
        .map(|e| send(&server, e))
        .collect();
    let (e1, e2, e3) = (&ids[0], &ids[1], &ids[2]);
    let events: Vec<Value> = ids.iter().map(|id| wait_event(&server, id)).collect();
    let issue = events[0]["groupID"].as_str().unwrap().to_string();
    for e in &events {
        assert_eq!(e["groupID"], json!(issue), "one issue for all three: {e:#}");
    }

    // Timestamps as sent, whether RFC 3339 strings or floats.
    for (e, t) in events.iter().zip([t1, t2, t3]) {
        let got = date_created(e);
        assert!(
            (got - t).abs() < 0.01,
            "dateCreated {} should be the event's timestamp {}: {e:#}",
            e["dateCreated"],
            rfc3339(t)
        );
    }

    // latest / oldest / by id, linked to each other.
    let latest = get(&server, &format!("issues/{issue}/events/latest/"))
        .expect(200)
        .clone();
    let oldest = get(&server, &format!("issues/{issue}/events/oldest/"))
        .expect(200)
        .clone();
    let mid = get(&server, &format!("issues/{issue}/events/{e2}/"))
        .expect(200)
        .clone();
    assert_eq!(latest["eventID"], json!(e3), "latest");
    assert_eq!(oldest["eventID"], json!(e1), "oldest");
    assert_eq!(mid["eventID"], json!(e2), "by id");
    assert_eq!(
        mid["previousEventID"],
        json!(e1),
        "middle's previous: {mid:#}"
    );
    assert_eq!(mid["nextEventID"], json!(e3), "middle's next: {mid:#}");
    assert_eq!(latest["previousEventID"], json!(e2), "latest's previous");
    assert!(latest["nextEventID"].is_null(), "latest has no next");
    assert_eq!(oldest["nextEventID"], json!(e2), "oldest's next");
    assert!(
        oldest["previousEventID"].is_null(),
        "oldest has no previous"
    );
    get(&server, &format!("issues/{issue}/events/{}/", new_id())).expect_error(404);

    // The full shape.
    let e = &events[1];
    assert_eq!(e["id"], json!(e2), "{e:#}");
    assert_eq!(e["eventID"], json!(e2), "{e:#}");
    assert!(e["projectID"].is_string(), "projectID is a string: {e:#}");
    assert_eq!(e["title"], "TypeError: cart is empty", "{e:#}");
    assert_eq!(e["platform"], "javascript", "{e:#}");
    assert_eq!(e["release"]["version"], "shop@1.4.2", "{e:#}");
    assert_eq!(e["sdk"]["name"], "sentry.javascript.browser", "{e:#}");

    let exception = entry(e, "exception");
    let value = &exception["values"][0];
    assert_eq!(value["type"], "TypeError", "{exception:#}");
    assert_eq!(value["value"], "cart is empty", "{exception:#}");
    let frames = value["stacktrace"]["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("exception has frames: {exception:#}"));
    let functions: Vec<&str> = frames
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        functions,
        ["dispatchEvent", "submitOrder", "validateCart"],
        "frames oldest first, crashing frame last"
    );
    let crash = &frames[2];
    assert_eq!(crash["inApp"], true, "{crash:#}");
    assert_eq!(crash["lineNo"], 88, "{crash:#}");
    assert_eq!(crash["colNo"], 11, "{crash:#}");
    assert_eq!(
        crash["context"],
        json!([
            [86, "function validateCart(cart) {"],
            [87, "  if (!cart.items.length)"],
            [88, "    throw new TypeError('cart is empty');"],
            [89, "}"]
        ]),
        "frame context as [lineNo, line] pairs: {crash:#}"
    );
    assert_eq!(frames[0]["inApp"], false, "vendor frame: {:#}", frames[0]);

    let crumbs = entry(e, "breadcrumbs")["values"]
        .as_array()
        .unwrap_or_else(|| panic!("breadcrumbs have values: {e:#}"))
        .clone();
    assert_eq!(crumbs.len(), 2, "{crumbs:#?}");
    assert_eq!(crumbs[0]["message"], "button#pay", "{crumbs:#?}");
    assert_eq!(crumbs[0]["category"], "ui.click", "{crumbs:#?}");
    assert_eq!(crumbs[1]["type"], "http", "{crumbs:#?}");
    assert_eq!(crumbs[1]["data"]["url"], "/api/cart", "{crumbs:#?}");
    assert!(crumbs[0]["timestamp"].is_string(), "{crumbs:#?}");

    let request = entry(e, "request");
    assert_eq!(request["method"], "POST", "{request:#}");
    assert_eq!(
        request["url"], "https://shop.example.com/checkout",
        "the URL without its query string: {request:#}"
    );
    assert_eq!(
        request["query"],
        json!([["step", "2"]]),
        "query as pairs: {request:#}"
    );
    let headers = request["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("request headers as [[name, value]] pairs: {request:#}"));
    assert!(
        headers.contains(&json!(["User-Agent", CHROME_UA])),
        "headers as pairs include the User-Agent: {request:#}"
    );
    assert!(
        headers.contains(&json!(["Referer", "https://shop.example.com/cart"])),
        "headers as pairs include the Referer: {request:#}"
    );

    // Tags: sorted, with the derived ones.
    let keys: Vec<&str> = e["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap_or("?"))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "tags sorted by key: {}", e["tags"]);
    assert_eq!(tag(e, "level"), Some("error"), "{}", e["tags"]);
    assert_eq!(tag(e, "environment"), Some("production"), "{}", e["tags"]);
    assert_eq!(tag(e, "release"), Some("shop@1.4.2"), "{}", e["tags"]);
    assert_eq!(tag(e, "customer_tier"), Some("pro"), "{}", e["tags"]);
    assert_eq!(tag(e, "browser.name"), Some("Chrome"), "{}", e["tags"]);
    assert!(
        tag(e, "browser").is_some_and(|b| b.starts_with("Chrome 120")),
        "browser tag from the User-Agent: {}",
        e["tags"]
    );
    assert_eq!(tag(e, "handled"), Some("no"), "{}", e["tags"]);
    assert_eq!(
        tag(e, "url"),
        Some("https://shop.example.com/checkout"),
        "{}",
        e["tags"]
    );
    let browser = &e["contexts"]["browser"];
    assert_eq!(
        browser["name"], "Chrome",
        "contexts.browser: {:#}",
        e["contexts"]
    );
    assert!(
        browser["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("120")),
        "contexts.browser.version: {:#}",
        e["contexts"]
    );
    assert_eq!(e["user"]["id"], "user-7", "{:#}", e["user"]);
    assert_eq!(
        e["user"]["ip_address"], "127.0.0.1",
        "`{{{{auto}}}}` is replaced by the connection's address: {:#}",
        e["user"]
    );

    // Tags sent as a list of pairs.
    let e3v = &events[2];
    assert_eq!(
        tag(e3v, "customer_tier"),
        Some("enterprise"),
        "{}",
        e3v["tags"]
    );
    assert_eq!(tag(e3v, "team"), Some("payments"), "{}", e3v["tags"]);
    assert_eq!(
        titles(&issues_for(&server, Some("team:payments"))),
        BTreeSet::from(["TypeError: cart is empty".to_string()]),
        "a tag sent as a pair is searchable"
    );

    // Grouping names the in-app functions that made the issue.
    let grouping = e["grouping"].to_string();
    for function in ["submitOrder", "validateCart"] {
        assert!(
            grouping.contains(function),
            "`grouping` should name the in-app frame {function}: {:#}",
            e["grouping"]
        );
    }

    // The stored event.
    let raw = get(
        &server,
        &format!("projects/{ORG}/{PROJECT}/events/{e2}/json/"),
    )
    .expect(200)
    .clone();
    assert_eq!(raw["event_id"], json!(e2), "{raw:#}");
    assert_eq!(
        raw["exception"]["values"][0]["type"], "TypeError",
        "{raw:#}"
    );
    assert_eq!(raw["release"], "shop@1.4.2", "{raw:#}");
    assert_eq!(raw["user"]["ip_address"], "127.0.0.1", "{raw:#}");
    get(
        &server,
        &format!("projects/{ORG}/{PROJECT}/events/{}/", new_id()),
    )
    .expect_error(404);

    // A message event: grouping shows the parameterized message.
    let order = send(&server, message("Order 991 stuck", now()));
    let other = send(&server, message("Order 992 stuck", now()));
    let o = wait_event(&server, &order);
    let o2 = wait_event(&server, &other);
    assert_eq!(o["groupID"], o2["groupID"], "both orders, one issue");
    assert!(
        o["grouping"].to_string().contains("Order <int> stuck"),
        "`grouping` of a message names the parameterized message: {:#}",
        o["grouping"]
    );
    assert_eq!(
        entry(&o, "message")["formatted"],
        "Order 991 stuck",
        "{o:#}"
    );

    // No event_id anywhere: the server assigns one and answers it.
    let payload = serde_json::to_vec(&message("Event without an id", now())).unwrap();
    let a = post_envelope(
        &server,
        &server.dsn,
        &envelope(
            &json!({"sent_at": rfc3339(now())}),
            &[(json!({"type": "event"}), payload)],
        ),
    );
    let assigned = a.expect(200)["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the answer should carry the assigned id: {}", a.body))
        .to_string();
    assert!(
        assigned.len() == 32 && assigned.chars().all(|c| c.is_ascii_hexdigit()),
        "assigned id is 32 hex digits: {assigned:?}"
    );
    let e = wait_event(&server, &assigned);
    assert_eq!(e["eventID"], json!(assigned), "{e:#}");
    assert_eq!(e["title"], "Event without an id", "{e:#}");
}

// ---------------------------------------------------------------------------------------------
// 7. Fingerprints
// ---------------------------------------------------------------------------------------------

#[test]
fn fingerprints_and_line_numbers_decide_grouping() {
    let server = Server::start();
    let with_fp = |mut e: Value, fp: Value| {
        e["fingerprint"] = fp;
        e
    };
    let timeout_a = send(
        &server,
        with_fp(
            python_error("GatewayTimeout", "stripe did not answer", &[("charge", 20)]),
            json!(["payment-timeout"]),
        ),
    );
    let timeout_b = send(
        &server,
        with_fp(
            python_error("ReadTimeout", "adyen read timed out", &[("refund", 70)]),
            json!(["payment-timeout"]),
        ),
    );
    let tenant_a = send(
        &server,
        with_fp(
            python_error("QuotaExceeded", "quota exceeded", &[("reserve", 5)]),
            json!(["{{ default }}", "tenant-a"]),
        ),
    );
    let tenant_b = send(
        &server,
        with_fp(
            python_error("QuotaExceeded", "quota exceeded", &[("reserve", 5)]),
            json!(["{{ default }}", "tenant-b"]),
        ),
    );
    let tenant_a_again = send(
        &server,
        with_fp(
            python_error("QuotaExceeded", "quota exceeded", &[("reserve", 5)]),
            json!(["{{ default }}", "tenant-a"]),
        ),
    );
    let line_1 = send(
        &server,
        python_error("KeyError", "'sku'", &[("load_cart", 10), ("price", 33)]),
    );
    let line_2 = send(
        &server,
        python_error("KeyError", "'sku'", &[("load_cart", 14), ("price", 41)]),
    );

    let g = |id: &str| issue_of(&server, id);
    assert_eq!(
        g(&timeout_a),
        g(&timeout_b),
        "fingerprint [\"payment-timeout\"] makes different errors one issue"
    );
    assert_ne!(
        g(&tenant_a),
        g(&tenant_b),
        "[\"{{{{ default }}}}\", \"tenant-a\"] and […, \"tenant-b\"] are different issues"
    );
    assert_eq!(
        g(&tenant_a),
        g(&tenant_a_again),
        "same fingerprint, same issue"
    );
    assert_eq!(
        g(&line_1),
        g(&line_2),
        "the same stack trace on other line numbers is the same issue"
    );
    assert_ne!(
        g(&line_1),
        g(&tenant_a),
        "different errors, different issues"
    );

    let timeout = get(&server, &format!("issues/{}/", g(&timeout_a)))
        .expect(200)
        .clone();
    assert_eq!(timeout["count"], "2", "{timeout:#}");
    let total: u64 = issues_for(&server, Some("")).iter().map(count).sum();
    assert_eq!(total, 7, "every event counted once");
    assert_eq!(issues_for(&server, Some("")).len(), 4, "four issues");
}

// ---------------------------------------------------------------------------------------------
// 8. Tag breakdowns
// ---------------------------------------------------------------------------------------------

#[test]
fn issue_tags_count_what_was_sent() {
    let server = Server::start();
    let sent: Vec<String> = [
        ("Chrome", "120.0.0", "cart"),
        ("Chrome", "120.0.0", "cart"),
        ("Chrome", "121.0.0", "payment"),
        ("Firefox", "133.0", "shipping"),
    ]
    .into_iter()
    .map(|(browser, version, step)| {
        let mut e = message("Coupon could not be applied", now());
        e["contexts"] = json!({"browser": {"name": browser, "version": version}});
        e["tags"] = json!({"checkout_step": step});
        send(&server, e)
    })
    .collect();
    for id in &sent {
        wait_event(&server, id);
    }
    let issue = issue_of(&server, &sent[0]);
    let tags = get(&server, &format!("issues/{issue}/tags/")).array();
    let find = |key: &str| {
        tags.iter()
            .find(|t| t["key"] == key)
            .unwrap_or_else(|| {
                panic!(
                    "no {key} in the issue's tags: {:#}",
                    Value::Array(tags.clone())
                )
            })
            .clone()
    };
    let browser = find("browser.name");
    assert_eq!(browser["uniqueValues"], 2, "{browser:#}");
    assert_eq!(browser["totalValues"], 4, "{browser:#}");
    assert_eq!(browser["topValues"][0]["value"], "Chrome", "{browser:#}");
    assert_eq!(browser["topValues"][0]["count"], 3, "{browser:#}");
    assert_eq!(browser["topValues"][1]["value"], "Firefox", "{browser:#}");
    assert_eq!(browser["topValues"][1]["count"], 1, "{browser:#}");
    let full = find("browser");
    assert_eq!(full["uniqueValues"], 3, "browser with versions: {full:#}");
    let step = find("checkout_step");
    assert_eq!(step["uniqueValues"], 3, "{step:#}");
    assert_eq!(step["totalValues"], 4, "{step:#}");
    assert_eq!(step["topValues"][0]["value"], "cart", "{step:#}");
    assert_eq!(step["topValues"][0]["count"], 2, "{step:#}");
    for v in step["topValues"].as_array().unwrap() {
        for field in ["key", "name", "value", "firstSeen", "lastSeen"] {
            assert!(!v[field].is_null(), "topValues entries have {field}: {v:#}");
        }
    }
    let level = find("level");
    assert_eq!(level["topValues"][0]["value"], "error", "{level:#}");
    assert_eq!(level["topValues"][0]["count"], 4, "{level:#}");

    let values = get(
        &server,
        &format!("issues/{issue}/tags/checkout_step/values/"),
    )
    .array();
    let mut got: Vec<(String, u64)> = values
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap_or("?").to_string(),
                v["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("cart".to_string(), 2),
            ("payment".to_string(), 1),
            ("shipping".to_string(), 1)
        ],
        "every value of checkout_step with its count: {:#}",
        Value::Array(values)
    );
    let one = get(&server, &format!("issues/{issue}/tags/browser.name/"))
        .expect(200)
        .clone();
    assert_eq!(one["totalValues"], 4, "{one:#}");
    get(&server, &format!("issues/{issue}/tags/no_such_tag/")).expect_error(404);
}

// ---------------------------------------------------------------------------------------------
// 9. User feedback and attachments
// ---------------------------------------------------------------------------------------------

#[test]
fn user_reports_and_feedback_show_on_the_issue() {
    let server = Server::start();
    let event_id = new_id();
    let event = json!({
        "event_id": event_id,
        "message": "Pay button froze",
        "level": "error",
        "platform": "python",
        "timestamp": now(),
    });
    let event_payload = serde_json::to_vec(&event).unwrap();
    let log = b"12:00:01 click pay\n12:00:02 frozen\n".to_vec();
    let report = serde_json::to_vec(&json!({
        "event_id": event_id,
        "name": "Jane Doe",
        "email": "jane@example.com",
        "comments": "I clicked pay and nothing happened",
    }))
    .unwrap();
    let body = envelope(
        &json!({"event_id": event_id, "sent_at": rfc3339(now())}),
        &[
            (
                json!({"type": "event", "length": event_payload.len()}),
                event_payload,
            ),
            (
                json!({"type": "attachment", "length": log.len(), "filename": "log.txt",
                       "content_type": "text/plain", "attachment_type": "event.attachment"}),
                log.clone(),
            ),
            (
                json!({"type": "user_report", "length": report.len()}),
                report,
            ),
        ],
    );
    let a = post_envelope(&server, &server.dsn, &body);
    assert_eq!(a.expect(200)["id"], json!(event_id), "{}", a.body);
    let issue = issue_of(&server, &event_id);

    // The attachment is stored with its event and can be downloaded as sent.
    let answer = get(
        &server,
        &format!("projects/{ORG}/{PROJECT}/events/{event_id}/attachments/"),
    );
    let list = answer.expect(200).clone();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], "log.txt");
    assert_eq!(list[0]["size"], log.len());
    let attachment_id = list[0]["id"].as_str().unwrap().to_string();
    let mut resp = agent()
        .get(&format!(
            "{}/api/0/projects/{ORG}/{PROJECT}/events/{event_id}/attachments/{attachment_id}/?download=1",
            server.url
        ))
        .header("Authorization", &format!("Bearer {}", server.token))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_mut().read_to_vec().unwrap(), log);

    let feedback_id = new_id();
    let feedback = serde_json::to_vec(&json!({
        "event_id": feedback_id,
        "type": "feedback",
        "timestamp": now(),
        "platform": "javascript",
        "contexts": {"feedback": {
            "message": "Still broken after a reload",
            "contact_email": "sam@example.com",
            "name": "Sam",
            "associated_event_id": event_id,
        }},
    }))
    .unwrap();
    let a = post_envelope(
        &server,
        &server.dsn,
        &envelope(
            &json!({"event_id": feedback_id, "sent_at": rfc3339(now())}),
            &[(
                json!({"type": "feedback", "length": feedback.len()}),
                feedback,
            )],
        ),
    );
    a.expect(200);

    let path = format!("issues/{issue}/user-reports/");
    let reports = wait_until("both reports show on the issue", || {
        let reports = get(&server, &path).array();
        if reports.len() >= 2 {
            Ok(reports)
        } else {
            Err(format!("GET /api/0/{path} → {}", Value::Array(reports)))
        }
    });
    let by_comment = |c: &str| {
        reports
            .iter()
            .find(|r| r["comments"] == c)
            .unwrap_or_else(|| {
                panic!(
                    "no report {c:?} in GET /api/0/{path}: {:#}",
                    Value::Array(reports.clone())
                )
            })
    };
    let r = by_comment("I clicked pay and nothing happened");
    assert_eq!(r["name"], "Jane Doe", "{r:#}");
    assert_eq!(r["email"], "jane@example.com", "{r:#}");
    assert_eq!(r["eventID"], json!(event_id), "{r:#}");
    let f = by_comment("Still broken after a reload");
    assert_eq!(f["email"], "sam@example.com", "{f:#}");
    assert_eq!(f["name"], "Sam", "{f:#}");
    assert_eq!(f["eventID"], json!(event_id), "{f:#}");
    assert_eq!(reports.len(), 2, "{:#}", Value::Array(reports.clone()));
    // The issue counts its reports and the event carries its report, as in Sentry.
    let mut failures = Vec::new();
    let detail = get(&server, &format!("issues/{issue}/"))
        .expect(200)
        .clone();
    if detail["userReportCount"] != 2 {
        failures.push(format!(
            "GET /api/0/issues/{issue}/ `userReportCount` is {}, expected 2",
            detail["userReportCount"]
        ));
    }
    let event = get(&server, &format!("issues/{issue}/events/{event_id}/"))
        .expect(200)
        .clone();
    if !event["userReport"]["comments"].is_string() {
        failures.push(format!(
            "GET /api/0/issues/{issue}/events/{event_id}/ `userReport` is {}, expected the \
             event's report {{id, eventID, name, email, comments, dateCreated, …}}",
            event["userReport"]
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The event itself was stored once, and the feedback made no error issue.
    let all = issues_for(&server, Some(""));
    assert_eq!(
        titles(&all),
        BTreeSet::from(["Pay button froze".to_string()]),
        "feedback is not an error issue: {:#}",
        Value::Array(all.clone())
    );
}

// ---------------------------------------------------------------------------------------------
// 10. CSP reports
// ---------------------------------------------------------------------------------------------

#[test]
fn csp_reports_become_issues() {
    let server = Server::start();
    let (key, project) = common::dsn_parts(&server.dsn);
    let url = format!("{}/api/{project}/security/?sentry_key={key}", server.url);
    let report = json!({"csp-report": {
        "document-uri": "https://shop.example.com/checkout",
        "referrer": "https://shop.example.com/cart",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'self'; script-src 'self'; report-uri /csp",
        "disposition": "enforce",
        "blocked-uri": "https://evil.example.net/inject.js",
        "status-code": 200,
        "script-sample": "",
    }});
    let body = serde_json::to_vec(&report).unwrap();
    let post = |content_type: &str| {
        let resp = agent()
            .post(&url)
            .header("Content-Type", content_type)
            .header("User-Agent", CHROME_UA)
            .send(&body[..]);
        answer(format!("POST {url} ({content_type}) {report}"), resp)
    };
    post("application/csp-report").expect(200);
    let issue = wait_until("the CSP report is an issue", || {
        let issues = issues_for(&server, Some(""));
        issues
            .iter()
            .find(|i| {
                i["title"]
                    .as_str()
                    .is_some_and(|t| t.contains("evil.example.net"))
            })
            .cloned()
            .ok_or_else(|| format!("{}", Value::Array(issues.clone())))
    });
    assert_eq!(
        issue["title"], "Blocked 'script' from 'evil.example.net'",
        "the title names the directive's kind and the blocked host: {issue:#}"
    );
    assert_eq!(issue["type"], "csp", "issue type: {issue:#}");
    let id = issue["id"].as_str().unwrap();
    let event = get(&server, &format!("issues/{id}/events/latest/"))
        .expect(200)
        .clone();
    let csp = entry(&event, "csp");
    assert_eq!(
        csp["blocked_uri"], "https://evil.example.net/inject.js",
        "csp entry: {csp:#}"
    );
    assert_eq!(
        csp["effective_directive"], "script-src-elem",
        "csp entry: {csp:#}"
    );

    post("text/plain").expect_error(415);
}

// ---------------------------------------------------------------------------------------------
// 11. Retention
// ---------------------------------------------------------------------------------------------

#[test]
fn retention_keeps_the_newest_events_and_the_counts() {
    let server = Server::start_with(&["--retention-interval", "1"]);
    let updated = put(
        &server,
        &format!("projects/{ORG}/{PROJECT}/"),
        json!({"retentionMaxEvents": 3}),
    );
    assert_eq!(
        updated.expect(200)["retentionMaxEvents"],
        3,
        "{}",
        updated.body
    );
    let sent: Vec<String> = (0..6)
        .map(|i| {
            send(
                &server,
                message("Nightly export failed", ago(600.0 - 60.0 * i as f64)),
            )
        })
        .collect();
    let issue = issue_of(&server, &sent[5]);
    let newest: BTreeSet<String> = sent[3..].iter().cloned().collect();
    let path = format!("issues/{issue}/events/");
    wait_until("only the 3 newest events remain", || {
        let listed: BTreeSet<String> = get(&server, &path)
            .array()
            .iter()
            .map(|e| e["eventID"].as_str().unwrap_or("?").to_string())
            .collect();
        let issue = get(&server, &format!("issues/{issue}/"))
            .expect(200)
            .clone();
        if listed == newest && issue["count"] == "6" {
            Ok(())
        } else {
            Err(format!(
                "GET /api/0/{path} lists {listed:?} (want {newest:?}); issue count {}",
                issue["count"]
            ))
        }
    });
    // Evicted events are gone; the issue's counters are not.
    get(
        &server,
        &format!("projects/{ORG}/{PROJECT}/events/{}/", sent[0]),
    )
    .expect_error(404);
    let issue = get(&server, &format!("issues/{issue}/"))
        .expect(200)
        .clone();
    assert_eq!(issue["count"], "6", "{issue:#}");
}

#[test]
fn events_read_back_the_same_once_their_project_compresses_with_a_dictionary() {
    let server = Server::start_with(&["--retention-interval", "1"]);
    let event = |i: u64| {
        let mut e = python_error(
            "KeyError",
            &format!("'sku-{i}'"),
            &[("checkout", 40 + i % 7), ("charge", 88)],
        );
        e["tags"] = json!({"shard": format!("s{}", i % 4)});
        e
    };
    // A project gets a dictionary trained on its own events once it has 200 of them.
    let before: Vec<String> = (0..210).map(|i| send(&server, event(i))).collect();
    wait_event(&server, &before[209]);
    wait_until("a dictionary is trained on the project's events", || {
        let out = server.output();
        if out.contains("trained a payload dictionary") {
            Ok(())
        } else {
            Err(format!("server output so far:\n{out}"))
        }
    });
    let after: Vec<String> = (210..215).map(|i| send(&server, event(i))).collect();
    for (i, id) in [(0, &before[0]), (209, &before[209])]
        .into_iter()
        .chain((210..).zip(&after))
    {
        let e = wait_event(&server, id);
        let exception = &e["entries"]
            .as_array()
            .and_then(|es| es.iter().find(|x| x["type"] == "exception"))
            .unwrap_or_else(|| panic!("event {id} has an exception entry: {e:#}"))["data"]["values"]
            [0];
        assert_eq!(exception["value"], format!("'sku-{i}'"), "{e:#}");
        let functions: Vec<&str> = exception["stacktrace"]["frames"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["function"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            functions,
            ["dispatch_request", "checkout", "charge"],
            "{e:#}"
        );
        assert_eq!(
            tag(&e, "shard"),
            Some(format!("s{}", i % 4).as_str()),
            "{e:#}"
        );
    }
    let issue = issue_of(&server, &after[4]);
    assert_eq!(issue, issue_of(&server, &before[0]));
    let issue = get(&server, &format!("issues/{issue}/"))
        .expect(200)
        .clone();
    assert_eq!(issue["count"], "215", "{issue:#}");
}

// ---------------------------------------------------------------------------------------------
// 12. DSN keys
// ---------------------------------------------------------------------------------------------

#[test]
fn keys_list_create_and_deactivate() {
    let server = Server::start();
    let path = format!("projects/{ORG}/{PROJECT}/keys/");
    let keys = get(&server, &path).array();
    assert_eq!(keys.len(), 1, "{:#}", Value::Array(keys.clone()));
    assert_eq!(keys[0]["dsn"]["public"], json!(server.dsn), "{:#}", keys[0]);
    assert_eq!(keys[0]["isActive"], true, "{:#}", keys[0]);
    let (key, _) = common::dsn_parts(&server.dsn);
    assert_eq!(keys[0]["id"], json!(key), "{:#}", keys[0]);

    let created = call(
        &server,
        "POST",
        &format!("/api/0/{path}"),
        Some(&server.token),
        Some(&json!({"name": "Backend"})),
    );
    let created = created.expect(201).clone();
    assert_eq!(created["name"], "Backend", "{created:#}");
    let dsn2 = created["dsn"]["public"]
        .as_str()
        .unwrap_or_else(|| panic!("new key has dsn.public: {created:#}"))
        .to_string();
    assert_ne!(dsn2, server.dsn, "a new key has its own DSN");
    let key2 = created["id"].as_str().unwrap().to_string();
    assert_eq!(get(&server, &path).array().len(), 2, "two keys now");

    let id = send_to(&server, &dsn2, message("Sent with the second key", now()));
    wait_event(&server, &id);

    let updated = put(
        &server,
        &format!("{path}{key2}/"),
        json!({"isActive": false}),
    );
    assert_eq!(updated.expect(200)["isActive"], false, "{}", updated.body);
    let event = serde_json::to_vec(&message("Sent with a disabled key", now())).unwrap();
    let body = envelope(
        &json!({"sent_at": rfc3339(now())}),
        &[(json!({"type": "event"}), event)],
    );
    wait_until("the disabled key is refused with 403", || {
        let a = post_envelope(&server, &dsn2, &body);
        if a.status == 403 {
            Ok(a)
        } else {
            Err(format!("{} {}", a.status, a.body))
        }
    })
    .expect_error(403);
    // The first key still works.
    let id = send(&server, message("Sent with the first key", now()));
    wait_event(&server, &id);
}

// ---------------------------------------------------------------------------------------------
// 13. Health
// ---------------------------------------------------------------------------------------------

#[test]
fn health_answers_json() {
    let server = Server::start();
    let a = call(&server, "GET", "/_health/", None, None);
    a.expect(200);
    assert!(
        a.body.is_object(),
        "GET /_health/ should answer a JSON object: {}",
        a.body
    );
}

/// A write refused before its body is read (no token, a wrong one) still leaves the connection
/// usable for the client's next request, even when the body comes a moment after the headers.
#[test]
fn a_refused_write_leaves_the_connection_open() {
    let server = Server::start();
    for (request, header) in [
        ("PUT /api/0/issues/1/", "Content-Type: application/json"),
        (
            "POST /api/0/projects/faultline/default/keys/",
            "Content-Type: application/json\r\nAuthorization: Bearer not-a-token",
        ),
    ] {
        let statuses = twice_on_one_connection(&server, request, header, r#"{"name":"x"}"#);
        assert_eq!(statuses, ["401", "401"], "{request}");
    }
}
