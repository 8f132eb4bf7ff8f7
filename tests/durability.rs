//! Durability: under concurrent load, `kill -9` the server; after a restart on the same data dir
//! every event that was acknowledged with 200 is stored.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDatabase::new();
    let server = common::start_in(dir.path(), &db);
    let common::Setup {
        key,
        project,
        token,
        ..
    } = common::setup_in(
        dir.path(),
        &db,
        "acme/durable",
        &server.url,
        "d@example.com",
    );

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let url = format!("{}/api/{project}/envelope/", server.url);
        let auth = format!("Sentry sentry_key={key}, sentry_version=7");
        workers.push(thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = uuid_like(w, n);
                let event = json!({
                    "message": format!("durable event from worker {w}"),
                    "exception": {"values": [{"type": "DurableError", "value": "kept",
                        "stacktrace": {"frames": [{"function": "work", "module": "app.jobs", "lineno": n, "in_app": true}]}}]},
                    "tags": {"worker": w.to_string()},
                });
                let body = format!("{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{event}");
                match agent.post(&url).header("X-Sentry-Auth", &auth).send(body.as_bytes()) {
                    Ok(resp) if resp.status() == 200 => acked.lock().unwrap().push(id),
                    _ => {} // refused or cut off by the kill: not acknowledged
                }
            }
        }));
    }
    // Let the load run, then kill the server in the middle of it.
    thread::sleep(Duration::from_millis(1500));
    let mut server = server;
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load should have been acknowledged before the kill: {}",
        acked.len()
    );
    drop(server);

    let server = common::start_in(dir.path(), &db);
    let agent = common::agent();
    let count = || -> i64 {
        let mut resp = agent
            .get(&format!(
                "{}/api/0/projects/acme/durable/issues/?query=&statsPeriod=",
                server.url
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("issues");
        let issues: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        issues
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["count"].as_str()?.parse::<i64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    common::wait_until(
        "every acknowledged event is digested after the restart",
        || {
            let n = count();
            if n >= acked.len() as i64 {
                Ok(())
            } else {
                Err(format!("{n} of {} digested", acked.len()))
            }
        },
    );
    for id in &acked {
        let status = agent
            .get(&format!(
                "{}/api/0/projects/acme/durable/events/{id}/",
                server.url
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("event")
            .status();
        assert_eq!(
            status, 200,
            "acknowledged event {id} is missing after kill -9"
        );
    }
}

fn uuid_like(worker: usize, n: usize) -> String {
    format!("{worker:08x}{n:024x}")
}
