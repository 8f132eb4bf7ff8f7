//! Source maps end to end with the real tools: a small app bundled and minified with esbuild
//! together with `@sentry/browser`, its maps uploaded with the real `sentry-cli` (pinned in
//! tests/sdk/package.json), an error thrown in headless Chromium, and the event read back
//! through the API with its frames resolved to the original source.
//!
//! Two upload flows: debug ids (`sourcemaps inject` then `sourcemaps upload`) and the release
//! (`sourcemaps upload --release R --url-prefix '~/static'`, no inject).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::web::WebClient;
use common::{ORG, PROJECT, Server, sdk_dir, wait_until};
use serde_json::Value;

const SENTRY_CLI_VERSION: &str = "3.8.0";

fn require_tools() {
    common::require_node_packages(&[
        "@sentry/browser",
        "@sentry/cli",
        "playwright-core",
        "esbuild",
    ]);
    common::require_chromium();
}

/// Runs `node sourcemaps_client.mjs ARGS` in tests/sdk; panics with its output on failure.
fn node(args: &[&str]) -> String {
    let out = Command::new("node")
        .arg("sourcemaps_client.mjs")
        .args(args)
        .current_dir(sdk_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run node sourcemaps_client.mjs {args:?}: {e}"));
    assert!(
        out.status.success(),
        "node sourcemaps_client.mjs {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the real `sentry-cli ARGS` against the server; panics with its output on failure.
fn sentry_cli(server: &Server, args: &[&str]) -> String {
    let bin = sdk_dir().join("node_modules/.bin/sentry-cli");
    let out = Command::new(&bin)
        .args(args)
        .env("SENTRY_URL", &server.url)
        .env("SENTRY_AUTH_TOKEN", &server.token)
        .env("SENTRY_ORG", ORG)
        .env("SENTRY_PROJECT", PROJECT)
        .env("SENTRY_LOG_LEVEL", "info")
        .env_remove("SENTRY_DSN")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", bin.display()));
    let text = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sentry-cli {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Bundles the app into `dir/static/{name}` and its map `{name}.map`.
fn build(dir: &Path, name: &str) {
    node(&["build", &dir.to_string_lossy(), name]);
    assert!(dir.join(format!("static/{name}.map")).exists());
}

/// Clicks the button in Chromium on a page loading `static/{name}`; returns the id of the
/// captured event.
fn click(server: &Server, dir: &Path, name: &str, release: &str) -> String {
    let out = node(&["run", &dir.to_string_lossy(), name, release, &server.dsn]);
    let report: Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the page printed no JSON report: {out}"));
    report["exception_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no event id in {report}"))
        .to_string()
}

/// The stored event, once digested.
fn event(server: &Server, id: &str) -> Value {
    let path = format!("/api/0/projects/{ORG}/{PROJECT}/events/{id}/");
    wait_until(&format!("event {id} to be digested"), || {
        let (status, body) = server.get(&path);
        if status == 200 {
            serde_json::from_str::<Value>(&body).map_err(|e| e.to_string())
        } else {
            Err(format!("{status}: {body}"))
        }
    })
}

fn exception(event: &Value) -> &Value {
    event["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "exception"))
        .map(|e| &e["data"]["values"][0])
        .unwrap_or_else(|| panic!("no exception entry: {event:#}"))
}

/// The line (1-based) of the app's source holding `needle`.
fn source_line(needle: &str) -> (u64, String) {
    let text = std::fs::read_to_string(sdk_dir().join("sourcemaps/app.js")).unwrap();
    text.lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .map(|(i, l)| (i as u64 + 1, l.to_string()))
        .unwrap_or_else(|| panic!("app.js has no line with {needle}"))
}

/// The top in-app frame is the original `applyDiscountCode` at the `throw`, with its source
/// line as context; the minified frame is kept in `rawStacktrace`.
fn assert_resolved(event: &Value, via: &str) {
    let exc = exception(event);
    let frames = exc["stacktrace"]["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no frames: {exc:#}"));
    let top = frames
        .iter()
        .rev()
        .find(|f| f["inApp"] == true)
        .unwrap_or_else(|| panic!("no in-app frame: {exc:#}"));
    let (line, text) = source_line("throw new Error(`unknown discount code");
    assert_eq!(top["function"], "applyDiscountCode", "top frame: {top:#}");
    assert_eq!(top["filename"], "src/app.js", "top frame: {top:#}");
    assert_eq!(top["lineNo"], line, "top frame: {top:#}");
    assert_eq!(top["context"][5][0], line, "context: {top:#}");
    assert_eq!(top["context"][5][1], text, "context: {top:#}");
    assert_eq!(top["data"]["resolved_with"], via, "top frame: {top:#}");
    // The caller is resolved too.
    let caller = frames
        .iter()
        .rev()
        .filter(|f| f["inApp"] == true)
        .nth(1)
        .unwrap_or_else(|| panic!("no second in-app frame: {exc:#}"));
    assert_eq!(caller["function"], "checkoutTotal", "caller: {caller:#}");

    let raw = exc["rawStacktrace"]["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no rawStacktrace: {exc:#}"));
    let raw_top = raw.last().unwrap();
    assert!(
        raw_top["filename"]
            .as_str()
            .is_some_and(|p| p.contains("/static/app.") && p.ends_with(".min.js")),
        "the raw frame is the minified one: {raw_top:#}"
    );
    assert_ne!(raw_top["function"], "applyDiscountCode");
}

#[test]
fn debug_id_upload_resolves_frames() {
    require_tools();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "app.min.js");
    let static_dir = dir.path().join("static");
    let static_dir = static_dir.to_string_lossy();
    let version = sentry_cli(&server, &["--version"]);
    assert!(version.contains(SENTRY_CLI_VERSION), "{version}");
    sentry_cli(&server, &["sourcemaps", "inject", &static_dir]);
    let minified = std::fs::read_to_string(dir.path().join("static/app.min.js")).unwrap();
    assert!(
        minified.contains("//# debugId="),
        "inject adds the debug id"
    );
    sentry_cli(&server, &["sourcemaps", "upload", &static_dir]);

    let id = click(&server, dir.path(), "app.min.js", "");
    let event = event(&server, &id);
    assert_resolved(&event, "debug-id");

    // The event page shows the original frame and keeps the minified one.
    let web = WebClient::admin(&server);
    let issue = event["groupID"].as_str().unwrap();
    let page = web.get(&format!("/organizations/{ORG}/issues/{issue}/events/{id}/"));
    let html = page.expect(200);
    assert!(html.contains("applyDiscountCode"), "{html}");
    assert!(html.contains("src/app.js"), "{html}");
    assert!(html.contains("Show minified frames"), "{html}");
    let raw_function = exception(&event)["rawStacktrace"]["frames"]
        .as_array()
        .and_then(|f| f.last())
        .and_then(|f| f["function"].as_str())
        .unwrap()
        .to_string();
    assert!(
        html.contains(&format!("<span class=\"fn\">{raw_function}</span>")),
        "the minified frame ({raw_function}) is on the page too"
    );
    assert!(html.contains("/static/app.min.js"), "{html}");
}

#[test]
fn release_upload_resolves_frames_and_groups_across_builds() {
    require_tools();
    let server = Server::start();
    let release = "shop@2.0.0";
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "app.min.js");
    let static_dir = dir.path().join("static");
    sentry_cli(
        &server,
        &[
            "sourcemaps",
            "upload",
            "--release",
            release,
            "--url-prefix",
            "~/static",
            &static_dir.to_string_lossy(),
        ],
    );
    let files = server.api(&format!(
        "projects/{ORG}/{PROJECT}/releases/{release}/files/"
    ));
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(names.contains(&"~/static/app.min.js"), "{names:?}");
    assert!(names.contains(&"~/static/app.min.js.map"), "{names:?}");

    let id = click(&server, dir.path(), "app.min.js", release);
    let first = event(&server, &id);
    assert_resolved(&first, "release");

    // The next build of the same code carries its hash in its file name: the same bug is
    // still the same issue, because grouping sees the original frames.
    let next = tempfile::tempdir().unwrap();
    build(next.path(), "app.3f9a1c.min.js");
    sentry_cli(
        &server,
        &[
            "sourcemaps",
            "upload",
            "--release",
            release,
            "--url-prefix",
            "~/static",
            &next.path().join("static").to_string_lossy(),
        ],
    );
    let id = click(&server, next.path(), "app.3f9a1c.min.js", release);
    let second = event(&server, &id);
    assert_resolved(&second, "release");
    assert_eq!(
        first["groupID"], second["groupID"],
        "one bug, one issue, whatever the bundle's name"
    );
}

#[test]
fn missing_maps_say_why_on_the_frame() {
    require_tools();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "app.min.js");
    let id = click(&server, dir.path(), "app.min.js", "shop@3.0.0");
    let event = event(&server, &id);
    let exc = exception(&event);
    let top = exc["stacktrace"]["frames"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(
        top["data"]["symbolicator_status"], "missing_release_file",
        "{top:#}"
    );
    let errors = event["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["type"] == "js_no_source" && e["url"] == top["filename"]),
        "{errors:#?}"
    );

    // The event page says why next to the frame.
    let web = WebClient::admin(&server);
    let issue = event["groupID"].as_str().unwrap();
    let page = web.get(&format!("/organizations/{ORG}/issues/{issue}/events/{id}/"));
    let html = page.expect(200);
    assert!(
        html.contains(
            "Not resolved with a source map: no file uploaded for this URL in release shop@3.0.0"
        ),
        "{html}"
    );
}
