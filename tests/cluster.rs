//! Several nodes on one PostgreSQL database: three `faultline serve` processes, each with its own
//! data dir and spool, behind no balancer at all — clients talk to all three at once.
//!
//! What must hold: every acknowledged event is stored exactly once, the counters add up exactly,
//! and the first events of one new error arriving at all three nodes at the same instant make
//! one issue, not three.

mod common;

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{Process, TestDatabase, agent, start_in, wait_until};
use serde_json::{Value, json};

struct Cluster {
    nodes: Vec<Process>,
    key: String,
    project: String,
    token: String,
    _dirs: Vec<tempfile::TempDir>,
    _db: TestDatabase,
}

impl Cluster {
    fn start(admin_url: String) -> Cluster {
        let db = TestDatabase::postgres(admin_url);
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        // All three start at once: migrations must cope (advisory lock).
        let nodes: Vec<Process> = thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|d| s.spawn(|| start_in(d.path(), &db)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let common::Setup {
            key,
            project,
            token,
            ..
        } = common::setup_in(
            dirs[0].path(),
            &db,
            "acme/cluster",
            &nodes[0].url,
            "c@example.com",
        );
        Cluster {
            nodes,
            key,
            project,
            token,
            _dirs: dirs,
            _db: db,
        }
    }

    fn dsn(&self, node: usize) -> String {
        let host = self.nodes[node].url.trim_start_matches("http://");
        format!("http://{}@{host}/{}", self.key, self.project)
    }

    /// Posts one event to a node; true when acknowledged with 200.
    fn send(&self, node: usize, event_id: &str, event: &Value) -> bool {
        let body = format!("{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{event}");
        agent()
            .post(&format!(
                "{}/api/{}/envelope/",
                self.nodes[node].url, self.project
            ))
            .header(
                "X-Sentry-Auth",
                &format!("Sentry sentry_key={}, sentry_version=7", self.key),
            )
            .send(body.as_bytes())
            .is_ok_and(|r| r.status() == 200)
    }

    /// Every issue of the project, read through one node.
    fn issues(&self, node: usize) -> Vec<Value> {
        let mut resp = agent()
            .get(&format!(
                "{}/api/0/projects/acme/cluster/issues/?query=&statsPeriod=&limit=100",
                self.nodes[node].url
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap();
        let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        body.as_array().cloned().unwrap_or_default()
    }

    fn event_status(&self, node: usize, event_id: &str) -> u16 {
        agent()
            .get(&format!(
                "{}/api/0/projects/acme/cluster/events/{event_id}/",
                self.nodes[node].url
            ))
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap()
            .status()
            .as_u16()
    }
}

fn count(issue: &Value) -> i64 {
    issue["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn admin_url() -> Option<String> {
    let url = std::env::var("FAULTLINE_TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!(
            "skipped: FAULTLINE_TEST_DATABASE_URL is not set (several nodes need PostgreSQL)"
        );
    }
    url
}

#[test]
fn the_same_new_error_at_three_nodes_at_once_is_one_issue() {
    let Some(url) = admin_url() else { return };
    let cluster = Arc::new(Cluster::start(url));
    let rounds = 8;
    for round in 0..rounds {
        let barrier = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3)
            .map(|node| {
                let (cluster, barrier) = (cluster.clone(), barrier.clone());
                thread::spawn(move || {
                    let event = json!({
                        "exception": {"values": [{"type": format!("RaceError{round}"), "value": "first seen everywhere",
                            "stacktrace": {"frames": [{"module": "app.race", "function": format!("round_{round}"), "lineno": node + 1, "in_app": true}]}}]},
                        "user": {"id": format!("user-{node}")},
                    });
                    barrier.wait();
                    assert!(cluster.send(node, &format!("{round:016x}{node:016x}"), &event));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let issues = wait_until("every race event is digested", || {
        let issues = cluster.issues(0);
        let total: i64 = issues.iter().map(count).sum();
        if total == 3 * rounds {
            Ok(issues)
        } else {
            Err(format!("{total} events in {} issues", issues.len()))
        }
    });
    assert_eq!(
        issues.len() as i64,
        rounds,
        "one issue per new error, not one per node: {issues:#?}"
    );
    for issue in &issues {
        assert_eq!(count(issue), 3, "{issue}");
        assert_eq!(issue["userCount"], 3, "{issue}");
    }
}

#[test]
fn load_and_real_sdks_on_three_nodes_add_up_exactly() {
    let Some(url) = admin_url() else { return };
    common::require_python_sdk();
    let cluster = Arc::new(Cluster::start(url));

    // Real SDK clients, one per node, while a load runs against all three.
    let sdk_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let sdk_clients: Vec<_> = (0..3)
        .map(|node| {
            let (dsn, sdk_ids) = (cluster.dsn(node), sdk_ids.clone());
            thread::spawn(move || {
                let report = common::run_client(&common::python(), &["python_client.py"], &dsn);
                let mut ids = sdk_ids.lock().unwrap();
                for key in ["exception_ids", "message_ids"] {
                    for id in report[key].as_array().into_iter().flatten() {
                        ids.push(id.as_str().unwrap().replace('-', ""));
                    }
                }
            })
        })
        .collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let senders: Vec<_> = (0..6)
        .map(|worker| {
            let (cluster, acked) = (cluster.clone(), acked.clone());
            thread::spawn(move || {
                for n in 0..150 {
                    let node = (worker + n) % 3;
                    let id = format!("{worker:08x}{n:024x}");
                    let group = n % 5;
                    let tier = if n % 2 == 0 { "free" } else { "pro" };
                    let event = json!({
                        "exception": {"values": [{"type": format!("LoadError{group}"), "value": "under load",
                            "stacktrace": {"frames": [{"module": "app.load", "function": format!("work_{group}"), "in_app": true}]}}]},
                        "user": {"id": format!("u{}", n % 40)},
                        "tags": {"node": node.to_string(), "tier": tier},
                    });
                    if cluster.send(node, &id, &event) {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    for h in senders.into_iter().chain(sdk_clients) {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sdk_ids = sdk_ids.lock().unwrap().clone();
    assert_eq!(acked.len(), 900, "every load event should be acknowledged");
    let expected = (acked.len() + sdk_ids.len()) as i64;
    let issues = wait_until("everything acknowledged is digested", || {
        let issues = cluster.issues(1);
        let total: i64 = issues.iter().map(count).sum();
        if total == expected {
            Ok(issues)
        } else {
            Err(format!("{total} of {expected}"))
        }
    });
    // Exact counters: 180 events and 40 distinct users per load issue, whatever node took them.
    for group in 0..5 {
        let title = format!("LoadError{group}: under load");
        let issue = issues
            .iter()
            .find(|i| i["title"] == title.as_str())
            .unwrap_or_else(|| panic!("no issue {title}"));
        assert_eq!(count(issue), 180, "{issue}");
        assert_eq!(issue["userCount"], 8, "{issue}");
        let mut resp = agent()
            .get(&format!(
                "{}/api/0/issues/{}/tags/tier/values/",
                cluster.nodes[2].url,
                issue["id"].as_str().unwrap()
            ))
            .header("Authorization", &format!("Bearer {}", cluster.token))
            .call()
            .unwrap();
        let values: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let total: i64 = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["count"].as_i64().unwrap())
            .sum();
        assert_eq!(total, 180, "tag counts add up: {values}");
    }
    // Every acknowledged event and every SDK event is readable through any node.
    for (i, id) in acked.iter().chain(&sdk_ids).enumerate() {
        assert_eq!(
            cluster.event_status(i % 3, id),
            200,
            "event {id} is missing"
        );
    }
}

#[test]
fn a_key_rate_limit_holds_across_the_cluster() {
    let Some(url) = admin_url() else { return };
    let cluster = Cluster::start(url);
    let resp = agent()
        .put(&format!(
            "{}/api/0/projects/acme/cluster/keys/{}/",
            cluster.nodes[0].url, cluster.key
        ))
        .header("Authorization", &format!("Bearer {}", cluster.token))
        .send_json(json!({"rateLimit": {"count": 10, "window": 3600}}))
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Every node reads the new limit within its key cache lifetime.
    let event = json!({"message": "limited"});
    let mut id = 0u32;
    let mut next_id = || {
        id += 1;
        format!("{id:032x}")
    };
    // Six through node 0; after a sync interval the others know about them.
    let mut admitted = 0;
    for _ in 0..6 {
        admitted += cluster.send(0, &next_id(), &event) as i32;
    }
    assert_eq!(admitted, 6);
    // The rest of the window's allowance is 4, wherever the events go.
    wait_until("nodes 1 and 2 enforce the new limit", || {
        let mut admitted_now = 0;
        for attempt in 0..20 {
            let node = 1 + attempt % 2;
            if cluster.send(node, &next_id(), &event) {
                admitted_now += 1;
            } else {
                return Ok(());
            }
        }
        Err(format!("{admitted_now} admitted without a 429"))
    });
    let total = wait_until("what was admitted is digested", || {
        thread::sleep(Duration::from_millis(1500));
        let total: i64 = cluster.issues(0).iter().map(count).sum();
        Ok::<_, String>(total)
    });
    // Past half the allowance every admission is decided by the shared count: exact.
    assert_eq!(
        total, 10,
        "the cluster admitted {total} events under a limit of 10"
    );
}

/// The original of the one-function bundle below.
const MAP_ORIGINAL: &str = "// Checkout\nfunction applyDiscount(code) {\n  throw new Error(\"unknown code \" + code);\n}\n";
const MAP_MINIFIED: &str =
    "function a(b){throw new Error(\"unknown code \"+b)}\n//# sourceMappingURL=app.min.js.map\n";

/// A source map of [`MAP_MINIFIED`] back to [`MAP_ORIGINAL`].
fn map_json() -> Vec<u8> {
    let mut b = sourcemap::SourceMapBuilder::new(Some("app.min.js"));
    let src = b.add_source("../src/checkout.js");
    b.set_source_contents(src, Some(MAP_ORIGINAL));
    let name = b.add_name("applyDiscount");
    b.add_raw(0, 0, 1, 0, Some(src), None, false);
    b.add_raw(0, 9, 1, 9, Some(src), Some(name), false);
    b.add_raw(0, 15, 2, 2, Some(src), None, false);
    let mut out = Vec::new();
    b.into_sourcemap().to_writer(&mut out).unwrap();
    out
}

impl Cluster {
    /// Uploads a release file through a node with the legacy `…/releases/{version}/files/`.
    fn upload_release_file(&self, node: usize, release: &str, name: &str, data: &[u8]) {
        let boundary = "cluster-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = format!(
            "{}/api/0/projects/acme/cluster/releases/{release}/files/",
            self.nodes[node].url
        );
        let resp = agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..]);
        let answer = common::answer(format!("POST {url}"), resp);
        answer.expect(201);
    }

    /// A stored event, read through a node, once it is there.
    fn stored_event(&self, node: usize, event_id: &str) -> Value {
        wait_until(&format!("event {event_id} is stored"), || {
            let mut resp = agent()
                .get(&format!(
                    "{}/api/0/projects/acme/cluster/events/{event_id}/",
                    self.nodes[node].url
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .call()
                .map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{status}: {body}"));
            }
            serde_json::from_str::<Value>(&body).map_err(|e| e.to_string())
        })
    }
}

/// The top frame of a stored event's exception.
fn top_frame(event: &Value) -> Value {
    event["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "exception"))
        .and_then(|e| e["data"]["values"][0]["stacktrace"]["frames"].as_array())
        .and_then(|f| f.last())
        .cloned()
        .unwrap_or_else(|| panic!("no exception frames: {event:#}"))
}

#[test]
fn a_map_uploaded_through_one_node_resolves_frames_digested_by_the_others() {
    let Some(url) = admin_url() else { return };
    let cluster = Cluster::start(url);
    let release = "shop@7";
    let minified_event = |n: usize| {
        json!({
            "platform": "javascript",
            "release": release,
            "exception": {"values": [{"type": "Error", "value": format!("unknown code X{n}"),
                "stacktrace": {"frames": [{"filename": "https://shop.example/static/app.min.js",
                    "function": "a", "lineno": 1, "colno": 16, "in_app": true}]}}]},
        })
    };
    // Before the upload, node 2 finds no map (and remembers that for a few seconds).
    let early = format!("{:032x}", 0xe0);
    assert!(cluster.send(2, &early, &minified_event(0)));
    let frame = top_frame(&cluster.stored_event(0, &early));
    assert_eq!(frame["function"], "a", "{frame:#}");
    assert_eq!(frame["data"]["symbolicator_status"], "missing_release_file");

    cluster.upload_release_file(0, release, "~/static/app.min.js", MAP_MINIFIED.as_bytes());
    cluster.upload_release_file(0, release, "~/static/app.min.js.map", &map_json());

    // Node 1 never looked: its first event is resolved with what node 0 stored.
    let id = format!("{:032x}", 0xe1);
    assert!(cluster.send(1, &id, &minified_event(1)));
    let frame = top_frame(&cluster.stored_event(2, &id));
    assert_eq!(frame["function"], "applyDiscount", "{frame:#}");
    assert_eq!(frame["filename"], "src/checkout.js");
    assert_eq!(frame["lineNo"], 3);
    let line = json!([3, "  throw new Error(\"unknown code \" + code);"]);
    assert!(
        frame["context"]
            .as_array()
            .is_some_and(|c| c.contains(&line)),
        "{frame:#}"
    );
    assert_eq!(frame["data"]["resolved_with"], "release");

    // Node 2 resolves too once its remembered miss has expired.
    let mut n = 2;
    wait_until("node 2 resolves frames with the uploaded map", || {
        n += 1;
        let id = format!("{:032x}", 0xe000 + n);
        if !cluster.send(2, &id, &minified_event(n)) {
            return Err("not acknowledged".into());
        }
        let frame = top_frame(&cluster.stored_event(1, &id));
        match frame["function"].as_str() {
            Some("applyDiscount") => Ok(()),
            other => Err(format!("function {other:?}")),
        }
    });
}
