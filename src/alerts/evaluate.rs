//! Rule evaluation: after a digest batch is stored, which alert rules fire for which issues, and
//! the notifications they queue in the outbox (delivered by [`super::deliver`]).
//!
//! Evaluation runs on the node that digested the batch, right after the batch is stored. The
//! outbox insert and the per-rule, per-issue "last fired" time are written together by
//! [`Store::fire_alerts`], which lets exactly one node fire a rule for an issue per interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::store::{
    AlertRule, DigestBatch, DigestResult, Firing, Issue, NewEvent, NewNotification, Project, Store,
    StoreResult,
};

/// How long a node keeps a project's rules before reading them again.
const RULES_TTL: Duration = Duration::from_secs(5);
/// Tag keys summarized in a notification ("92 % Safari 17"), in this order.
const SUMMARY_TAGS: &[&str] = &["browser", "os", "device", "release", "environment", "url"];
/// Spike factor when a rule does not set one.
const DEFAULT_SPIKE_FACTOR: f64 = 3.0;

/// Evaluates rules; caches each project's rules and projects for a few seconds (per node).
pub struct Evaluator {
    public_url: String,
    /// Wakes this node's delivery loop when notifications were queued.
    wake: Arc<Notify>,
    cache: Mutex<HashMap<i64, CachedRules>>,
}

/// A project's rules and the project, as read at an instant.
type CachedRules = (Instant, Vec<AlertRule>, Project);

/// Why an issue is considered by a rule, decided from the batch alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    New,
    Regressed,
    Unignored,
    /// Events arrived; frequency, users and spike rules look at the counts.
    Seen,
}

impl Evaluator {
    pub fn new(public_url: &str) -> Evaluator {
        Evaluator::with_wake(public_url, Arc::new(Notify::new()))
    }

    /// An evaluator that notifies `wake` whenever it queues notifications.
    pub fn with_wake(public_url: &str, wake: Arc<Notify>) -> Evaluator {
        Evaluator {
            wake,
            public_url: public_url.trim_end_matches('/').to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn rules(
        &self,
        store: &dyn Store,
        project_id: i64,
    ) -> StoreResult<(Vec<AlertRule>, Project)> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, rules, project)) = cache.get(&project_id)
            && at.elapsed() < RULES_TTL
        {
            return Ok((rules.clone(), project.clone()));
        }
        let rules = store.alert_rules(project_id).await?;
        let project = store.project(project_id).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(project_id, (Instant::now(), rules.clone(), project.clone()));
        }
        Ok((rules, project))
    }

    /// Fires the rules matched by a stored batch; returns how many (rule, issue) pairs fired.
    /// Errors are logged by the caller; digestion goes on regardless.
    pub async fn after_batch(
        &self,
        store: &dyn Store,
        batch: &DigestBatch,
        result: &DigestResult,
        now: f64,
    ) -> StoreResult<usize> {
        // Every issue with events in the batch, with its latest event and what happened to it.
        let mut changes: BTreeMap<i64, (Change, &NewEvent)> = BTreeMap::new();
        for (issue_id, index) in &result.touched {
            if let Some(ev) = batch.events.get(*index) {
                changes.insert(*issue_id, (Change::Seen, ev));
            }
        }
        for (ids, change) in [
            (&result.unignored, Change::Unignored),
            (&result.regressions, Change::Regressed),
            (&result.new_issues, Change::New),
        ] {
            for id in ids {
                if let Some(c) = changes.get_mut(id) {
                    c.0 = change;
                }
            }
        }
        let mut firings = Vec::new();
        for (issue_id, (change, ev)) in changes {
            let (rules, project) = self.rules(store, ev.project_id).await?;
            let mut issue: Option<Issue> = None;
            for rule in rules.iter().filter(|r| filters_match(r, ev)) {
                let window = match rule.trigger.as_str() {
                    "new_issue" if change == Change::New => None,
                    "regression" if change == Change::Regressed => None,
                    "unignored" if change == Change::Unignored => None,
                    "frequency" | "users" => {
                        let minutes = rule.window_minutes.unwrap_or(60).max(1);
                        let since = now - minutes as f64 * 60.0;
                        let (events, users) = store.issue_window_counts(issue_id, since).await?;
                        let n = if rule.trigger == "frequency" {
                            events
                        } else {
                            users
                        };
                        if n <= rule.threshold.unwrap_or(i64::MAX) {
                            continue;
                        }
                        Some(json!({"minutes": minutes, "events": events, "users": users}))
                    }
                    "spike" => match spike(store, rule, issue_id, now).await? {
                        Some(w) => Some(w),
                        None => continue,
                    },
                    _ => continue,
                };
                let issue = match &issue {
                    Some(i) => i.clone(),
                    None => {
                        let i = store.issue(issue_id).await?;
                        issue = Some(i.clone());
                        i
                    }
                };
                let payload = self
                    .payload(store, rule, &project, &issue, ev, window)
                    .await?;
                let notifications = actions(&rule.actions)
                    .into_iter()
                    .map(|action| NewNotification {
                        action,
                        payload: payload.clone(),
                    })
                    .collect();
                firings.push(Firing {
                    rule_id: rule.id,
                    project_id: project.id,
                    issue_id,
                    interval_minutes: rule.interval_minutes,
                    notifications,
                });
            }
        }
        if firings.is_empty() {
            return Ok(0);
        }
        let fired = store.fire_alerts(&firings, now).await?.len();
        if fired > 0 {
            self.wake.notify_one();
        }
        Ok(fired)
    }

    /// The notification content: everything needed to act without opening Faultline first.
    pub async fn payload(
        &self,
        store: &dyn Store,
        rule: &AlertRule,
        project: &Project,
        issue: &Issue,
        ev: &NewEvent,
        window: Option<Value>,
    ) -> StoreResult<Value> {
        let mut top_tags = Vec::new();
        let keys = store.issue_tag_keys(issue.id).await?;
        for key in SUMMARY_TAGS {
            let Some(k) = keys.iter().find(|k| k.key == *key) else {
                continue;
            };
            if let Some(v) = store.issue_tag_values(issue.id, key, 1, 0).await?.first() {
                let percent = v.count as f64 * 100.0 / k.total_values.max(1) as f64;
                top_tags.push(json!({
                    "key": key,
                    "value": v.value,
                    "percent": (percent * 10.0).round() / 10.0,
                }));
            }
        }
        let iso = crate::api::serialize::iso;
        Ok(json!({
            "trigger": rule.trigger,
            "reason": reason(rule, window.as_ref()),
            "rule": {"id": rule.id, "name": rule.name},
            "project": {"id": project.id, "org": project.org_slug, "slug": project.slug},
            "issue": {
                "id": issue.id,
                "short_id": crate::api::serialize::short_id(project, issue.short_id),
                "title": issue.title,
                "culprit": issue.culprit,
                "level": issue.level,
                "status": issue.status,
                "first_seen": iso(issue.first_seen),
                "last_seen": iso(issue.last_seen),
                "events": issue.times_seen,
                "users": issue.user_count,
                "url": format!(
                    "{}/organizations/{}/issues/{}/",
                    self.public_url, project.org_slug, issue.id
                ),
            },
            "event": {
                "event_id": ev.event_id,
                "message": ev.title,
                "environment": ev.environment,
                "release": ev.release,
                "top_frame": (!ev.culprit.is_empty()).then_some(&ev.culprit),
            },
            "window": window,
            "top_tags": top_tags,
        }))
    }
}

/// "A new issue", "Seen again after being resolved", "More than 100 events in 60 minutes", …
fn reason(rule: &AlertRule, window: Option<&Value>) -> String {
    let minutes = window
        .and_then(|w| w.get("minutes"))
        .and_then(Value::as_i64)
        .unwrap_or(60);
    let n = rule.threshold.unwrap_or(0);
    match rule.trigger.as_str() {
        "new_issue" => "A new issue".into(),
        "regression" => "Seen again after being resolved".into(),
        "unignored" => "An ignored issue came back".into(),
        "frequency" => format!("More than {n} events in {minutes} minutes"),
        "users" => format!("More than {n} users affected in {minutes} minutes"),
        "spike" => {
            let factor = rule.factor.unwrap_or(DEFAULT_SPIKE_FACTOR);
            format!(
                "Spiking: over {factor}× its usual rate, at least {n} events in {minutes} minutes"
            )
        }
        other => other.to_string(),
    }
}

/// The rule's actions as a list (malformed entries are kept: delivery fails them visibly).
fn actions(actions: &Value) -> Vec<Value> {
    match actions {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Levels in increasing severity, for "level at least X".
fn severity(level: &str) -> u8 {
    match level {
        "debug" => 0,
        "info" => 1,
        "warning" => 2,
        "error" => 3,
        "fatal" => 4,
        _ => 3,
    }
}

/// Whether an event passes a rule's filters: level at least, environment, release, tags.
fn filters_match(rule: &AlertRule, ev: &NewEvent) -> bool {
    let f = &rule.filters;
    let text = |k: &str| f.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(level) = text("level")
        && severity(&ev.level) < severity(level)
    {
        return false;
    }
    if let Some(env) = text("environment")
        && ev.environment.as_deref() != Some(env)
    {
        return false;
    }
    if let Some(release) = text("release")
        && ev.release.as_deref() != Some(release)
    {
        return false;
    }
    if let Some(tags) = f.get("tags").and_then(Value::as_object) {
        for (k, v) in tags {
            let wanted = v.as_str().unwrap_or_default();
            // The user's fields (`user.email`) are kept apart from the counted tags.
            if !ev
                .tags
                .iter()
                .chain(&ev.search)
                .any(|(tk, tv)| tk == k && tv == wanted)
            {
                return false;
            }
        }
    }
    true
}

/// A spike: at least `threshold` events in the rule's window (default an hour) and more than
/// `factor` times the usual count of that window: the same hour on the previous 7 days, scaled
/// to the window's length.
async fn spike(
    store: &dyn Store,
    rule: &AlertRule,
    issue_id: i64,
    now: f64,
) -> StoreResult<Option<Value>> {
    let minutes = rule.window_minutes.unwrap_or(60).max(1);
    let (recent, users) = store
        .issue_window_counts(issue_id, now - minutes as f64 * 60.0)
        .await?;
    if recent < rule.threshold.unwrap_or(1).max(1) {
        return Ok(None);
    }
    let day = 86400;
    let now_s = now as i64;
    let hourly = store
        .issue_hourly(&[issue_id], now_s - 8 * day)
        .await?
        .remove(&issue_id)
        .unwrap_or_default();
    let by_hour: HashMap<i64, i64> = hourly.into_iter().collect();
    let this_hour = now_s.div_euclid(3600) * 3600;
    let per_hour = (1..=7)
        .map(|d| by_hour.get(&(this_hour - d * day)).copied().unwrap_or(0))
        .sum::<i64>() as f64
        / 7.0;
    let baseline = per_hour * minutes as f64 / 60.0;
    let factor = rule.factor.unwrap_or(DEFAULT_SPIKE_FACTOR);
    if recent as f64 <= factor * baseline.max(1.0) {
        return Ok(None);
    }
    Ok(Some(json!({
        "minutes": minutes,
        "events": recent,
        "users": users,
        "baseline": (baseline * 10.0).round() / 10.0,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: &str, filters: Value) -> AlertRule {
        AlertRule {
            id: 1,
            project_id: 1,
            name: "r".into(),
            trigger: trigger.into(),
            threshold: Some(10),
            window_minutes: Some(60),
            factor: None,
            filters,
            interval_minutes: 60,
            actions: json!([]),
            date_created: 0.0,
            date_updated: 0.0,
        }
    }

    fn event(level: &str, env: &str, tags: &[(&str, &str)]) -> NewEvent {
        NewEvent {
            project_id: 1,
            event_id: "e".into(),
            hash: "h".into(),
            grouping: Value::Null,
            title: "t".into(),
            culprit: String::new(),
            level: level.into(),
            event_type: "error".into(),
            metadata: Value::Null,
            platform: "other".into(),
            logger: None,
            timestamp: 0.0,
            received: 0.0,
            release: Some("1.0".into()),
            environment: Some(env.into()),
            user_key: None,
            trace_id: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            search: Vec::new(),
            payload: Vec::new(),
            size: 0,
            replaces: false,
        }
    }

    #[test]
    fn filters_need_every_condition() {
        let r = rule(
            "new_issue",
            json!({"level": "error", "environment": "production", "tags": {"browser.name": "Safari"}}),
        );
        assert!(filters_match(
            &r,
            &event("fatal", "production", &[("browser.name", "Safari")])
        ));
        assert!(!filters_match(
            &r,
            &event("warning", "production", &[("browser.name", "Safari")])
        ));
        assert!(!filters_match(
            &r,
            &event("error", "staging", &[("browser.name", "Safari")])
        ));
        assert!(!filters_match(&r, &event("error", "production", &[])));
        assert!(filters_match(
            &rule("new_issue", json!({})),
            &event("debug", "x", &[])
        ));
        let release = rule("new_issue", json!({"release": "2.0"}));
        assert!(!filters_match(&release, &event("error", "x", &[])));
    }

    #[test]
    fn filters_see_the_user_fields() {
        let r = rule(
            "new_issue",
            json!({"tags": {"user.email": "vip@example.com"}}),
        );
        let mut ev = event("error", "production", &[]);
        assert!(!filters_match(&r, &ev));
        ev.search
            .push(("user.email".into(), "vip@example.com".into()));
        assert!(filters_match(&r, &ev));
    }

    #[test]
    fn reasons_say_what_happened() {
        let mut r = rule("frequency", json!({}));
        assert_eq!(
            reason(&r, Some(&json!({"minutes": 5}))),
            "More than 10 events in 5 minutes"
        );
        r.trigger = "new_issue".into();
        assert_eq!(reason(&r, None), "A new issue");
    }
}
