//! Harness for the end-to-end tests: the real `faultline` binary, real SDKs, the `/api/0/` API.
//!
//! - [`Server`] starts `faultline serve` on a free port with a temporary data dir, creates a
//!   project, a superuser and an API token through the CLI, and kills the server on drop (printing
//!   its output if the test failed).
//! - [`Server::get`] / [`Server::api`] talk to the read API with `Authorization: Bearer`.
//! - [`wait_until`] polls, because events are digested asynchronously.
//! - [`scenario`] holds what every SDK test reports and asserts: each `tests/sdk_*.rs` runs its
//!   client against a fresh server and checks, through the API, what a user would see.
//!
//! The SDK clients live in `tests/sdk/` and are installed by `scripts/test.sh`; a missing install
//! fails the test with a message naming that script, never skips it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod mail;
pub mod ui;
pub mod web;

/// Organization and project every test server gets.
pub const ORG: &str = "acme";
pub const PROJECT: &str = "checkout";
/// The superuser created for the API token.
pub const EMAIL: &str = "a@example.com";
pub const PASSWORD: &str = "correct horse battery staple";

/// How long to wait for asynchronous work (startup, digest) before failing.
const WAIT: Duration = Duration::from_secs(15);
/// How long an SDK client may run before it is killed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `faultline serve` with a project, a superuser and an API token.
pub struct Server {
    /// `http://127.0.0.1:PORT`, as printed by the server.
    pub url: String,
    /// The project's DSN, as printed by `faultline project create`.
    pub dsn: String,
    /// An API token for [`EMAIL`], as printed by `faultline token create`.
    pub token: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
    // Dropped after the child is killed (fields drop in declaration order, `drop` runs first).
    data_dir: tempfile::TempDir,
    database: TestDatabase,
}

impl Server {
    /// Starts the binary, waits for its "listening" line and sets up project, user and token.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Like [`Server::start`], with extra `serve` options.
    pub fn start_with(extra: &[&str]) -> Server {
        let data_dir = tempfile::Builder::new()
            .prefix("faultline-e2e-")
            .tempdir()
            .expect("create a temporary data dir");
        let database = TestDatabase::new();
        let mut child = Command::new(bin())
            .envs(database.env())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn `faultline serve`");

        // Drain both pipes for the whole life of the server so it never blocks on a full pipe;
        // stdout lines also go to `lines` so we can spot the "listening" line.
        let output = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::channel();
        drain(
            child.stdout.take().unwrap(),
            "stdout",
            output.clone(),
            Some(lines_tx),
        );
        drain(child.stderr.take().unwrap(), "stderr", output.clone(), None);

        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("Faultline listening on ").nth(1) {
                        break rest.trim().trim_end_matches('/').to_string();
                    }
                }
                Err(err) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "`faultline serve` never printed `Faultline listening on http://…` \
                         ({err}; exit status: {status:?}). Its output:\n{}",
                        output.lock().unwrap().join("\n")
                    );
                }
            }
        };

        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut server = Server {
            url,
            dsn: String::new(),
            token: String::new(),
            child,
            output,
            agent,
            data_dir,
            database,
        };
        let setup = setup_in(
            server.data_dir.path(),
            &server.database,
            &format!("{ORG}/{PROJECT}"),
            &server.url,
            EMAIL,
        );
        server.dsn = setup.dsn;
        server.token = setup.token;
        assert!(
            server.dsn.starts_with("http://") && server.dsn.contains('@'),
            "`faultline project create` should print only a DSN, printed {:?}",
            server.dsn
        );
        assert!(
            !server.token.is_empty() && !server.token.contains(char::is_whitespace),
            "`faultline token create` should print only a token, printed {:?}",
            server.token
        );
        server
    }

    /// Runs `faultline ARGS --data-dir <this server's>` and returns its trimmed stdout.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(bin());
        cmd.envs(self.database.env())
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run faultline {args:?}: {e}"));
        assert!(
            out.status.success(),
            "`faultline {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `GET {url}{path}` with the API token; returns status and body text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{}", self.url, path);
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        (status, body)
    }

    /// `GET /api/0/{path}`, which must answer 200 with JSON.
    pub fn api(&self, path: &str) -> Value {
        let path = format!("/api/0/{path}");
        let (status, body) = self.get(&path);
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} answered invalid JSON ({e}): {body}"))
    }

    /// All issues of the test project, whatever their status.
    pub fn issues(&self) -> Vec<Value> {
        let path = format!("projects/{ORG}/{PROJECT}/issues/?query=");
        match self.api(&path) {
            Value::Array(issues) => issues,
            other => panic!("GET /api/0/{path} should answer a JSON array, answered {other}"),
        }
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- faultline serve output -----\n{}\n----- end of faultline serve output -----",
                self.output()
            );
        }
    }
}

/// A `faultline serve` started by [`start_in`] on a data dir the test keeps (to restart a
/// server on it, or to migrate it); killed (`kill -9`) on drop.
pub struct Process {
    pub child: Child,
    pub url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `faultline serve` on a free port, in `data_dir`, on `db`; waits for "listening".
pub fn start_in(data_dir: &Path, db: &TestDatabase) -> Process {
    start_in_with(data_dir, db, &[])
}

/// [`start_in`] with more `serve` arguments.
pub fn start_in_with(data_dir: &Path, db: &TestDatabase, extra: &[&str]) -> Process {
    let mut child = Command::new(bin())
        .envs(db.env())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn faultline");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Faultline listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server prints its address");
    Process { child, url }
}

/// Runs `faultline ARGS --data-dir DATA_DIR` on `db`; returns its trimmed stdout.
pub fn cli_in(data_dir: &Path, db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(bin());
    cmd.envs(db.env())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run faultline");
    assert!(
        out.status.success(),
        "faultline {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a new installation gives a test: a project's DSN (and its parts) and a superuser's
/// API token.
pub struct Setup {
    pub dsn: String,
    /// The DSN's public key.
    pub key: String,
    /// The DSN's project id.
    pub project: String,
    pub token: String,
}

/// Creates `org/project`, a superuser `email` and a token for them, through the CLI.
pub fn setup_in(
    data_dir: &Path,
    db: &TestDatabase,
    slug: &str,
    public_url: &str,
    email: &str,
) -> Setup {
    let dsn = cli_in(
        data_dir,
        db,
        &["project", "create", slug, "--public-url", public_url],
        &[],
    );
    cli_in(
        data_dir,
        db,
        &["user", "create", "--email", email, "--superuser"],
        &[("FAULTLINE_PASSWORD", PASSWORD)],
    );
    let token = cli_in(data_dir, db, &["token", "create", "--email", email], &[]);
    let (key, project) = dsn_parts(&dsn);
    Setup {
        dsn,
        key,
        project,
        token,
    }
}

/// The public key and the project id of a DSN.
pub fn dsn_parts(dsn: &str) -> (String, String) {
    let rest = dsn.split_once("://").map_or(dsn, |(_, r)| r);
    let key = rest.split('@').next().unwrap_or_default().to_string();
    let project = dsn.rsplit('/').next().unwrap_or_default().to_string();
    (key, project)
}

/// The database of one test server.
///
/// SQLite in the server's data dir by default. With `FAULTLINE_TEST_BACKEND=postgres` (set by
/// `scripts/test.sh` for its second pass), a fresh PostgreSQL database on the server named by
/// `FAULTLINE_TEST_DATABASE_URL`, dropped when the test ends.
pub struct TestDatabase {
    url: Option<String>,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// The backend this test pass runs on (see the type's docs).
    pub fn new() -> TestDatabase {
        if std::env::var("FAULTLINE_TEST_BACKEND").as_deref() == Ok("postgres") {
            let admin_url = std::env::var("FAULTLINE_TEST_DATABASE_URL").expect(
                "FAULTLINE_TEST_BACKEND=postgres needs FAULTLINE_TEST_DATABASE_URL (postgres://…)",
            );
            TestDatabase::postgres(admin_url)
        } else {
            TestDatabase::sqlite()
        }
    }

    /// SQLite in the server's data dir, whatever the test pass.
    pub fn sqlite() -> TestDatabase {
        TestDatabase {
            url: None,
            admin_url: String::new(),
            name: String::new(),
        }
    }

    /// The PostgreSQL URL of this database, if it is one.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// A fresh PostgreSQL database on the server of `admin_url`, dropped on drop.
    pub fn postgres(admin_url: String) -> TestDatabase {
        let name = format!("faultline_e2e_{}", uuid_simple());
        let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        TestDatabase {
            url: Some(format!("{base}/{name}")),
            admin_url,
            name,
        }
    }

    /// Environment for every `faultline` command of the test.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match &self.url {
            Some(url) => vec![("FAULTLINE_DATABASE_URL", url.clone())],
            None => Vec::new(),
        }
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        TestDatabase::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.url.is_none() {
            return;
        }
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn uuid_simple() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

// ---------------------------------------------------------------------------------------------
// HTTP answers
// ---------------------------------------------------------------------------------------------

/// An answer: status, headers (lower-case names) and the body as JSON (or a JSON string of the
/// text when it is not JSON).
pub struct Answer {
    /// What was asked (`GET /api/0/…`), for failure messages.
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Fails unless the status is `status`; returns the body.
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "{} answered {} (expected {status}): {}",
            self.what, self.status, self.body
        );
        &self.body
    }

    /// Fails unless the status is `status` and the body carries a non-empty JSON `detail`.
    pub fn expect_error(&self, status: u16) {
        self.expect(status);
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{} answered {status} but without a JSON `detail`: {}",
            self.what,
            self.body
        );
    }

    pub fn array(&self) -> Vec<Value> {
        match self.expect(200) {
            Value::Array(a) => a.clone(),
            other => panic!("{} should answer a JSON array, answered {other}", self.what),
        }
    }
}

/// An HTTP client that returns 4xx/5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Sends `request` (`"METHOD /path"`) with `header` and `body` twice on one connection, each
/// time the headers first and the body 200 ms later, as a slow client would; returns the two
/// answers' status codes (or what went wrong instead).
pub fn twice_on_one_connection(
    server: &Server,
    request: &str,
    header: &str,
    body: &str,
) -> Vec<String> {
    use std::io::Write;
    let addr = server.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut one = || -> std::io::Result<String> {
        write!(
            conn,
            "{request} HTTP/1.1\r\nHost: {addr}\r\n{header}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        conn.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        conn.write_all(body.as_bytes())?;
        // The answer: status line, headers up to the blank line, then Content-Length bytes.
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line.split_whitespace().nth(1).unwrap_or("none").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        reader.read_exact(&mut vec![0; length])?;
        Ok(status)
    };
    (0..2)
        .map(|_| one().unwrap_or_else(|e| e.to_string()))
        .collect()
}

/// Reads a response into an [`Answer`].
pub fn answer(what: String, resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut resp = resp.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        what,
        status,
        headers,
        body,
    }
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_faultline")
}

fn drain(
    pipe: impl Read + Send + 'static,
    name: &'static str,
    output: Arc<Mutex<Vec<String>>>,
    lines: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &lines {
                let _ = tx.send(line.clone());
            }
            output.lock().unwrap().push(format!("[{name}] {line}"));
        }
    });
}

/// Polls `check` every 100 ms until it returns `Ok`, for up to 15 s; then panics with `what`
/// and the last `Err` (which should describe what was seen instead).
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {WAIT:?} waiting until {what}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SDK clients (tests/sdk)
// ---------------------------------------------------------------------------------------------

/// `tests/sdk`, where the client scripts and their installed SDKs live.
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
}

fn not_installed(what: &str) -> ! {
    panic!(
        "{what}. The end-to-end tests need the pinned SDKs: run `scripts/test.sh` (it installs \
         Chromium, `pip install -r tests/sdk/requirements.txt` and `npm ci` in tests/sdk)."
    )
}

/// Fails unless `tests/sdk/node_modules` has each package at the version `package.json` pins.
pub fn require_node_packages(packages: &[&str]) {
    let dir = sdk_dir();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    for package in packages {
        let pinned = manifest["dependencies"][*package]
            .as_str()
            .unwrap_or_else(|| {
                panic!("tests/sdk/package.json does not list {package}");
            });
        let installed = dir.join("node_modules").join(package).join("package.json");
        let Ok(text) = std::fs::read_to_string(&installed) else {
            not_installed(&format!("{} is missing", installed.display()));
        };
        let version: Value = serde_json::from_str(&text).unwrap();
        if version["version"] != pinned {
            not_installed(&format!(
                "{package} {} is installed in tests/sdk/node_modules but package.json pins {pinned}",
                version["version"]
            ));
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        not_installed("`node` is not on PATH");
    }
}

/// The Python interpreter for the sentry-python client: `$FAULTLINE_TEST_PYTHON` or `python3`.
pub fn python() -> String {
    std::env::var("FAULTLINE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fails unless `sentry_sdk` imports at the version `tests/sdk/requirements.txt` pins.
pub fn require_python_sdk() {
    let requirements = std::fs::read_to_string(sdk_dir().join("requirements.txt")).unwrap();
    let pinned = requirements
        .lines()
        .find_map(|l| l.trim().strip_prefix("sentry-sdk=="))
        .expect("tests/sdk/requirements.txt pins sentry-sdk==VERSION")
        .trim()
        .to_string();
    let out = Command::new(python())
        .args(["-c", "import sentry_sdk; print(sentry_sdk.VERSION)"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let installed = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if installed != pinned {
                not_installed(&format!(
                    "sentry-sdk {installed} is installed for {} but requirements.txt pins {pinned}",
                    python()
                ));
            }
        }
        Ok(out) => not_installed(&format!(
            "`{} -c 'import sentry_sdk'` failed: {}",
            python(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => not_installed(&format!("cannot run {}: {e}", python())),
    }
}

/// The Chromium the browser client drives: `$CHROMIUM_PATH` or `/usr/bin/chromium`.
pub fn require_chromium() {
    let path = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    if !Path::new(&path).exists() {
        not_installed(&format!("Chromium is not installed at {path}"));
    }
}

/// Runs an SDK client script with the DSN as its last argument, in `tests/sdk`. Panics with the
/// client's output unless it exits 0 and its last stdout line is its JSON report.
pub fn run_client(program: &str, args: &[&str], dsn: &str) -> Value {
    let mut child = Command::new(program)
        .args(args)
        .arg(dsn)
        .current_dir(sdk_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program} {args:?}: {e}"));
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
    let out = Output {
        status: status.unwrap_or_default(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let describe = || {
        format!(
            "`{program} {}` {}:\n----- stdout -----\n{stdout}\n----- stderr -----\n{stderr}\n-----",
            args.join(" "),
            match status {
                Some(s) => format!("exited with {s}"),
                None => format!("was killed after {CLIENT_TIMEOUT:?}"),
            }
        )
    };
    if !out.status.success() || status.is_none() {
        panic!("SDK client failed: {}", describe());
    }
    stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v.get("exception_ids").is_some())
        })
        .unwrap_or_else(|| panic!("SDK client printed no JSON report: {}", describe()))
}

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

// ---------------------------------------------------------------------------------------------
// The scenario every SDK reports, and what a user must then see through the API
// ---------------------------------------------------------------------------------------------

pub mod scenario {
    //! Every client (tests/sdk/*, and the Rust `sentry` crate in tests/sdk_rust.rs) reports:
    //! 1. `CheckoutError("checkout failed")` caused by `ConfigError("missing setting:
    //!    payment_gateway")`, raised from named functions, with user `user-42`
    //!    (`jane@example.com`, `jane`), tag `customer_tier: pro`, breadcrumbs (one is
    //!    `checkout started`, category `checkout`, level `warning`), release `sdk-test@1.0.0`,
    //!    environment `e2e`;
    //! 2. the same error again, through the same code path;
    //! 3. `Order 991 stuck` and `Order 992 stuck` as messages.
    //!
    //! The checks below assert what a user sees through `/api/0/` afterwards.

    use super::{Server, wait_until};
    use serde_json::{Value, json};

    pub const RELEASE: &str = "sdk-test@1.0.0";
    pub const ENVIRONMENT: &str = "e2e";

    /// What differs between SDKs.
    pub struct Sdk {
        /// `sdk.name` the SDK reports, e.g. `sentry.python` (a `.FRAMEWORK` suffix is accepted).
        pub sdk_name: &'static str,
        /// The SDK version pinned in tests/sdk (or Cargo.toml).
        pub sdk_version: &'static str,
        /// Event `platform`.
        pub platform: &'static str,
        /// Stack-trace expectations; `None` when the SDK sends exceptions without frames.
        pub frames: Option<Frames>,
    }

    /// Function and file names of the client's code path.
    pub struct Frames {
        /// The file holding the functions; `filename` or `absPath` must end with it.
        pub file: &'static str,
        /// Catches the error and captures it.
        pub reporter: &'static str,
        /// Raises the outer error (crashing frame of the outer exception).
        pub outer: &'static str,
        /// Raises the cause (crashing frame of the cause).
        pub cause: &'static str,
        /// Whether in-app frames must carry source `context` (Python and Node read files).
        pub context: bool,
    }

    /// A server after a client reported the scenario to it.
    pub struct Reported {
        pub server: Server,
        /// The client's JSON report: `exception_ids`, `message_ids` (event ids as sent).
        pub client: Value,
    }

    impl Reported {
        /// Runs `report` (which sends the scenario to the DSN it is given) against a new server.
        pub fn run(report: impl FnOnce(&str) -> Value) -> Reported {
            let server = Server::start();
            let client = report(&server.dsn);
            Reported { server, client }
        }

        fn ids(&self, key: &str) -> Vec<String> {
            let ids: Vec<String> = self.client[key]
                .as_array()
                .unwrap_or_else(|| panic!("client report has no {key}: {}", self.client))
                .iter()
                .map(|id| id.as_str().unwrap().replace('-', "").to_lowercase())
                .collect();
            assert_eq!(
                ids.len(),
                2,
                "client should report two {key}: {}",
                self.client
            );
            ids
        }

        /// The one issue whose title starts with `prefix` (or contains it, with `contains`),
        /// once its events add up to two. Fails if they were split into several issues.
        fn issue_with_two_events(&self, what: &str, matches: impl Fn(&str) -> bool) -> Value {
            let issues = wait_until(&format!("{what} add up to 2 events"), || {
                let issues = self.server.issues();
                let found: Vec<Value> = issues
                    .iter()
                    .filter(|i| matches(i["title"].as_str().unwrap_or_default()))
                    .cloned()
                    .collect();
                let total: u64 = found.iter().map(|i| count(&i["count"])).sum();
                if total >= 2 {
                    Ok(found)
                } else {
                    Err(format!("issues: {}", Value::Array(issues)))
                }
            });
            assert_eq!(
                issues.len(),
                1,
                "both reports of {what} should be grouped into one issue, got {}: {:#}",
                issues.len(),
                Value::Array(issues.clone())
            );
            issues.into_iter().next().unwrap()
        }

        /// The issue of the chained error, once both reports are in it.
        pub fn exception_issue(&self) -> Value {
            self.issue_with_two_events("the two `CheckoutError: checkout failed` errors", |t| {
                t.starts_with("CheckoutError")
            })
        }

        /// The issue of the two `Order N stuck` messages, once both are in it.
        pub fn message_issue(&self) -> Value {
            self.issue_with_two_events("the `Order 991 stuck` / `Order 992 stuck` messages", |t| {
                t.contains("Order") && t.contains("stuck")
            })
        }

        /// `GET /api/0/issues/{id}/events/latest/` of the chained error's issue.
        pub fn latest_exception_event(&self) -> Value {
            let issue = self.exception_issue();
            let event = self
                .server
                .api(&format!("issues/{}/events/latest/", id(&issue)));
            let event_id = event["eventID"].as_str().unwrap_or_default().to_string();
            assert!(
                self.ids("exception_ids").contains(&event_id),
                "latest event's eventID {event_id:?} should be one of the ids the SDK sent, {:?}",
                self.ids("exception_ids")
            );
            event
        }
    }

    /// Issue `count` is a string in Sentry's API; read a number too so that a wrong type fails
    /// in the assertion that names it, not in the wait.
    fn count(value: &Value) -> u64 {
        match value {
            Value::String(s) => s.parse().unwrap_or(0),
            Value::Number(n) => n.as_u64().unwrap_or(0),
            _ => 0,
        }
    }

    fn id(issue: &Value) -> String {
        match &issue["id"] {
            Value::String(s) => s.clone(),
            other => panic!("issue `id` should be a string, is {other}: {issue:#}"),
        }
    }

    /// The `data` of the event's entry of `kind`, failing with the event if it has none.
    pub fn entry<'a>(event: &'a Value, kind: &str) -> &'a Value {
        event["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("event has no `entries` array: {event:#}"))
            .iter()
            .find(|e| e["type"] == kind)
            .map(|e| &e["data"])
            .unwrap_or_else(|| panic!("event has no `{kind}` entry: {:#}", event["entries"]))
    }

    /// The value of tag `key` in an event's `tags: [{key, value}]`.
    pub fn tag<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
        event["tags"]
            .as_array()
            .unwrap_or_else(|| {
                panic!("event `tags` should be an array of {{key, value}}: {event:#}")
            })
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
    }

    /// Same error twice → one issue, `count` "2", one user, culprit; both events listed under it.
    pub fn repeated_error_is_one_issue(r: &Reported, sdk: &Sdk) {
        let issue = r.exception_issue();
        assert_eq!(
            issue["count"],
            json!("2"),
            "issue `count` (a string): {issue:#}"
        );
        assert_eq!(
            issue["userCount"],
            json!(1),
            "issue `userCount` (a number): {issue:#}"
        );
        assert_eq!(
            issue["title"], "CheckoutError: checkout failed",
            "issue title: {issue:#}"
        );
        assert_eq!(issue["level"], "error", "issue level: {issue:#}");
        assert_eq!(issue["status"], "unresolved", "issue status: {issue:#}");
        // The culprit names the most recent in-app frame; without frames it may be empty.
        let culprit = issue["culprit"].as_str();
        assert!(
            culprit.is_some(),
            "issue `culprit` should be a string: {issue:#}"
        );
        if let Some(frames) = &sdk.frames {
            assert!(
                culprit.unwrap().contains(frames.outer),
                "issue `culprit` should name the crashing function {}: {issue:#}",
                frames.outer
            );
        }
        for key in ["firstSeen", "lastSeen", "permalink"] {
            assert!(
                issue[key].as_str().is_some_and(|s| !s.is_empty()),
                "issue `{key}` should be a non-empty string: {issue:#}"
            );
        }
        assert!(issue["metadata"].is_object(), "issue `metadata`: {issue:#}");

        let events = r.server.api(&format!("issues/{}/events/", id(&issue)));
        let mut listed: Vec<String> = events
            .as_array()
            .unwrap_or_else(|| panic!("issue events should be an array: {events:#}"))
            .iter()
            .map(|e| e["eventID"].as_str().unwrap_or_default().to_string())
            .collect();
        listed.sort();
        let mut sent = r.ids("exception_ids");
        sent.sort();
        assert_eq!(
            listed, sent,
            "events listed under the issue vs. sent: {events:#}"
        );
    }

    /// The chain reads cause → outer; frames read oldest → crashing frame, with context lines
    /// where the SDK sends them.
    pub fn exception_chain_and_frames(r: &Reported, sdk: &Sdk) {
        let event = r.latest_exception_event();
        let values = entry(&event, "exception")["values"]
            .as_array()
            .unwrap_or_else(|| panic!("exception entry has no `values`: {event:#}"))
            .clone();
        let chain: Vec<(&str, &str)> = values
            .iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap_or("?"),
                    v["value"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        assert_eq!(
            chain,
            [
                ("ConfigError", "missing setting: payment_gateway"),
                ("CheckoutError", "checkout failed")
            ],
            "exception values should be ordered cause first, outermost last"
        );
        assert_eq!(
            event["title"], "CheckoutError: checkout failed",
            "event title"
        );

        let Some(expect) = &sdk.frames else { return };
        for (value, crashing, caller) in [
            (&values[0], expect.cause, expect.outer),
            (&values[1], expect.outer, expect.reporter),
        ] {
            let frames = value["stacktrace"]["frames"]
                .as_array()
                .unwrap_or_else(|| panic!("{} has no stacktrace frames: {value:#}", value["type"]));
            let functions: Vec<&str> = frames
                .iter()
                .map(|f| f["function"].as_str().unwrap_or(""))
                .collect();
            // Oldest first: ... caller, crashing (the crashing frame last).
            assert_eq!(
                functions.last().copied(),
                Some(crashing),
                "{}: the crashing function should be the last frame; functions: {functions:?}",
                value["type"]
            );
            let caller_at = functions.iter().position(|f| *f == caller);
            assert_eq!(
                caller_at,
                Some(functions.len() - 2),
                "{}: {caller} should be the frame just before {crashing}; functions: {functions:?}",
                value["type"]
            );
            let last = frames.last().unwrap();
            let file = [&last["filename"], &last["absPath"]]
                .into_iter()
                .filter_map(|v| v.as_str())
                .any(|f| f.ends_with(expect.file));
            assert!(file, "crashing frame should name {}: {last:#}", expect.file);
            assert_eq!(last["inApp"], true, "crashing frame `inApp`: {last:#}");
            assert!(
                last["lineNo"].as_u64().is_some(),
                "crashing frame `lineNo`: {last:#}"
            );
            if expect.context {
                let line_no = last["lineNo"].as_u64().unwrap();
                let context = last["context"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let crash_line = context
                    .iter()
                    .find(|c| c[0].as_u64() == Some(line_no))
                    .and_then(|c| c[1].as_str());
                let raised = format!("{}(", value["type"].as_str().unwrap());
                assert!(
                    crash_line.is_some_and(|l| l.contains(&raised)),
                    "crashing frame `context` should hold [lineNo, source] pairs including line \
                     {line_no} raising {raised}…: {last:#}"
                );
                assert!(
                    context.len() > 1,
                    "context should include surrounding lines: {last:#}"
                );
            }
        }
    }

    /// User, the custom tag, breadcrumbs and SDK identity as the SDK sent them.
    pub fn user_tags_breadcrumbs_and_sdk(r: &Reported, sdk: &Sdk) {
        let event = r.latest_exception_event();
        let user = &event["user"];
        assert_eq!(user["id"], "user-42", "event user: {user:#}");
        assert_eq!(user["email"], "jane@example.com", "event user: {user:#}");
        assert_eq!(user["username"], "jane", "event user: {user:#}");

        assert_eq!(
            tag(&event, "customer_tier"),
            Some("pro"),
            "tags: {:#}",
            event["tags"]
        );

        let crumbs = entry(&event, "breadcrumbs")["values"]
            .as_array()
            .unwrap_or_else(|| panic!("breadcrumbs entry has no `values`: {event:#}"))
            .clone();
        let find = |message: &str| {
            crumbs
                .iter()
                .find(|c| c["message"] == message)
                .unwrap_or_else(|| panic!("no breadcrumb {message:?} in {crumbs:#?}"))
        };
        let started = find("checkout started");
        assert_eq!(started["category"], "checkout", "breadcrumb: {started:#}");
        assert_eq!(started["level"], "warning", "breadcrumb: {started:#}");
        assert!(
            !started["timestamp"].is_null(),
            "breadcrumb timestamp: {started:#}"
        );
        let cart = find("added item to cart");
        assert_eq!(cart["data"]["sku"], "SKU-1", "breadcrumb data: {cart:#}");
        find("user logged in");

        // sentry-python names itself after a detected framework (`sentry.python.flask`).
        assert!(
            event["sdk"]["name"]
                .as_str()
                .is_some_and(|n| n == sdk.sdk_name || n.starts_with(&format!("{}.", sdk.sdk_name))),
            "event sdk.name should be {} (or {}.FRAMEWORK): {:#}",
            sdk.sdk_name,
            sdk.sdk_name,
            event["sdk"]
        );
        assert_eq!(
            event["sdk"]["version"], sdk.sdk_version,
            "event sdk: {:#}",
            event["sdk"]
        );
        assert_eq!(event["platform"], sdk.platform, "event platform");
    }

    /// Release and environment as set in `init`.
    pub fn release_and_environment(r: &Reported) {
        let event = r.latest_exception_event();
        let release = match &event["release"] {
            Value::Object(o) => o.get("version").cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        assert_eq!(release, RELEASE, "event release: {:#}", event["release"]);
        assert_eq!(
            tag(&event, "environment"),
            Some(ENVIRONMENT),
            "tags: {:#}",
            event["tags"]
        );
        assert_eq!(
            tag(&event, "release"),
            Some(RELEASE),
            "tags: {:#}",
            event["tags"]
        );
    }

    /// The issue's tag summary counts the custom tag on both events.
    pub fn issue_tag_summary(r: &Reported) {
        let issue = r.exception_issue();
        let tags = r.server.api(&format!("issues/{}/tags/", id(&issue)));
        let tier = tags
            .as_array()
            .unwrap_or_else(|| panic!("issue tags should be an array: {tags:#}"))
            .iter()
            .find(|t| t["key"] == "customer_tier")
            .unwrap_or_else(|| panic!("no customer_tier in issue tags: {tags:#}"));
        assert_eq!(tier["uniqueValues"], 1, "customer_tier: {tier:#}");
        assert_eq!(tier["totalValues"], 2, "customer_tier: {tier:#}");
        let top = &tier["topValues"][0];
        assert_eq!(top["value"], "pro", "customer_tier top value: {tier:#}");
        assert_eq!(top["count"], 2, "customer_tier top value: {tier:#}");
        assert!(tier["name"].is_string(), "customer_tier `name`: {tier:#}");
    }

    /// "Order 991 stuck" and "Order 992 stuck" → one issue, `count` "2", message shown.
    pub fn parameterized_messages_group(r: &Reported) {
        let issue = r.message_issue();
        assert_eq!(
            issue["count"],
            json!("2"),
            "issue `count` (a string): {issue:#}"
        );
        let event = r
            .server
            .api(&format!("issues/{}/events/latest/", id(&issue)));
        let formatted = entry(&event, "message")["formatted"]
            .as_str()
            .unwrap_or_default();
        assert!(
            ["Order 991 stuck", "Order 992 stuck"].contains(&formatted),
            "message entry `formatted` should be the message as sent: {event:#}"
        );
        let event_id = event["eventID"].as_str().unwrap_or_default().to_string();
        assert!(
            r.ids("message_ids").contains(&event_id),
            "latest event's eventID {event_id:?} should be one the SDK sent: {}",
            r.client
        );
    }
}
