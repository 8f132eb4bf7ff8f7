//! Alerts end to end: the real binary digests real envelopes, its rules fire, and the team hears
//! about it through a real SMTP server and a webhook receiver — once per rule and interval.

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::time::Duration;

use common::mail::SmtpSink;
use common::ui::{Node, api_get, issue_of, send_event};
use common::{ORG, PROJECT, Server, agent, answer};
use hmac::{Hmac, KeyInit, Mac};
use hooks::Receiver;
use serde_json::{Value, json};
use sha2::Sha256;

fn post_rule(server: &Server, rule: &Value) -> Value {
    let url = format!("{}/api/0/projects/{ORG}/{PROJECT}/alert-rules/", server.url);
    let a = answer(
        format!("POST {url}"),
        agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(rule).unwrap().as_slice()),
    );
    a.expect(201).clone()
}

fn error_event(title: &str) -> Value {
    json!({
        "level": "error",
        "platform": "python",
        "environment": "production",
        "release": "shop@1.2.0",
        "user": {"id": "u-1", "email": "buyer@example.com"},
        "tags": {"browser": "Safari 17"},
        "exception": {"values": [{
            "type": "CheckoutError",
            "value": title,
            "stacktrace": {"frames": [{
                "function": "pay", "module": "shop.checkout", "filename": "shop/checkout.py",
                "lineno": 42, "in_app": true
            }]}
        }]}
    })
}

fn set_status(server: &Server, issue: &str, status: &str) {
    let url = format!("{}/api/0/issues/{issue}/", server.url);
    answer(
        format!("PUT {url}"),
        agent()
            .put(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .header("Content-Type", "application/json")
            .send(
                serde_json::to_vec(&json!({"status": status}))
                    .unwrap()
                    .as_slice(),
            ),
    )
    .expect(200);
}

/// `serve` options for alert e-mail to `smtp` and webhooks to 127.0.0.1.
fn alert_flags(smtp: &SmtpSink) -> Vec<String> {
    [
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &smtp.port.to_string(),
        "--smtp-tls",
        "none",
        "--smtp-from",
        "faultline@example.com",
        "--allow-private-webhooks",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Runs the `alert` scenario of tests/sdk/python_client.py (one `PaymentDeclined` through the
/// real sentry-python SDK); returns the event id.
fn report_with_python_sdk(dsn: &str) -> String {
    let report = common::run_client(&common::python(), &["python_client.py", "alert"], dsn);
    report["exception_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("the client reports one event id: {report}"))
        .replace('-', "")
}

/// The issue's event count through the API, once it is `n` (events are digested
/// asynchronously).
fn wait_for_count(server: &Server, issue: &str, n: u64) {
    common::wait_until(&format!("issue {issue} counts {n} events"), || {
        let a = api_get(
            &server.url,
            Some(&server.token),
            &format!("/api/0/issues/{issue}/"),
        );
        let count = a.body["count"].as_str().and_then(|c| c.parse::<u64>().ok());
        if a.status == 200 && count == Some(n) {
            Ok(())
        } else {
            Err(format!("{} {}", a.status, a.body["count"]))
        }
    });
}

/// Time for what a digested batch queued to go out (delivery is woken at once) before asserting
/// that nothing did: never a wait for a time window, which the events' timestamps control.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn hooks_with(hooks: &Receiver, trigger: &str) -> Vec<hooks::Hook> {
    hooks
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.json()["trigger"] == trigger)
        .cloned()
        .collect()
}

fn assert_signed(hook: &hooks::Hook, secret: &str) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&hook.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        hook.header("x-faultline-signature"),
        Some(expected.as_str()),
        "X-Faultline-Signature is the HMAC-SHA256 of the raw body keyed with the secret"
    );
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_new_issue_from_the_python_sdk_alerts_once_and_its_regression_again() {
    common::require_python_sdk();
    let smtp = SmtpSink::start();
    let flags = alert_flags(&smtp);
    let server = Server::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let hooks = Receiver::start();
    for trigger in ["new_issue", "regression"] {
        post_rule(
            &server,
            &json!({"name": format!("Hook {trigger}"), "trigger": trigger, "interval_minutes": 60,
                    "actions": [{"type": "webhook", "url": hooks.url, "secret": "s3cret"}]}),
        );
    }

    // A new issue: one webhook (this rule) and one e-mail (the default rule, to the members).
    let first = report_with_python_sdk(&server.dsn);
    let issue = issue_of(&server.url, &server.token, ORG, PROJECT, &first);
    hooks.wait("a new-issue webhook", |h| !h.is_empty());
    let hook = hooks_with(&hooks, "new_issue").remove(0);
    assert_signed(&hook, "s3cret");
    assert_eq!(hook.header("x-faultline-event"), Some("alert"));
    assert_eq!(hook.header("user-agent"), Some("Faultline"));
    assert!(
        hook.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let body = hook.json();
    assert_eq!(body["version"], 1, "{body:#}");
    assert_eq!(body["project"]["org"], ORG, "{body:#}");
    assert_eq!(body["project"]["slug"], PROJECT, "{body:#}");
    let i = &body["issue"];
    assert_eq!(i["id"].as_i64().map(|i| i.to_string()), Some(issue.clone()));
    assert_eq!(i["title"], "PaymentDeclined: card declined", "{body:#}");
    assert!(
        i["culprit"]
            .as_str()
            .is_some_and(|c| c.contains("charge_card")),
        "the culprit is the raising function: {body:#}"
    );
    assert_eq!(i["level"], "error", "{body:#}");
    assert_eq!(i["status"], "unresolved", "{body:#}");
    assert_eq!(i["events"], 1, "{body:#}");
    assert_eq!(i["users"], 1, "{body:#}");
    assert!(
        i["first_seen"]
            .as_str()
            .is_some_and(|f| chrono::DateTime::parse_from_rfc3339(f).is_ok()),
        "first_seen is an RFC 3339 time: {body:#}"
    );
    assert!(
        i["url"].as_str().is_some_and(|u| u.starts_with(&server.url)
            && u.ends_with(&format!("/organizations/{ORG}/issues/{issue}/"))),
        "{body:#}"
    );
    let e = &body["event"];
    assert_eq!(e["event_id"], first.as_str(), "{body:#}");
    assert_eq!(e["environment"], "production", "{body:#}");
    assert_eq!(e["release"], "shop@2.0.0", "{body:#}");
    assert!(
        e["top_frame"]
            .as_str()
            .is_some_and(|f| f.contains("charge_card")),
        "{body:#}"
    );
    assert!(
        body["top_tags"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["key"] == "browser" && t["value"] == "Safari 17" && t["percent"] == 100.0)),
        "{body:#}"
    );

    let mails = smtp.wait_for(1);
    let mail = &mails[0];
    assert!(
        mail["subject"]
            .as_str()
            .is_some_and(|s| s.contains("PaymentDeclined: card declined")),
        "{mail:#}"
    );
    assert!(
        mail["rcpt_tos"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == common::EMAIL)),
        "the project's members get the default rule's e-mail: {mail:#}"
    );
    assert!(
        mail["text"]
            .as_str()
            .is_some_and(|t| t.contains("Safari 17") && t.contains(&format!("/issues/{issue}/"))),
        "{mail:#}"
    );

    // The same issue again, within the interval: nothing.
    report_with_python_sdk(&server.dsn);
    wait_for_count(&server, &issue, 2);
    settle();
    assert_eq!(
        hooks.got.lock().unwrap().len(),
        1,
        "no second alert for the same issue"
    );
    assert_eq!(smtp.messages().len(), 1, "{:#?}", smtp.messages());

    // Resolved, then seen again: a regression, by webhook and e-mail (the default rule).
    set_status(&server, &issue, "resolved");
    report_with_python_sdk(&server.dsn);
    let got = hooks.wait("a regression webhook", |h| h.len() >= 2);
    let regression = got
        .iter()
        .find(|h| h.json()["trigger"] == "regression")
        .unwrap_or_else(|| panic!("a regression webhook: {got:?}"));
    assert_signed(regression, "s3cret");
    assert_eq!(
        regression.json()["issue"]["id"]
            .as_i64()
            .map(|i| i.to_string()),
        Some(issue.clone())
    );
    let mails = smtp.wait_for(2);
    assert!(
        mails[1]["subject"].as_str().is_some_and(|s| {
            let s = s.to_lowercase();
            s.contains("paymentdeclined") && (s.contains("regress") || s.contains("again"))
        }),
        "{:#}",
        mails[1]
    );

    settle();
    assert_eq!(hooks_with(&hooks, "new_issue").len(), 1);
    assert_eq!(hooks_with(&hooks, "regression").len(), 1);
    assert_eq!(hooks.got.lock().unwrap().len(), 2);
    assert_eq!(smtp.messages().len(), 2, "{:#?}", smtp.messages());
}

#[test]
fn frequency_fires_on_the_event_past_the_threshold_within_its_window() {
    let server = Server::start_with(&["--allow-private-webhooks"]);
    let hooks = Receiver::start();
    post_rule(
        &server,
        &json!({"name": "Bursts", "trigger": "frequency", "threshold": 3, "window_minutes": 60,
                "interval_minutes": 60, "filters": {"environment": "production"},
                "actions": [{"type": "webhook", "url": hooks.url}]}),
    );
    let now = now_secs();
    let event_at = |ts: f64| {
        let mut e = error_event("burst");
        e["timestamp"] = json!(ts);
        e
    };

    // Three events two hours ago: outside the 60-minute window, they never count.
    let old = send_event(&server.url, &server.dsn, event_at(now - 7200.0));
    let issue = issue_of(&server.url, &server.token, ORG, PROJECT, &old);
    for n in 2..=3 {
        send_event(&server.url, &server.dsn, event_at(now - 7200.0 + n as f64));
        wait_for_count(&server, &issue, n);
    }
    // Three events now: 3 in the window is not more than the threshold.
    for n in 1..=3 {
        send_event(&server.url, &server.dsn, event_at(now + n as f64));
        wait_for_count(&server, &issue, 3 + n);
        settle();
        assert!(
            hooks.got.lock().unwrap().is_empty(),
            "{n} events in the window (and 3 before it) must not fire a threshold of 3"
        );
    }
    // The fourth in the window fires it.
    send_event(&server.url, &server.dsn, event_at(now + 4.0));
    let got = hooks.wait("a frequency webhook", |h| !h.is_empty());
    let body = got[0].json();
    assert_eq!(body["trigger"], "frequency", "{body:#}");
    assert_eq!(body["window"]["minutes"], 60, "{body:#}");
    assert_eq!(body["window"]["events"], 4, "{body:#}");
    assert_eq!(body["issue"]["events"], 7, "{body:#}");
    // Once per interval.
    send_event(&server.url, &server.dsn, event_at(now + 5.0));
    wait_for_count(&server, &issue, 8);
    settle();
    assert_eq!(hooks.got.lock().unwrap().len(), 1);
}

#[test]
fn a_spike_fires_once_recent_events_exceed_the_usual_hour_by_the_factor() {
    let server = Server::start_with(&["--allow-private-webhooks"]);
    let hooks = Receiver::start();
    post_rule(
        &server,
        &json!({"name": "Spike", "trigger": "spike", "threshold": 3, "factor": 2.0,
                "window_minutes": 60, "interval_minutes": 60,
                "actions": [{"type": "webhook", "url": hooks.url}]}),
    );
    let now = now_secs();
    let event_at = |ts: f64| {
        let mut e = error_event("spiky");
        e["timestamp"] = json!(ts);
        e
    };
    // The usual rate: 2 events in the same hour on each of the previous 7 days. The same again
    // one hour later, so that the baseline is the same should the clock pass the hour during
    // the test.
    let hour = (now / 3600.0).floor() * 3600.0;
    let day = 86400.0;
    let mut sent = 0;
    let mut issue = String::new();
    for d in 1..=7 {
        for h in [0.0, 3600.0] {
            for k in 0..2 {
                let ts = hour + h - d as f64 * day + 600.0 + k as f64 * 60.0;
                let id = send_event(&server.url, &server.dsn, event_at(ts));
                sent += 1;
                if issue.is_empty() {
                    issue = issue_of(&server.url, &server.token, ORG, PROJECT, &id);
                }
            }
        }
    }
    wait_for_count(&server, &issue, sent);
    settle();
    assert!(
        hooks.got.lock().unwrap().is_empty(),
        "old events are no spike"
    );

    // Now: 2 a window usually, factor 2 → it takes more than 4 (and at least the threshold 3).
    for n in 1..=4 {
        send_event(&server.url, &server.dsn, event_at(now + n as f64));
        wait_for_count(&server, &issue, sent + n);
        settle();
        assert!(
            hooks.got.lock().unwrap().is_empty(),
            "{n} recent events are not more than 2 × the usual 2"
        );
    }
    send_event(&server.url, &server.dsn, event_at(now + 5.0));
    let got = hooks.wait("a spike webhook", |h| !h.is_empty());
    let body = got[0].json();
    assert_eq!(body["trigger"], "spike", "{body:#}");
    assert_eq!(body["window"]["events"], 5, "{body:#}");
    assert_eq!(body["window"]["baseline"], 2.0, "{body:#}");
    send_event(&server.url, &server.dsn, event_at(now + 6.0));
    wait_for_count(&server, &issue, sent + 6);
    settle();
    assert_eq!(hooks.got.lock().unwrap().len(), 1, "once per interval");
}

/// A browser without JavaScript, logged in as the test superuser at `base` (a node's URL):
/// keeps cookies, reads pages.
struct Browser {
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    fn login(base: &str) -> Browser {
        let mut b = Browser {
            base: base.to_string(),
            cookies: Default::default(),
        };
        let (_, form) = b.request("GET", "/login", None);
        let csrf = common::web::hidden_field(&form, "csrf").expect("the login form has a csrf");
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|c| match c {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (c as char).to_string()
                    }
                    _ => format!("%{c:02X}"),
                })
                .collect()
        };
        let body = format!(
            "email={}&password={}&csrf={}",
            enc(common::EMAIL),
            enc(common::PASSWORD),
            enc(&csrf)
        );
        let (status, page) = b.request("POST", "/login", Some(body));
        assert_eq!(status, 303, "logging in redirects: {page}");
        b
    }

    fn request(&mut self, method: &str, path: &str, form: Option<String>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("{}{path}", self.base);
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let resp = match form {
            Some(body) => agent
                .post(&url)
                .header("Cookie", &cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(body.as_bytes()),
            None => agent.get(&url).header("Cookie", &cookie).call(),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap_or("");
            if let Some((name, value)) = v.split(';').next().unwrap_or("").split_once('=') {
                self.cookies
                    .insert(name.trim().to_string(), value.trim().to_string());
            }
        }
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// The statuses of the notifications on the project's alerts page, newest first.
    fn notification_statuses(&mut self) -> Vec<String> {
        let (status, page) = self.request(
            "GET",
            &format!("/organizations/{ORG}/projects/{PROJECT}/alerts/"),
            None,
        );
        assert_eq!(status, 200, "the alerts page: {page}");
        page.split("data-status=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn a_webhook_pending_across_a_kill_9_is_delivered_once_after_the_restart() {
    let dir = tempfile::Builder::new()
        .prefix("faultline-e2e-")
        .tempdir()
        .unwrap();
    let db = common::TestDatabase::new();
    // Retries 5 s, 10 s, … apart: a kill right after a failed attempt was recorded finds no
    // attempt under way (whose claim would hold the notification for a minute).
    let flags = [
        "--allow-private-webhooks",
        "--alert-retry-base-seconds",
        "5",
    ];
    let node = Node::start_with(dir.path(), &db, &flags);
    let setup = common::setup_in(
        dir.path(),
        &db,
        &format!("{ORG}/{PROJECT}"),
        &node.url,
        common::EMAIL,
    );
    let hooks = Receiver::start_down();
    let url = format!("{}/api/0/projects/{ORG}/{PROJECT}/alert-rules/", node.url);
    answer(
        format!("POST {url}"),
        agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", setup.token))
            .header("Content-Type", "application/json")
            .send(
                serde_json::to_vec(&json!({"name": "Hook", "trigger": "new_issue",
                    "actions": [{"type": "webhook", "url": hooks.url}]}))
                .unwrap()
                .as_slice(),
            ),
    )
    .expect(201);
    let mut browser = Browser::login(&node.url);

    // The receiver answers 503: the alerts page shows the webhook retrying.
    send_event(&node.url, &setup.dsn, error_event("kept across a restart"));
    common::wait_until("the alerts page shows the webhook retrying", || {
        let statuses = browser.notification_statuses();
        if statuses.iter().any(|s| s == "retrying") {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    });
    assert_eq!(hooks.refused(), 1);
    assert!(hooks.got.lock().unwrap().is_empty());

    // kill -9 (dropping a Node kills it); a new process on the same data dir and database
    // still has it pending.
    drop(node);
    let node = Node::start_with(dir.path(), &db, &flags);
    let mut browser = Browser::login(&node.url);
    let statuses = browser.notification_statuses();
    assert!(
        statuses.iter().any(|s| s == "retrying"),
        "still retrying after the restart: {statuses:?}"
    );

    // The receiver comes back: the webhook arrives, once.
    hooks.set_up();
    let got = hooks.wait("the webhook after the restart", |h| !h.is_empty());
    assert_eq!(
        got[0].json()["issue"]["title"],
        "CheckoutError: kept across a restart"
    );
    common::wait_until("the alerts page shows the webhook sent", || {
        let statuses = browser.notification_statuses();
        if statuses.iter().any(|s| s == "sent") && !statuses.iter().any(|s| s == "retrying") {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    });
    settle();
    assert_eq!(
        hooks.got.lock().unwrap().len(),
        1,
        "delivered exactly once; server output:\n{}",
        node.output()
    );
}

#[test]
fn a_webhook_to_a_private_address_is_refused_by_default() {
    let server = Server::start();
    let hooks = Receiver::start();
    post_rule(
        &server,
        &json!({"name": "Hook", "trigger": "new_issue",
                "actions": [{"type": "webhook", "url": hooks.url}]}),
    );
    send_event(&server.url, &server.dsn, error_event("private"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        hooks.got.lock().unwrap().is_empty(),
        "no request may reach 127.0.0.1 unless --allow-private-webhooks is set"
    );
}

#[test]
fn a_new_issue_seen_by_two_nodes_at_once_alerts_once() {
    let Some(admin_url) = common::ui::postgres_admin_url() else {
        println!("skipped: two nodes need FAULTLINE_TEST_DATABASE_URL");
        return;
    };
    let smtp = SmtpSink::start();
    let flags = alert_flags(&smtp);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = common::ui::Cluster::start_with(admin_url, 2, &flags);
    let hooks = Receiver::start();
    let url = format!(
        "{}/api/0/projects/{ORG}/{PROJECT}/alert-rules/",
        cluster.nodes[0].url
    );
    let rule = json!({"name": "Hook", "trigger": "new_issue",
                      "actions": [{"type": "webhook", "url": hooks.url}]});
    answer(
        format!("POST {url}"),
        agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", cluster.token))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(&rule).unwrap().as_slice()),
    )
    .expect(201);
    // The same new error reaches both nodes at the same moment, three times over.
    let titles = ["Race0Error: race", "Race1Error: race", "Race2Error: race"];
    for round in 0..3 {
        std::thread::scope(|s| {
            for node in 0..2 {
                // A new fingerprint each round (the exception type is part of it).
                let mut event = error_event("race");
                event["exception"]["values"][0]["type"] = json!(format!("Race{round}Error"));
                let (base, dsn) = (cluster.nodes[node].url.clone(), cluster.dsn(node));
                s.spawn(move || send_event(&base, &dsn, event));
            }
        });
    }
    hooks.wait("three new-issue webhooks", |h| h.len() >= 3);
    smtp.wait_for(3);
    settle();
    std::thread::sleep(Duration::from_secs(2));
    let got = hooks.got.lock().unwrap().clone();
    let mut hooked: Vec<String> = got
        .iter()
        .map(|h| {
            h.json()["issue"]["title"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    hooked.sort();
    assert_eq!(hooked, titles, "each new issue: one webhook per cluster");
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        3,
        "each new issue: one e-mail per cluster: {mails:#?}"
    );
    for title in titles {
        assert_eq!(
            mails
                .iter()
                .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains(title)))
                .count(),
            1,
            "one e-mail about {title}: {mails:#?}"
        );
    }
}
