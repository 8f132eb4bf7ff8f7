//! The web UI end to end, as people use it: a real headless Chromium (Debian's, driven by the
//! pinned playwright-core through tests/sdk/ui_client.mjs) against the real `faultline` binary,
//! with errors reported by a real SDK or posted as SDKs post them.
//!
//! Each test starts its own server(s). The browser runs one scripted scenario per test and
//! reports what each page showed; every assertion is made here on those reports (see
//! tests/common/ui.rs). Access control is checked over plain HTTP with `WebClient`.
//!
//! A missing Chromium or `tests/sdk/node_modules` fails the tests with a message naming
//! `scripts/test.sh`, which installs them.

mod common;

use common::ui::{Browser, Cluster, Page, Pages, issue_of, screenshot_dir, send_event};
use common::web::{WebClient, WebPage};
use common::{EMAIL, ORG, PASSWORD, PROJECT, Server, wait_until};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `/organizations/{org}/issues/{id}/`: the issue page (the API's `permalink`).
fn issue_path(id: &str) -> String {
    format!("/organizations/{ORG}/issues/{id}/")
}

/// The Resolve button of an issue page (a form posting `action=resolve` to the issue's
/// `status` route).
fn resolve_button(id: &str) -> String {
    format!(
        "form[action=\"/organizations/{ORG}/issues/{id}/status\"] \
         button[name=action][value=resolve]"
    )
}

/// The "Log out" button in every page's header.
const LOG_OUT: &str = "form[action=\"/logout\"] [type=submit]";

/// The link that opens issue `id` in an issues list.
fn open_link(id: &str) -> String {
    format!("tr[data-row][data-issue=\"{id}\"] a[data-open]")
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

/// Decodes `%XX` and `+` in a query-string value.
fn dec(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in the query string of `path`.
fn query_param(path: &str, key: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (dec(k) == key).then(|| dec(v))
    })
}

/// Text with every run of whitespace made one space.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fails unless no page of the run reported a console error, JS error or CSP violation.
fn assert_no_problems(pages: &Pages) {
    for note in pages.notes() {
        eprintln!("note from the browser: {note}");
    }
    for page in pages.all() {
        page.assert_no_problems();
    }
}

/// Fails unless the page is the login form reached by a redirect that comes back to `next`.
fn assert_login_redirect(page: Page<'_>, next: &str) {
    let path = page.path();
    assert!(
        path.starts_with("/login"),
        "a logged-out visitor of {next} should land on /login?next=…, landed on {}",
        page.describe()
    );
    assert_eq!(
        query_param(&path, "next").as_deref(),
        Some(next),
        "the login redirect should come back to {next}: {}",
        page.describe()
    );
}

/// The one issue whose title starts with `prefix`, once it has `events` events.
fn wait_issue(server: &Server, prefix: &str, events: u64) -> Value {
    wait_until(
        &format!("an issue `{prefix}…` has {events} events"),
        || {
            let issues = server.issues();
            let found: Vec<&Value> = issues
                .iter()
                .filter(|i| i["title"].as_str().unwrap_or("").starts_with(prefix))
                .collect();
            match found.as_slice() {
                [one]
                    if one["count"]
                        .as_str()
                        .and_then(|c| c.parse::<u64>().ok())
                        .is_some_and(|c| c >= events) =>
                {
                    Ok((*one).clone())
                }
                _ => Err(format!("issues: {}", Value::Array(issues.clone()))),
            }
        },
    )
}

fn id_of(issue: &Value) -> String {
    issue["id"]
        .as_str()
        .unwrap_or_else(|| panic!("issue `id` should be a string: {issue:#}"))
        .to_string()
}

/// An issue's `status` through the API.
fn api_status(server: &Server, id: &str) -> String {
    server.api(&format!("issues/{id}/"))["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. From the SDK to resolved
// ---------------------------------------------------------------------------------------------

/// sentry-python reports `CheckoutError` (caused by `ConfigError`) twice, with breadcrumbs, the
/// tag `customer_tier: pro` and a user; a person logs in, finds it in the issues list, opens it,
/// reads its stack trace, breadcrumbs, user and tag breakdown (screenshot:
/// `target/ui-screenshots/issue-page.png`), resolves it, and it leaves the list of unresolved
/// issues for the list of resolved ones (found with the search box); logging out ends the
/// session. No page logs a console error, throws, or violates its CSP.
#[test]
fn a_user_follows_an_error_from_the_sdk_to_resolved() {
    common::ui::require_browser();
    common::require_python_sdk();
    let server = Server::start();
    common::run_client(&common::python(), &["python_client.py"], &server.dsn);
    let issue = wait_issue(&server, "CheckoutError", 2);
    let messages = wait_issue(&server, "Order", 2);
    let id = id_of(&issue);
    let page_path = issue_path(&id);
    let permalink = issue["permalink"].as_str().unwrap_or("");
    assert!(
        permalink.ends_with(&page_path),
        "the API's permalink should be the issue page {page_path}: {issue:#}"
    );

    let screenshot = screenshot_dir().join("issue-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = &server.url;
    let pages = Browser::new("sdk-to-resolved")
        .goto(&format!("{url}/issues/"))
        .snapshot("login")
        .submit_login(EMAIL, PASSWORD)
        .snapshot("issues")
        .click(&open_link(&id))
        .snapshot_with_screenshot("issue", &screenshot)
        .click(&resolve_button(&id))
        .snapshot("after-resolve")
        .goto(&format!("{url}/issues/"))
        .snapshot("unresolved")
        .fill("input[name=query]", "is:resolved")
        .press("input[name=query]", "Enter")
        .snapshot("resolved")
        .click(LOG_OUT)
        .snapshot("logged out")
        .goto(&format!("{url}/issues/"))
        .snapshot("after logging out")
        .run();

    // Logged out, /issues/ sends the visitor to the login form, which brings them back.
    assert_login_redirect(pages.get("login"), "/issues/");
    let list = pages.get("issues");
    assert_eq!(
        list.path(),
        "/issues/",
        "after logging in the visitor should be back on /issues/: {}",
        list.describe()
    );
    let shown = list.issue_ids();
    for (what, i) in [("CheckoutError", &id), ("Order … stuck", &id_of(&messages))] {
        assert!(
            shown.contains(i),
            "/issues/ should list the unresolved {what} issue {i}; rows: {:#?}\n{}",
            list.list("rows"),
            list.describe()
        );
    }

    // The issue page, reached by clicking the issue in the list.
    let page = pages.get("issue");
    assert_eq!(page.path(), page_path, "{}", page.describe());
    assert_eq!(page.status(), Some(200), "{}", page.describe());
    let h1 = page.value["h1"].as_str().unwrap_or("");
    assert!(
        h1.contains("CheckoutError") && h1.contains("checkout failed"),
        "the issue page's heading should be the error: {}",
        page.describe()
    );
    let in_app = page.frames(true);
    for function in [
        "report_checkout_failure",
        "process_checkout",
        "load_payment_config",
    ] {
        assert!(
            in_app.iter().any(|f| f.contains(function)),
            "an in-app stack frame (.frame.in-app) should name {function}; in-app frames: \
             {in_app:#?}; all frames: {:#?}\n{}",
            page.frames(false),
            page.describe()
        );
    }
    let crumbs = page.crumbs();
    for message in ["user logged in", "added item to cart", "checkout started"] {
        assert!(
            crumbs.iter().any(|c| c.contains(message)),
            "the breadcrumbs (.crumbs li) should include {message:?}: {crumbs:#?}\n{}",
            page.describe()
        );
    }
    page.assert_text("jane@example.com", "the event's user should be shown");
    assert!(
        squash(page.text()).contains("customer_tier pro 100 %"),
        "the tag breakdown should show customer_tier: pro at 100 %: {}",
        page.describe()
    );
    assert!(
        screenshot.is_file(),
        "the screenshot {} should have been written",
        screenshot.display()
    );
    println!("screenshot of the issue page: {}", screenshot.display());

    // Resolved: the page says so, the API agrees, and the lists follow.
    let after = pages.get("after-resolve");
    assert!(
        after
            .path()
            .starts_with(&format!("/organizations/{ORG}/issues/{id}/")),
        "resolving should come back to the issue page: {}",
        after.describe()
    );
    assert_eq!(
        api_status(&server, &id),
        "resolved",
        "status through the API"
    );
    let unresolved = pages.get("unresolved");
    assert!(
        !unresolved.issue_ids().contains(&id),
        "/issues/ (is:unresolved) should no longer list the resolved issue {id}: {}",
        unresolved.describe()
    );
    assert!(
        unresolved.issue_ids().contains(&id_of(&messages)),
        "/issues/ should still list the unresolved message issue: {}",
        unresolved.describe()
    );
    let resolved = pages.get("resolved");
    assert_eq!(
        query_param(&resolved.path(), "query").as_deref(),
        Some("is:resolved"),
        "searching should load /issues/?query=is:resolved: {}",
        resolved.describe()
    );
    assert_eq!(
        resolved.issue_ids(),
        vec![id.clone()],
        "is:resolved should list exactly the resolved issue: {}",
        resolved.describe()
    );

    // Logging out ends the session: the next visit asks to log in again.
    let out = pages.get("logged out");
    assert!(
        out.path().starts_with("/login"),
        "logging out should land on the login form: {}",
        out.describe()
    );
    assert_login_redirect(pages.get("after logging out"), "/issues/");

    assert_no_problems(&pages);
}

// ---------------------------------------------------------------------------------------------
// 2. Script injection
// ---------------------------------------------------------------------------------------------

const XSS_SCRIPT: &str = "<script>window.__xss=1</script>";
const XSS_ATTR: &str = "\"><img src=x onerror=\"window.__xss=2\">";
const XSS_URL: &str = "javascript:window.__xss=3";
const XSS_SVG: &str = "</title><svg onload=window.__xss=4>";
/// An `http(s)` URL (which the UI may make a link of) that breaks out of its attribute.
const XSS_HTTP: &str = "https://example.com/\"><img src=x onerror=\"window.__xss=5\">";
const PAYLOADS: [&str; 4] = [XSS_SCRIPT, XSS_ATTR, XSS_URL, XSS_SVG];

/// An event with a payload in every string field an SDK can send.
fn hostile_event() -> Value {
    let (p1, p2, p3, p4, p5) = (XSS_SCRIPT, XSS_ATTR, XSS_URL, XSS_SVG, XSS_HTTP);
    let frame = |function: &str, file: &str, path: &str| {
        json!({
            "function": function, "filename": file, "abs_path": path, "module": p4,
            "package": p2, "lineno": 7, "colno": 3, "in_app": true,
            "pre_context": [p1, p2], "context_line": p4, "post_context": [p3, p5],
            "vars": {p1: p2, "link": p3, "url": p5, "nested": {p4: [p1, p2]}},
        })
    };
    json!({
        "platform": "python",
        "level": "error",
        "logger": p1,
        "server_name": p4,
        "message": p1,
        "logentry": {"message": format!("{p2} %s"), "params": [p4]},
        "culprit": p1,
        "transaction": p4,
        // Release and environment refuse `/`, so they carry the payloads without one.
        "release": p2,
        "environment": p3,
        "dist": "x1",
        "fingerprint": [p1],
        "exception": {"values": [
            {"type": p4, "value": p2, "module": p1,
             "mechanism": {"type": p1, "description": p2, "handled": false,
                           "help_link": p3, "data": {p1: p4}},
             "stacktrace": {"frames": [frame(p3, p5, p2)]}},
            {"type": p1, "value": p1, "module": p3,
             "stacktrace": {"frames": [frame(p2, p1, p3), frame(p1, p4, p5)]}},
        ]},
        "breadcrumbs": {"values": [
            {"timestamp": 1_700_000_000.0, "type": "navigation", "category": p1,
             "message": p2, "level": "info", "data": {"from": p3, "to": p5, p1: p4}},
            {"timestamp": 1_700_000_001.0, "type": "http", "category": p4, "message": p1,
             "level": "warning", "data": {"url": p3, "method": p2, "status_code": 500}},
            {"timestamp": 1_700_000_002.0, "category": p3, "message": p4, "level": "error",
             "data": {"url": p5}},
            {"timestamp": 1_700_000_003.0, "category": "ui.click", "message": p3},
        ]},
        "tags": {"xss.script": p1, "xss.attr": p2, "xss.url": p3, "xss.svg": p4,
                 "xss.http": p5, p1: "invalid key", p2: "invalid key"},
        "user": {"id": p1, "email": p2, "username": p3, "name": p4, "ip_address": "10.0.0.1",
                 "data": {p1: p5}, "geo": {"city": p4, "country_code": p2}},
        "request": {"url": p5, "method": p2, "query_string": [[p1, p2], ["next", p3]],
                    "fragment": p4, "data": {p1: p2, "next": p3},
                    "headers": {"User-Agent": p1, "Referer": p3, "X-Evil": p4,
                                "Origin": p5},
                    "cookies": {"session": p2, p1: p4}, "env": {"REMOTE_ADDR": p2, "X": p3}},
        "contexts": {
            "os": {"name": p1, "version": p2},
            "browser": {"name": p4, "version": p3},
            "runtime": {"name": p2, "version": p1},
            "device": {"model": p4, "family": p3},
            "trace": {"trace_id": "0123456789abcdef0123456789abcdef", "span_id": "0123456789abcdef",
                      "op": p1, "description": p2},
            "custom": {p1: p2, "link": p3, "url": p5, "type": p4},
        },
        "extra": {p1: p2, "link": p3, "url": p5, "nested": {"deep": p4, "list": [p1, p3]}},
        "modules": {p1: p2},
        "sdk": {"name": p1, "version": p2, "integrations": [p4]},
    })
}

/// Every string field of an event carries `<script>`, attribute-breaking, `javascript:` and
/// `<svg onload>` payloads. On the issues list (also with a payload as the search query), the
/// issue page, the issue's events list, the event's own page and the home page, and on the login
/// page with a payload as `next`: nothing runs (`window.__xss` stays undefined, no dialog, no
/// CSP violation), no `<script>` other than `/static/app.js` exists, no element has an `on*`
/// attribute, no link or source is a `javascript:` URL — and the issue page shows the payloads
/// as text. The raw event is a JSON download, never a page.
#[test]
fn script_injection_in_every_field_renders_as_text() {
    common::ui::require_browser();
    let server = Server::start();
    let event_id = send_event(&server.url, &server.dsn, hostile_event());
    let message_id = send_event(
        &server.url,
        &server.dsn,
        json!({"message": XSS_SVG, "level": "warning", "culprit": XSS_ATTR,
               "tags": {"xss.msg": XSS_SCRIPT}, "user": {"email": XSS_ATTR}}),
    );
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &event_id);
    issue_of(&server.url, &server.token, ORG, PROJECT, &message_id);

    let url = &server.url;
    let issue = issue_path(&id);
    let event_page = format!("{issue}events/{event_id}/");
    let pages = Browser::new("script-injection")
        .goto(&format!("{url}/login?next={}", enc(XSS_ATTR)))
        .snapshot("login with a hostile next")
        .submit_login(EMAIL, PASSWORD)
        .goto(&format!("{url}/issues/"))
        .snapshot("issues list")
        .goto(&format!("{url}/issues/?query={}", enc(XSS_ATTR)))
        .snapshot("issues list searching a payload")
        .goto(&format!("{url}/issues/?query={}", enc(XSS_SVG)))
        .snapshot("issues list searching another payload")
        .goto(&format!("{url}{issue}"))
        .snapshot_with_screenshot(
            "issue page",
            &screenshot_dir().join("script-injection-issue-page.png"),
        )
        .goto(&format!("{url}{issue}events/"))
        .snapshot("events list")
        .goto(&format!("{url}{event_page}"))
        .snapshot("event page")
        .goto(&format!("{url}/"))
        .snapshot("home")
        .run();

    for page in pages.all() {
        let what = page.describe();
        assert_eq!(
            page.value["xss"],
            Value::Null,
            "a payload ran (window.__xss is set) on {what}"
        );
        assert!(
            page.list("dialogs").is_empty(),
            "a dialog opened on {what}: {:#?}",
            page.list("dialogs")
        );
        for script in page.list("scripts") {
            let src = script["src"].as_str().unwrap_or("");
            let path = src.split('?').next().unwrap_or("");
            assert!(
                path == "/static/app.js" || path.ends_with("://127.0.0.1/static/app.js"),
                "the only script should be /static/app.js, found {script} on {what}"
            );
        }
        assert!(
            page.list("on_attributes").is_empty(),
            "elements with event-handler attributes on {what}: {:#?}",
            page.list("on_attributes")
        );
        assert!(
            page.list("script_urls").is_empty(),
            "javascript: (or script data:) URLs on {what}: {:#?}",
            page.list("script_urls")
        );
        assert!(
            page.list("frames_embedded").is_empty(),
            "embedded frames or objects on {what}: {:#?}",
            page.list("frames_embedded")
        );
    }
    assert_no_problems(&pages);

    for name in [
        "issues list",
        "issue page",
        "events list",
        "event page",
        "home",
    ] {
        let page = pages.get(name);
        assert_eq!(page.status(), Some(200), "{}", page.describe());
    }
    assert!(
        pages.get("issues list").issue_ids().contains(&id),
        "the issues list should list the hostile issue: {}",
        pages.get("issues list").describe()
    );
    let events = pages.get("events list");
    assert!(
        events
            .list("links")
            .iter()
            .any(|l| l.as_str() == Some(event_page.as_str())),
        "the events list should link to the event {event_page}: {}",
        events.describe()
    );
    for name in ["issue page", "event page"] {
        let page = pages.get(name);
        for payload in PAYLOADS.iter().chain([&XSS_HTTP]) {
            page.assert_text(payload, "the payload should be shown as text");
        }
    }

    // The raw event is a download, never rendered as a page.
    let client = WebClient::admin(&server);
    let json_path = format!("{issue}events/{event_id}/json");
    let raw = client.get(&json_path);
    raw.expect(200);
    assert!(
        raw.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "GET {json_path} should be application/json, is {:?}",
        raw.header("content-type")
    );
    assert!(
        raw.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")),
        "GET {json_path} should be a download (Content-Disposition: attachment), is {:?}",
        raw.header("content-disposition")
    );
    assert_eq!(
        raw.header("x-content-type-options"),
        Some("nosniff"),
        "GET {json_path}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Who may see what
// ---------------------------------------------------------------------------------------------

const MEMBER: &str = "member@example.com";
const MEMBER_PASSWORD: &str = "another horse battery staple";

/// Fails unless `page` is a redirect to `/login?next=<path>`.
fn assert_redirects_to_login(page: &WebPage, path: &str) {
    assert!(
        matches!(page.status, 302 | 303 | 307),
        "{} (logged out) should redirect to /login, answered {}: {}",
        page.what,
        page.status,
        page.body
    );
    let to = page.location();
    assert!(
        to.starts_with("/login?"),
        "{} (logged out) should redirect to /login?next=…, redirects to {to:?}",
        page.what
    );
    assert_eq!(
        query_param(to, "next").as_deref(),
        Some(path),
        "{} (logged out) should come back after logging in: Location {to:?}",
        page.what
    );
}

/// The invitation link shown once by `POST /organizations/{org}/invites`.
fn invite_link(page: &WebPage) -> String {
    let body = page.expect(200);
    let at = body
        .find("/invite/")
        .unwrap_or_else(|| panic!("{} shows no /invite/ link: {body}", page.what));
    let token: String = body[at + "/invite/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    assert!(
        !token.is_empty(),
        "{} shows an empty invite token",
        page.what
    );
    format!("/invite/{token}")
}

/// Logged out, every page sends the visitor to the login form (and no form changes anything);
/// a member of another project of the same organization, invited through the members page,
/// gets 404 for the first project's issue, events, event, raw event, settings and filtered list,
/// does not see its issue in `/issues/` or on the home page, cannot resolve it, and their API
/// token gets 404 for the project's issues and the issue. Without a token, the API answers 401.
#[test]
fn logged_out_visitors_and_other_members_are_refused() {
    let server = Server::start();
    let event_id = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "only checkout may see this", "level": "error"}),
    );
    let id = issue_of(&server.url, &server.token, ORG, PROJECT, &event_id);
    let checkout_id = common::dsn_parts(&server.dsn).1;
    let other_dsn = server.cli(&["project", "create", &format!("{ORG}/other")], &[]);
    let other_id = common::dsn_parts(&other_dsn).1;
    let other_event = send_event(
        &server.url,
        &other_dsn,
        json!({"message": "the other project's own error", "level": "error"}),
    );
    let other_issue = issue_of(&server.url, &server.token, ORG, "other", &other_event);

    let issue = issue_path(&id);
    let pages: Vec<String> = vec![
        "/".into(),
        "/issues/".into(),
        format!("/issues/?project={checkout_id}"),
        issue.clone(),
        format!("{issue}events/"),
        format!("{issue}events/{event_id}/"),
        format!("{issue}events/{event_id}/json"),
        format!("/organizations/{ORG}/projects/{PROJECT}/settings/"),
        format!("/organizations/{ORG}/members/"),
        "/settings/".into(),
    ];

    // Logged out.
    let anonymous = WebClient::new(&server);
    for path in &pages {
        assert_redirects_to_login(&anonymous.get(path), path);
    }
    let post = anonymous.post(
        &format!("{issue}status"),
        &[("action", "resolve"), ("csrf", "")],
    );
    assert!(
        !(200..300).contains(&post.status),
        "a logged-out POST {issue}status should be refused, answered {}: {}",
        post.status,
        post.body
    );
    assert_eq!(
        api_status(&server, &id),
        "unresolved",
        "after a logged-out POST"
    );

    // A member of acme/other only, invited through the members page.
    let admin = WebClient::admin(&server);
    let members = admin.get(&format!("/organizations/{ORG}/members/"));
    members.expect(200);
    let created = admin.post(
        &format!("/organizations/{ORG}/invites"),
        &[
            ("csrf", &members.csrf()),
            ("email", MEMBER),
            ("role", "member"),
            ("project_ids", &other_id),
        ],
    );
    let link = invite_link(&created);
    let member = WebClient::new(&server);
    let form = member.get(&link);
    form.expect(200);
    let joined = member.post(
        &link,
        &[
            ("csrf", &form.csrf()),
            ("email", MEMBER),
            ("password", MEMBER_PASSWORD),
            ("confirm", MEMBER_PASSWORD),
        ],
    );
    assert_eq!(
        joined.status, 303,
        "accepting the invitation with a new account should log in and redirect: {}",
        joined.body
    );
    // The membership works: the member sees their own project and its issue.
    let own = member.get(&format!("/issues/?project={other_id}"));
    assert!(
        own.expect(200)
            .contains(&format!("data-issue=\"{other_issue}\"")),
        "the member should see acme/other's issue {other_issue} in /issues/?project={other_id}: {}",
        own.body
    );

    for path in &pages[2..9] {
        let page = member.get(path);
        assert_eq!(
            page.status, 404,
            "{} by a member of acme/other only should answer 404, answered {}: {}",
            page.what, page.status, page.body
        );
        assert!(
            !page.body.contains("only checkout may see this"),
            "{} shows the hidden issue to a member of acme/other",
            page.what
        );
    }
    for path in ["/issues/", "/issues/?query=", "/"] {
        let page = member.get(path);
        let body = page.expect(200);
        assert!(
            !body.contains("only checkout may see this")
                && !body.contains(&format!("data-issue=\"{id}\"")),
            "{} shows acme/checkout's issue {id} to a member of acme/other only: {body}",
            page.what
        );
    }
    let own_csrf = member.get("/settings/").csrf();
    let post = member.post(
        &format!("{issue}status"),
        &[("action", "resolve"), ("csrf", &own_csrf)],
    );
    assert_eq!(
        post.status, 404,
        "POST {issue}status by a member of acme/other only should answer 404: {}",
        post.body
    );
    let bulk = member.post(
        "/issues/bulk",
        &[("action", "resolve"), ("ids", &id), ("csrf", &own_csrf)],
    );
    assert!(
        !(200..400).contains(&bulk.status),
        "POST /issues/bulk with acme/checkout's issue by a member of acme/other only should be \
         refused, answered {}: {}",
        bulk.status,
        bulk.body
    );
    assert_eq!(
        api_status(&server, &id),
        "unresolved",
        "after the member's POSTs"
    );

    // The member's API token.
    let token = server.cli(&["token", "create", "--email", MEMBER], &[]);
    let api = |path: &str, token: Option<&str>| common::ui::api_get(&server.url, token, path);
    for path in [
        format!("/api/0/projects/{ORG}/{PROJECT}/issues/"),
        format!("/api/0/issues/{id}/"),
        format!("/api/0/issues/{id}/events/"),
        format!("/api/0/projects/{ORG}/{PROJECT}/events/{event_id}/"),
    ] {
        api(&path, Some(&token)).expect(404);
        api(&path, None).expect(401);
    }
    let own = api(
        &format!("/api/0/projects/{ORG}/other/issues/"),
        Some(&token),
    )
    .array();
    assert!(
        own.iter().any(|i| i["id"] == other_issue.as_str()),
        "the member's token should list acme/other's issues: {own:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Two nodes
// ---------------------------------------------------------------------------------------------

/// Two nodes on one PostgreSQL database: an error reported to node 1; the browser logs in on
/// node 1, opens node 2's issues list with the same session cookie (cookies are per host, not
/// per port), opens and resolves the issue there, and node 1's list no longer shows it.
#[test]
fn a_session_started_on_one_node_works_on_another() {
    let Some(admin_url) = common::ui::postgres_admin_url() else {
        return;
    };
    common::ui::require_browser();
    let cluster = Cluster::start(admin_url, 2);
    let (one, two) = (&cluster.nodes[0].url, &cluster.nodes[1].url);
    let event_id = send_event(
        one,
        &cluster.dsn(0),
        json!({"exception": {"values": [{"type": "ClusterError", "value": "seen on node one",
            "stacktrace": {"frames": [{"function": "on_node_one", "module": "app.cluster",
                                       "lineno": 1, "in_app": true}]}}]}}),
    );
    let id = issue_of(one, &cluster.token, ORG, PROJECT, &event_id);

    let pages = Browser::new("two-nodes")
        .goto(&format!("{one}/issues/"))
        .snapshot("login on node 1")
        .submit_login(EMAIL, PASSWORD)
        .snapshot("node 1 issues")
        .goto(&format!("{two}/issues/"))
        .snapshot("node 2 issues")
        .click(&open_link(&id))
        .snapshot("node 2 issue")
        .click(&resolve_button(&id))
        .snapshot("node 2 after resolve")
        .goto(&format!("{one}/issues/"))
        .snapshot("node 1 issues after")
        .goto(&format!("{two}/issues/"))
        .click(LOG_OUT)
        .goto(&format!("{one}/issues/"))
        .snapshot("node 1 after logging out on node 2")
        .run();

    assert_login_redirect(pages.get("login on node 1"), "/issues/");
    let first = pages.get("node 1 issues");
    assert!(
        first.url().starts_with(one.as_str()) && first.issue_ids().contains(&id),
        "node 1 should list the issue after logging in: {}",
        first.describe()
    );
    let second = pages.get("node 2 issues");
    assert!(
        second.url().starts_with(two.as_str()) && second.path() == "/issues/",
        "node 2 should take node 1's session, not ask to log in again: {}",
        second.describe()
    );
    assert!(
        second.issue_ids().contains(&id),
        "node 2 should list the issue reported to node 1: {}",
        second.describe()
    );
    let opened = pages.get("node 2 issue");
    assert_eq!(opened.path(), issue_path(&id), "{}", opened.describe());
    let after = pages.get("node 2 after resolve");
    assert!(
        after.url().starts_with(two.as_str()),
        "resolving on node 2 should stay on node 2: {}",
        after.describe()
    );
    let status = common::ui::api_get(one, Some(&cluster.token), &format!("/api/0/issues/{id}/"));
    assert_eq!(
        status.expect(200)["status"],
        "resolved",
        "node 1's API after resolving on node 2"
    );
    let last = pages.get("node 1 issues after");
    assert!(
        last.path() == "/issues/" && !last.issue_ids().contains(&id),
        "node 1's unresolved list should no longer show the issue resolved on node 2: {}",
        last.describe()
    );
    // Logging out on node 2 ends the session on node 1 too.
    assert_login_redirect(pages.get("node 1 after logging out on node 2"), "/issues/");
    assert_no_problems(&pages);
}
