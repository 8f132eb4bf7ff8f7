//! A project's alerts page: its rules in words, forms to create, delete and test them, and the
//! latest notifications with how their delivery went.
//!
//! - `GET /organizations/{org}/projects/{project}/alerts/`: the rules (trigger, filters,
//!   interval, actions; webhook secrets are never shown) and the latest 50 notifications (time,
//!   issue, channel and target, status, attempts, last error, next attempt).
//! - `POST …/alerts/rules`: creates a rule from the form. The form is turned into the JSON body
//!   the API takes and checked by the API's own [`crate::api::alerts::parse_rule`], so a rule
//!   made here obeys exactly the API's rules; its message is answered as a 400 page.
//! - `POST …/alerts/rules/{id}/delete`: deletes a rule (its notifications stay).
//! - `POST …/alerts/rules/{id}/test`: "Send a test": queues one notification per action of the
//!   rule now, about the project's most recently seen issue, with the evaluator's payload
//!   (marked as a test), through [`crate::store::Store::queue_notifications`], which does not
//!   count as a firing (the rule's next real alert is not held back). Delivery then runs as for
//!   any alert, and its outcome shows on this page.
//!
//! Anyone who can see the project reads the page; superusers and the organization's owners and
//! admins see the forms, and the others get 403 on every change (as on the settings page).

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::alerts::evaluate::Evaluator;
use crate::server::AppState;
use crate::store::{
    AlertRule, EventPick, Firing, IssueFilter, NewEvent, NewNotification, Notification, Project,
};

use super::page::{Layout, WebError, WebResult, render};
use super::session::{Viewer, now};
use super::settings::{Fields, back, path_id, project_settings_url, project_to_change};
use super::view::{ago, iso};

/// How many notifications the page lists.
const NOTIFICATIONS_SHOWN: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/organizations/{org}/projects/{project}/alerts/",
            get(alerts_page),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/rules",
            post(create_rule),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/rules/{id}/delete",
            post(delete_rule),
        )
        .route(
            "/organizations/{org}/projects/{project}/alerts/rules/{id}/test",
            post(test_rule),
        )
}

pub fn alerts_url(org: &str, slug: &str) -> String {
    format!("/organizations/{org}/projects/{slug}/alerts/")
}

/// What the page says after a change it redirected from (`?notice=CODE`); only known codes.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let code = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "notice")
        .map(|(_, v)| v.into_owned())?;
    Some(match code.as_str() {
        "rule-created" => "The alert rule was created.",
        "rule-deleted" => "The alert rule was deleted.",
        "test-queued" => {
            "A test notification was queued for each action of the rule; its delivery shows \
             below within a few seconds (reload the page)."
        }
        "test-no-issue" => {
            "A test describes the project's most recent issue, and this project has none yet: \
             send it an event first."
        }
        _ => return None,
    })
}

// --- the page ---

struct RuleRow {
    id: i64,
    name: String,
    /// "a new issue", "more than 10 events in 60 minutes", …
    trigger: String,
    /// "level at least error", "environment production", … (empty: every event).
    filters: Vec<String>,
    /// "at most once per issue every 1 hour"
    interval: String,
    /// "E-mail: the project's members", "Webhook: https://…" (never a secret).
    actions: Vec<String>,
}

struct NotificationRow {
    created: String,
    created_iso: String,
    issue_title: String,
    issue_url: Option<String>,
    rule: String,
    channel: String,
    target: String,
    /// `sent`, `pending`, `retrying` or `failed`.
    status: &'static str,
    attempts: i64,
    last_error: Option<String>,
    /// For pending ones: "now", "in 2 min".
    next_attempt: Option<String>,
    test: bool,
}

struct Choice {
    value: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "project_alerts.html")]
struct AlertsPage {
    layout: Layout,
    notice: Option<&'static str>,
    org: String,
    name: String,
    /// `/organizations/{org}/projects/{project}/alerts/`
    base: String,
    settings_url: String,
    can_edit: bool,
    rules: Vec<RuleRow>,
    notifications: Vec<NotificationRow>,
    triggers: Vec<Choice>,
    levels: Vec<Choice>,
}

const TRIGGER_CHOICES: [(&str, &str); 6] = [
    ("new_issue", "A new issue"),
    (
        "regression",
        "A regression (a resolved issue is seen again)",
    ),
    ("frequency", "More than N events in M minutes"),
    ("users", "More than N users in M minutes"),
    ("spike", "A spike: K× the usual rate and at least N events"),
    ("unignored", "An ignored issue comes back"),
];

const LEVEL_CHOICES: [(&str, &str); 5] = [
    ("", "any level"),
    ("info", "at least info"),
    ("warning", "at least warning"),
    ("error", "at least error"),
    ("fatal", "fatal"),
];

/// `GET /organizations/{org}/projects/{project}/alerts/`
async fn alerts_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> WebResult {
    let project = viewer.project(&state, &org, &slug).await?;
    let can_edit = viewer.is_org_admin(&state, project.org_id).await?;
    let rules = state
        .store
        .alert_rules(project.id)
        .await?
        .iter()
        .map(rule_row)
        .collect();
    let now = now();
    let notifications = state
        .store
        .notifications(project.id, NOTIFICATIONS_SHOWN)
        .await?
        .iter()
        .map(|n| notification_row(&project, n, now))
        .collect();
    render(&AlertsPage {
        layout: Layout::new(&viewer, format!("{} alerts", project.name), "settings"),
        notice: notice(query.as_deref()),
        base: alerts_url(&project.org_slug, &project.slug),
        settings_url: project_settings_url(&project.org_slug, &project.slug),
        org: project.org_slug,
        name: project.name,
        can_edit,
        rules,
        notifications,
        triggers: TRIGGER_CHOICES
            .iter()
            .map(|(value, label)| Choice { value, label })
            .collect(),
        levels: LEVEL_CHOICES
            .iter()
            .map(|(value, label)| Choice { value, label })
            .collect(),
    })
}

/// A rule's trigger in words.
pub fn trigger_words(rule: &AlertRule) -> String {
    let n = rule.threshold.unwrap_or(0);
    let minutes = rule.window_minutes.unwrap_or(60);
    match rule.trigger.as_str() {
        "new_issue" => "a new issue".into(),
        "regression" => "a regression".into(),
        "frequency" => format!("more than {n} events in {}", minutes_words(minutes)),
        "users" => format!("more than {n} users in {}", minutes_words(minutes)),
        "spike" => format!(
            "a spike: {}× the usual rate and at least {n} events",
            rule.factor.unwrap_or(3.0)
        ),
        "unignored" => "an ignored issue comes back".into(),
        other => other.to_string(),
    }
}

/// "1 minute", "60 minutes".
fn minutes_words(m: i64) -> String {
    if m == 1 {
        "1 minute".into()
    } else {
        format!("{m} minutes")
    }
}

/// "every time", "at most once per issue every 60 minutes".
fn interval_words(m: i64) -> String {
    if m <= 0 {
        "every time it matches".into()
    } else {
        format!("at most once per issue every {}", minutes_words(m))
    }
}

fn filter_words(filters: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |k: &str| filters.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(level) = text("level") {
        out.push(if level == "fatal" {
            "level fatal".to_string()
        } else {
            format!("level at least {level}")
        });
    }
    if let Some(env) = text("environment") {
        out.push(format!("environment {env}"));
    }
    if let Some(release) = text("release") {
        out.push(format!("release {release}"));
    }
    if let Some(tags) = filters.get("tags").and_then(Value::as_object) {
        for (k, v) in tags {
            out.push(format!("tag {k} = {}", v.as_str().unwrap_or_default()));
        }
    }
    out
}

/// An action's channel and target, without its secret.
fn action_words(action: &Value) -> (String, String) {
    let url = action.get("url").and_then(Value::as_str).unwrap_or("");
    match action.get("type").and_then(Value::as_str) {
        Some("email") => {
            let to: Vec<String> = action
                .get("to")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|r| {
                    if r == "members" {
                        "the project's members".to_string()
                    } else {
                        r.to_string()
                    }
                })
                .collect();
            ("E-mail".into(), to.join(", "))
        }
        Some("webhook") => {
            let signed = action.get("secret").is_some_and(|s| !s.is_null());
            let target = if signed {
                format!("{url} (signed)")
            } else {
                url.to_string()
            };
            ("Webhook".into(), target)
        }
        // A Slack incoming-webhook URL is itself a credential: only its host is shown.
        Some("slack") => ("Slack".into(), slack_host(url)),
        Some(other) => (other.to_string(), String::new()),
        None => ("unknown".into(), String::new()),
    }
}

fn slack_host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}/…")
}

fn rule_row(rule: &AlertRule) -> RuleRow {
    RuleRow {
        id: rule.id,
        name: rule.name.clone(),
        trigger: trigger_words(rule),
        filters: filter_words(&rule.filters),
        interval: interval_words(rule.interval_minutes),
        actions: rule
            .actions
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let (channel, target) = action_words(a);
                format!("{channel}: {target}")
            })
            .collect(),
    }
}

/// "now", "in 40 s", "in 3 min", "in 2 h".
fn until(ts: f64, now: f64) -> String {
    let s = (ts - now).ceil() as i64;
    match s {
        i64::MIN..=0 => "now".into(),
        1..=59 => format!("in {s} s"),
        60..=3599 => format!("in {} min", s / 60),
        _ => format!("in {} h", s / 3600),
    }
}

fn notification_row(project: &Project, n: &Notification, now: f64) -> NotificationRow {
    let p = &n.payload;
    let issue_id = n
        .issue_id
        .or_else(|| p["issue"]["id"].as_i64())
        .filter(|id| *id > 0);
    let issue_title = p["issue"]["title"]
        .as_str()
        .map(str::to_string)
        .or_else(|| issue_id.map(|id| format!("Issue {id}")))
        .unwrap_or_else(|| "(no issue)".into());
    let (channel, target) = action_words(&n.action);
    let status = match n.status.as_str() {
        "sent" => "sent",
        "failed" => "failed",
        _ if n.attempts > 0 => "retrying",
        _ => "pending",
    };
    NotificationRow {
        created: ago(n.date_created, now),
        created_iso: iso(n.date_created),
        issue_url: issue_id.map(|id| format!("/organizations/{}/issues/{id}/", project.org_slug)),
        issue_title,
        rule: p["rule"]["name"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| "(deleted rule)".into()),
        channel,
        target,
        status,
        attempts: n.attempts,
        last_error: n
            .last_error
            .clone()
            .filter(|e| !e.is_empty() && status != "sent"),
        next_attempt: (n.status == "pending").then(|| until(n.next_attempt, now)),
        test: p["test"] == json!(true),
    }
}

// --- changes ---

fn alerts_back(project: &Project, notice: &str, anchor: &str) -> Response {
    back(&format!(
        "{}?notice={notice}#{anchor}",
        alerts_url(&project.org_slug, &project.slug)
    ))
}

/// A number field as the API would receive it: empty = absent, a number when it reads as one,
/// else the text itself (which the API's check then refuses, naming the field).
fn number(form: &Fields, name: &str, float: bool) -> Value {
    let v = form.get(name).trim();
    if v.is_empty() {
        return Value::Null;
    }
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    if float && let Ok(f) = v.parse::<f64>() {
        return json!(f);
    }
    json!(v)
}

/// The API's JSON body for the rule a form describes (unchecked: the API's parser checks it).
pub fn form_to_rule(form: &Fields) -> WebResult<Value> {
    let mut filters = Map::new();
    for key in ["level", "environment", "release"] {
        let v = form.get(key).trim();
        if !v.is_empty() {
            filters.insert(key.into(), json!(v));
        }
    }
    let mut tags = Map::new();
    for line in form.get("tags").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                tags.insert(k.trim().to_string(), json!(v.trim()));
            }
            _ => {
                return Err(WebError::BadRequest(format!(
                    "The rule was not saved: each tag filter is one line of key:value, and \
                     {line:?} is not."
                )));
            }
        }
    }
    if !tags.is_empty() {
        filters.insert("tags".into(), Value::Object(tags));
    }

    let mut actions = Vec::new();
    let to: Vec<&str> = form
        .get("email_to")
        .split([',', '\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !to.is_empty() {
        actions.push(json!({"type": "email", "to": to}));
    }
    let webhook = form.get("webhook_url").trim();
    let secret = form.get("webhook_secret").trim();
    if !webhook.is_empty() {
        let mut action = json!({"type": "webhook", "url": webhook});
        if !secret.is_empty() {
            action["secret"] = json!(secret);
        }
        actions.push(action);
    } else if !secret.is_empty() {
        return Err(WebError::BadRequest(
            "The rule was not saved: a webhook secret needs a webhook URL.".into(),
        ));
    }
    let slack = form.get("slack_url").trim();
    if !slack.is_empty() {
        actions.push(json!({"type": "slack", "url": slack}));
    }
    if actions.is_empty() {
        return Err(WebError::BadRequest(
            "The rule was not saved: give it at least one action (e-mail, webhook or Slack)."
                .into(),
        ));
    }

    let trigger = form.get("trigger").trim();
    let counted = matches!(trigger, "frequency" | "users" | "spike");
    Ok(json!({
        "name": form.get("name"),
        "trigger": trigger,
        "threshold": if counted { number(form, "threshold", false) } else { Value::Null },
        "window_minutes": if counted { number(form, "window_minutes", false) } else { Value::Null },
        "factor": if trigger == "spike" { number(form, "factor", true) } else { Value::Null },
        "interval_minutes": number(form, "interval_minutes", false),
        "filters": filters,
        "actions": actions,
    }))
}

/// `POST …/alerts/rules`: `name`, `trigger`, `threshold`, `window_minutes`, `factor`, `level`,
/// `environment`, `release`, `tags` (`key:value` lines), `interval_minutes`, `email_to`
/// (addresses separated by commas, or `members`), `webhook_url` and `webhook_secret`,
/// `slack_url`.
async fn create_rule(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let body = form_to_rule(&form)?;
    let rule = crate::api::alerts::parse_rule(body.to_string().as_bytes(), None)
        .map_err(|e| WebError::BadRequest(format!("The rule was not saved: {}.", e.detail)))?;
    state
        .store
        .create_alert_rule(project.id, &rule, now())
        .await?;
    Ok(alerts_back(&project, "rule-created", "rules"))
}

/// `POST …/alerts/rules/{id}/delete`
async fn delete_rule(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug, id)): Path<(String, String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    state
        .store
        .delete_alert_rule(project.id, path_id(&id)?)
        .await?;
    Ok(alerts_back(&project, "rule-deleted", "rules"))
}

/// `POST …/alerts/rules/{id}/test`: queues one notification per action of the rule about the
/// project's most recently seen issue, marked as a test.
async fn test_rule(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug, id)): Path<(String, String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let rule = state.store.alert_rule(project.id, path_id(&id)?).await?;
    let filter = IssueFilter {
        project_ids: vec![project.id],
        limit: 1,
        ..IssueFilter::default()
    };
    // The outbox records which issue a notification is about (and when the rule last fired for
    // it), so a test needs a real issue.
    let Some(issue) = state.store.list_issues(&filter).await?.into_iter().next() else {
        return Ok(alerts_back(&project, "test-no-issue", "notifications"));
    };
    let latest = state
        .store
        .issue_event(issue.id, EventPick::Latest)
        .await
        .ok();
    let text = |k: &str| {
        latest
            .as_ref()
            .and_then(|e| e.payload.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let now = now();
    let event = NewEvent {
        project_id: project.id,
        event_id: latest
            .as_ref()
            .map(|e| e.event_id.clone())
            .unwrap_or_default(),
        hash: String::new(),
        grouping: Value::Null,
        title: issue.title.clone(),
        culprit: issue.culprit.clone(),
        level: issue.level.clone(),
        event_type: issue.issue_type.clone(),
        metadata: Value::Null,
        platform: issue.platform.clone(),
        logger: None,
        timestamp: latest.as_ref().map_or(issue.last_seen, |e| e.timestamp),
        received: latest.as_ref().map_or(issue.last_seen, |e| e.received),
        release: text("release"),
        environment: text("environment"),
        user_key: None,
        trace_id: None,
        tags: Vec::new(),
        search: Vec::new(),
        payload: Vec::new(),
        size: 0,
        replaces: false,
    };
    let mut payload = Evaluator::new(&state.public_url)
        .payload(state.store.as_ref(), &rule, &project, &issue, &event, None)
        .await?;
    let reason = payload["reason"].as_str().unwrap_or_default().to_string();
    payload["reason"] = json!(format!(
        "Test sent from Faultline by {} (the rule: {reason}), about the latest issue",
        viewer.user.email
    ));
    payload["test"] = json!(true);
    let notifications = rule
        .actions
        .as_array()
        .into_iter()
        .flatten()
        .map(|action| NewNotification {
            action: action.clone(),
            payload: payload.clone(),
        })
        .collect();
    state
        .store
        .queue_notifications(
            &Firing {
                rule_id: rule.id,
                project_id: project.id,
                issue_id: issue.id,
                interval_minutes: 0,
                notifications,
            },
            now,
        )
        .await?;
    Ok(alerts_back(&project, "test-queued", "notifications"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(trigger: &str) -> AlertRule {
        AlertRule {
            id: 1,
            project_id: 1,
            name: "r".into(),
            trigger: trigger.into(),
            threshold: Some(10),
            window_minutes: Some(5),
            factor: Some(2.5),
            filters: json!({}),
            interval_minutes: 60,
            actions: json!([]),
            date_created: 0.0,
            date_updated: 0.0,
        }
    }

    #[test]
    fn triggers_in_words() {
        assert_eq!(trigger_words(&rule("new_issue")), "a new issue");
        assert_eq!(trigger_words(&rule("regression")), "a regression");
        assert_eq!(
            trigger_words(&rule("frequency")),
            "more than 10 events in 5 minutes"
        );
        assert_eq!(
            trigger_words(&rule("users")),
            "more than 10 users in 5 minutes"
        );
        assert_eq!(
            trigger_words(&rule("spike")),
            "a spike: 2.5× the usual rate and at least 10 events"
        );
        assert_eq!(
            trigger_words(&rule("unignored")),
            "an ignored issue comes back"
        );
    }

    #[test]
    fn secrets_and_slack_paths_are_not_shown() {
        let (c, t) = action_words(&json!({"type": "webhook", "url": "https://h/x", "secret": "s"}));
        assert_eq!(
            (c.as_str(), t.as_str()),
            ("Webhook", "https://h/x (signed)")
        );
        let (_, t) =
            action_words(&json!({"type": "slack", "url": "https://hooks.slack.com/T/B/x"}));
        assert_eq!(t, "https://hooks.slack.com/…");
        let (_, t) = action_words(&json!({"type": "email", "to": ["members", "a@b.c"]}));
        assert_eq!(t, "the project's members, a@b.c");
    }

    #[test]
    fn forms_become_api_bodies() {
        let f = Fields::parse(
            b"name=Busy&trigger=frequency&threshold=5&window_minutes=&factor=2&level=error\
              &environment=&tags=browser%3A+Safari+17%0D%0A&interval_minutes=30\
              &email_to=members%2C+ops%40example.com&webhook_url=https%3A%2F%2Fh%2Fx\
              &webhook_secret=s&slack_url=",
        );
        let body = form_to_rule(&f).ok().unwrap();
        assert_eq!(body["threshold"], 5);
        assert_eq!(body["window_minutes"], Value::Null);
        assert_eq!(body["factor"], Value::Null);
        assert_eq!(
            body["filters"],
            json!({"level": "error", "tags": {"browser": "Safari 17"}})
        );
        assert_eq!(
            body["actions"],
            json!([{"type": "email", "to": ["members", "ops@example.com"]},
                   {"type": "webhook", "url": "https://h/x", "secret": "s"}])
        );
        let parsed = crate::api::alerts::parse_rule(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(parsed.interval_minutes, 30);
        let none = Fields::parse(b"name=x&trigger=new_issue");
        assert!(form_to_rule(&none).is_err());
        let bad_tag = Fields::parse(b"name=x&trigger=new_issue&email_to=members&tags=oops");
        assert!(form_to_rule(&bad_tag).is_err());
        let text = Fields::parse(b"name=x&trigger=users&threshold=many&email_to=members");
        let err = crate::api::alerts::parse_rule(
            form_to_rule(&text).ok().unwrap().to_string().as_bytes(),
            None,
        )
        .err()
        .unwrap();
        assert!(err.detail.contains("threshold"), "{}", err.detail);
    }
}
