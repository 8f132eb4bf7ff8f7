//! Alerts: rules that fire on issues queue notifications in a persisted outbox; delivery turns
//! each into an e-mail, a signed webhook POST or a Slack-compatible message.
//!
//! - [`evaluate`] — after each stored digest batch, which rules fire for which issues; queues
//!   their notifications (once per rule, issue and interval across the cluster).
//! - [`deliver`] — the loop every node runs ([`deliver::run`]): claims due notifications
//!   through the store (so each is sent by one node of a cluster), groups storms into digests,
//!   sends, and records sent / retry (30 s, 1 min, 2 min … at most 1 h apart, for 24 h) /
//!   failed on each notification.
//! - [`channels`] — e-mail over SMTP, webhooks (signed), Slack incoming webhooks.
//! - [`message`] — subjects, plain-text and HTML e-mail (askama, escaped), Slack messages and
//!   webhook bodies, from a notification's payload.
//! - [`net`] — the SSRF guard every outgoing HTTP request goes through.
//!
//! # Running it
//!
//! Every node runs the loop; claiming through the store makes each notification go out once
//! per cluster:
//!
//! ```ignore
//! let delivery = tokio::spawn(crate::alerts::run(
//!     store.clone(),
//!     Arc::new(crate::alerts::DeliveryConfig::from_args(&args.alerts, &public_url)),
//!     node.clone(),
//!     wake, // the `Notify` the node's evaluator wakes when it queues notifications
//! ));
//! ```
//!
//! Settings (`faultline serve`, [`crate::config::AlertArgs`]):
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--smtp-host` | `FAULTLINE_SMTP_HOST` | none: e-mail actions fail with "e-mail is not configured (FAULTLINE_SMTP_HOST)" |
//! | `--smtp-port` | `FAULTLINE_SMTP_PORT` | 587 (`starttls`), 465 (`tls`), 25 (`none`) |
//! | `--smtp-tls` | `FAULTLINE_SMTP_TLS` | `starttls` (`none`, `starttls` or `tls`) |
//! | `--smtp-user`, `--smtp-password` | `FAULTLINE_SMTP_USER`, `FAULTLINE_SMTP_PASSWORD` | no authentication |
//! | `--smtp-from` | `FAULTLINE_SMTP_FROM` | `faultline@<host of the public URL>` |
//! | `--allow-private-webhooks` | `FAULTLINE_ALLOW_PRIVATE_WEBHOOKS=1` | off |
//!
//! # The e-mail
//!
//! Subject `[acme/checkout] New issue: TypeError: x is undefined` (a digest:
//! `[acme/checkout] 12 alerts: …`), `multipart/alternative` with a plain-text and an HTML part
//! (`templates/alert_email.txt`, `.html`), sent to the action's addresses plus, for
//! `"members"`, the e-mail of every user who can see the project.
//!
//! # Slack and Mattermost
//!
//! An incoming-webhook message: `{"text": "<subject> — <link|open>", "attachments": [{"title",
//! "title_link", "color", "text", "fields": [{"title", "value", "short"}], …}]}`, one attachment
//! per alert; event text is escaped (`&`, `<`, `>`) and cannot mention `@channel`.
//!
//! # The webhook
//!
//! `POST` to the action's URL, with headers `Content-Type: application/json`,
//! `User-Agent: Faultline`, `X-Faultline-Event: alert` and, when the action has a secret,
//! `X-Faultline-Signature: sha256=<hex>` — the HMAC-SHA256 of the exact body bytes keyed with
//! the secret. Verify it by computing the same HMAC over the raw body as received (before any
//! JSON parsing) and comparing in constant time, e.g. in Python:
//!
//! ```text
//! expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest(expected, request.headers["X-Faultline-Signature"])
//! ```
//!
//! The body of one alert (`version` changes only when a field changes meaning or goes away;
//! fields may be added; `event`, `window` and `top_tags` may be `null`):
//!
//! ```json
//! {"version": 1,
//!  "trigger": "new_issue | regression | frequency | users | spike | unignored",
//!  "reason": "A new issue",
//!  "rule": {"id": 1, "name": "Every new issue"},
//!  "project": {"id": 1, "org": "acme", "slug": "checkout"},
//!  "issue": {"id": 7, "short_id": "CHECKOUT-7", "title": "TypeError: x is undefined",
//!            "culprit": "…", "level": "error", "status": "unresolved",
//!            "first_seen": "2026-11-25T10:00:00Z", "last_seen": "2026-11-25T10:05:00Z",
//!            "events": 12, "users": 3,
//!            "url": "https://faultline.example/organizations/acme/issues/7/"},
//!  "event": {"event_id": "…", "message": "…", "environment": "production",
//!            "release": "1.2.0", "top_frame": "app/checkout.py in pay at line 42"},
//!  "window": {"minutes": 60, "events": 10, "users": 3},
//!  "top_tags": [{"key": "browser", "value": "Safari 17", "percent": 92.0}],
//!  "sent_at": "2026-11-25T10:05:01Z"}
//! ```
//!
//! When more than 3 notifications of one project are due for the same target at once (same
//! URL and secret, or same e-mail recipients), they go as one digest:
//!
//! ```json
//! {"version": 1, "trigger": "digest", "reason": "12 alerts", "project": {…}, "count": 12,
//!  "alerts": [{"trigger": …, "reason": …, "rule": …, "project": …, "issue": …, "event": …,
//!              "window": …, "top_tags": …}, …],
//!  "sent_at": "…"}
//! ```
//!
//! A 2xx answer is success; 4xx other than 408 and 429 fails the notification for good; any
//! other answer, a timeout or a connection error is retried. Redirects are not followed.
//! Targets on loopback, private, link-local, CGNAT and other reserved addresses are refused
//! unless the server runs with `--allow-private-webhooks`.

pub mod channels;
pub mod deliver;
pub mod evaluate;
pub mod message;
pub mod net;

pub use deliver::{DeliveryConfig, deliver_due, run};
