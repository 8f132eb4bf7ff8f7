//! Issues and events in Sentry's JSON shapes (ids as strings, `count` as a string, camelCase).

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use crate::digest::tags;
use crate::store::{EventRecord, Issue, Project, UserReport};

/// Unix seconds → ISO 8601 with milliseconds and `Z`.
pub fn iso(ts: f64) -> String {
    let dt: DateTime<Utc> = Utc
        .timestamp_micros((ts * 1e6) as i64)
        .single()
        .unwrap_or_default();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `PROJ-1A`: the project slug upper-cased and the per-project number in base 36.
pub fn short_id(project: &Project, n: i64) -> String {
    let mut digits = Vec::new();
    let mut n = n.max(0) as u64;
    loop {
        digits.push(std::char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    let num: String = digits.iter().rev().collect::<String>().to_uppercase();
    format!("{}-{num}", project.slug.to_uppercase())
}

/// The issue JSON of list and detail endpoints. `stats` is `(period, buckets)` when asked for.
pub fn issue(
    issue: &Issue,
    project: &Project,
    public_url: &str,
    stats: Option<(&str, Vec<(i64, i64)>)>,
) -> Value {
    let mut v = json!({
        "id": issue.id.to_string(),
        "shortId": short_id(project, issue.short_id),
        "title": issue.title,
        "culprit": issue.culprit,
        "permalink": format!("{public_url}/organizations/{}/issues/{}/", project.org_slug, issue.id),
        "logger": issue.logger,
        "level": issue.level,
        "status": issue.status,
        "statusDetails": {},
        "substatus": if issue.status == "unresolved" {
            if issue.is_regression { "regressed" } else if issue.times_seen <= 1 { "new" } else { "ongoing" }
        } else if issue.status == "ignored" { "archived_forever" } else { "resolved" },
        "isRegression": issue.is_regression,
        "isPublic": false,
        "platform": issue.platform,
        "priority": "high",
        "project": {
            "id": project.id.to_string(),
            "name": project.name,
            "slug": project.slug,
            "platform": project.platform,
        },
        "type": issue.issue_type,
        "issueType": "error",
        "issueCategory": "error",
        "metadata": issue.metadata,
        "numComments": 0,
        "assignedTo": null,
        "isBookmarked": false,
        "isSubscribed": false,
        "hasSeen": false,
        "annotations": [],
        "isUnhandled": false,
        "count": issue.times_seen.to_string(),
        "userCount": issue.user_count,
        "firstSeen": iso(issue.first_seen),
        "lastSeen": iso(issue.last_seen),
        "firstRelease": issue.first_release.as_ref().map(|r| json!({"version": r, "shortVersion": r})),
        "lastRelease": issue.last_release.as_ref().map(|r| json!({"version": r, "shortVersion": r})),
    });
    if let (Some((period, buckets)), Value::Object(m)) = (stats, &mut v) {
        let series: Vec<Value> = buckets.into_iter().map(|(t, n)| json!([t, n])).collect();
        m.insert("stats".into(), json!({ period: series }));
    }
    v
}

/// Buckets hourly counts into `n` buckets of `size` seconds ending at the current bucket.
pub fn buckets(hourly: &[(i64, i64)], now: i64, size: i64, n: i64) -> Vec<(i64, i64)> {
    let last = now - now.rem_euclid(size);
    let first = last - (n - 1) * size;
    let mut out: Vec<(i64, i64)> = (0..n).map(|i| (first + i * size, 0)).collect();
    for (hour, count) in hourly {
        if *hour >= first {
            let i = ((hour - first) / size) as usize;
            if let Some(b) = out.get_mut(i) {
                b.1 += count;
            }
        }
    }
    out
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A stack frame in the API's camelCase shape, with `context` as `[[lineno, line], …]`.
fn frame(f: &Value) -> Value {
    let lineno = f.get("lineno").and_then(Value::as_i64);
    let mut context = Vec::new();
    if let Some(line) = lineno {
        let pre: Vec<&Value> = f
            .get("pre_context")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let start = line - pre.len() as i64;
        for (i, l) in pre.iter().enumerate() {
            context.push(json!([start + i as i64, l]));
        }
        if let Some(cl) = get(f, "context_line") {
            context.push(json!([line, cl]));
        }
        if let Some(post) = f.get("post_context").and_then(Value::as_array) {
            for (i, l) in post.iter().enumerate() {
                context.push(json!([line + 1 + i as i64, l]));
            }
        }
    }
    json!({
        "filename": get(f, "filename"),
        "absPath": get(f, "abs_path"),
        "module": get(f, "module"),
        "package": get(f, "package"),
        "platform": get(f, "platform"),
        "function": get(f, "function"),
        "rawFunction": get(f, "raw_function"),
        "symbol": get(f, "symbol"),
        "lineNo": lineno,
        "colNo": get(f, "colno"),
        "inApp": f.get("in_app").and_then(Value::as_bool).unwrap_or(false),
        "context": context,
        "vars": get(f, "vars"),
        "instructionAddr": get(f, "instruction_addr"),
        "symbolAddr": get(f, "symbol_addr"),
        "imageAddr": get(f, "image_addr"),
        "data": get(f, "data"),
        "trust": null,
        "errors": null,
    })
}

fn stacktrace(st: &Value) -> Value {
    let frames: Vec<Value> = st
        .get("frames")
        .and_then(Value::as_array)
        .map(|fs| fs.iter().map(frame).collect())
        .unwrap_or_default();
    json!({
        "frames": frames,
        "framesOmitted": get(st, "frames_omitted"),
        "registers": get(st, "registers"),
        "hasSystemFrames": st.get("frames").and_then(Value::as_array)
            .is_some_and(|fs| fs.iter().any(|f| f.get("in_app") != Some(&Value::Bool(true)))),
    })
}

fn pairs(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        Some(Value::Object(m)) => Value::Array(m.iter().map(|(k, v)| json!([k, v])).collect()),
        _ => json!([]),
    }
}

/// The `entries` list: exception, message, breadcrumbs, request, threads, csp.
fn entries(p: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(values) = p.pointer("/exception/values").and_then(Value::as_array) {
        let values: Vec<Value> = values
            .iter()
            .map(|e| {
                json!({
                    "type": get(e, "type"),
                    "value": get(e, "value"),
                    "module": get(e, "module"),
                    "mechanism": get(e, "mechanism"),
                    "threadId": get(e, "thread_id"),
                    "stacktrace": get(e, "stacktrace").map(stacktrace),
                    "rawStacktrace": get(e, "raw_stacktrace").map(stacktrace),
                })
            })
            .collect();
        let has_system = values.iter().any(|v| {
            v.pointer("/stacktrace/hasSystemFrames")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        });
        out.push(json!({"type": "exception", "data": {
            "values": values, "hasSystemFrames": has_system, "excOmitted": null}}));
    }
    if let Some(st) = get(p, "stacktrace") {
        out.push(json!({"type": "stacktrace", "data": stacktrace(st)}));
    }
    if let Some(threads) = p.pointer("/threads/values").and_then(Value::as_array) {
        let values: Vec<Value> = threads
            .iter()
            .map(|t| {
                json!({
                    "id": get(t, "id"), "name": get(t, "name"), "crashed": get(t, "crashed"),
                    "current": get(t, "current"), "main": get(t, "main"), "state": get(t, "state"),
                    "stacktrace": get(t, "stacktrace").map(stacktrace),
                })
            })
            .collect();
        out.push(json!({"type": "threads", "data": {"values": values}}));
    }
    if let Some(le) = get(p, "logentry") {
        out.push(json!({"type": "message", "data": {
            "formatted": s(le, "formatted").or(s(le, "message")),
            "message": get(le, "message"),
            "params": get(le, "params"),
        }}));
    }
    if let Some(crumbs) = p.pointer("/breadcrumbs/values").and_then(Value::as_array) {
        let values: Vec<Value> = crumbs
            .iter()
            .map(|c| {
                json!({
                    "timestamp": c.get("timestamp").and_then(Value::as_f64).map(iso),
                    "type": get(c, "type").cloned().unwrap_or(json!("default")),
                    "category": get(c, "category"),
                    "message": get(c, "message"),
                    "level": get(c, "level").cloned().unwrap_or(json!("info")),
                    "data": get(c, "data"),
                    "event_id": get(c, "event_id"),
                })
            })
            .collect();
        out.push(json!({"type": "breadcrumbs", "data": {"values": values}}));
    }
    if let Some(r) = get(p, "request") {
        out.push(json!({"type": "request", "data": {
            "url": get(r, "url"),
            "method": get(r, "method"),
            "query": pairs(r.get("query_string")),
            "fragment": get(r, "fragment"),
            "data": get(r, "data"),
            "headers": pairs(r.get("headers")),
            "cookies": pairs(r.get("cookies")),
            "env": get(r, "env"),
            "inferredContentType": get(r, "inferred_content_type"),
        }}));
    }
    if let Some(csp) = get(p, "csp") {
        out.push(json!({"type": "csp", "data": csp}));
    }
    out
}

/// The full event JSON (`…/events/{id}/`, `…/events/latest/`).
pub fn event(
    e: &EventRecord,
    title: &str,
    neighbours: (Option<String>, Option<String>),
    user_reports: Option<Value>,
) -> Value {
    let p = &e.payload;
    let mut event_tags: Vec<(String, String)> = tags::event_tags(p);
    event_tags.sort();
    let tags: Vec<Value> = event_tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let message = p
        .pointer("/logentry/formatted")
        .or_else(|| p.pointer("/logentry/message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({
        "id": e.event_id,
        "eventID": e.event_id,
        "groupID": e.issue_id.to_string(),
        "projectID": e.project_id.to_string(),
        "title": title,
        "message": message,
        "culprit": get(p, "culprit").cloned().unwrap_or_else(|| json!(crate::digest::title::culprit(p))),
        "location": get(p, "transaction"),
        "platform": get(p, "platform"),
        "type": get(p, "type"),
        "level": get(p, "level"),
        "logger": get(p, "logger"),
        "metadata": crate::digest::title::metadata(p),
        "dateCreated": iso(e.timestamp),
        "dateReceived": iso(e.received),
        "size": e.size,
        "dist": get(p, "dist"),
        "environment": get(p, "environment"),
        "release": s(p, "release").map(|r| json!({"version": r, "shortVersion": r})),
        "user": get(p, "user"),
        "contexts": get(p, "contexts").cloned().unwrap_or(json!({})),
        "sdk": get(p, "sdk"),
        "context": get(p, "extra").cloned().unwrap_or(json!({})),
        "packages": get(p, "modules").cloned().unwrap_or(json!({})),
        "tags": tags,
        "errors": get(p, "errors").cloned().unwrap_or(json!([])),
        "fingerprints": [e.grouping.get("hash").cloned().unwrap_or(Value::Null)],
        "grouping": e.grouping,
        "groupingConfig": {"id": "faultline:2026-11", "enhancements": ""},
        "entries": entries(p),
        "userReport": user_reports,
        "previousEventID": neighbours.0,
        "nextEventID": neighbours.1,
        "crashFile": null,
        "_meta": {},
    })
}

/// User feedback in Sentry's shape.
pub fn user_report(r: &UserReport, issue_id: i64) -> Value {
    json!({
        "id": r.id.to_string(),
        "eventID": r.event_id,
        "name": r.name,
        "email": r.email,
        "comments": r.comments,
        "dateCreated": iso(r.date_created),
        "issue": {"id": issue_id.to_string()},
    })
}

/// The short event shape of list endpoints.
pub fn event_summary(e: &EventRecord, title: &str) -> Value {
    let p = &e.payload;
    let mut event_tags = tags::event_tags(p);
    event_tags.sort();
    let tags: Vec<Value> = event_tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(e.event_id));
    m.insert("eventID".into(), json!(e.event_id));
    m.insert("groupID".into(), json!(e.issue_id.to_string()));
    m.insert("projectID".into(), json!(e.project_id.to_string()));
    m.insert("title".into(), json!(title));
    m.insert(
        "message".into(),
        json!(
            p.pointer("/logentry/formatted")
                .or_else(|| p.pointer("/logentry/message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
    );
    m.insert("culprit".into(), json!(crate::digest::title::culprit(p)));
    m.insert(
        "user".into(),
        get(p, "user").cloned().unwrap_or(Value::Null),
    );
    m.insert("tags".into(), json!(tags));
    m.insert(
        "platform".into(),
        get(p, "platform").cloned().unwrap_or(Value::Null),
    );
    m.insert("dateCreated".into(), json!(iso(e.timestamp)));
    m.insert(
        "event.type".into(),
        get(p, "type").cloned().unwrap_or(Value::Null),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_gaps_with_zero() {
        let b = buckets(&[(3600, 2), (7200, 3)], 7300, 3600, 3);
        assert_eq!(b, [(0, 0), (3600, 2), (7200, 3)]);
        let daily = buckets(&[(3600, 2), (7200, 3)], 86400 * 2, 86400, 2);
        assert_eq!(daily, [(86400, 0), (172800, 0)]);
    }

    #[test]
    fn frames_carry_numbered_context() {
        let f = frame(
            &json!({"lineno": 10, "pre_context": ["a", "b"], "context_line": "c",
            "post_context": ["d"], "in_app": true}),
        );
        assert_eq!(
            f["context"],
            json!([[8, "a"], [9, "b"], [10, "c"], [11, "d"]])
        );
        assert_eq!(f["inApp"], true);
    }
}
