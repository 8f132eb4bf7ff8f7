//! Alerts end to end: the real binary digests real envelopes, its rules fire, and the team hears
//! about it through a real SMTP server and a webhook receiver — once per rule and interval.

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::time::Duration;

use common::mail::SmtpSink;
use common::ui::{api_get, issue_of, send_event};
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

#[test]
fn new_issues_regressions_and_bursts_reach_the_team_once() {
    let smtp = SmtpSink::start();
    let port = smtp.port.to_string();
    let server = Server::start_with(&[
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port,
        "--smtp-tls",
        "none",
        "--smtp-from",
        "faultline@example.com",
        "--allow-private-webhooks",
    ]);
    let hooks = Receiver::start();
    post_rule(
        &server,
        &json!({"name": "Hook new issues", "trigger": "new_issue", "interval_minutes": 60,
                "actions": [{"type": "webhook", "url": hooks.url, "secret": "s3cret"}]}),
    );
    post_rule(
        &server,
        &json!({"name": "Bursts", "trigger": "frequency", "threshold": 2, "window_minutes": 60,
                "interval_minutes": 60, "filters": {"environment": "production"},
                "actions": [{"type": "webhook", "url": hooks.url}]}),
    );

    // A new issue: the webhook rule and the project's default e-mail rule both fire.
    let first = send_event(&server.url, &server.dsn, error_event("card declined"));
    let issue = issue_of(&server.url, &server.token, ORG, PROJECT, &first);
    let got = hooks.wait("a new-issue webhook", |h| {
        h.iter().any(|h| h.json()["trigger"] == "new_issue")
    });
    let hook = got
        .iter()
        .find(|h| h.json()["trigger"] == "new_issue")
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&hook.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        hook.header("x-faultline-signature"),
        Some(expected.as_str())
    );
    let body = hook.json();
    assert_eq!(
        body["issue"]["id"].as_i64().map(|i| i.to_string()),
        Some(issue.clone())
    );
    assert_eq!(body["issue"]["title"], "CheckoutError: card declined");
    assert_eq!(body["event"]["environment"], "production");
    assert_eq!(body["event"]["release"], "shop@1.2.0");
    assert!(
        body["issue"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/organizations/{ORG}/issues/{issue}/"))),
        "{body:#}"
    );
    assert!(
        body["top_tags"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["value"] == "Safari 17" && t["percent"] == 100.0)),
        "{body:#}"
    );

    let mails = smtp.wait_for(1);
    let mail = &mails[0];
    assert!(
        mail["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CheckoutError: card declined")),
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
            .is_some_and(|t| t.contains("Safari 17"))
    );

    // Two more events: more than 2 in the window fires the burst rule, once.
    send_event(&server.url, &server.dsn, error_event("card declined"));
    send_event(&server.url, &server.dsn, error_event("card declined"));
    hooks.wait("a frequency webhook", |h| {
        h.iter().any(|h| h.json()["trigger"] == "frequency")
    });
    send_event(&server.url, &server.dsn, error_event("card declined"));

    // Resolved, then seen again: a regression e-mail.
    set_status(&server, &issue, "resolved");
    send_event(&server.url, &server.dsn, error_event("card declined"));
    let mails = smtp.wait_for(2);
    assert!(
        mails[1]["subject"].as_str().is_some_and(
            |s| s.to_lowercase().contains("regress") || s.to_lowercase().contains("again")
        ),
        "{:#}",
        mails[1]
    );

    // Once per rule and interval: no second new-issue or frequency webhook.
    std::thread::sleep(Duration::from_secs(2));
    let got = hooks.got.lock().unwrap().clone();
    let count = |t: &str| got.iter().filter(|h| h.json()["trigger"] == t).count();
    assert_eq!(count("new_issue"), 1);
    assert_eq!(count("frequency"), 1);
    assert_eq!(smtp.messages().len(), 2, "{:#?}", smtp.messages());

    // The notifications are readable as sent.
    let issues = api_get(&server.url, Some(&server.token), "/api/0/projects/");
    issues.expect(200);
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
        return;
    };
    let cluster = common::ui::Cluster::start_with(admin_url, 2, &["--allow-private-webhooks"]);
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
    std::thread::sleep(Duration::from_secs(3));
    let got = hooks.got.lock().unwrap().clone();
    let mut titles: Vec<String> = got
        .iter()
        .map(|h| {
            h.json()["issue"]["title"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        ["Race0Error: race", "Race1Error: race", "Race2Error: race"],
        "each new issue alerts once per cluster"
    );
}
