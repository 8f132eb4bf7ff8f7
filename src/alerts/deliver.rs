//! The delivery loop: claims due notifications from the outbox, groups them (a storm to one
//! target becomes one digest), sends each group on its channel and records the outcome on every
//! notification of the group — sent, retried later with exponential backoff, or failed.
//!
//! Claiming goes through [`Store::claim_notifications`] (a lease on each row, `SKIP LOCKED` on
//! PostgreSQL), so every node of a cluster may run the loop and each notification is delivered
//! by exactly one of them. A node that dies while sending leaves its claim to expire
//! ([`LEASE_SECONDS`]); another node then delivers it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::channels::{self, SendError, SmtpConfig};
use super::message::{self, Alert};
use crate::config::AlertArgs;
use crate::store::{Delivery, Notification, Store};

/// How long a claim holds a notification; longer than any send takes.
pub const LEASE_SECONDS: f64 = 60.0;
const _: () = assert!(START_BUDGET.as_secs() + SEND_TIMEOUT.as_secs() + 10 <= LEASE_SECONDS as u64);
/// Most notifications claimed per round.
pub const CLAIM_LIMIT: i64 = 100;
/// Longest one send may take (an HTTP request, or a whole SMTP exchange).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// A send starts at most this long after the claim, so that it ends while the claim holds.
pub const START_BUDGET: Duration = Duration::from_secs(30);
/// A group larger than this (same project, same target) is sent as one digest.
pub const DIGEST_THRESHOLD: usize = 3;
/// First retry delay by default (`--alert-retry-base-seconds`); doubles with each attempt…
pub const FIRST_RETRY_SECONDS: f64 = 30.0;
/// …up to this between two attempts…
pub const MAX_RETRY_SECONDS: f64 = 3600.0;
/// …and no attempt is made later than this after the notification was queued.
pub const GIVE_UP_AFTER_SECONDS: f64 = 24.0 * 3600.0;

/// What delivery needs to know.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `None`: e-mail actions fail with [`channels::EMAIL_NOT_CONFIGURED`].
    pub smtp: Option<SmtpConfig>,
    /// Let webhooks reach loopback/private/link-local addresses.
    pub allow_private: bool,
    /// Timeout of one webhook or Slack request.
    pub http_timeout: Duration,
    /// Time between two rounds of the loop.
    pub poll_interval: Duration,
    /// Groups sent at the same time.
    pub concurrency: usize,
    /// First retry delay after a failed send (seconds); doubles with each attempt.
    pub retry_base_seconds: f64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            smtp: None,
            allow_private: false,
            http_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
            concurrency: 8,
            retry_base_seconds: FIRST_RETRY_SECONDS,
        }
    }
}

impl DeliveryConfig {
    /// The delivery settings of `faultline serve`.
    pub fn from_args(args: &AlertArgs, public_url: &str) -> DeliveryConfig {
        DeliveryConfig {
            smtp: SmtpConfig::from_args(args, public_url),
            allow_private: args.allow_private_webhooks,
            retry_base_seconds: f64::from(args.alert_retry_base_seconds.max(1)),
            ..DeliveryConfig::default()
        }
    }
}

/// A notification's `action`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Addresses, and `members` for the project's members at send time.
    Email {
        to: Vec<String>,
    },
    Webhook {
        url: String,
        secret: Option<String>,
    },
    Slack {
        url: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("malformed action: not a JSON object")]
    NotAnObject,
    #[error("malformed action: unknown type {0:?} (expected email, webhook or slack)")]
    UnknownType(String),
    #[error("malformed action: {0}")]
    Field(&'static str),
}

impl Action {
    pub fn parse(action: &Value) -> Result<Action, ActionError> {
        let obj = action.as_object().ok_or(ActionError::NotAnObject)?;
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        let url = || {
            obj.get("url")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .ok_or(ActionError::Field("`url` must be a non-empty string"))
        };
        match kind {
            "email" => {
                let list = obj
                    .get("to")
                    .and_then(Value::as_array)
                    .ok_or(ActionError::Field("`to` must be a list of addresses"))?;
                let mut to = Vec::new();
                for v in list {
                    let s = v
                        .as_str()
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .ok_or(ActionError::Field("`to` must hold non-empty strings"))?;
                    if !to.iter().any(|t: &String| t.eq_ignore_ascii_case(s)) {
                        to.push(s.to_string());
                    }
                }
                if to.is_empty() {
                    return Err(ActionError::Field("`to` is empty"));
                }
                to.sort_by_key(|s| s.to_ascii_lowercase());
                Ok(Action::Email { to })
            }
            "webhook" => Ok(Action::Webhook {
                url: url()?,
                secret: match obj.get("secret") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.is_empty() => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(ActionError::Field("`secret` must be a string")),
                },
            }),
            "slack" => Ok(Action::Slack { url: url()? }),
            other => Err(ActionError::UnknownType(other.chars().take(40).collect())),
        }
    }
}

/// Notifications sent together: one, or a digest of several of one project to one target.
#[derive(Debug, Clone)]
pub struct Group {
    pub project_id: i64,
    pub action: Action,
    pub notifications: Vec<Notification>,
}

impl Group {
    pub fn is_digest(&self) -> bool {
        self.notifications.len() > 1
    }
}

/// Splits claimed notifications into what to send: per project and target, a group larger
/// than [`DIGEST_THRESHOLD`] becomes one digest, smaller ones one group per notification.
/// Notifications whose action is malformed come back apart, with their error.
pub fn group(notifications: Vec<Notification>) -> (Vec<Group>, Vec<(Notification, ActionError)>) {
    let mut bad = Vec::new();
    // BTreeMap on (project, action): deterministic order, oldest notification first inside.
    let mut by_target: BTreeMap<(i64, String), (Action, Vec<Notification>)> = BTreeMap::new();
    for n in notifications {
        match Action::parse(&n.action) {
            Ok(action) => {
                let key = (n.project_id, format!("{action:?}"));
                by_target
                    .entry(key)
                    .or_insert_with(|| (action, Vec::new()))
                    .1
                    .push(n);
            }
            Err(e) => bad.push((n, e)),
        }
    }
    let mut groups = Vec::new();
    for ((project_id, _), (action, mut ns)) in by_target {
        ns.sort_by(|a, b| {
            a.date_created
                .total_cmp(&b.date_created)
                .then(a.id.cmp(&b.id))
        });
        if ns.len() > DIGEST_THRESHOLD {
            groups.push(Group {
                project_id,
                action,
                notifications: ns,
            });
        } else {
            groups.extend(ns.into_iter().map(|n| Group {
                project_id,
                action: action.clone(),
                notifications: vec![n],
            }));
        }
    }
    (groups, bad)
}

/// Seconds to wait after a failed attempt, given the first delay `base` and the attempts made
/// before it: with the default 30 s, 30 s, 1 min, 2 min, 4 min, … at most 1 h.
pub fn retry_delay(base: f64, previous_attempts: i64) -> f64 {
    let exp = previous_attempts.clamp(0, 20) as i32;
    (base.max(1.0) * 2f64.powi(exp)).min(MAX_RETRY_SECONDS)
}

/// What to record for `n` after a send ended with `result` at `now`; a retry waits
/// [`retry_delay`] from `retry_base` seconds.
pub fn outcome(
    n: &Notification,
    result: &Result<(), SendError>,
    now: f64,
    retry_base: f64,
) -> Delivery {
    match result {
        Ok(()) => Delivery::Sent,
        Err(SendError::Permanent(e)) => Delivery::Failed { error: e.clone() },
        Err(SendError::Retry(e)) => {
            let next = now + retry_delay(retry_base, n.attempts);
            if next > n.date_created + GIVE_UP_AFTER_SECONDS {
                Delivery::Failed {
                    error: format!(
                        "gave up after {} attempts in 24 hours; last error: {e}",
                        n.attempts + 1
                    ),
                }
            } else {
                Delivery::Retry {
                    next_attempt: next,
                    error: e.clone(),
                }
            }
        }
    }
}

/// The time as an RFC 3339 UTC string (`sent_at`).
fn rfc3339(now: f64) -> String {
    chrono::DateTime::from_timestamp_millis((now * 1000.0) as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Sends one group on its channel.
async fn send(
    store: &dyn Store,
    cfg: &DeliveryConfig,
    g: &Group,
    now: f64,
) -> Result<(), SendError> {
    let alerts: Vec<Alert> = g
        .notifications
        .iter()
        .map(|n| Alert::from_payload(&n.payload))
        .collect();
    let sent_at = rfc3339(now);
    match &g.action {
        Action::Webhook { url, secret } => {
            let body = if g.is_digest() {
                let payloads: Vec<&Value> = g.notifications.iter().map(|n| &n.payload).collect();
                message::webhook_digest_body(&payloads, &sent_at)
            } else {
                let payload = g.notifications.first().map(|n| &n.payload);
                message::webhook_body(payload.unwrap_or(&Value::Null), &sent_at)
            };
            channels::send_webhook(
                url,
                secret.as_deref(),
                &body,
                cfg.allow_private,
                cfg.http_timeout,
            )
            .await
        }
        Action::Slack { url } => {
            let rendered = render(&alerts)?;
            channels::send_slack(url, &rendered.slack, cfg.allow_private, cfg.http_timeout).await
        }
        Action::Email { to } => {
            let Some(smtp) = cfg.smtp.as_ref() else {
                return Err(SendError::Permanent(channels::EMAIL_NOT_CONFIGURED.into()));
            };
            let mut recipients: Vec<String> = Vec::new();
            for t in to {
                if t == "members" {
                    let members = store.project_members(g.project_id).await.map_err(|e| {
                        SendError::Retry(format!("cannot read the project's members: {e}"))
                    })?;
                    // An account whose e-mail is not a valid address must not keep the
                    // others from getting the alert.
                    recipients.extend(
                        members
                            .into_iter()
                            .map(|u| u.email)
                            .filter(|e| e.parse::<lettre::Address>().is_ok()),
                    );
                } else {
                    recipients.push(t.clone());
                }
            }
            let mut seen = std::collections::HashSet::new();
            recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
            if recipients.is_empty() {
                return Err(SendError::Permanent(
                    "no recipient: the project has no members with an e-mail address".into(),
                ));
            }
            let rendered = render(&alerts)?;
            channels::send_email(Some(smtp), &recipients, &rendered).await
        }
    }
}

fn render(alerts: &[Alert]) -> Result<message::Rendered, SendError> {
    message::render(alerts).map_err(|e| SendError::Permanent(e.to_string()))
}

/// Records `delivery` for `n`; a failure to record is logged (the claim expires and the
/// notification is tried again).
async fn finish(store: &dyn Store, n: &Notification, delivery: &Delivery, now: f64) -> bool {
    match delivery {
        Delivery::Sent => tracing::info!(notification = n.id, project = n.project_id, "alert sent"),
        Delivery::Retry {
            error,
            next_attempt,
        } => tracing::warn!(
            notification = n.id,
            project = n.project_id,
            %error,
            retry_in = next_attempt - now,
            "alert delivery failed; will retry"
        ),
        // Without SMTP every e-mail alert ends here; that is said once at start-up, and the
        // failure is on the project's Alerts page, so it is not a warning each time.
        Delivery::Failed { error } if error == channels::EMAIL_NOT_CONFIGURED => tracing::debug!(
            notification = n.id,
            project = n.project_id,
            %error,
            "e-mail alert not sent"
        ),
        Delivery::Failed { error } => tracing::warn!(
            notification = n.id,
            project = n.project_id,
            %error,
            "alert delivery failed"
        ),
    }
    match store.finish_notification(n.id, delivery, now).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(notification = n.id, error = %e, "cannot record an alert's delivery");
            false
        }
    }
}

/// One round: claims what is due at `now` for `node_id`, sends it, records every outcome.
/// Returns how many notifications got an outcome recorded.
pub async fn deliver_due(
    store: &dyn Store,
    cfg: &DeliveryConfig,
    node_id: &str,
    now: f64,
) -> usize {
    let claimed = match store
        .claim_notifications(node_id, now, LEASE_SECONDS, CLAIM_LIMIT)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: cannot claim notifications");
            return 0;
        }
    };
    if claimed.is_empty() {
        return 0;
    }
    let (groups, bad) = group(claimed);
    let mut done = 0;
    for (n, e) in bad {
        let delivery = Delivery::Failed {
            error: e.to_string(),
        };
        done += usize::from(finish(store, &n, &delivery, now).await);
    }
    let claimed_at = Instant::now();
    let results: Vec<usize> = futures_util::stream::iter(groups)
        .map(|g| async move {
            // Start a send only while it can end before the claim expires: past that, another
            // node may claim the same notifications, and the alert would go out twice. What
            // is left unsent is claimed again once its claim has expired.
            if claimed_at.elapsed() > START_BUDGET {
                return 0;
            }
            let result = tokio::time::timeout(SEND_TIMEOUT, send(store, cfg, &g, now))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::Retry(format!(
                        "timed out after {} s",
                        SEND_TIMEOUT.as_secs()
                    )))
                });
            let mut done = 0;
            for n in &g.notifications {
                let delivery = outcome(n, &result, now, cfg.retry_base_seconds);
                done += usize::from(finish(store, n, &delivery, now).await);
            }
            done
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    done + results.iter().sum::<usize>()
}

/// Runs delivery rounds for ever (every [`DeliveryConfig::poll_interval`], or at once again
/// after a full round).
///
/// `wake` is notified when this node queues notifications, so they go out at once instead of
/// at the next poll (other nodes' notifications are found by polling).
pub async fn run(
    store: Arc<dyn Store>,
    cfg: Arc<DeliveryConfig>,
    node_id: String,
    wake: Arc<tokio::sync::Notify>,
) {
    if cfg.smtp.is_none() {
        tracing::info!(
            "e-mail alerts are not sent: set FAULTLINE_SMTP_HOST to send them \
             (webhook and Slack alerts work without it)"
        );
    }
    loop {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let done = deliver_due(store.as_ref(), &cfg, &node_id, now).await;
        if done < CLAIM_LIMIT as usize {
            let _ = tokio::time::timeout(cfg.poll_interval, wake.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(id: i64, project_id: i64, action: Value) -> Notification {
        Notification {
            id,
            rule_id: Some(1),
            project_id,
            issue_id: Some(id),
            action,
            payload: json!({}),
            status: "pending".into(),
            attempts: 0,
            next_attempt: 0.0,
            last_error: None,
            date_created: 1000.0 + id as f64,
            date_sent: None,
        }
    }

    #[test]
    fn backoff_schedule() {
        let delays: Vec<f64> = (0..10)
            .map(|a| retry_delay(FIRST_RETRY_SECONDS, a))
            .collect();
        assert_eq!(
            delays,
            [
                30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0, 3600.0
            ]
        );
        assert_eq!(retry_delay(FIRST_RETRY_SECONDS, 1000), 3600.0);
        assert_eq!(retry_delay(FIRST_RETRY_SECONDS, -5), 30.0);
        // A shorter first delay (`--alert-retry-base-seconds 1`) doubles the same way.
        let fast: Vec<f64> = (0..4).map(|a| retry_delay(1.0, a)).collect();
        assert_eq!(fast, [1.0, 2.0, 4.0, 8.0]);
        assert_eq!(retry_delay(1.0, 1000), 3600.0);
        assert_eq!(retry_delay(0.0, 0), 1.0, "at least one second");
        let defaults = DeliveryConfig::from_args(&AlertArgs::default(), "http://f.example");
        assert_eq!(defaults.retry_base_seconds, 30.0);
    }

    #[test]
    fn retries_stop_after_a_day() {
        let mut x = n(1, 1, json!({}));
        x.date_created = 0.0;
        let retry = Err(SendError::Retry("HTTP 500".into()));
        match outcome(&x, &retry, 100.0, FIRST_RETRY_SECONDS) {
            Delivery::Retry {
                next_attempt,
                error,
            } => {
                assert_eq!(next_attempt, 130.0);
                assert_eq!(error, "HTTP 500");
            }
            other => panic!("{other:?}"),
        }
        // A shorter first delay (`--alert-retry-base-seconds 5`), after two attempts: 5 × 2².
        x.attempts = 2;
        match outcome(&x, &retry, 100.0, 5.0) {
            Delivery::Retry { next_attempt, .. } => assert_eq!(next_attempt, 120.0),
            other => panic!("{other:?}"),
        }
        x.attempts = 30;
        match outcome(&x, &retry, 86000.0, FIRST_RETRY_SECONDS) {
            Delivery::Failed { error } => assert!(error.contains("gave up"), "{error}"),
            other => panic!("{other:?}"),
        }
        let perm = Err(SendError::Permanent("HTTP 404".into()));
        assert!(
            matches!(outcome(&x, &perm, 1.0, FIRST_RETRY_SECONDS), Delivery::Failed { error } if error == "HTTP 404")
        );
        assert!(matches!(
            outcome(&x, &Ok(()), 1.0, FIRST_RETRY_SECONDS),
            Delivery::Sent
        ));
    }

    #[test]
    fn actions_are_checked() {
        assert_eq!(
            Action::parse(&json!({"type": "email", "to": ["b@x.y", "members", "B@x.y"]})),
            Ok(Action::Email {
                to: vec!["b@x.y".into(), "members".into()]
            })
        );
        assert_eq!(
            Action::parse(&json!({"type": "webhook", "url": "https://h.example/x", "secret": "s"})),
            Ok(Action::Webhook {
                url: "https://h.example/x".into(),
                secret: Some("s".into())
            })
        );
        for bad in [
            json!(null),
            json!("email"),
            json!({"type": "pager"}),
            json!({"type": "email"}),
            json!({"type": "email", "to": []}),
            json!({"type": "email", "to": [1]}),
            json!({"type": "webhook"}),
            json!({"type": "webhook", "url": ""}),
            json!({"type": "webhook", "url": "https://x", "secret": 5}),
            json!({"type": "slack", "url": 7}),
        ] {
            let e = Action::parse(&bad).unwrap_err();
            assert!(e.to_string().starts_with("malformed action"), "{e}");
        }
    }

    #[test]
    fn storms_to_one_target_become_one_digest() {
        let hook = json!({"type": "webhook", "url": "https://h.example/a"});
        let other_hook = json!({"type": "webhook", "url": "https://h.example/b"});
        let mail = json!({"type": "email", "to": ["ops@x.y"]});
        let mut ns: Vec<Notification> = (1..=5).map(|i| n(i, 1, hook.clone())).collect();
        // Same URL, other project: counted apart.
        ns.push(n(6, 2, hook.clone()));
        ns.extend((7..=9).map(|i| n(i, 1, other_hook.clone())));
        ns.extend((10..=13).map(|i| n(i, 1, mail.clone())));
        ns.push(n(14, 1, json!({"type": "nope"})));
        let (groups, bad) = group(ns);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0.id, 14);
        let ids = |g: &Group| g.notifications.iter().map(|n| n.id).collect::<Vec<_>>();
        let mut digests: Vec<Vec<i64>> = groups.iter().filter(|g| g.is_digest()).map(ids).collect();
        digests.sort();
        assert_eq!(digests, vec![vec![1, 2, 3, 4, 5], vec![10, 11, 12, 13]]);
        let singles: Vec<i64> = groups
            .iter()
            .filter(|g| !g.is_digest())
            .flat_map(ids)
            .collect();
        let mut singles = singles;
        singles.sort();
        assert_eq!(singles, vec![6, 7, 8, 9]);
    }
}
