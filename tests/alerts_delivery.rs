//! Alert delivery end to end, against real services: notifications queued in a real SQLite
//! store (through `fire_alerts`) are delivered by `faultline::alerts::deliver_due` to a webhook
//! receiver (an HTTP server in the test), to a Slack-compatible receiver, and to a real SMTP
//! server (`tests/sdk/smtp_sink.py`, aiosmtpd); then the outbox rows say what happened. On
//! SQLite, and on PostgreSQL in the PostgreSQL pass of `scripts/test.sh`.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use faultline::alerts::channels::SmtpConfig;
use faultline::alerts::{DeliveryConfig, deliver_due};
use faultline::config::SmtpTls;
use faultline::spool::Position;
use faultline::store::{
    DigestBatch, Firing, NewEvent, NewNotification, Notification, Project, Store,
};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::mail::SmtpSink;

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
}

/// Answers by path: `/status/NNN` with NNN; `/flaky` 500 the first time then 200;
/// `/redirect` 302 to `/target`; `/big` 500 with 1 MiB of body; `/slow` 200 after 3 s; else 200.
async fn receive(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let seen_before = r
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.path == path)
        .count();
    r.got.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    if let Some(code) = path.strip_prefix("/status/") {
        return code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK)
            .into_response();
    }
    match path.as_str() {
        "/flaky" if seen_before == 0 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/redirect" => (StatusCode::FOUND, [("location", "/target")]).into_response(),
        "/big" => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1 << 20)).into_response(),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// A store with project acme/checkout, a few issues, and a webhook receiver on 127.0.0.1.
struct Env {
    store: Arc<dyn Store>,
    /// `None` only while being dropped.
    db: Option<common::TestDatabase>,
    _dir: tempfile::TempDir,
    project: Project,
    rule_id: i64,
    issues: Vec<i64>,
    receiver: Receiver,
    /// `http://127.0.0.1:PORT`
    base: String,
    /// Advances with every queued notification, so that no two firings of a rule for the
    /// same issue fall into one interval.
    clock: f64,
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

fn event(project_id: i64, n: usize, ts: f64) -> NewEvent {
    let raw = serde_json::to_vec(&json!({"event_id": format!("{n:032x}")})).unwrap();
    NewEvent {
        project_id,
        event_id: format!("{n:032x}"),
        hash: format!("hash-{n}"),
        grouping: json!({"hash": format!("hash-{n}")}),
        title: format!("TypeError: error number {n}"),
        culprit: "app/checkout.py in pay".into(),
        level: "error".into(),
        event_type: "error".into(),
        metadata: json!({"type": "TypeError", "value": format!("error number {n}")}),
        platform: "python".into(),
        logger: None,
        timestamp: ts,
        received: ts,
        release: Some("1.2.0".into()),
        environment: Some("production".into()),
        user_key: None,
        trace_id: None,
        tags: Vec::new(),
        search: Vec::new(),
        size: raw.len() as i64,
        payload: zstd::encode_all(&raw[..], 1).unwrap(),
        replaces: false,
    }
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("faultline-alerts-")
            .tempdir()
            .unwrap();
        // SQLite, or a fresh PostgreSQL database on the PostgreSQL pass of scripts/test.sh.
        // (Its PostgreSQL client is synchronous: keep it off the runtime's own threads.)
        let db = tokio::task::block_in_place(common::TestDatabase::new);
        let url = match db.url() {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", dir.path().join("faultline.db").display()),
        };
        let store = faultline::store::open(&url).await.expect("open the store");
        let org = store.ensure_organization("acme").await.unwrap();
        let project = store
            .create_project(org.id, "checkout", "Checkout")
            .await
            .unwrap();
        let rule_id = store
            .alert_rules(project.id)
            .await
            .unwrap()
            .first()
            .expect("a new project gets default alert rules")
            .id;
        let t = now() - 60.0;
        let batch = DigestBatch {
            node_id: "test-node".into(),
            position: Position {
                segment: 1,
                offset: 0,
            },
            events: (0..8).map(|n| event(project.id, n, t)).collect(),
            ..Default::default()
        };
        store.save_batch(Arc::new(batch)).await.unwrap();
        let mut issues = Vec::new();
        for n in 0..8 {
            let e = store.event(project.id, &format!("{n:032x}")).await.unwrap();
            issues.push(e.issue_id);
        }

        let receiver = Receiver::default();
        let app = Router::new().fallback(receive).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Env {
            store,
            db: Some(db),
            _dir: dir,
            project,
            rule_id,
            issues,
            receiver,
            base,
            clock: now() - 30.0,
        }
    }

    /// Queues a notification for issue `i` through `fire_alerts`.
    async fn queue(&mut self, i: usize, action: Value) {
        self.clock += 0.01;
        let firing = Firing {
            rule_id: self.rule_id,
            project_id: self.project.id,
            issue_id: self.issues[i],
            interval_minutes: 0,
            notifications: vec![NewNotification {
                action,
                payload: payload(self.issues[i], i),
            }],
        };
        let fired = self.store.fire_alerts(&[firing], self.clock).await.unwrap();
        assert_eq!(fired.len(), 1, "the firing should queue its notification");
    }

    fn got(&self) -> Vec<Received> {
        self.receiver.got.lock().unwrap().clone()
    }

    async fn notifications(&self) -> Vec<Notification> {
        let mut n = self
            .store
            .notifications(self.project.id, 100)
            .await
            .unwrap();
        n.sort_by_key(|n| n.id);
        n
    }

    async fn deliver(&self, cfg: &DeliveryConfig, at: f64) -> usize {
        deliver_due(self.store.as_ref(), cfg, "node-test", at).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            tokio::task::block_in_place(|| drop(db));
        }
    }
}

/// The payload the evaluator builds, with hostile strings.
fn payload(issue_id: i64, i: usize) -> Value {
    json!({
        "trigger": "new_issue", "reason": "A new issue",
        "rule": {"id": 1, "name": "Notify <members> & co"},
        "project": {"id": 1, "org": "acme", "slug": "checkout"},
        "issue": {"id": issue_id, "short_id": format!("CHECKOUT-{i}"),
                  "title": format!("TypeError: <script>alert({i})</script> & more"),
                  "culprit": "app/checkout.py in pay", "level": "error", "status": "unresolved",
                  "first_seen": "2026-11-25T10:00:00Z", "last_seen": "2026-11-25T10:05:00Z",
                  "events": 12, "users": 3,
                  "url": format!("https://faultline.example/organizations/acme/issues/{issue_id}/")},
        "event": {"event_id": "abc", "message": "x is undefined", "environment": "production",
                  "release": "1.2.0", "top_frame": "app/checkout.py in pay at line 42"},
        "window": {"minutes": 60, "events": 10, "users": 3},
        "top_tags": [{"key": "browser", "value": "Safari <17>", "percent": 92.0}]
    })
}

fn private_ok() -> DeliveryConfig {
    DeliveryConfig {
        allow_private: true,
        ..DeliveryConfig::default()
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_signed_and_carries_the_payload() {
    let mut env = Env::new().await;
    let url = format!("{}/hook", env.base);
    env.queue(
        0,
        json!({"type": "webhook", "url": url, "secret": "s3cret"}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);

    let got = env.got();
    assert_eq!(got.len(), 1, "one POST: {got:?}");
    let req = &got[0];
    assert_eq!(req.path, "/hook");
    assert_eq!(req.header("content-type"), "application/json");
    assert_eq!(req.header("x-faultline-event"), "alert");
    assert_eq!(req.header("user-agent"), "Faultline");
    assert_eq!(
        req.header("x-faultline-signature"),
        format!("sha256={}", hmac_hex("s3cret", &req.body)),
        "the signature is the HMAC-SHA256 of the exact body"
    );
    let body = req.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["trigger"], "new_issue");
    assert_eq!(body["reason"], "A new issue");
    assert_eq!(body["rule"]["name"], "Notify <members> & co");
    assert_eq!(body["project"]["slug"], "checkout");
    assert_eq!(body["issue"]["id"], env.issues[0]);
    assert_eq!(body["issue"]["short_id"], "CHECKOUT-0");
    assert_eq!(body["event"]["release"], "1.2.0");
    assert_eq!(body["window"]["events"], 10);
    assert_eq!(body["top_tags"][0]["percent"], 92.0);
    assert!(
        body["sent_at"]
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "{body}"
    );

    let n = env.notifications().await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].status, "sent", "{n:?}");
    assert_eq!(n[0].attempts, 1);
    assert!(n[0].date_sent.is_some());
    // Nothing is sent twice.
    assert_eq!(env.deliver(&private_ok(), now() + 3600.0).await, 0);
    assert_eq!(env.got().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_webhook_has_no_signature() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/plain", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);
    let got = env.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].headers.get("x-faultline-signature").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_message_is_escaped_with_fields() {
    let mut env = Env::new().await;
    env.queue(
        1,
        json!({"type": "slack", "url": format!("{}/slack", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);
    let got = env.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("content-type"), "application/json");
    let msg = got[0].json();
    let text = msg["text"].as_str().expect("a text fallback");
    assert!(
        text.starts_with(
            "[acme/checkout] New issue: TypeError: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<https://faultline.example/organizations/acme/issues/{}/|open>",
            env.issues[1]
        )),
        "{text}"
    );
    let att = &msg["attachments"][0];
    assert_eq!(
        att["title"],
        "CHECKOUT-1 TypeError: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"
    );
    let fields = att["fields"].as_array().expect("fields");
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["title"] == name)
            .map(|f| f["value"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {name} field in {fields:?}"))
    };
    assert_eq!(field("Environment"), "production");
    assert_eq!(field("Release"), "1.2.0");
    assert_eq!(field("Events"), "12 events, 10 in the last 60 minutes");
    assert_eq!(field("Top tags"), "browser: 92 % Safari &lt;17&gt;");
    assert!(!msg.to_string().contains("<script>"));
    assert_eq!(env.notifications().await[0].status, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_alerts_to_one_webhook_become_one_digest() {
    let mut env = Env::new().await;
    let url = format!("{}/storm", env.base);
    for i in 0..5 {
        env.queue(i, json!({"type": "webhook", "url": url, "secret": "k"}))
            .await;
    }
    // A sixth to another target is sent on its own.
    env.queue(
        5,
        json!({"type": "webhook", "url": format!("{}/other", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 6);

    let got = env.got();
    let storm: Vec<&Received> = got.iter().filter(|r| r.path == "/storm").collect();
    assert_eq!(storm.len(), 1, "one digest POST for five alerts: {got:?}");
    assert_eq!(
        storm[0].header("x-faultline-signature"),
        format!("sha256={}", hmac_hex("k", &storm[0].body))
    );
    let body = storm[0].json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["trigger"], "digest");
    assert_eq!(body["count"], 5);
    let ids: Vec<i64> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["issue"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, env.issues[..5].to_vec());
    let other: Vec<&Received> = got.iter().filter(|r| r.path == "/other").collect();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].json()["issue"]["id"], env.issues[5]);
    assert!(
        env.notifications()
            .await
            .iter()
            .all(|n| n.status == "sent" && n.attempts == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_answer_is_retried_with_backoff() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/flaky", env.base)}),
    )
    .await;
    let t = now();
    assert_eq!(env.deliver(&private_ok(), t).await, 1);
    let n = &env.notifications().await[0];
    assert_eq!(n.status, "pending", "{n:?}");
    assert_eq!(n.attempts, 1);
    assert!((n.next_attempt - (t + 30.0)).abs() < 0.01, "{n:?}");
    assert!(
        n.last_error.as_deref().unwrap_or("").contains("500"),
        "{n:?}"
    );
    // Not due before its next attempt…
    assert_eq!(env.deliver(&private_ok(), t + 10.0).await, 0);
    assert_eq!(env.got().len(), 1);
    // …then sent.
    assert_eq!(env.deliver(&private_ok(), t + 31.0).await, 1);
    assert_eq!(env.got().len(), 2);
    let n = &env.notifications().await[0];
    assert_eq!((n.status.as_str(), n.attempts), ("sent", 2), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_answer_fails_for_good() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/status/404", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);
    let n = &env.notifications().await[0];
    assert_eq!(n.status, "failed", "{n:?}");
    assert!(
        n.last_error.as_deref().unwrap_or("").contains("404"),
        "{n:?}"
    );
    assert_eq!(env.deliver(&private_ok(), now() + 7200.0).await, 0);
    assert_eq!(env.got().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/inside", env.base)}),
    )
    .await;
    let localhost = env.base.replace("127.0.0.1", "localhost");
    env.queue(
        1,
        json!({"type": "slack", "url": format!("{localhost}/inside")}),
    )
    .await;
    assert_eq!(env.deliver(&DeliveryConfig::default(), now()).await, 2);
    assert!(env.got().is_empty(), "nothing may reach 127.0.0.1");
    for n in env.notifications().await {
        assert_eq!(n.status, "failed", "{n:?}");
        let error = n.last_error.unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains("--allow-private-webhooks"),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_actions_fail_with_a_clear_error() {
    let mut env = Env::new().await;
    env.queue(0, json!({"type": "pager", "number": "555"}))
        .await;
    env.queue(1, json!({"type": "webhook", "url": "ftp://x.example/"}))
        .await;
    env.queue(2, json!({"type": "email", "to": ["ops@example.com"]}))
        .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 3);
    let n = env.notifications().await;
    let errors: Vec<(&str, &str)> = n
        .iter()
        .map(|n| (n.status.as_str(), n.last_error.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(errors[0].0, "failed");
    assert!(errors[0].1.contains("malformed action"), "{errors:?}");
    assert_eq!(errors[1].0, "failed");
    assert!(errors[1].1.contains("http"), "{errors:?}");
    assert_eq!(
        errors[2],
        ("failed", "e-mail is not configured (FAULTLINE_SMTP_HOST)")
    );
}

fn smtp(sink: &SmtpSink) -> DeliveryConfig {
    DeliveryConfig {
        smtp: Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: sink.port,
            tls: SmtpTls::None,
            credentials: None,
            from: "Faultline <faultline@faultline.example>".into(),
            timeout: std::time::Duration::from_secs(10),
        }),
        ..DeliveryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_real_smtp_server() {
    let sink = SmtpSink::start();
    let mut env = Env::new().await;
    env.store
        .create_user("member@example.com", "x", true)
        .await
        .unwrap();
    // An account whose e-mail is no address does not stop the others' alert.
    env.store
        .create_user("not an address", "x", true)
        .await
        .unwrap();
    env.queue(
        3,
        json!({"type": "email", "to": ["oncall@example.com", "members"]}),
    )
    .await;
    assert_eq!(env.deliver(&smtp(&sink), now()).await, 1);
    let mail = sink.wait_for(1).remove(0);

    let mut rcpt: Vec<String> = mail["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    rcpt.sort();
    assert_eq!(rcpt, ["member@example.com", "oncall@example.com"]);
    assert_eq!(mail["mail_from"], "faultline@faultline.example");
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert!(
        mail["raw"]
            .as_str()
            .unwrap_or("")
            .contains("Auto-Submitted: auto-generated"),
        "{mail}"
    );
    assert_eq!(
        mail["subject"],
        "[acme/checkout] New issue: TypeError: <script>alert(3)</script> & more"
    );
    let text = mail["text"].as_str().expect("a text/plain part");
    let html = mail["html"].as_str().expect("a text/html part");
    for want in [
        "acme/checkout",
        "app/checkout.py in pay",
        "app/checkout.py in pay at line 42",
        "error",
        "production",
        "1.2.0",
        "12 events, 10 in the last 60 minutes",
        "3 users, 3 in the last 60 minutes",
        "2026-11-25T10:00:00Z",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the text part:\n{text}"
        );
        assert!(
            html.contains(want),
            "{want:?} missing from the HTML part:\n{html}"
        );
    }
    let link = format!(
        "https://faultline.example/organizations/acme/issues/{}/",
        env.issues[3]
    );
    assert!(text.contains(&link), "{text}");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    assert!(text.contains("92 % Safari <17>"), "{text}");
    assert!(text.contains("<script>alert(3)</script>"), "{text}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("Safari <17>"), "{html}");
    assert!(html.contains("92 % Safari &#60;17&#62;"), "{html}");
    assert_eq!(env.notifications().await[0].status, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_storm_is_one_digest() {
    let sink = SmtpSink::start();
    let mut env = Env::new().await;
    for i in 0..4 {
        env.queue(i, json!({"type": "email", "to": ["ops@example.com"]}))
            .await;
    }
    assert_eq!(env.deliver(&smtp(&sink), now()).await, 4);
    let mails = sink.wait_for(1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1, "{mails:?}");
    let subject = mails[0]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[acme/checkout] 4 alerts: TypeError: <script>alert(0)"),
        "{subject}"
    );
    let text = mails[0]["text"].as_str().unwrap();
    for i in 0..4 {
        assert!(text.contains(&format!("CHECKOUT-{i} ")), "{text}");
    }
    assert!(env.notifications().await.iter().all(|n| n.status == "sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_smtp_server_is_retried() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut env = Env::new().await;
    env.queue(0, json!({"type": "email", "to": ["ops@example.com"]}))
        .await;
    let cfg = DeliveryConfig {
        smtp: Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            credentials: None,
            from: "faultline@faultline.example".into(),
            timeout: std::time::Duration::from_secs(5),
        }),
        ..DeliveryConfig::default()
    };
    assert_eq!(env.deliver(&cfg, now()).await, 1);
    let n = &env.notifications().await[0];
    assert_eq!(n.status, "pending", "{n:?}");
    assert!(
        n.last_error.as_deref().unwrap_or("").contains("SMTP"),
        "{n:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_alert_once() {
    let mut env = Env::new().await;
    for i in 0..8 {
        env.queue(
            i,
            json!({"type": "webhook", "url": format!("{}/n{i}", env.base)}),
        )
        .await;
    }
    let cfg = private_ok();
    let t = now();
    let (a, b) = tokio::join!(
        deliver_due(env.store.as_ref(), &cfg, "node-a", t),
        deliver_due(env.store.as_ref(), &cfg, "node-b", t),
    );
    assert_eq!(a + b, 8, "node a recorded {a}, node b {b}");
    let mut paths: Vec<String> = env.got().into_iter().map(|r| r.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(env.got().len(), 8, "each alert once: {:?}", env.got());
    assert_eq!(paths.len(), 8);
    assert!(env.notifications().await.iter().all(|n| n.status == "sent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/redirect", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);
    let paths: Vec<String> = env.got().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/redirect"], "the redirect must not be followed");
    let n = &env.notifications().await[0];
    assert_eq!(n.status, "pending", "{n:?}");
    assert!(
        n.last_error.as_deref().unwrap_or("").contains("302"),
        "{n:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_answer_is_cut_short() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/big", env.base)}),
    )
    .await;
    assert_eq!(env.deliver(&private_ok(), now()).await, 1);
    let n = &env.notifications().await[0];
    let error = n.last_error.as_deref().unwrap_or("");
    assert!(error.contains("500"), "{n:?}");
    assert!(
        error.len() < 1000,
        "the stored error is bounded: {} bytes",
        error.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_times_out_and_is_retried() {
    let mut env = Env::new().await;
    env.queue(
        0,
        json!({"type": "webhook", "url": format!("{}/slow", env.base)}),
    )
    .await;
    let cfg = DeliveryConfig {
        http_timeout: std::time::Duration::from_secs(1),
        ..private_ok()
    };
    let started = std::time::Instant::now();
    assert_eq!(env.deliver(&cfg, now()).await, 1);
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    let n = &env.notifications().await[0];
    assert_eq!(n.status, "pending", "{n:?}");
    assert!(
        n.last_error.as_deref().unwrap_or("").contains("timed out"),
        "{n:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_when_configured() {
    let sink = SmtpSink::start();
    let mut env = Env::new().await;
    env.queue(0, json!({"type": "email", "to": ["ops@example.com"]}))
        .await;
    env.queue(1, json!({"type": "email", "to": ["dev@example.com"]}))
        .await;
    // The sink speaks plain SMTP only: neither STARTTLS nor TLS may fall back to plain text.
    let mut cfg = smtp(&sink);
    for (round, tls) in [SmtpTls::Starttls, SmtpTls::Tls].into_iter().enumerate() {
        if let Some(s) = cfg.smtp.as_mut() {
            s.tls = tls;
        }
        assert_eq!(env.deliver(&cfg, now() + 31.0 * round as f64).await, 2);
        assert!(sink.messages().is_empty(), "{:?}", sink.messages());
        for n in env.notifications().await {
            assert_eq!(n.status, "pending", "{tls:?}: {n:?}");
            assert_eq!(n.attempts, round as i64 + 1);
            let error = n.last_error.unwrap_or_default();
            assert!(error.starts_with("SMTP 127.0.0.1:"), "{tls:?}: {error}");
        }
    }
}
