//! Source maps end to end with the real tools: a small app bundled and minified with esbuild
//! together with `@sentry/browser`, its maps uploaded with the real `sentry-cli` (pinned in
//! tests/sdk/package.json), an error thrown in headless Chromium, and the event read back
//! through the API with its frames resolved to the original source.
//!
//! Two upload flows: debug ids (`sourcemaps inject` then `sourcemaps upload`) and the release
//! (`sourcemaps upload --release R --url-prefix '~/static'`, no inject). sentry-cli 3 no longer
//! speaks the legacy release-file routes (`releases/{version}/files/`, `…/assemble/`), so those
//! are driven over HTTP the way sentry-cli 2 did.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use std::io::Write;

use common::web::WebClient;
use common::{ORG, PROJECT, Server, agent, answer, sdk_dir, wait_until};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

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

/// An event that arrived before its maps says why its frames are minified; once the maps are
/// uploaded, reprocessing its issue resolves them.
#[test]
fn missing_maps_say_why_then_reprocessing_resolves() {
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

    sentry_cli(
        &server,
        &[
            "sourcemaps",
            "upload",
            "--release",
            "shop@3.0.0",
            "--url-prefix",
            "~/static",
            &dir.path().join("static").to_string_lossy(),
        ],
    );
    // The page offers reprocessing; its button digests the issue's events again.
    let action = format!("/organizations/{ORG}/issues/{issue}/reprocess");
    assert!(html.contains(&format!("action=\"{action}\"")), "{html}");
    let answer = web.post(&action, &[("csrf", &page.csrf())]);
    assert_eq!(answer.status, 303, "{}", answer.body);
    let path = format!("/api/0/projects/{ORG}/{PROJECT}/events/{id}/");
    let wait_resolved = |server: &Server| {
        wait_until("the reprocessed event to be resolved", || {
            let (status, body) = server.get(&path);
            if status != 200 {
                return Err(format!("{status}: {body}"));
            }
            let event: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}"))?;
            let frames = exception(&event)["stacktrace"]["frames"].clone();
            match frames.as_array().and_then(|f| f.last()) {
                Some(top) if top["function"] == "applyDiscountCode" => Ok(event),
                _ => Err(format!("{status}: {frames}")),
            }
        })
    };
    let resolved = wait_resolved(&server);
    assert_resolved(&resolved, "release");
    // The API does the same (here on the issue the event now belongs to).
    let new_issue = resolved["groupID"].as_str().unwrap();
    let answer = post(
        &server,
        &format!("issues/{new_issue}/reprocess/"),
        "application/json",
        b"{}",
    );
    assert_eq!(answer.expect(202)["reprocessing"], 1);
    let resolved = wait_resolved(&server);
    assert_resolved(&resolved, "release");
    assert_eq!(
        resolved["groupID"], new_issue,
        "the same frames group the same way"
    );
    assert!(
        !resolved["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["url"] == top["filename"])),
        "the old reason is gone: {:#}",
        resolved["errors"]
    );
}

/// A `multipart/form-data` body of `(name, filename, bytes)` parts, and its content type.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "faultline-test-boundary-7d2f1c";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        )
        .unwrap();
        if let Some(f) = filename {
            write!(body, "; filename=\"{f}\"").unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> common::Answer {
    let url = format!("{}/api/0/{path}", server.url);
    answer(
        format!("POST {url}"),
        agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .header("Content-Type", content_type)
            .send(body),
    )
}

fn delete(server: &Server, path: &str) -> common::Answer {
    let url = format!("{}/api/0/{path}", server.url);
    answer(
        format!("DELETE {url}"),
        agent()
            .delete(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .call(),
    )
}

fn sha1_hex(data: &[u8]) -> String {
    hex(&Sha1::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Single release files, as `sentry-cli releases files R upload` (sentry-cli 2) sent them:
/// listed, refused twice under one name, used to resolve frames, deleted.
#[test]
fn legacy_release_files_resolve_frames() {
    require_tools();
    let server = Server::start();
    let release = "shop@4.0.0";
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "app.min.js");
    let files = format!("projects/{ORG}/{PROJECT}/releases/{release}/files/");
    let js = std::fs::read(dir.path().join("static/app.min.js")).unwrap();
    let map = std::fs::read(dir.path().join("static/app.min.js.map")).unwrap();
    let (ct, body) = multipart(&[
        ("file", Some("app.min.js"), &js),
        ("name", None, b"~/static/app.min.js"),
        ("header", None, b"Sourcemap:app.min.js.map"),
    ]);
    let created = post(&server, &files, &ct, &body);
    let created = created.expect(201).clone();
    assert_eq!(created["name"], "~/static/app.min.js");
    assert_eq!(created["headers"]["sourcemap"], "app.min.js.map");
    assert_eq!(created["sha1"], sha1_hex(&js));
    post(&server, &files, &ct, &body).expect_error(409);
    let (ct, body) = multipart(&[
        ("file", Some("app.min.js.map"), &map),
        ("name", None, b"~/static/app.min.js.map"),
    ]);
    post(&server, &files, &ct, &body).expect(201);
    let listed = server.api(&files);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    let org_listed = server.api(&format!("organizations/{ORG}/releases/{release}/files/"));
    assert_eq!(org_listed, listed);

    let id = click(&server, dir.path(), "app.min.js", release);
    assert_resolved(&event(&server, &id), "release");

    let js_id = created["id"].as_str().unwrap();
    assert_eq!(delete(&server, &format!("{files}{js_id}/")).status, 204);
    delete(&server, &format!("{files}{js_id}/")).expect_error(404);
    assert_eq!(server.api(&files).as_array().unwrap().len(), 1);
}

/// A legacy release bundle: chunks uploaded (gzipped, checked against their SHA-1), then
/// `releases/{version}/assemble/` answering `not_found` with the missing chunks until they are
/// there, then `ok`; the bundle's files serve the release.
#[test]
fn legacy_release_bundle_is_assembled_from_chunks() {
    require_tools();
    let server = Server::start();
    let release = "shop@5.0.0";
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "app.min.js");
    let js = std::fs::read(dir.path().join("static/app.min.js")).unwrap();
    let map = std::fs::read(dir.path().join("static/app.min.js.map")).unwrap();
    let manifest = json!({"files": {
        "files/_/_/static/app.min.js": {"url": "~/static/app.min.js", "type": "minified_source",
            "headers": {"Sourcemap": "app.min.js.map"}},
        "files/_/_/static/app.min.js.map": {"url": "~/static/app.min.js.map", "type": "source_map"},
    }});
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in [
        ("manifest.json", manifest.to_string().into_bytes()),
        ("files/_/_/static/app.min.js", js),
        ("files/_/_/static/app.min.js.map", map),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&data).unwrap();
    }
    let bundle = zip.finish().unwrap().into_inner();
    let checksum = sha1_hex(&bundle);

    let options = server.api(&format!("organizations/{ORG}/chunk-upload/"));
    assert_eq!(
        options["url"],
        format!("{}/api/0/organizations/{ORG}/chunk-upload/", server.url)
    );
    let chunk_size = options["chunkSize"].as_u64().unwrap() as usize;
    let chunks: Vec<&[u8]> = bundle.chunks(chunk_size.min(64 * 1024)).collect();
    let sums: Vec<String> = chunks.iter().map(|c| sha1_hex(c)).collect();
    let assemble = format!("organizations/{ORG}/releases/{release}/assemble/");
    let request = json!({"checksum": checksum, "chunks": sums}).to_string();
    let answer = post(&server, &assemble, "application/json", request.as_bytes());
    let answer = answer.expect(200);
    assert_eq!(answer["state"], "not_found");
    assert_eq!(answer["missingChunks"], json!(sums));

    // A chunk whose content does not match its name is refused.
    let (ct, body) = multipart(&[("file", Some(&sums[0]), b"something else")]);
    post(
        &server,
        &format!("organizations/{ORG}/chunk-upload/"),
        &ct,
        &body,
    )
    .expect_error(400);

    let gzipped: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(c).unwrap();
            gz.finish().unwrap()
        })
        .collect();
    let parts: Vec<(&str, Option<&str>, &[u8])> = sums
        .iter()
        .zip(&gzipped)
        .map(|(s, g)| ("file_gzip", Some(s.as_str()), g.as_slice()))
        .collect();
    let (ct, body) = multipart(&parts);
    post(
        &server,
        &format!("organizations/{ORG}/chunk-upload/"),
        &ct,
        &body,
    )
    .expect(200);
    let answer = post(&server, &assemble, "application/json", request.as_bytes());
    assert_eq!(answer.expect(200)["state"], "ok", "{:?}", answer.body);
    let answer = post(&server, &assemble, "application/json", request.as_bytes());
    assert_eq!(answer.expect(200)["state"], "ok", "asking again answers ok");

    let names: Vec<Value> = server
        .api(&format!("organizations/{ORG}/releases/{release}/files/"))
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("~/static/app.min.js"),
            json!("~/static/app.min.js.map")
        ]
    );

    let id = click(&server, dir.path(), "app.min.js", release);
    assert_resolved(&event(&server, &id), "release");

    // Bad input is answered 400 with Sentry's {"error": …}.
    let bad = json!({"checksum": checksum, "chunks": sums, "projects": [PROJECT], "dist": "web"});
    let answer = post(
        &server,
        &format!("organizations/{ORG}/artifactbundle/assemble/"),
        "application/json",
        bad.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 400);
    assert!(answer.body["error"].is_string(), "{:?}", answer.body);
    let unknown = json!({"checksum": checksum, "chunks": sums, "projects": ["nope"]});
    let answer = post(
        &server,
        &format!("organizations/{ORG}/artifactbundle/assemble/"),
        "application/json",
        unknown.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 400);
}
