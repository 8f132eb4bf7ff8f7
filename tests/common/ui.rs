//! Harness for the web UI's end-to-end tests (tests/ui.rs): a real headless Chromium driven by
//! `tests/sdk/ui_client.mjs` (playwright-core, pinned in tests/sdk/package.json), events posted
//! the way SDKs post them, and several nodes on one PostgreSQL database.
//!
//! - [`Browser`] collects a script of steps (open, fill, click, snapshot); [`Browser::run`] runs
//!   it in one node process and returns what each snapshot saw ([`Pages`] / [`Page`]). Every
//!   assertion is made here, in Rust, on those snapshots.
//! - [`send_event`] posts an event in an envelope with the DSN's key, like an SDK.
//! - [`Cluster`] starts several `faultline serve` on one fresh PostgreSQL database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Answer, CLIENT_TIMEOUT, TestDatabase, agent, answer, bin, drain, read_all, sdk_dir};

/// Fails (never skips) unless Chromium and playwright-core are installed; the message names
/// `scripts/test.sh`, which installs both.
pub fn require_browser() {
    super::require_node_packages(&["playwright-core"]);
    super::require_chromium();
}

/// `target/ui-screenshots/` (under `$CARGO_TARGET_DIR` when set), where screenshots go.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A script for the browser: steps run in order in one Chromium profile (cookies are kept across
/// steps, and across origins that share a host).
pub struct Browser {
    /// Names the failure screenshot: `target/ui-screenshots/<name>-failure.png`.
    name: String,
    steps: Vec<Value>,
}

impl Browser {
    pub fn new(name: &str) -> Browser {
        Browser {
            name: name.to_string(),
            steps: Vec::new(),
        }
    }

    /// Opens `url`.
    pub fn goto(&mut self, url: &str) -> &mut Browser {
        self.steps.push(json!({"do": "goto", "url": url}));
        self
    }

    /// Types `value` into the field `selector`.
    pub fn fill(&mut self, selector: &str, value: &str) -> &mut Browser {
        self.steps
            .push(json!({"do": "fill", "selector": selector, "value": value}));
        self
    }

    /// Clicks `selector`, which must load a page (a link, a form's button).
    pub fn click(&mut self, selector: &str) -> &mut Browser {
        self.steps
            .push(json!({"do": "click", "selector": selector}));
        self
    }

    /// Presses `key` in the field `selector`, which must load a page (Enter in a search box).
    pub fn press(&mut self, selector: &str, key: &str) -> &mut Browser {
        self.steps
            .push(json!({"do": "press", "selector": selector, "key": key}));
        self
    }

    /// Records the current page as `name`.
    pub fn snapshot(&mut self, name: &str) -> &mut Browser {
        self.steps.push(json!({"do": "snapshot", "name": name}));
        self
    }

    /// Records the current page as `name` and saves a full-page screenshot at `path`.
    pub fn snapshot_with_screenshot(&mut self, name: &str, path: &Path) -> &mut Browser {
        self.steps
            .push(json!({"do": "snapshot", "name": name, "screenshot": path.to_string_lossy()}));
        self
    }

    /// Logs in through the login form the browser is on (`#login`).
    pub fn submit_login(&mut self, email: &str, password: &str) -> &mut Browser {
        self.fill("#login input[name=email]", email)
            .fill("#login input[name=password]", password)
            .click("#login [type=submit]")
    }

    /// Runs the script in `node tests/sdk/ui_client.mjs`. Panics, with what the browser saw,
    /// if a step failed or the browser could not be driven.
    pub fn run(&self) -> Pages {
        require_browser();
        let failure_shot = screenshot_dir().join(format!("{}-failure.png", self.name));
        let script = json!({
            "steps": self.steps,
            "failure_screenshot": failure_shot.to_string_lossy(),
        });
        let mut file = tempfile::Builder::new()
            .prefix("faultline-ui-")
            .suffix(".json")
            .tempfile()
            .expect("create the browser script file");
        std::io::Write::write_all(&mut file, script.to_string().as_bytes())
            .expect("write the browser script");

        let mut child = Command::new("node")
            .arg("ui_client.mjs")
            .arg(file.path())
            .current_dir(sdk_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node ui_client.mjs: {e}"));
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        let stdout = String::from_utf8_lossy(&stdout.join().unwrap()).to_string();
        let log = String::from_utf8_lossy(&stderr.join().unwrap()).to_string();
        let describe = || {
            format!(
                "`node ui_client.mjs` {}:\n----- stdout -----\n{stdout}\n----- stderr -----\n{log}\n-----",
                match status {
                    Some(s) => format!("exited with {s}"),
                    None => format!("was killed after {CLIENT_TIMEOUT:?}"),
                }
            )
        };
        if !status.is_some_and(|s| s.success()) {
            panic!("the browser could not be driven: {}", describe());
        }
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .filter(|v| v.get("snapshots").is_some())
            })
            .unwrap_or_else(|| panic!("ui_client.mjs printed no JSON report: {}", describe()));
        let pages = Pages {
            snapshots: report["snapshots"].as_array().cloned().unwrap_or_default(),
            log,
        };
        let failure = &report["failure"];
        if !failure.is_null() {
            panic!(
                "in the browser, step {} ({}) failed: {}\n  on {} (answered {})\n  \
                 problems: {:#}\n  screenshot: {}\n  page text:\n{}\n\
                 pages seen before: {}\nbrowser log:\n{}",
                failure["step"],
                failure["what"],
                failure["error"].as_str().unwrap_or("?"),
                failure["url"].as_str().unwrap_or("?"),
                failure["status"],
                failure["problems"],
                failure["screenshot"].as_str().unwrap_or("none"),
                indent(failure["text"].as_str().unwrap_or("")),
                pages
                    .snapshots
                    .iter()
                    .map(|s| format!(
                        "{} = {} ({})",
                        s["name"].as_str().unwrap_or("?"),
                        s["url"].as_str().unwrap_or("?"),
                        s["status"]
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                pages.log
            );
        }
        pages
    }
}

fn indent(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .take(60)
        .map(|l| format!("    | {l}"))
        .collect();
    if text.lines().count() > 60 {
        lines.push("    | …".into());
    }
    lines.join("\n")
}

/// What the browser saw, by snapshot name.
pub struct Pages {
    snapshots: Vec<Value>,
    /// The browser's console output and the script's own messages.
    pub log: String,
}

impl Pages {
    /// The snapshot called `name`.
    pub fn get(&self, name: &str) -> Page<'_> {
        let value = self
            .snapshots
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no snapshot {name:?} was taken"));
        Page { value }
    }

    /// What the browser noted that is not a problem of the pages (e.g. no /favicon.ico),
    /// once each.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = Vec::new();
        for s in &self.snapshots {
            for n in s["notes"].as_array().into_iter().flatten() {
                let n = n.as_str().unwrap_or("").to_string();
                if !notes.contains(&n) {
                    notes.push(n);
                }
            }
        }
        notes
    }

    /// Every snapshot, in order.
    pub fn all(&self) -> impl Iterator<Item = Page<'_>> {
        self.snapshots.iter().map(|value| Page { value })
    }
}

/// One page as the browser saw it (see `OBSERVE` in ui_client.mjs).
#[derive(Clone, Copy)]
pub struct Page<'a> {
    pub value: &'a Value,
}

impl Page<'_> {
    pub fn name(&self) -> &str {
        self.value["name"].as_str().unwrap_or("?")
    }

    pub fn url(&self) -> &str {
        self.value["url"].as_str().unwrap_or("")
    }

    /// Path and query of the page's URL.
    pub fn path(&self) -> String {
        let url = self.url();
        let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        match after_scheme.find('/') {
            Some(i) => after_scheme[i..]
                .split('#')
                .next()
                .unwrap_or("")
                .to_string(),
            None => "/".to_string(),
        }
    }

    /// Status of the answer that made the page (after redirects).
    pub fn status(&self) -> Option<u64> {
        self.value["status"].as_u64()
    }

    /// The page's text as rendered (`document.body.innerText`).
    pub fn text(&self) -> &str {
        self.value["text"].as_str().unwrap_or("")
    }

    /// `data-issue` of every `tr[data-row]`, in order.
    pub fn issue_ids(&self) -> Vec<String> {
        self.list("rows")
            .iter()
            .map(|r| r["issue"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn list(&self, key: &str) -> Vec<Value> {
        self.value[key].as_array().cloned().unwrap_or_default()
    }

    /// Texts of the `.frame` elements; `in_app` only, or all.
    pub fn frames(&self, in_app_only: bool) -> Vec<String> {
        self.list("frames")
            .iter()
            .filter(|f| !in_app_only || f["in_app"] == true)
            .map(|f| f["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Texts of `.crumbs li`.
    pub fn crumbs(&self) -> Vec<String> {
        self.list("crumbs")
            .iter()
            .map(|c| c.as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Console errors, uncaught exceptions, CSP violations, failed requests and sub-resources
    /// answered with an error, since the snapshot before.
    pub fn problems(&self) -> Vec<String> {
        self.list("problems")
            .iter()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    }

    /// A short description for failure messages: name, URL, status, heading and text.
    pub fn describe(&self) -> String {
        format!(
            "page {:?} = {} (answered {}), h1 {:?}, text:\n{}",
            self.name(),
            self.url(),
            self.value["status"],
            self.value["h1"].as_str().unwrap_or(""),
            indent(self.text())
        )
    }

    /// Fails unless the page loaded with no console error, JS error, CSP violation or failed
    /// sub-resource.
    pub fn assert_no_problems(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the browser reported problems on {}:\n  {}\n",
            self.describe(),
            problems.join("\n  ")
        );
    }

    /// Fails unless the page's text contains `needle`.
    pub fn assert_text(&self, needle: &str, why: &str) {
        assert!(
            self.text().contains(needle),
            "{why}: expected the text {needle:?} on {}",
            self.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Events as SDKs send them
// ---------------------------------------------------------------------------------------------

/// A new event id (32 hex digits).
pub fn new_event_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:024x}{:08x}",
        n ^ ((std::process::id() as u128) << 64),
        seq
    )
}

/// Posts `event` (an `event_id` is added when it has none) in an envelope to the DSN's project
/// at `base` (a node's URL), with the DSN's key in `X-Sentry-Auth`, as an SDK does. Returns the
/// event id; panics unless the event is acknowledged.
pub fn send_event(base: &str, dsn: &str, mut event: Value) -> String {
    if event.get("event_id").is_none() {
        event["event_id"] = json!(new_event_id());
    }
    let id = event["event_id"].as_str().unwrap().to_string();
    let (key, project) = super::dsn_parts(dsn);
    let payload = serde_json::to_vec(&event).unwrap();
    let mut body = serde_json::to_vec(&json!({"event_id": id, "dsn": dsn})).unwrap();
    body.push(b'\n');
    body.extend_from_slice(
        &serde_json::to_vec(&json!({"type": "event", "length": payload.len()})).unwrap(),
    );
    body.push(b'\n');
    body.extend_from_slice(&payload);
    body.push(b'\n');
    let url = format!("{base}/api/{project}/envelope/");
    let a = answer(
        format!("POST {url} (envelope)"),
        agent()
            .post(&url)
            .header(
                "X-Sentry-Auth",
                &format!(
                    "Sentry sentry_key={key}, sentry_version=7, sentry_client=faultline-ui-test/1.0"
                ),
            )
            .header("Content-Type", "application/x-sentry-envelope")
            .send(&body[..]),
    );
    a.expect(200);
    id
}

/// `GET {base}{path}` with an API token (or none).
pub fn api_get(base: &str, token: Option<&str>, path: &str) -> Answer {
    let url = format!("{base}{path}");
    let mut req = agent().get(&url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    answer(format!("GET {path}"), req.call())
}

/// The issue id of an event, once the event is digested (read through `/api/0/`).
pub fn issue_of(base: &str, token: &str, org: &str, project: &str, event_id: &str) -> String {
    let path = format!("/api/0/projects/{org}/{project}/events/{event_id}/");
    let event = super::wait_until(&format!("event {event_id} is readable at {path}"), || {
        let a = api_get(base, Some(token), &path);
        if a.status == 200 {
            Ok(a.body)
        } else {
            Err(format!("{} {}", a.status, a.body))
        }
    });
    event["groupID"]
        .as_str()
        .unwrap_or_else(|| panic!("event `groupID` should be a string: {event:#}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Several nodes on one PostgreSQL database
// ---------------------------------------------------------------------------------------------

/// `FAULTLINE_TEST_DATABASE_URL`, or `None` after printing why the test is skipped.
pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("FAULTLINE_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("skipped: needs PostgreSQL (FAULTLINE_TEST_DATABASE_URL is not set)");
    }
    url
}

/// One `faultline serve` of a [`Cluster`]; killed on drop, its output printed if the test
/// failed.
pub struct Node {
    pub url: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `faultline serve` on a free port in `data_dir`, on `db`; waits for "listening".
    pub fn start(data_dir: &Path, db: &TestDatabase) -> Node {
        Node::start_with(data_dir, db, &[])
    }

    /// Like [`Node::start`], with extra `serve` options.
    pub fn start_with(data_dir: &Path, db: &TestDatabase, extra: &[&str]) -> Node {
        let mut child = Command::new(bin())
            .envs(db.env())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn faultline serve");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        drain(
            child.stdout.take().unwrap(),
            "stdout",
            output.clone(),
            Some(tx),
        );
        drain(child.stderr.take().unwrap(), "stderr", output.clone(), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("Faultline listening on ").nth(1) {
                        break rest.trim().trim_end_matches('/').to_string();
                    }
                }
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "`faultline serve` never printed its address ({err}). Its output:\n{}",
                        output.lock().unwrap().join("\n")
                    );
                }
            }
        };
        Node { url, child, output }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- output of the node at {} -----\n{}\n----- end -----",
                self.url,
                self.output()
            );
        }
    }
}

/// Nodes on one fresh PostgreSQL database, each with its own data dir, with the project
/// [`super::ORG`]/[`super::PROJECT`], the superuser [`super::EMAIL`] and a token.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The project's key and id (see [`Cluster::dsn`]).
    pub key: String,
    pub project: String,
    /// An API token of the superuser.
    pub token: String,
    _dirs: Vec<tempfile::TempDir>,
    // Dropped last: the database outlives the nodes.
    _db: TestDatabase,
}

impl Cluster {
    /// Starts `n` nodes at once on a fresh database on the server of `admin_url`.
    pub fn start(admin_url: String, n: usize) -> Cluster {
        Cluster::start_with(admin_url, n, &[])
    }

    /// Like [`Cluster::start`], every node with extra `serve` options.
    pub fn start_with(admin_url: String, n: usize, extra: &[&str]) -> Cluster {
        let db = TestDatabase::postgres(admin_url);
        let dirs: Vec<_> = (0..n)
            .map(|_| {
                tempfile::Builder::new()
                    .prefix("faultline-ui-node-")
                    .tempdir()
                    .unwrap()
            })
            .collect();
        let nodes: Vec<Node> = thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|d| s.spawn(|| Node::start_with(d.path(), &db, extra)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let setup = super::setup_in(
            dirs[0].path(),
            &db,
            &format!("{}/{}", super::ORG, super::PROJECT),
            &nodes[0].url,
            super::EMAIL,
        );
        Cluster {
            nodes,
            key: setup.key,
            project: setup.project,
            token: setup.token,
            _dirs: dirs,
            _db: db,
        }
    }

    /// The project's DSN pointing at node `node`.
    pub fn dsn(&self, node: usize) -> String {
        let host = self.nodes[node].url.trim_start_matches("http://");
        format!("http://{}@{host}/{}", self.key, self.project)
    }
}
