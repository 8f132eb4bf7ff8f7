//! `/api/0/projects/{org}/{project}/alert-rules/`: a project's alert rules (list, create, read,
//! replace, delete).
//!
//! Anyone who sees the project reads its rules; superusers and the organization's owners and
//! admins change them. A webhook's `secret` is never answered (`"********"` stands for it), and a
//! rule sent back with `"********"` keeps the stored secret of the webhook with the same URL.
//! Bodies are checked field by field, each mistake answered 400 with a `detail` naming it;
//! unknown fields are ignored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{serialize, visible_project};
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{AlertRule, NewAlertRule, Project, User};

/// What answers stand for a stored webhook secret with.
pub const MASK: &str = "********";
pub const TRIGGERS: [&str; 6] = [
    "new_issue",
    "regression",
    "frequency",
    "users",
    "spike",
    "unignored",
];
pub const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "fatal"];
const DEFAULT_WINDOW: i64 = 60;
const DEFAULT_INTERVAL: i64 = 60;
const DEFAULT_FACTOR: f64 = 3.0;
const MAX_WINDOW: i64 = 10_080;
const MAX_INTERVAL: i64 = 43_200;
const MAX_ACTIONS: usize = 10;
const MAX_RECIPIENTS: usize = 50;
const MAX_TAGS: usize = 20;
const MAX_TEXT: usize = 200;
const MAX_URL: usize = 2_000;

/// A rule as answered: the stored rule with webhook secrets masked.
pub fn rule_json(r: &AlertRule) -> Value {
    let actions: Vec<Value> = r
        .actions
        .as_array()
        .map(|a| a.iter().map(mask_secret).collect())
        .unwrap_or_default();
    json!({
        "id": r.id.to_string(),
        "name": r.name,
        "trigger": r.trigger,
        "threshold": r.threshold,
        "window_minutes": r.window_minutes,
        "factor": r.factor,
        "filters": r.filters,
        "interval_minutes": r.interval_minutes,
        "actions": actions,
        "dateCreated": serialize::iso(r.date_created),
        "dateUpdated": serialize::iso(r.date_updated),
    })
}

fn mask_secret(action: &Value) -> Value {
    let mut action = action.clone();
    if action["type"] == "webhook"
        && let Some(obj) = action.as_object_mut()
    {
        let set = obj.get("secret").is_some_and(|s| !s.is_null());
        obj.insert("secret".into(), if set { json!(MASK) } else { Value::Null });
    }
    action
}

/// 403 unless the user may change the project's rules: a superuser, or an owner or admin of
/// its organization.
async fn check_admin(state: &AppState, user: &User, project: &Project) -> Result<(), ApiError> {
    if user.is_superuser {
        return Ok(());
    }
    let members = state.store.org_members(project.org_id).await?;
    let admin = members
        .iter()
        .any(|m| m.user.id == user.id && (m.role == "owner" || m.role == "admin"));
    if admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only the organization's owners and admins can change alert rules.",
        ))
    }
}

/// A rule id from the path; a non-number is a rule that does not exist.
fn rule_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

/// `GET /api/0/projects/{org}/{project}/alert-rules/`: the project's rules, by id.
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let rules = state.store.alert_rules(project.id).await?;
    Ok(Json(json!(rules.iter().map(rule_json).collect::<Vec<_>>())))
}

/// `POST /api/0/projects/{org}/{project}/alert-rules/`: 201 with the new rule.
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    check_admin(&state, &user, &project).await?;
    let rule = parse_rule(&body, None)?;
    let rule = state
        .store
        .create_alert_rule(project.id, &rule, now())
        .await?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))))
}

/// `GET /api/0/projects/{org}/{project}/alert-rules/{id}/`
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let rule = state.store.alert_rule(project.id, rule_id(&id)?).await?;
    Ok(Json(rule_json(&rule)))
}

/// `PUT /api/0/projects/{org}/{project}/alert-rules/{id}/`: replaces the whole rule.
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    check_admin(&state, &user, &project).await?;
    let id = rule_id(&id)?;
    let stored = state.store.alert_rule(project.id, id).await?;
    let rule = parse_rule(&body, Some(&stored))?;
    let rule = state
        .store
        .update_alert_rule(project.id, id, &rule, now())
        .await?;
    Ok(Json(rule_json(&rule)))
}

/// `DELETE /api/0/projects/{org}/{project}/alert-rules/{id}/`: 204.
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    check_admin(&state, &user, &project).await?;
    state
        .store
        .delete_alert_rule(project.id, rule_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(detail)
}

/// A field that is absent or `null`.
fn absent(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// An optional integer field within `min..=max`.
fn int_field(
    obj: &Map<String, Value>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    let v = obj.get(key);
    if absent(v) {
        return Ok(None);
    }
    match v.and_then(Value::as_i64) {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(bad(format!(
            "{key} must be a whole number from {min} to {max}"
        ))),
    }
}

/// An optional string field of 1 to `max` characters (trimmed).
fn text_field(v: Option<&Value>, what: &str, max: usize) -> Result<Option<String>, ApiError> {
    if absent(v) {
        return Ok(None);
    }
    match v.and_then(Value::as_str).map(str::trim) {
        Some(s) if !s.is_empty() && s.chars().count() <= max => Ok(Some(s.to_string())),
        _ => Err(bad(format!(
            "{what} must be a string of 1 to {max} characters"
        ))),
    }
}

/// Parses and checks a rule body. `stored` is the rule a PUT replaces (its webhook secrets are
/// kept where the body sends back the mask).
pub fn parse_rule(body: &[u8], stored: Option<&AlertRule>) -> Result<NewAlertRule, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(bad("the body must be a JSON object"));
    };
    let name = text_field(obj.get("name"), "name", MAX_TEXT)?
        .ok_or_else(|| bad("name must be a string of 1 to 200 characters"))?;
    let trigger = match obj.get("trigger").and_then(Value::as_str) {
        Some(t) if TRIGGERS.contains(&t) => t.to_string(),
        _ => {
            return Err(bad(format!(
                "trigger must be one of {}",
                TRIGGERS.join(", ")
            )));
        }
    };
    let counted = matches!(trigger.as_str(), "frequency" | "users" | "spike");
    let (threshold, window_minutes) = if counted {
        let threshold = int_field(obj, "threshold", 1, 1_000_000_000)?.ok_or_else(|| {
            bad(format!(
                "a {trigger} rule needs a threshold (a whole number of at least 1)"
            ))
        })?;
        let window = int_field(obj, "window_minutes", 1, MAX_WINDOW)?.unwrap_or(DEFAULT_WINDOW);
        (Some(threshold), Some(window))
    } else {
        (None, None)
    };
    let factor = if trigger == "spike" {
        let v = obj.get("factor");
        if absent(v) {
            Some(DEFAULT_FACTOR)
        } else {
            match v.and_then(Value::as_f64) {
                Some(f) if f.is_finite() && f > 1.0 && f <= 1000.0 => Some(f),
                _ => {
                    return Err(bad(
                        "factor must be a number above 1 and at most 1000 (how many times the \
                         usual rate)",
                    ));
                }
            }
        }
    } else {
        None
    };
    let interval_minutes =
        int_field(obj, "interval_minutes", 0, MAX_INTERVAL)?.unwrap_or(DEFAULT_INTERVAL);
    let filters = parse_filters(obj.get("filters"))?;
    let actions = parse_actions(obj.get("actions"), stored)?;
    Ok(NewAlertRule {
        name,
        trigger,
        threshold,
        window_minutes,
        factor,
        filters,
        interval_minutes,
        actions,
    })
}

fn parse_filters(v: Option<&Value>) -> Result<Value, ApiError> {
    let mut out = Map::new();
    if absent(v) {
        return Ok(Value::Object(out));
    }
    let Some(obj) = v.and_then(Value::as_object) else {
        return Err(bad("filters must be an object"));
    };
    let level = obj.get("level");
    if !absent(level) {
        match level.and_then(Value::as_str) {
            Some(l) if LEVELS.contains(&l) => {
                out.insert("level".into(), json!(l));
            }
            _ => {
                return Err(bad(format!(
                    "filters.level must be one of {} (the lowest level that matches)",
                    LEVELS.join(", ")
                )));
            }
        }
    }
    for key in ["environment", "release"] {
        if let Some(s) = text_field(obj.get(key), &format!("filters.{key}"), MAX_TEXT)? {
            out.insert(key.into(), json!(s));
        }
    }
    let tags = obj.get("tags");
    if !absent(tags) {
        let Some(tags) = tags.and_then(Value::as_object) else {
            return Err(bad("filters.tags must be an object of tag names to values"));
        };
        if tags.len() > MAX_TAGS {
            return Err(bad(format!(
                "filters.tags may hold at most {MAX_TAGS} tags"
            )));
        }
        let mut checked = Map::new();
        for (k, v) in tags {
            let ok_key = !k.trim().is_empty() && k.chars().count() <= MAX_TEXT;
            match v.as_str() {
                Some(s) if ok_key && s.chars().count() <= MAX_TEXT => {
                    checked.insert(k.clone(), json!(s));
                }
                _ => {
                    return Err(bad(format!(
                        "filters.tags: {k:?} must map a tag name to a string of at most \
                         {MAX_TEXT} characters"
                    )));
                }
            }
        }
        if !checked.is_empty() {
            out.insert("tags".into(), Value::Object(checked));
        }
    }
    Ok(Value::Object(out))
}

fn parse_actions(v: Option<&Value>, stored: Option<&AlertRule>) -> Result<Value, ApiError> {
    let actions = match v.and_then(Value::as_array) {
        Some(a) if (1..=MAX_ACTIONS).contains(&a.len()) => a,
        _ => {
            return Err(bad(format!(
                "actions must be a list of 1 to {MAX_ACTIONS} actions"
            )));
        }
    };
    let mut out = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let what = format!("actions[{i}]");
        let Some(obj) = action.as_object() else {
            return Err(bad(format!("{what} must be an object")));
        };
        let checked = match obj.get("type").and_then(Value::as_str) {
            Some("email") => json!({"type": "email", "to": recipients(obj.get("to"), &what)?}),
            Some("slack") => json!({"type": "slack", "url": url(obj.get("url"), &what)?}),
            Some("webhook") => {
                let url = url(obj.get("url"), &what)?;
                let secret = secret(obj.get("secret"), &url, &what, stored)?;
                match secret {
                    Some(s) => json!({"type": "webhook", "url": url, "secret": s}),
                    None => json!({"type": "webhook", "url": url}),
                }
            }
            _ => {
                return Err(bad(format!("{what}.type must be email, webhook or slack")));
            }
        };
        out.push(checked);
    }
    Ok(Value::Array(out))
}

/// E-mail recipients: addresses, or `"members"` (the project's members when sending).
fn recipients(v: Option<&Value>, what: &str) -> Result<Vec<String>, ApiError> {
    let err = || {
        bad(format!(
            "{what}.to must be a list of 1 to {MAX_RECIPIENTS} e-mail addresses or \"members\""
        ))
    };
    let list = v.and_then(Value::as_array).ok_or_else(err)?;
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        return Err(err());
    }
    let mut out: Vec<String> = Vec::new();
    for r in list {
        let r = r.as_str().map(str::trim).ok_or_else(err)?;
        if r != "members" && !is_address(r) {
            return Err(bad(format!(
                "{what}.to: {r:?} is neither an e-mail address nor \"members\""
            )));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_string());
        }
    }
    Ok(out)
}

fn is_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && s.len() <= 254
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && !s.contains(['<', '>', ',', ';', '"'])
        }
        None => false,
    }
}

/// An `http://` or `https://` URL with a host (addresses are checked when sending).
fn url(v: Option<&Value>, what: &str) -> Result<String, ApiError> {
    let err = || {
        bad(format!(
            "{what}.url must be an http:// or https:// URL of at most {MAX_URL} characters"
        ))
    };
    let s = v.and_then(Value::as_str).map(str::trim).ok_or_else(err)?;
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(err)?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..host_end].is_empty()
        || s.len() > MAX_URL
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err());
    }
    Ok(s.to_string())
}

/// A webhook's signing secret: none, a new one, or the mask, which keeps the stored secret of
/// the stored webhook with the same URL.
fn secret(
    v: Option<&Value>,
    url: &str,
    what: &str,
    stored: Option<&AlertRule>,
) -> Result<Option<String>, ApiError> {
    if absent(v) {
        return Ok(None);
    }
    let Some(s) = v.and_then(Value::as_str) else {
        return Err(bad(format!("{what}.secret must be a string")));
    };
    if s == MASK {
        let kept = stored
            .and_then(|r| r.actions.as_array())
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "webhook" && a["url"] == url)
            .and_then(|a| a["secret"].as_str());
        return match kept {
            Some(k) => Ok(Some(k.to_string())),
            None => Err(bad(format!(
                "{what}.secret: {MASK:?} keeps a stored secret, but no stored webhook with this \
                 url has one; send the secret itself"
            ))),
        };
    }
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > MAX_TEXT {
        return Err(bad(format!(
            "{what}.secret must be at most {MAX_TEXT} characters"
        )));
    }
    Ok(Some(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<NewAlertRule, String> {
        parse_rule(v.to_string().as_bytes(), None).map_err(|e| e.detail)
    }

    #[test]
    fn defaults_and_normalization() {
        let r = parse(json!({
            "name": " Busy ",
            "trigger": "frequency",
            "threshold": 10,
            "filters": {"level": "warning", "tags": {"browser": "Firefox"}, "unknown": 1},
            "actions": [{"type": "email", "to": ["members", "ops@example.com", "members"]}],
            "extra": true,
        }))
        .unwrap();
        assert_eq!(r.name, "Busy");
        assert_eq!(
            (r.threshold, r.window_minutes, r.interval_minutes, r.factor),
            (Some(10), Some(60), 60, None)
        );
        assert_eq!(
            r.filters,
            json!({"level": "warning", "tags": {"browser": "Firefox"}})
        );
        assert_eq!(
            r.actions,
            json!([{"type": "email", "to": ["members", "ops@example.com"]}])
        );
        let spike = parse(json!({"name": "s", "trigger": "spike", "threshold": 5,
            "actions": [{"type": "slack", "url": "https://hooks.slack.com/x"}]}))
        .unwrap();
        assert_eq!(spike.factor, Some(3.0));
        let plain = parse(json!({"name": "n", "trigger": "new_issue", "threshold": 5,
            "window_minutes": 5, "factor": 2, "actions": [{"type": "webhook", "url": "http://h/x"}]}))
        .unwrap();
        assert_eq!(
            (plain.threshold, plain.window_minutes, plain.factor),
            (None, None, None)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let ok = json!({"name": "n", "trigger": "users", "threshold": 3,
            "actions": [{"type": "email", "to": ["members"]}]});
        assert!(parse(ok.clone()).is_ok());
        let with = |key: &str, v: Value| {
            let mut b = ok.clone();
            b[key] = v;
            parse(b).unwrap_err()
        };
        assert!(with("name", json!("")).contains("name"));
        assert!(with("name", json!("x".repeat(201))).contains("name"));
        assert!(with("trigger", json!("sometimes")).contains("trigger"));
        assert!(with("threshold", json!(0)).contains("threshold"));
        assert!(with("threshold", Value::Null).contains("threshold"));
        assert!(with("window_minutes", json!(10_081)).contains("window_minutes"));
        assert!(with("interval_minutes", json!(-1)).contains("interval_minutes"));
        assert!(with("filters", json!({"level": "loud"})).contains("filters.level"));
        assert!(with("filters", json!({"tags": {"a": 1}})).contains("filters.tags"));
        assert!(with("actions", json!([])).contains("actions"));
        assert!(with("actions", json!([{"type": "pager"}])).contains("type"));
        assert!(with("actions", json!([{"type": "email", "to": []}])).contains("to"));
        assert!(with("actions", json!([{"type": "email", "to": ["nobody"]}])).contains("nobody"));
        assert!(with("actions", json!([{"type": "slack", "url": "ftp://x/y"}])).contains("url"));
        assert!(
            with(
                "actions",
                json!([{"type": "webhook", "url": "https://h/", "secret": "x".repeat(201)}])
            )
            .contains("secret")
        );
        assert!(
            with(
                "actions",
                json!([{"type": "webhook", "url": "https://h/", "secret": MASK}])
            )
            .contains("secret")
        );
        assert!(parse_rule(b"[1]", None).is_err());
        assert!(parse_rule(b"{", None).is_err());
    }
}
