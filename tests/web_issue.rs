//! The issue page and the event view over HTTP against the real binary: events posted as SDKs
//! post them, then read, changed (status, assignee, comments) and downloaded through the web UI
//! by a logged-in browser without JavaScript (`WebClient`), with the API as the witness.

mod common;

use common::ui::{issue_of, new_event_id, send_event};
use common::web::{WebClient, WebPage};
use common::{ORG, PROJECT, Server, agent, answer, twice_on_one_connection, wait_until};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// `/organizations/{org}/issues/{id}/`.
fn issue_path(id: &str) -> String {
    format!("/organizations/{ORG}/issues/{id}/")
}

/// The issue's `status` through the API.
fn api_status(server: &Server, id: &str) -> String {
    server.api(&format!("issues/{id}/"))["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// Fails unless `page` is a 303 back to the issue page.
fn expect_back(page: &WebPage, id: &str) {
    assert_eq!(
        page.status, 303,
        "{} should redirect (303) back to the issue: {}",
        page.what, page.body
    );
    assert_eq!(page.location(), issue_path(id), "{}", page.what);
}

/// The text between the first `start` after `from` and the next `end`.
fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let at = body
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page: {body}"));
    let rest = &body[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// Where `needle` is in `body`, or a failure naming `what`.
fn position(body: &str, needle: &str, what: &str) -> usize {
    body.find(needle)
        .unwrap_or_else(|| panic!("{what}: {needle:?} is not on the page: {body}"))
}

/// A Python error: `CheckoutError` raised while handling `ConfigError` (stored cause first),
/// with an in-app frame with source context and variables under a library frame, breadcrumbs,
/// a user, a request, tags and a trace id.
fn checkout_error(ts: f64, tier: &str) -> Value {
    let frames = |function: &str, line: u64| {
        json!([
            {"module": "flask.app", "filename": "flask/app.py", "function": "dispatch_request",
             "abs_path": "/usr/lib/python3/site-packages/flask/app.py", "lineno": 1498,
             "in_app": false, "context_line": "        return self.view_functions[rule](**args)"},
            {"module": "shop.checkout", "filename": "shop/checkout.py",
             "abs_path": "/srv/shop/checkout.py", "function": function, "lineno": line,
             "colno": 9, "in_app": true,
             "pre_context": ["def process_checkout(cart):", "    total = cart.total()"],
             "context_line": format!("    raise_in_{function}(total)"),
             "post_context": ["    return total"],
             "vars": {"cart": "<Cart 3 items>", "total": 42, "gateway": null}},
        ])
    };
    json!({
        "event_id": new_event_id(),
        "timestamp": ts,
        "level": "error",
        "platform": "python",
        "release": "shop@1.4.0",
        "environment": "production",
        "server_name": "web-1",
        "exception": {"values": [
            {"type": "ConfigError", "value": "missing setting: payment_gateway",
             "module": "shop.config", "stacktrace": {"frames": frames("load_payment_config", 17)}},
            {"type": "CheckoutError", "value": "checkout failed", "module": "shop.errors",
             "mechanism": {"type": "flask", "handled": false},
             "stacktrace": {"frames": frames("process_checkout", 42)}},
        ]},
        "breadcrumbs": {"values": [
            {"timestamp": ts - 3.0, "category": "auth", "message": "user logged in",
             "level": "info"},
            {"timestamp": ts - 2.0, "category": "http", "type": "http", "level": "warning",
             "data": {"url": "https://payments.example.com/v1/charge", "method": "POST",
                      "status_code": 502}},
            {"timestamp": ts - 1.0, "category": "checkout", "message": "checkout started",
             "level": "info"},
        ]},
        "user": {"id": "user-42", "email": "jane@example.com", "username": "jane",
                 "ip_address": "10.1.2.3", "geo": {"city": "Lyon", "country_code": "FR"}},
        "request": {"method": "POST", "url": "https://shop.example.com/checkout?step=pay",
                    "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                                "Referer": "https://shop.example.com/cart"},
                    "cookies": {"session": "abc"}, "data": {"card": "[Filtered]"}},
        "tags": {"customer_tier": tier, "region": "eu-west"},
        "contexts": {
            "trace": {"trace_id": TRACE_ID, "span_id": "00f067aa0ba902b7", "op": "http.server"},
            "runtime": {"name": "CPython", "version": "3.12.1"},
        },
        "extra": {"order_id": 991},
        "sdk": {"name": "sentry.python.flask", "version": "2.19.0"},
    })
}

/// An envelope holding `event`, an attachment and a user report, posted like an SDK does.
fn send_with_attachment(server: &Server, event: &Value, attachment: &[u8]) {
    let id = event["event_id"].as_str().unwrap().to_string();
    let payload = serde_json::to_vec(event).unwrap();
    let report = serde_json::to_vec(&json!({
        "event_id": id, "name": "Jane Doe", "email": "jane@example.com",
        "comments": "The pay button spun forever",
    }))
    .unwrap();
    let mut body = serde_json::to_vec(&json!({"event_id": id, "dsn": server.dsn})).unwrap();
    for (header, bytes) in [
        (
            json!({"type": "event", "length": payload.len()}),
            &payload[..],
        ),
        (
            json!({"type": "attachment", "length": attachment.len(), "filename": "page.html",
                   "content_type": "text/html", "attachment_type": "event.attachment"}),
            attachment,
        ),
        (
            json!({"type": "user_report", "length": report.len()}),
            &report[..],
        ),
    ] {
        body.push(b'\n');
        body.extend_from_slice(&serde_json::to_vec(&header).unwrap());
        body.push(b'\n');
        body.extend_from_slice(bytes);
    }
    body.push(b'\n');
    let (key, project) = common::dsn_parts(&server.dsn);
    let url = format!("{}/api/{project}/envelope/", server.url);
    answer(
        format!("POST {url}"),
        agent()
            .post(&url)
            .header(
                "X-Sentry-Auth",
                &format!("Sentry sentry_key={key}, sentry_version=7"),
            )
            .header("Content-Type", "application/x-sentry-envelope")
            .send(&body[..]),
    )
    .expect(200);
}

/// GET `path` as `client`, which must answer 200; returns the page.
fn page(client: &WebClient, path: &str) -> WebPage {
    let page = client.get(path);
    page.expect(200);
    page
}

// ---------------------------------------------------------------------------------------------
// 1. What the page shows
// ---------------------------------------------------------------------------------------------

/// Three events of one error (two `customer_tier: pro`, one `free`): the issue page shows the
/// latest with its exception chain outermost first, frames most recent first (in-app ones
/// highlighted and open, library ones collapsed), source lines, variables, breadcrumbs ending
/// with the error, user, request, contexts, tags linking to the search, the tag breakdown with
/// percentages, the trend, grouping, the attachment and the user's feedback; the navigation
/// walks the events; the events list and the JSON and attachment downloads work.
#[test]
fn the_issue_page_shows_what_broke_and_where() {
    let server = Server::start();
    let t = now();
    let first = checkout_error(t - 30.0, "pro");
    let second = checkout_error(t - 20.0, "pro");
    let third = checkout_error(t - 10.0, "free");
    let ids: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    send_event(&server.url, &server.dsn, first.clone());
    send_event(&server.url, &server.dsn, second.clone());
    let attachment = b"<html><script>alert(1)</script></html>".to_vec();
    send_with_attachment(&server, &third, &attachment);
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &ids[2]);
    for e in &ids[..2] {
        assert_eq!(issue_of(&server.url, &server.token, ORG, PROJECT, e), id);
    }
    wait_until("the issue counts 3 events", || {
        let issue = server.api(&format!("issues/{id}/"));
        if issue["count"] == "3" {
            Ok(())
        } else {
            Err(issue.to_string())
        }
    });

    let client = WebClient::admin(&server);
    let issue = issue_path(&id);
    let body = page(&client, &issue).body;

    // Header.
    assert!(
        body.contains("CheckoutError: checkout failed"),
        "title: {body}"
    );
    assert!(body.contains("CHECKOUT-"), "short id: {body}");
    assert!(body.contains("shop@1.4.0"), "release: {body}");
    assert!(body.contains("id=\"status\">unresolved<"), "status: {body}");
    assert!(
        body.contains("<span class=\"badge new\">new</span>"),
        "new: {body}"
    );
    assert!(body.contains("id=\"events-count\">3<"), "events: {body}");
    assert!(body.contains("id=\"users-count\">1<"), "users: {body}");

    // The latest event, with navigation to the others.
    assert!(
        body.contains(&format!("id=\"event-id\">{}<", ids[2])),
        "{body}"
    );
    let events = format!("{issue}events/");
    assert!(
        body.contains(&format!("href=\"{events}{}/\" rel=\"prev\"", ids[1])),
        "a link to the previous event: {body}"
    );
    assert!(body.contains(&format!("href=\"{events}oldest/\" rel=\"first\"")));
    assert!(
        !body.contains("rel=\"next\""),
        "no newer event than the latest"
    );
    assert!(body.contains(&format!("href=\"{events}\">All events<")));
    assert!(body.contains(&format!("href=\"{events}{}/json\"", ids[2])));

    // The chain, outermost first, then its cause.
    let outer = position(&body, ">CheckoutError</strong>", "outer exception");
    let caused = position(&body, "Caused by", "caused by");
    let cause = position(&body, ">ConfigError</strong>", "cause");
    assert!(outer < caused && caused < cause, "outermost first: {body}");
    assert!(
        body.contains("badge unhandled"),
        "mechanism handled=false: {body}"
    );
    assert!(body.contains("mechanism: flask"), "{body}");

    // Frames: most recent first; in-app open and highlighted, library collapsed.
    let stack = between(&body, "<div class=\"frames\">", "Caused by");
    let app = position(stack, "process_checkout", "in-app frame");
    let lib = position(stack, "dispatch_request", "library frame");
    assert!(app < lib, "the most recent frame first: {stack}");
    assert!(
        stack.contains("<details class=\"frame in-app\" open>\n<summary><span class=\"fn\">process_checkout</span>"),
        "in-app frames are highlighted and open: {stack}"
    );
    assert!(
        stack.contains(
            "<details class=\"frame\">\n<summary><span class=\"fn\">dispatch_request</span>"
        ),
        "library frames are collapsed: {stack}"
    );
    assert!(stack.contains("shop/checkout.py"), "{stack}");
    assert!(stack.contains(">42:9<"), "line:col: {stack}");
    assert!(
        stack.contains("<span class=\"line current\"><span class=\"lineno\">42</span>    raise_in_process_checkout(total)</span>"),
        "the frame's line highlighted with its number: {stack}"
    );
    assert!(
        stack.contains("<span class=\"lineno\">40</span>def process_checkout(cart):"),
        "pre-context numbered: {stack}"
    );
    assert!(stack.contains("<span class=\"lineno\">43</span>    return total"));
    assert!(
        stack.contains("<dt>cart</dt><dd>&#60;Cart 3 items&#62;</dd>")
            || stack.contains("<dt>cart</dt><dd>&lt;Cart 3 items&gt;</dd>"),
        "vars: {stack}"
    );
    assert!(stack.contains("<dt>total</dt><dd>42</dd>"), "vars: {stack}");

    // Breadcrumbs, oldest first, ending with the error itself.
    let crumbs = between(&body, "<ol class=\"crumbs\"", "</ol>");
    let order: Vec<usize> = ["user logged in", "payments.example.com", "checkout started"]
        .iter()
        .map(|m| position(crumbs, m, "breadcrumb"))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {crumbs}"
    );
    let last = crumbs.rsplit("<li").next().unwrap_or_default();
    assert!(
        last.contains("error-crumb") && last.contains("CheckoutError: checkout failed"),
        "the last breadcrumb is the error: {crumbs}"
    );
    assert!(
        crumbs.contains("href=\"https://payments.example.com/v1/charge\""),
        "http URLs in breadcrumb data are links: {crumbs}"
    );

    // User, request, contexts, tags, grouping, SDK.
    for needle in [
        "<dt>email</dt><dd>jane@example.com</dd>",
        "<dt>geo.city</dt><dd>Lyon</dd>",
        "<strong>POST</strong>",
        "href=\"https://shop.example.com/checkout\"",
        "<dt>step</dt><dd>pay</dd>",
        "<dt>Referer</dt><dd><a href=\"https://shop.example.com/cart\"",
        "<h4>runtime</h4>",
        "<dt>version</dt><dd>3.12.1</dd>",
        TRACE_ID,
        "sentry.python.flask 2.19.0",
        "<dt>order_id</dt><dd>991</dd>",
        "href=\"/issues/?query=region%3A%22eu-west%22\"",
        "Grouped by <strong>app</strong>",
        "exceptions.1.type",
    ] {
        assert!(
            body.contains(needle),
            "{needle:?} on the issue page: {body}"
        );
    }

    // Tag breakdown: 2 of 3 events pro, 1 free; values link to the filtered issue list.
    let tags = between(&body, "id=\"tags\"", "</section>");
    let tier = between(tags, ">customer_tier</h3>", "</div>\n  </div>");
    assert!(
        tier.contains("href=\"/issues/?query=customer_tier%3A%22pro%22\">pro</a>")
            && tier.contains(">67 %<"),
        "pro at 67 %: {tier}"
    );
    assert!(
        tier.contains(">free</a>") && tier.contains(">33 %<"),
        "free at 33 %: {tier}"
    );
    assert!(tags.contains("width=\"66.66"), "bars as SVG widths: {tags}");
    // Well-known keys first.
    assert!(
        position(tags, ">release</h3>", "release") < position(tags, ">customer_tier</h3>", "tier"),
        "release before custom tags: {tags}"
    );

    // Trend charts with the release marked.
    let trend = between(&body, "id=\"trend\"", "</section>");
    assert_eq!(trend.matches("<svg class=\"chart\"").count(), 2, "{trend}");
    assert!(
        trend.contains("release shop@1.4.0 first seen"),
        "release marker: {trend}"
    );

    // Attachment and feedback.
    let prefix = format!("href=\"{issue}attachments/");
    let at = position(&body, &prefix, "attachment link") + "href=\"".len();
    let href = &body[at..at + body[at..].find('"').unwrap_or(0)];
    assert!(body.contains(">page.html</a>"), "{body}");
    assert!(
        body.contains("The pay button spun forever"),
        "feedback: {body}"
    );
    let download = client.get(href);
    download.expect(200);
    assert_eq!(
        download.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(
        download
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment") && d.contains("page.html")),
        "{:?}",
        download.headers
    );
    assert_eq!(download.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(download.body.as_bytes(), &attachment[..]);
    assert_eq!(
        client.get(&format!("{issue}attachments/999999")).status,
        404
    );

    // Navigation: the oldest event, then the one after it.
    let oldest = page(&client, &format!("{events}oldest/")).body;
    assert!(
        oldest.contains(&format!("id=\"event-id\">{}<", ids[0])),
        "{oldest}"
    );
    assert!(oldest.contains(&format!("href=\"{events}{}/\" rel=\"next\"", ids[1])));
    assert!(
        !oldest.contains("rel=\"prev\""),
        "nothing older than the oldest"
    );
    let middle = page(&client, &format!("{events}{}/", ids[1])).body;
    assert!(middle.contains(&format!("href=\"{events}{}/\" rel=\"prev\"", ids[0])));
    assert!(middle.contains(&format!("href=\"{events}{}/\" rel=\"next\"", ids[2])));
    let latest = page(&client, &format!("{events}latest/")).body;
    assert!(latest.contains(&format!("id=\"event-id\">{}<", ids[2])));
    assert_eq!(
        client
            .get(&format!("{events}0123456789abcdef0123456789abcdef/"))
            .status,
        404
    );
    assert_eq!(client.get(&format!("{events}not-an-id/")).status, 404);
    assert_eq!(client.get("/organizations/acme/issues/999999/").status, 404);
    assert_eq!(
        client
            .get(&format!("/organizations/other/issues/{id}/"))
            .status,
        404
    );

    // The events list: newest first, each with its id, release, environment, user, message.
    let list = page(&client, &events).body;
    let rows: Vec<usize> = ids
        .iter()
        .rev()
        .map(|e| {
            position(
                &list,
                &format!("href=\"{events}{e}/\">{e}</a>"),
                "event row",
            )
        })
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "newest first: {list}");
    for needle in [
        "shop@1.4.0",
        "production",
        "jane@example.com",
        "CheckoutError: checkout failed",
    ] {
        assert!(
            list.contains(needle),
            "{needle:?} in the events list: {list}"
        );
    }
    assert!(!list.contains("rel=\"next\""), "one page: {list}");
    let empty = page(&client, &format!("{events}?page=2")).body;
    assert!(empty.contains("id=\"no-events\""), "{empty}");
    assert!(empty.contains(&format!("href=\"{events}?page=1\" rel=\"prev\"")));

    // The raw event as a JSON download.
    let raw = client.get(&format!("{events}{}/json", ids[0]));
    raw.expect(200);
    assert!(
        raw.header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    assert!(
        raw.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")),
        "{:?}",
        raw.headers
    );
    let stored: Value = serde_json::from_str(&raw.body).expect("the download is JSON");
    assert_eq!(stored["event_id"], ids[0].as_str());
    assert_eq!(stored["exception"]["values"][1]["type"], "CheckoutError");
}

// ---------------------------------------------------------------------------------------------
// 2. Changing the issue
// ---------------------------------------------------------------------------------------------

/// Resolve, ignore and reopen through the forms (the API agrees); a form without the session's
/// CSRF token changes nothing; assigning and commenting show in the activity, newest first.
#[test]
fn status_assignee_and_comments_change_through_the_forms() {
    let server = Server::start();
    let event = send_event(&server.url, &server.dsn, checkout_error(now(), "pro"));
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &event);
    let client = WebClient::admin(&server);
    let issue = issue_path(&id);
    let status = format!("{issue}status");
    let csrf = page(&client, &issue).csrf();

    // Without (or with a wrong) CSRF token: refused, nothing changes.
    for token in ["", "0000"] {
        let refused = client.post(&status, &[("action", "resolve"), ("csrf", token)]);
        assert_eq!(refused.status, 403, "{}: {}", refused.what, refused.body);
    }
    let refused = client.post(&status, &[("action", "resolve")]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(api_status(&server, &id), "unresolved");

    expect_back(
        &client.post(&status, &[("csrf", &csrf), ("action", "resolve")]),
        &id,
    );
    assert_eq!(api_status(&server, &id), "resolved");
    let body = page(&client, &issue).body;
    assert!(body.contains("id=\"status\">resolved<"), "{body}");
    assert!(
        body.contains("name=\"action\" value=\"unresolve\""),
        "Reopen is offered: {body}"
    );
    assert!(
        !body.contains("name=\"action\" value=\"resolve\""),
        "{body}"
    );

    expect_back(
        &client.post(&status, &[("csrf", &csrf), ("action", "unresolve")]),
        &id,
    );
    assert_eq!(api_status(&server, &id), "unresolved");

    expect_back(
        &client.post(
            &status,
            &[
                ("csrf", &csrf),
                ("action", "ignore"),
                ("ignore_minutes", "30"),
            ],
        ),
        &id,
    );
    assert_eq!(api_status(&server, &id), "ignored");
    let body = page(&client, &issue).body;
    assert!(body.contains("id=\"status\">ignored<"), "{body}");
    assert!(
        body.contains("ignored this issue until"),
        "activity: {body}"
    );

    expect_back(
        &client.post(&status, &[("csrf", &csrf), ("action", "unresolve")]),
        &id,
    );
    expect_back(
        &client.post(
            &status,
            &[
                ("csrf", &csrf),
                ("action", "ignore"),
                ("ignore_events", "100"),
            ],
        ),
        &id,
    );
    assert_eq!(api_status(&server, &id), "ignored");
    assert!(page(&client, &issue).body.contains("until 100 more events"));
    expect_back(
        &client.post(&status, &[("csrf", &csrf), ("action", "resolve_next")]),
        &id,
    );
    assert_eq!(api_status(&server, &id), "resolved");

    for bad in [
        vec![("csrf", csrf.as_str()), ("action", "explode")],
        vec![
            ("csrf", &csrf),
            ("action", "ignore"),
            ("ignore_minutes", "-5"),
        ],
        vec![
            ("csrf", &csrf),
            ("action", "ignore"),
            ("ignore_users", "many"),
        ],
    ] {
        let answer = client.post(&status, &bad);
        assert_eq!(answer.status, 400, "{bad:?}: {}", answer.body);
    }

    // Assign to the superuser (offered in the select), then unassign.
    let body = page(&client, &issue).body;
    let select = between(&body, "<select name=\"user_id\"", "</select>");
    let end = position(select, "\">a@example.com<", "the superuser's option");
    let user_id = select[..end]
        .rsplit("value=\"")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        user_id.parse::<i64>().is_ok(),
        "the superuser is offered: {select}"
    );
    let assign = format!("{issue}assign");
    let refused = client.post(&assign, &[("user_id", &user_id)]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    expect_back(
        &client.post(&assign, &[("csrf", &csrf), ("user_id", &user_id)]),
        &id,
    );
    let body = page(&client, &issue).body;
    assert!(body.contains("id=\"assignee\">a@example.com<"), "{body}");
    assert!(body.contains(&format!(
        "<option value=\"{user_id}\" selected>a@example.com"
    )));
    assert!(
        body.contains("assigned this issue to a@example.com"),
        "{body}"
    );
    let stranger = client.post(&assign, &[("csrf", &csrf), ("user_id", "999999")]);
    assert_eq!(stranger.status, 400, "{}", stranger.body);

    // Comments: refused without CSRF, empty or too long; shown (escaped) otherwise.
    let comments = format!("{issue}comments");
    assert_eq!(client.post(&comments, &[("text", "hi")]).status, 403);
    assert_eq!(
        client
            .post(&comments, &[("csrf", &csrf), ("text", "   ")])
            .status,
        400
    );
    let long = "x".repeat(10_001);
    assert_eq!(
        client
            .post(&comments, &[("csrf", &csrf), ("text", &long)])
            .status,
        400
    );
    let text = "Gateway config went missing in <b>1.4.0</b>";
    expect_back(
        &client.post(&comments, &[("csrf", &csrf), ("text", text)]),
        &id,
    );
    expect_back(
        &client.post(&assign, &[("csrf", &csrf), ("user_id", "")]),
        &id,
    );
    let body = page(&client, &issue).body;
    assert!(
        body.contains("id=\"assignee\"><span class=\"muted\">nobody</span>"),
        "{body}"
    );
    let activity = between(&body, "<ul class=\"activity\">", "</ul>");
    let unassigned = position(activity, "unassigned this issue", "unassign");
    let commented = position(
        activity,
        "Gateway config went missing in &#60;b&#62;1.4.0&#60;/b&#62;",
        "comment",
    );
    let assigned = position(activity, "assigned this issue to a@example.com", "assign");
    let resolved = position(activity, "resolved in the next release", "resolve");
    assert!(
        unassigned < commented && commented < assigned && assigned < resolved,
        "newest first: {activity}"
    );
    assert!(
        activity.contains("<strong>a@example.com</strong> commented"),
        "{activity}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Errors of one trace
// ---------------------------------------------------------------------------------------------

/// A frontend error and an API error of another project share a trace id: each issue page links
/// to the other's event.
#[test]
fn errors_of_one_trace_link_to_each_other() {
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
    let front = send_event(
        &server.url,
        &server.dsn,
        json!({"platform": "javascript", "level": "error", "timestamp": now(),
               "exception": {"values": [{"type": "TypeError", "value": "cart is undefined"}]},
               "contexts": {"trace": {"trace_id": TRACE_ID, "span_id": "aaaaaaaaaaaaaaaa"}}}),
    );
    let back = send_event(
        &server.url,
        &api_dsn,
        json!({"platform": "python", "level": "error", "timestamp": now(),
               "exception": {"values": [{"type": "KeyError", "value": "'cart'"}]},
               "contexts": {"trace": {"trace_id": TRACE_ID, "span_id": "bbbbbbbbbbbbbbbb"}}}),
    );
    let lonely = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "no trace here", "level": "error", "timestamp": now()}),
    );
    let front_issue = issue_of(&server.url, &server.token, ORG, PROJECT, &front);
    let back_issue = issue_of(&server.url, &server.token, ORG, "api", &back);
    let lonely_issue = issue_of(&server.url, &server.token, ORG, PROJECT, &lonely);
    let client = WebClient::admin(&server);

    let front_page = page(&client, &issue_path(&front_issue)).body;
    let trace = between(&front_page, "id=\"same-trace\"", "</ul>");
    assert!(
        trace.contains(&format!(
            "href=\"/organizations/{ORG}/issues/{back_issue}/events/{back}/\""
        )) && trace.contains("KeyError: &#39;cart&#39;")
            && trace.contains("API-1"),
        "the frontend error links to the API error: {trace}"
    );
    assert!(!trace.contains(&front), "not to itself: {trace}");

    let back_page = page(&client, &issue_path(&back_issue)).body;
    let trace = between(&back_page, "id=\"same-trace\"", "</ul>");
    assert!(
        trace.contains(&format!(
            "href=\"/organizations/{ORG}/issues/{front_issue}/events/{front}/\""
        )) && trace.contains("TypeError: cart is undefined"),
        "the API error links to the frontend error: {trace}"
    );

    let lonely_page = page(&client, &issue_path(&lonely_issue)).body;
    assert!(!lonely_page.contains("Same trace"), "{lonely_page}");
}

// ---------------------------------------------------------------------------------------------
// 4. Hostile events
// ---------------------------------------------------------------------------------------------

const SCRIPT: &str = "<script>alert(1)</script>";
const JS_URL: &str = "javascript:alert(1)";

/// Every string of the event is `<script>alert(1)</script>` or `javascript:alert(1)`: the issue
/// page, the event page and the events list show them escaped, and nothing is a `javascript:`
/// link.
#[test]
fn hostile_events_render_as_inert_text() {
    let server = Server::start();
    let (s, j) = (SCRIPT, JS_URL);
    let frame = |in_app: bool| {
        json!({"function": s, "filename": s, "abs_path": j, "module": s, "package": j,
               "lineno": 3, "colno": 1, "in_app": in_app, "pre_context": [s, j],
               "context_line": s, "post_context": [j], "vars": {s: j, "u": s}})
    };
    let event = send_event(
        &server.url,
        &server.dsn,
        json!({
            "platform": "javascript", "level": "error", "timestamp": now(),
            "logger": s, "server_name": s, "transaction": s, "culprit": s,
            "logentry": {"formatted": s},
            "release": "x1", "environment": "prod",
            "exception": {"values": [
                {"type": s, "value": j, "module": s,
                 "mechanism": {"type": s, "handled": false},
                 "stacktrace": {"frames": [frame(false), frame(true)]}},
                {"type": j, "value": s, "stacktrace": {"frames": [frame(true)]}},
            ]},
            "breadcrumbs": {"values": [
                {"timestamp": now() - 1.0, "category": s, "message": j, "type": "navigation",
                 "data": {"from": j, "to": s, s: j}},
                {"timestamp": now() - 1.0, "category": j, "message": s, "level": "error"},
            ]},
            "tags": {"a": s, "b": j},
            "user": {"id": s, "email": j, "username": s, "name": j,
                     "data": {s: j}, "geo": {"city": s}},
            "request": {"url": j, "method": "GET", "query_string": [[s, j]],
                        "headers": {"Referer": j, "X-S": s}, "cookies": {s: j},
                        "data": {s: j}, "fragment": s, "env": {s: j}},
            "contexts": {"browser": {"name": s, "version": j},
                         "custom": {s: j, "link": j},
                         "trace": {"trace_id": TRACE_ID, "op": s}},
            "extra": {s: j, "link": j},
            "sdk": {"name": s, "version": j},
        }),
    );
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &event);
    let client = WebClient::admin(&server);
    let issue = issue_path(&id);
    for path in [
        issue.clone(),
        format!("{issue}events/{event}/"),
        format!("{issue}events/"),
    ] {
        let body = page(&client, &path).body;
        assert!(
            !body.contains("<script>alert") && !body.contains("</script>alert"),
            "GET {path} has an unescaped <script>: {body}"
        );
        // askama escapes `<` as `&#60;` (the same character reference as `&lt;`).
        assert!(
            body.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "GET {path} shows the payload escaped: {body}"
        );
        let lower = body.to_ascii_lowercase();
        for bad in [
            "href=\"javascript:",
            "href='javascript:",
            "src=\"javascript:",
            "href=javascript:",
        ] {
            assert!(!lower.contains(bad), "GET {path} has {bad}: {body}");
        }
        assert_eq!(
            body.matches("<script").count(),
            1,
            "GET {path}: the only script is /static/app.js: {body}"
        );
        assert!(
            !body.contains(" style="),
            "GET {path} has an inline style: {body}"
        );
        if path == issue {
            assert!(body.contains(JS_URL), "the URL is shown as text: {body}");
        }
    }
}

/// When retention evicted every event of an issue, its page still shows the issue (and says
/// why there is no event); a named event that is gone answers 404.
#[test]
fn an_issue_without_stored_events_still_has_its_page() {
    let server = Server::start_with(&["--retention-interval", "1"]);
    let url = format!("{}/api/0/projects/{ORG}/{PROJECT}/", server.url);
    answer(
        format!("PUT {url}"),
        agent()
            .put(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .send_json(json!({"retentionMaxEvents": 1})),
    )
    .expect(200);
    let old = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "old failure", "level": "error", "timestamp": now() - 600.0}),
    );
    let old_issue = issue_of(&server.url, &server.token, ORG, PROJECT, &old);
    let new = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "new failure", "level": "error", "timestamp": now()}),
    );
    issue_of(&server.url, &server.token, ORG, PROJECT, &new);
    let path = format!("/api/0/projects/{ORG}/{PROJECT}/events/{old}/");
    wait_until("the old event is evicted", || match server.get(&path) {
        (404, _) => Ok(()),
        (status, body) => Err(format!("{status} {body}")),
    });
    let client = WebClient::admin(&server);
    let issue = issue_path(&old_issue);
    let body = page(&client, &issue).body;
    assert!(body.contains("old failure"), "{body}");
    assert!(
        body.contains("No event of this issue is stored any more"),
        "{body}"
    );
    assert_eq!(client.get(&format!("{issue}events/{old}/")).status, 404);
    assert!(
        page(&client, &format!("{issue}events/"))
            .body
            .contains("id=\"no-events\"")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Logged out
// ---------------------------------------------------------------------------------------------

/// Logged out, every route of the issue page sends the visitor to the login form (GETs come
/// back to where they were), and no form changes anything.
#[test]
fn logged_out_visitors_are_sent_to_the_login_form() {
    let server = Server::start();
    let event = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "private failure", "level": "error", "timestamp": now()}),
    );
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &event);
    let issue = issue_path(&id);
    let anonymous = WebClient::new(&server);
    for path in [
        issue.clone(),
        format!("{issue}events/"),
        format!("{issue}events/?page=2"),
        format!("{issue}events/{event}/"),
        format!("{issue}events/latest/"),
        format!("{issue}events/{event}/json"),
        format!("{issue}attachments/1"),
    ] {
        let page = anonymous.get(&path);
        assert!(
            matches!(page.status, 302 | 303 | 307),
            "GET {path} logged out answered {}: {}",
            page.status,
            page.body
        );
        let next: String = form_urlencoded_next(page.location());
        assert_eq!(next, path, "GET {path} should come back after the login");
        assert!(!page.body.contains("private failure"));
    }
    for (path, fields) in [
        (
            format!("{issue}status"),
            vec![("action", "resolve"), ("csrf", "")],
        ),
        (
            format!("{issue}assign"),
            vec![("user_id", "1"), ("csrf", "")],
        ),
        (
            format!("{issue}comments"),
            vec![("text", "hi"), ("csrf", "")],
        ),
    ] {
        let page = anonymous.post(&path, &fields);
        assert!(
            matches!(page.status, 302 | 303 | 307) && page.location().starts_with("/login"),
            "POST {path} logged out answered {} {:?}: {}",
            page.status,
            page.location(),
            page.body
        );
    }
    assert_eq!(api_status(&server, &id), "unresolved");
}

/// A form turned away before it is read (no session) still leaves the connection usable: a
/// client that sends the headers first and the body a moment later, then reuses the connection
/// for its next request, gets an answer to both.
#[test]
fn a_turned_away_form_leaves_the_connection_open() {
    let server = Server::start();
    let path = format!("{}assign", issue_path("1"));
    let statuses = twice_on_one_connection(
        &server,
        &format!("POST {path}"),
        "Content-Type: application/x-www-form-urlencoded",
        "user_id=1&csrf=",
    );
    assert_eq!(statuses, ["303", "303"]);
}

/// The `next` parameter of a `/login?next=…` location, decoded.
fn form_urlencoded_next(location: &str) -> String {
    assert!(location.starts_with("/login?"), "redirects to {location:?}");
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let raw = query
        .split('&')
        .find_map(|p| p.strip_prefix("next="))
        .unwrap_or_default();
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
