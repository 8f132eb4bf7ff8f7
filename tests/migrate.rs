//! `faultline migrate`: an SQLite installation moves onto PostgreSQL with every table, issue,
//! event and link where it was; the copy verifies itself and can be run again.

mod common;

use common::{TestDatabase, agent, start_in, start_in_with, wait_until};
use serde_json::{Value, json};

fn get(url: &str, token: &str) -> (u16, Value) {
    let mut resp = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post_envelope(url: &str, project: &str, key: &str, body: &str) {
    let resp = agent()
        .post(&format!("{url}/api/{project}/envelope/"))
        .header(
            "X-Sentry-Auth",
            &format!("Sentry sentry_key={key}, sentry_version=7"),
        )
        .send(body.as_bytes())
        .expect("POST");
    assert_eq!(resp.status(), 200);
}

fn sqlite_tables(path: &std::path::Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|n| {
            let count: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {n}"), [], |r| r.get(0))
                .unwrap();
            (n, count)
        })
        .collect()
}

fn postgres_tables(url: &str) -> Vec<(String, i64)> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let names: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name <> 'faultline_migrations' ORDER BY table_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names
        .into_iter()
        .map(|n| {
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {n}"), &[])
                .unwrap()
                .get(0);
            (n, count)
        })
        .collect()
}

#[test]
fn an_sqlite_installation_moves_to_postgres_with_everything_in_place() {
    let Ok(admin_url) = std::env::var("FAULTLINE_TEST_DATABASE_URL") else {
        eprintln!("skipped: FAULTLINE_TEST_DATABASE_URL is not set (needs a PostgreSQL server)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = TestDatabase::sqlite();
    // Background work (retention, compression dictionaries) every second.
    let server = start_in_with(dir.path(), &sqlite, &["--retention-interval", "1"]);
    let common::Setup {
        key,
        project,
        token,
        ..
    } = common::setup_in(
        dir.path(),
        &sqlite,
        "acme/shop",
        &server.url,
        "m@example.com",
    );

    // Two issues, an attachment with feedback, a session and a client report.
    let kept_id = "ab".repeat(16);
    for (id, message) in [
        (kept_id.as_str(), "Cart total is negative"),
        (&"cd".repeat(16)[..], "Cart total is negative"),
        (&"ef".repeat(16)[..], "Payment gateway timeout"),
    ] {
        let event = json!({"message": message, "user": {"id": "u-1"}, "tags": {"shard": "3"}, "release": "shop@1.0"});
        let body = format!(
            "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{event}\n{{\"type\":\"attachment\",\"length\":5,\"filename\":\"a.txt\"}}\nhello\n{{\"type\":\"user_report\"}}\n{}",
            json!({"event_id": id, "name": "Jane", "email": "jane@example.com", "comments": "it broke"})
        );
        post_envelope(&server.url, &project, &key, &body);
    }
    post_envelope(
        &server.url,
        &project,
        &key,
        "{}\n{\"type\":\"session\"}\n{\"sid\":\"7c7c7c7c7c7c4c7c8c7c7c7c7c7c7c7c\",\"did\":\"u-1\",\"init\":true,\"started\":\"2026-11-25T00:00:00Z\",\"status\":\"crashed\",\"attrs\":{\"release\":\"shop@1.0\"}}\n{\"type\":\"client_report\"}\n{\"discarded_events\":[{\"reason\":\"queue_overflow\",\"category\":\"error\",\"quantity\":2}]}",
    );
    let issues_url = format!(
        "{}/api/0/projects/acme/shop/issues/?query=&statsPeriod=",
        server.url
    );
    let before: Vec<Value> = wait_until("the events are digested", || {
        let (_, issues) = get(&issues_url, &token);
        let issues = issues.as_array().cloned().unwrap_or_default();
        let total: i64 = issues
            .iter()
            .filter_map(|i| i["count"].as_str()?.parse::<i64>().ok())
            .sum();
        if total == 3 {
            Ok(issues)
        } else {
            Err(format!("{total} events"))
        }
    });
    let resolved = before
        .iter()
        .find(|i| i["title"] == "Payment gateway timeout")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = agent()
        .put(&format!("{}/api/0/issues/{resolved}/", server.url))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"status": "resolved"}))
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A release file (a source map) and an upload chunk, stored as bytes.
    let map = br#"{"version":3,"sources":["a.js"],"names":[],"mappings":"AAAA"}"#;
    let boundary = "migrate-boundary";
    let mut body = Vec::new();
    for (name, filename, data) in [
        ("file", Some("app.js.map"), &map[..]),
        ("name", None, &b"~/app.js.map"[..]),
    ] {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").bytes(),
        );
        if let Some(f) = filename {
            body.extend(format!("; filename=\"{f}\"").bytes());
        }
        body.extend(b"\r\n\r\n");
        body.extend(data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    let resp = agent()
        .post(&format!(
            "{}/api/0/projects/acme/shop/releases/shop@1.0/files/",
            server.url
        ))
        .header("Authorization", &format!("Bearer {token}"))
        .header(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..])
        .unwrap();
    assert_eq!(resp.status(), 201);
    let files_url = format!(
        "{}/api/0/projects/acme/shop/releases/shop@1.0/files/",
        server.url
    );
    let (_, files_before) = get(&files_url, &token);
    // The events made release shop@1.0; give it a commit and a deploy.
    let release_url = format!("{}/api/0/organizations/acme/releases/shop@1.0/", server.url);
    let resp = agent()
        .put(&release_url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"commits": [{"id": "c0ffee", "author_name": "Jane"}]}))
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = agent()
        .post(&format!("{release_url}deploys/"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"environment": "production"}))
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A project with enough events to have its events compressed with a dictionary trained on
    // them, and an event stored that way.
    let jobs_dsn = common::cli_in(
        dir.path(),
        &sqlite,
        &["project", "create", "acme/jobs"],
        &[],
    );
    let (jobs_key, jobs_project) = common::dsn_parts(&jobs_dsn);
    let job = |id: &str, i: usize| {
        let event = json!({"message": format!("Job {i} failed"), "tags": {"queue": "mail"}});
        format!("{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{event}")
    };
    for i in 0..210 {
        post_envelope(
            &server.url,
            &jobs_project,
            &jobs_key,
            &job(&format!("{i:032x}"), i),
        );
    }
    let db_path = dir.path().join("faultline.db");
    let payload_of = |id: &str| -> Option<Vec<u8>> {
        rusqlite::Connection::open(&db_path)
            .ok()?
            .query_row(
                "SELECT payload FROM events WHERE event_id = ?1",
                [id],
                |r| r.get(0),
            )
            .ok()
    };
    let mut attempt = 1000;
    let compressed_id = wait_until("an event is stored with the project's dictionary", || {
        attempt += 1;
        let id = format!("{attempt:032x}");
        post_envelope(&server.url, &jobs_project, &jobs_key, &job(&id, attempt));
        let stored = wait_until("the event is digested", || {
            payload_of(&id).ok_or_else(|| "not yet".to_string())
        });
        match zstd::zstd_safe::get_dict_id_from_frame(&stored) {
            Some(_) => Ok(id),
            None => Err("stored without a dictionary (none trained yet)".to_string()),
        }
    });
    drop(server);

    // Copy, twice: the second run finds everything in place and still verifies.
    let pg = TestDatabase::postgres(admin_url);
    let pg_url = pg.url().unwrap().to_string();
    let from = format!("sqlite://{}", dir.path().join("faultline.db").display());
    for run in 0..2 {
        let out = std::process::Command::new(common::bin())
            .args(["migrate", "--from", &from, "--to", &pg_url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "migrate run {run} failed:\n{stderr}");
        assert!(stderr.contains("same number of rows"), "{stderr}");
    }
    // Every table was copied, row for row.
    let source = sqlite_tables(&dir.path().join("faultline.db"));
    assert_eq!(
        postgres_tables(&pg_url),
        source,
        "tables and row counts differ"
    );
    for table in [
        "events",
        "issues",
        "attachments",
        "user_reports",
        "session_counts",
        "outcomes",
        "api_tokens",
        "artifact_bundles",
        "artifact_bundle_projects",
        "artifact_files",
        "releases",
        "release_projects",
        "release_commits",
        "deploys",
        "payload_dicts",
    ] {
        let n = source
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        assert!(n > 0, "the source should have rows in {table}");
    }

    // The same installation now runs on PostgreSQL with every issue, event and link in place.
    let server = start_in(dir.path(), &pg);
    let issues_url = format!(
        "{}/api/0/projects/acme/shop/issues/?query=&statsPeriod=",
        server.url
    );
    let (status, after) = get(&issues_url, &token);
    assert_eq!(status, 200, "the old token works: {after}");
    let files_url = format!(
        "{}/api/0/projects/acme/shop/releases/shop@1.0/files/",
        server.url
    );
    assert_eq!(
        get(&files_url, &token).1,
        files_before,
        "release files (and their SHA-1) are in place"
    );
    let pick = |list: &Value| -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().into(),
                    i["title"].as_str().unwrap().into(),
                    i["count"].as_str().unwrap().into(),
                    i["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut expected = pick(&Value::Array(before.clone()));
    for e in &mut expected {
        if e.0 == resolved {
            e.3 = "resolved".into();
        }
    }
    assert_eq!(pick(&after), expected);
    let (status, event) = get(
        &format!("{}/api/0/projects/acme/shop/events/{kept_id}/", server.url),
        &token,
    );
    assert_eq!(status, 200);
    assert_eq!(event["message"], "Cart total is negative");
    let (status, job_event) = get(
        &format!(
            "{}/api/0/projects/acme/jobs/events/{compressed_id}/",
            server.url
        ),
        &token,
    );
    assert_eq!(status, 200, "{job_event}");
    let attempt = u64::from_str_radix(&compressed_id, 16).unwrap();
    assert_eq!(
        job_event["message"],
        format!("Job {attempt} failed"),
        "{job_event}"
    );
    let group = event["groupID"].as_str().unwrap();
    let (_, reports) = get(
        &format!("{}/api/0/issues/{group}/user-reports/", server.url),
        &token,
    );
    assert_eq!(reports.as_array().map(Vec::len), Some(2), "{reports}");
    let (status, release) = get(
        &format!("{}/api/0/organizations/acme/releases/shop@1.0/", server.url),
        &token,
    );
    assert_eq!(status, 200, "{release}");
    assert_eq!(
        (
            &release["eventCount"],
            &release["commitCount"],
            &release["lastDeploy"]["environment"]
        ),
        (&json!(3), &json!(1), &json!("production")),
        "{release}"
    );

    // New data gets new ids after the copied ones (sequences moved), with the old DSN.
    post_envelope(
        &server.url,
        &project,
        &key,
        &format!(
            "{{}}\n{{\"type\":\"event\"}}\n{}",
            json!({"message": "after the move"})
        ),
    );
    let issue = wait_until("the new event is digested", || {
        let (_, issues) = get(&issues_url, &token);
        issues
            .as_array()
            .and_then(|a| a.iter().find(|i| i["title"] == "after the move").cloned())
            .ok_or_else(|| issues.to_string())
    });
    let new_id: i64 = issue["id"].as_str().unwrap().parse().unwrap();
    assert!(
        before
            .iter()
            .all(|i| i["id"].as_str().unwrap().parse::<i64>().unwrap() < new_id)
    );
}
