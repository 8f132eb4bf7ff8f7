//! Normalization: turn an SDK's event payload into Faultline's canonical event shape.
//!
//! SDKs send the same data in many shapes (a `message` string or object, tags as an object or
//! as pairs, timestamps as numbers or RFC 3339 strings, PHP header lists, …). [`normalize`]
//! rewrites the event in place, following what Relay does on ingest (reference §5–§6), so that
//! later steps (grouping, titles, tags, storage, the API) can rely on one shape. It never fails
//! on odd content: what it cannot use is dropped and recorded in the event's `errors` list as
//! `{"type": …, "name": <path>, "value"?: …}`, with types `invalid_data`, `value_too_long`,
//! `truncated` (lists or data bags cut), `clock_drift`, `future_timestamp`, `past_timestamp`.
//!
//! # Canonical shape after [`normalize`]
//!
//! - `event_id`: 32 lowercase hex digits. `timestamp`, `received`: Unix seconds as floats.
//! - `level`: `fatal` | `error` | `warning` | `info` | `debug`. `platform`: a known platform or
//!   `other`. `type`: `error` (has exceptions), `csp` | `expectct` | `hpkp` | `transaction` |
//!   `feedback` when the payload said so, else `default`.
//! - The message lives **only** in `logentry`: `{"formatted": str, "message"?: template,
//!   "params"?: …}`. `formatted` is always present when there is a message; `message` only when
//!   it differs from `formatted` (a template). The top-level `message` key is removed.
//! - `exception`, `threads`, `breadcrumbs`: `{"values": [object, …]}`, never empty (else
//!   absent). Every stack trace has a non-empty `frames` list of objects (at most 250).
//! - `tags`: a list of `[key, value]` string pairs with unique keys.
//! - `request.headers`, `request.query_string`, `request.cookies`: lists of `[name, value]`
//!   string pairs; `request.url` has no query string or fragment.
//! - `user`: an object with string `id`, `email`, `username`, `name`, `ip_address` (a valid IP)
//!   and `data` for any other key. `contexts`: objects with a `type`.
//! - `fingerprint`: a non-empty list of strings. `extra`: an object.

use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::useragent;

/// Size and count limits applied while normalizing (Relay's defaults, reference §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeLimits {
    /// Characters of `logentry.message` / `logentry.formatted`, exception values and
    /// breadcrumb messages (8192).
    pub max_string: usize,
    /// Characters of `culprit` (200).
    pub max_culprit: usize,
    /// Characters of `transaction` (200).
    pub max_transaction: usize,
    /// Characters of `release` (200).
    pub max_release: usize,
    /// Characters of `environment` (64); longer ones are dropped, not cut.
    pub max_environment: usize,
    /// Characters of `logger` (64).
    pub max_logger: usize,
    /// Characters of `dist` (64).
    pub max_dist: usize,
    /// Characters of `server_name` (256).
    pub max_server_name: usize,
    /// Characters of an exception `type` (256).
    pub max_exception_type: usize,
    /// Characters of a tag key (200).
    pub max_tag_key: usize,
    /// Characters of a tag value (200).
    pub max_tag_value: usize,
    /// Frames kept per stack trace, the most recent ones (250).
    pub max_frames: usize,
    /// Above this many frames, middle frames lose `vars`, `pre_context`, `post_context` (50).
    pub slim_frames_above: usize,
    /// Breadcrumbs kept, the most recent ones (100).
    pub max_breadcrumbs: usize,
    /// Nesting depth of `extra` before values become JSON strings (7).
    pub extra_depth: usize,
    /// Approximate JSON size of `extra` in bytes (256 KiB).
    pub extra_size: usize,
    /// Nesting depth of a frame's `vars` (5).
    pub vars_depth: usize,
    /// Approximate JSON size of a frame's `vars` in bytes (2 KiB).
    pub vars_size: usize,
    /// How far in the future a timestamp may be, in seconds (60).
    pub max_future_secs: i64,
    /// How old a timestamp may be, in seconds (90 days).
    pub max_age_secs: i64,
    /// Clock drift between `sent_at` and arrival from which timestamps are shifted (55 min).
    pub clock_drift_secs: i64,
}

impl Default for NormalizeLimits {
    fn default() -> Self {
        NormalizeLimits {
            max_string: 8192,
            max_culprit: 200,
            max_transaction: 200,
            max_release: 200,
            max_environment: 64,
            max_logger: 64,
            max_dist: 64,
            max_server_name: 256,
            max_exception_type: 256,
            max_tag_key: 200,
            max_tag_value: 200,
            max_frames: 250,
            slim_frames_above: 50,
            max_breadcrumbs: 100,
            extra_depth: 7,
            extra_size: 256 * 1024,
            vars_depth: 5,
            vars_size: 2 * 1024,
            max_future_secs: 60,
            max_age_secs: 90 * 86_400,
            clock_drift_secs: 55 * 60,
        }
    }
}

/// What the server knows about an event besides its payload.
#[derive(Debug, Clone)]
pub struct NormalizeContext<'a> {
    /// `event_id` from the envelope header, in any UUID form; wins over the payload's.
    pub event_id: Option<&'a str>,
    /// When the event arrived.
    pub received: DateTime<Utc>,
    /// `sent_at` from the envelope header, for clock-drift correction.
    pub sent_at: Option<DateTime<Utc>>,
    /// The client's IP (connection or trusted proxy), for `{{auto}}` and IP inference.
    pub client_ip: Option<IpAddr>,
    /// `User-Agent` of the ingest request; used for `javascript` events whose
    /// `request.headers` carry none.
    pub user_agent: Option<&'a str>,
    /// Limits to apply.
    pub limits: &'a NormalizeLimits,
}

/// Why an event could not be normalized at all.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    /// The payload is JSON but not an object.
    #[error("event payload is not a JSON object")]
    NotAnObject,
}

/// Platforms Sentry knows; anything else becomes `other`.
const PLATFORMS: &[&str] = &[
    "as3",
    "c",
    "cfml",
    "cocoa",
    "csharp",
    "elixir",
    "haskell",
    "go",
    "groovy",
    "java",
    "javascript",
    "native",
    "node",
    "objc",
    "other",
    "perl",
    "php",
    "python",
    "ruby",
];

/// Event types an SDK (or the security endpoint) may set; others are inferred.
const KEPT_TYPES: &[&str] = &["csp", "expectct", "hpkp", "transaction", "feedback"];

/// Server-written fields a payload must not smuggle in.
const SERVER_FIELDS: &[&str] = &[
    "_meta",
    "errors",
    "grouping_config",
    "project",
    "key_id",
    "version",
];

/// Contexts whose top-level strings get trailing whitespace stripped (node: `"12.11\n"`).
const TRIMMED_CONTEXTS: &[&str] = &[
    "os",
    "client_os",
    "runtime",
    "browser",
    "device",
    "app",
    "gpu",
];

/// Rewrites `event` into the canonical shape described in the module docs.
///
/// Fails only when the payload is not a JSON object; anything else odd is fixed or dropped and
/// recorded in `errors`.
pub fn normalize(event: &mut Value, ctx: &NormalizeContext<'_>) -> Result<(), NormalizeError> {
    let obj = event.as_object_mut().ok_or(NormalizeError::NotAnObject)?;
    let limits = ctx.limits;
    let mut errors = Errors::default();
    for key in SERVER_FIELDS {
        obj.remove(*key);
    }

    normalize_event_id(obj, ctx, &mut errors);
    let drift = normalize_timestamps(obj, ctx, &mut errors);
    normalize_level(obj, &mut errors);
    let platform = normalize_platform(obj);
    normalize_scalars(obj, limits, &mut errors);
    normalize_logentry(obj, limits, &mut errors);
    normalize_exceptions(obj, limits, &mut errors);
    normalize_threads(obj, limits, &mut errors);
    if let Some(st) = obj.get_mut("stacktrace")
        && !normalize_stacktrace(st, "stacktrace", limits, &mut errors)
    {
        obj.remove("stacktrace");
    }
    normalize_breadcrumbs(obj, drift, limits, &mut errors);
    normalize_tags(obj, limits, &mut errors);
    normalize_request(obj, ctx, &mut errors);
    normalize_user(obj, ctx, &platform, &mut errors);
    normalize_contexts(obj, ctx, &platform, &mut errors);
    normalize_extra(obj, limits, &mut errors);
    normalize_fingerprint(obj, &mut errors);
    normalize_type(obj);

    if !errors.0.is_empty() {
        obj.insert("errors".into(), Value::Array(errors.0));
    }
    Ok(())
}

/// The `errors` list being collected.
#[derive(Default)]
struct Errors(Vec<Value>);

impl Errors {
    fn push(&mut self, kind: &str, name: &str) {
        self.0.push(json!({"type": kind, "name": name}));
    }

    /// Records an error with the offending value (long strings cut, containers summarized).
    fn push_value(&mut self, kind: &str, name: &str, value: &Value) {
        let value = match value {
            Value::String(s) => {
                let mut s = s.clone();
                trim_chars(&mut s, 200);
                Value::String(s)
            }
            Value::Array(_) => Value::String("<array>".into()),
            Value::Object(_) => Value::String("<object>".into()),
            other => other.clone(),
        };
        self.0
            .push(json!({"type": kind, "name": name, "value": value}));
    }
}

// ---------------------------------------------------------------------------------------------
// ids, timestamps, level, platform
// ---------------------------------------------------------------------------------------------

/// `d2f9…` from any UUID form (simple, hyphenated, braced, urn).
fn parse_uuid(s: &str) -> Option<String> {
    uuid::Uuid::try_parse(s.trim())
        .ok()
        .map(|u| u.simple().to_string())
}

fn normalize_event_id(
    obj: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    errors: &mut Errors,
) {
    let from_payload = match obj.get("event_id") {
        Some(Value::String(s)) => {
            let parsed = parse_uuid(s);
            if parsed.is_none() {
                errors.push_value("invalid_data", "event_id", &Value::String(s.clone()));
            }
            parsed
        }
        None | Some(Value::Null) => None,
        Some(other) => {
            errors.push_value("invalid_data", "event_id", other);
            None
        }
    };
    let id = ctx
        .event_id
        .and_then(parse_uuid)
        .or(from_payload)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    obj.insert("event_id".into(), Value::String(id));
}

/// Unix seconds with microsecond precision.
fn to_secs(dt: DateTime<Utc>) -> f64 {
    dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_micros()) / 1e6
}

fn secs_value(secs: f64) -> Value {
    serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
}

fn rfc3339(secs: f64) -> String {
    Utc.timestamp_opt(secs.floor() as i64, 0)
        .single()
        .map_or_else(|| secs.to_string(), |d| d.to_rfc3339())
}

/// Parses a timestamp: Unix seconds (number or numeric string) or an RFC 3339 / ISO 8601 date
/// (no zone = UTC). Non-finite or pre-1970 values are rejected.
pub(crate) fn parse_timestamp(value: &Value) -> Option<f64> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                n
            } else if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                to_secs(dt.with_timezone(&Utc))
            } else {
                let dt = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
                    .iter()
                    .find_map(|f| DateTime::parse_from_str(s, f).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|| {
                        let naive = s.trim_end_matches('Z');
                        [
                            "%Y-%m-%dT%H:%M:%S%.f",
                            "%Y-%m-%d %H:%M:%S%.f",
                            "%Y-%m-%dT%H:%M",
                        ]
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
                        .map(|n| n.and_utc())
                    })?;
                to_secs(dt)
            }
        }
        _ => return None,
    };
    // Up to the end of year 9999.
    (0.0..253_402_300_800.0).contains(&secs).then_some(secs)
}

/// Sets `received` and a sane `timestamp`; returns the clock drift (seconds) applied, if any,
/// so that breadcrumbs can be shifted by the same amount.
fn normalize_timestamps(
    obj: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    errors: &mut Errors,
) -> Option<f64> {
    let limits = ctx.limits;
    let received = to_secs(ctx.received);
    obj.insert("received".into(), secs_value(received));

    let mut drift = None;
    let timestamp = match obj.get("timestamp") {
        None | Some(Value::Null) => received,
        Some(raw) => match parse_timestamp(raw) {
            Some(mut ts) => {
                if let Some(sent_at) = ctx.sent_at {
                    let d = received - to_secs(sent_at);
                    if d.abs() >= limits.clock_drift_secs as f64 {
                        errors.0.push(json!({
                            "type": "clock_drift",
                            "name": "timestamp",
                            "sdk_time": sent_at.to_rfc3339(),
                            "server_time": ctx.received.to_rfc3339(),
                        }));
                        ts += d;
                        drift = Some(d);
                    }
                }
                if ts > received + limits.max_future_secs as f64 {
                    errors.push_value("future_timestamp", "timestamp", &Value::String(rfc3339(ts)));
                    received
                } else if ts < received - limits.max_age_secs as f64 {
                    errors.push_value("past_timestamp", "timestamp", &Value::String(rfc3339(ts)));
                    received
                } else {
                    ts
                }
            }
            None => {
                errors.push_value("invalid_data", "timestamp", raw);
                received
            }
        },
    };
    obj.insert("timestamp".into(), secs_value(timestamp));
    drift
}

/// A level from a name or a Python logging number.
fn parse_level(value: &Value) -> Option<&'static str> {
    match value {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "fatal" | "critical" => Some("fatal"),
            "error" => Some("error"),
            "warning" | "warn" => Some("warning"),
            "info" | "log" => Some("info"),
            "debug" => Some("debug"),
            _ => None,
        },
        Value::Number(n) => match n.as_i64()? {
            10 => Some("debug"),
            20 => Some("info"),
            30 => Some("warning"),
            40 => Some("error"),
            50 => Some("fatal"),
            _ => None,
        },
        _ => None,
    }
}

fn normalize_level(obj: &mut Map<String, Value>, errors: &mut Errors) {
    let level = match obj.get("level") {
        None | Some(Value::Null) => "error",
        Some(raw) => parse_level(raw).unwrap_or_else(|| {
            errors.push_value("invalid_data", "level", raw);
            "error"
        }),
    };
    obj.insert("level".into(), Value::String(level.into()));
}

fn normalize_platform(obj: &mut Map<String, Value>) -> String {
    let platform = match obj.get("platform") {
        Some(Value::String(p)) if PLATFORMS.contains(&p.as_str()) => p.clone(),
        _ => "other".to_owned(),
    };
    obj.insert("platform".into(), Value::String(platform.clone()));
    platform
}

// ---------------------------------------------------------------------------------------------
// plain string fields
// ---------------------------------------------------------------------------------------------

/// Cuts `s` to at most `max` characters, ending in `...` when cut. Returns whether it cut.
pub(crate) fn trim_chars(s: &mut String, max: usize) -> bool {
    if s.len() <= max || s.chars().count() <= max {
        return false;
    }
    let keep = if max >= 3 { max - 3 } else { max };
    let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    s.truncate(cut);
    if max >= 3 {
        s.push_str("...");
    }
    true
}

/// A scalar as a string (numbers and booleans stringified); `None` for null and containers.
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Takes `key` out of `obj` as a string: scalars are stringified, anything else dropped with an
/// error. Surrounding whitespace is trimmed; empty strings count as absent.
fn take_string(obj: &mut Map<String, Value>, key: &str, errors: &mut Errors) -> Option<String> {
    let value = obj.remove(key)?;
    match scalar_string(&value) {
        Some(s) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else if t.len() == s.len() {
                Some(s)
            } else {
                Some(t.to_owned())
            }
        }
        None => {
            if !value.is_null() {
                errors.push_value("invalid_data", key, &value);
            }
            None
        }
    }
}

fn valid_release(r: &str) -> bool {
    !r.is_empty()
        && !matches!(r, "." | "..")
        && !r.eq_ignore_ascii_case("latest")
        && !r.contains(['\n', '\r', '\t', '/', '\\'])
}

fn normalize_scalars(obj: &mut Map<String, Value>, limits: &NormalizeLimits, errors: &mut Errors) {
    // Cut to length.
    for (key, max) in [
        ("culprit", limits.max_culprit),
        ("transaction", limits.max_transaction),
        ("server_name", limits.max_server_name),
        ("logger", limits.max_logger),
        ("release", limits.max_release),
        ("dist", limits.max_dist),
    ] {
        if let Some(mut s) = take_string(obj, key, errors) {
            if trim_chars(&mut s, max) {
                errors.push("value_too_long", key);
            }
            obj.insert(key.into(), Value::String(s));
        }
    }
    // Validity rules; invalid values are dropped.
    let invalid = |obj: &mut Map<String, Value>, key: &str, errors: &mut Errors| {
        if let Some(v) = obj.remove(key) {
            errors.push_value("invalid_data", key, &v);
        }
    };
    if obj
        .get("logger")
        .and_then(Value::as_str)
        .is_some_and(|l| l.contains(['\n', '\r']))
    {
        invalid(obj, "logger", errors);
    }
    if obj
        .get("release")
        .and_then(Value::as_str)
        .is_some_and(|r| !valid_release(r))
    {
        invalid(obj, "release", errors);
    }
    let dist_ok = |d: &str| {
        d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if obj
        .get("dist")
        .and_then(Value::as_str)
        .is_some_and(|d| !dist_ok(d))
    {
        invalid(obj, "dist", errors);
    }
    if let Some(env) = take_string(obj, "environment", errors) {
        if env.chars().count() > limits.max_environment || env.contains(['/', '\n', '\r']) {
            errors.push_value("invalid_data", "environment", &Value::String(env));
        } else {
            obj.insert("environment".into(), Value::String(env));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// message
// ---------------------------------------------------------------------------------------------

/// A parameter rendered into a message.
fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Best-effort rendering of `%s`/`%d`/`%(name)s` and `{}`/`{0}`/`{name}` templates.
/// `None` when the template has no placeholder the params fill.
fn format_template(template: &str, params: &Value) -> Option<String> {
    let list = params.as_array();
    let map = params.as_object();
    if list.is_none_or(Vec::is_empty) && map.is_none_or(Map::is_empty) {
        return None;
    }
    let lookup_index = |i: usize| list.and_then(|l| l.get(i)).map(param_text);
    let lookup_name = |n: &str| map.and_then(|m| m.get(n)).map(param_text);

    let mut out = String::with_capacity(template.len() + 32);
    let mut next_positional = 0;
    let mut filled = false;
    let mut rest = template;
    while let Some(at) = rest.find(['%', '{']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let mut consumed = 1;
        let mut replacement = None;
        if let Some(after) = tail.strip_prefix('%') {
            if after.starts_with('%') {
                replacement = Some("%".to_owned());
                consumed = 2;
            } else if let Some(named) = after.strip_prefix('(') {
                if let Some(close) = named.find(')').filter(|c| *c <= 64)
                    && named[close + 1..].starts_with(['s', 'd', 'i', 'f', 'r'])
                    && let Some(v) = lookup_name(&named[..close])
                {
                    replacement = Some(v);
                    consumed = 1 + 1 + close + 1 + 1;
                }
            } else if after.starts_with(['s', 'd', 'i', 'f', 'r'])
                && let Some(v) = lookup_index(next_positional)
            {
                next_positional += 1;
                replacement = Some(v);
                consumed = 2;
            }
        } else if let Some(after) = tail.strip_prefix('{') {
            if after.starts_with('{') {
                replacement = Some("{".to_owned());
                consumed = 2;
            } else if let Some(close) = after.find('}').filter(|c| *c <= 64) {
                let inner = &after[..close];
                let value = if inner.is_empty() {
                    let v = lookup_index(next_positional);
                    next_positional += 1;
                    v
                } else if let Ok(i) = inner.parse::<usize>() {
                    lookup_index(i)
                } else if inner.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    lookup_name(inner)
                } else {
                    None
                };
                if let Some(v) = value {
                    replacement = Some(v);
                    consumed = 1 + close + 1;
                }
            }
        }
        match replacement {
            Some(r) => {
                filled |= !(r == "%" || r == "{");
                out.push_str(&r);
            }
            None => out.push_str(&tail[..1]),
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    filled.then_some(out)
}

fn normalize_logentry(obj: &mut Map<String, Value>, limits: &NormalizeLimits, errors: &mut Errors) {
    let top_message = obj.remove("message");
    let legacy = obj.remove("sentry.interfaces.Message");
    let mut entry = match obj.remove("logentry").or(legacy) {
        Some(Value::Object(map)) if !map.is_empty() => map,
        _ => match top_message {
            Some(Value::Object(map)) => map,
            Some(Value::String(s)) => {
                let mut map = Map::new();
                map.insert("formatted".into(), Value::String(s));
                map
            }
            Some(other @ (Value::Number(_) | Value::Bool(_))) => {
                let mut map = Map::new();
                map.insert("formatted".into(), Value::String(other.to_string()));
                map
            }
            _ => return,
        },
    };
    let message = entry
        .remove("message")
        .as_ref()
        .and_then(scalar_string)
        .filter(|s| !s.trim().is_empty());
    let params = entry.remove("params").filter(|p| !p.is_null());
    let formatted = entry
        .remove("formatted")
        .as_ref()
        .and_then(scalar_string)
        .filter(|s| !s.trim().is_empty());
    let formatted = formatted.or_else(|| {
        let m = message.as_ref()?;
        Some(
            params
                .as_ref()
                .and_then(|p| format_template(m, p))
                .unwrap_or_else(|| m.clone()),
        )
    });
    let Some(mut formatted) = formatted else {
        return;
    };
    let mut out = Map::new();
    if trim_chars(&mut formatted, limits.max_string) {
        errors.push("value_too_long", "logentry.formatted");
    }
    if let Some(mut m) = message
        && m != formatted
    {
        if trim_chars(&mut m, limits.max_string) {
            errors.push("value_too_long", "logentry.message");
        }
        out.insert("message".into(), Value::String(m));
        if let Some(p) = params {
            out.insert("params".into(), p);
        }
    }
    out.insert("formatted".into(), Value::String(formatted));
    obj.insert("logentry".into(), Value::Object(out));
}

// ---------------------------------------------------------------------------------------------
// exceptions, threads, stack traces
// ---------------------------------------------------------------------------------------------

/// `{"values": items}` without copying the items (`json!` would serialize them again).
fn values_object(items: Vec<Value>) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert("values".into(), Value::Array(items));
    Value::Object(map)
}

/// `[key, value]`.
fn pair(key: String, value: String) -> Value {
    Value::Array(vec![Value::String(key), Value::String(value)])
}

/// A list from `[…]`, `{"values": […]}` or a single object.
fn into_values(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        Value::Object(mut map) => match map.remove("values") {
            Some(Value::Array(items)) => Some(items),
            Some(_) => None,
            None if map.is_empty() => None,
            None => Some(vec![Value::Object(map)]),
        },
        _ => None,
    }
}

/// A `"TypeError: foo"` value without type: `("TypeError", "foo")`.
fn split_type_value(value: &str) -> Option<(&str, &str)> {
    let (ty, rest) = value.split_once(':')?;
    let valid = !ty.is_empty()
        && ty.len() <= 128
        && ty
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$'));
    valid.then(|| (ty, rest.trim_start()))
}

/// A value as exception text: strings kept, other values as JSON.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn normalize_exceptions(
    obj: &mut Map<String, Value>,
    limits: &NormalizeLimits,
    errors: &mut Errors,
) {
    let Some(raw) = obj.remove("exception") else {
        return;
    };
    let Some(values) = into_values(raw) else {
        errors.push("invalid_data", "exception");
        return;
    };
    let mut kept = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let path = format!("exception.values.{i}");
        let Value::Object(mut exc) = value else {
            if !value.is_null() {
                errors.push("invalid_data", &path);
            }
            continue;
        };
        let mut ty = exc
            .remove("type")
            .as_ref()
            .and_then(value_text)
            .filter(|t| !t.is_empty());
        let mut val = exc
            .remove("value")
            .as_ref()
            .and_then(value_text)
            .filter(|v| !v.is_empty());
        if ty.is_none()
            && let Some((t, v)) = val.as_deref().and_then(split_type_value)
        {
            let (t, v) = (t.to_owned(), v.to_owned());
            ty = Some(t);
            val = (!v.is_empty()).then_some(v);
        }
        if let Some(t) = ty.as_mut()
            && trim_chars(t, limits.max_exception_type)
        {
            errors.push("value_too_long", &format!("{path}.type"));
        }
        if let Some(v) = val.as_mut()
            && trim_chars(v, limits.max_string)
        {
            errors.push("value_too_long", &format!("{path}.value"));
        }
        for key in ["stacktrace", "raw_stacktrace"] {
            if let Some(st) = exc.get_mut(key)
                && !normalize_stacktrace(st, &format!("{path}.{key}"), limits, errors)
            {
                exc.remove(key);
            }
        }
        if exc.get("mechanism").is_some_and(|m| !m.is_object()) {
            exc.remove("mechanism");
        }
        if exc.get("module").is_some_and(|m| !m.is_string()) {
            exc.remove("module");
        }
        if ty.is_none() && val.is_none() && !exc.contains_key("stacktrace") {
            errors.push("invalid_data", &path);
            continue;
        }
        if let Some(t) = ty {
            exc.insert("type".into(), Value::String(t));
        }
        if let Some(v) = val {
            exc.insert("value".into(), Value::String(v));
        }
        kept.push(Value::Object(exc));
    }
    if !kept.is_empty() {
        obj.insert("exception".into(), values_object(kept));
    }
}

fn normalize_threads(obj: &mut Map<String, Value>, limits: &NormalizeLimits, errors: &mut Errors) {
    let Some(raw) = obj.remove("threads") else {
        return;
    };
    let Some(values) = into_values(raw) else {
        errors.push("invalid_data", "threads");
        return;
    };
    let mut kept = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        let Value::Object(mut thread) = value else {
            continue;
        };
        for key in ["stacktrace", "raw_stacktrace"] {
            if let Some(st) = thread.get_mut(key)
                && !normalize_stacktrace(st, &format!("threads.values.{i}.{key}"), limits, errors)
            {
                thread.remove(key);
            }
        }
        kept.push(Value::Object(thread));
    }
    if !kept.is_empty() {
        obj.insert("threads".into(), values_object(kept));
    }
}

/// Normalizes a stack trace in place; `false` when it holds no usable frame (remove it).
fn normalize_stacktrace(
    st: &mut Value,
    path: &str,
    limits: &NormalizeLimits,
    errors: &mut Errors,
) -> bool {
    let Some(st) = st.as_object_mut() else {
        return false;
    };
    let Some(Value::Array(frames)) = st.get_mut("frames") else {
        return false;
    };
    frames.retain(Value::is_object);
    if frames.len() > limits.max_frames {
        let drop = frames.len() - limits.max_frames;
        frames.drain(..drop);
        errors.0.push(json!({
            "type": "truncated",
            "name": format!("{path}.frames"),
            "original_length": drop + limits.max_frames,
        }));
    }
    let mut vars_trimmed = false;
    for frame in frames.iter_mut() {
        if let Some(frame) = frame.as_object_mut() {
            vars_trimmed |= normalize_frame(frame, limits);
        }
    }
    if vars_trimmed {
        errors.push("truncated", &format!("{path}.frames.vars"));
    }
    let len = frames.len();
    if len > limits.slim_frames_above {
        let half = limits.slim_frames_above / 2;
        for frame in frames.iter_mut().take(len - half).skip(half) {
            if let Some(frame) = frame.as_object_mut() {
                frame.remove("vars");
                frame.remove("pre_context");
                frame.remove("post_context");
            }
        }
    }
    !frames.is_empty()
}

/// Normalizes one frame; returns whether its `vars` were trimmed.
fn normalize_frame(frame: &mut Map<String, Value>, limits: &NormalizeLimits) -> bool {
    // One pass over the frame's fields (a frame has a dozen; looking each one up costs more).
    frame.retain(|key, value| match key.as_str() {
        "function" | "raw_function" => value.as_str().is_some_and(|f| f != "?" && !f.is_empty()),
        "filename" | "abs_path" | "module" | "package" | "context_line" | "platform" | "symbol" => {
            value.is_string()
        }
        "in_app" => value.is_boolean(),
        "lineno" | "colno" => {
            let number = match value {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            if let Some(n) = number
                && !value.is_u64()
            {
                *value = Value::from(n);
            }
            number.is_some()
        }
        _ => true,
    });
    let mut has_context = false;
    for key in ["pre_context", "post_context"] {
        match frame.get_mut(key) {
            Some(Value::Array(lines)) => {
                for line in lines.iter_mut() {
                    if !line.is_string() {
                        *line = Value::String(value_text(line).unwrap_or_default());
                    }
                }
                has_context |= !lines.is_empty();
            }
            Some(_) => {
                frame.remove(key);
            }
            None => {}
        }
    }
    if has_context && !frame.contains_key("context_line") {
        frame.insert("context_line".into(), Value::String(String::new()));
    }
    match frame.get_mut("vars") {
        Some(vars @ Value::Object(_)) => trim_bag(vars, limits.vars_depth, limits.vars_size),
        Some(Value::Array(items)) => {
            // Some SDKs send positional vars; key them by index.
            let map: Map<String, Value> = std::mem::take(items)
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect();
            let mut vars = Value::Object(map);
            let trimmed = trim_bag(&mut vars, limits.vars_depth, limits.vars_size);
            frame.insert("vars".into(), vars);
            trimmed
        }
        Some(_) => {
            frame.remove("vars");
            false
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// data bags
// ---------------------------------------------------------------------------------------------

/// Trims a data bag: containers nested `max_depth` deep become JSON strings, and once about
/// `max_size` bytes of JSON are used up, further entries are removed. Returns whether it changed
/// anything.
fn trim_bag(value: &mut Value, max_depth: usize, max_size: usize) -> bool {
    let mut budget = max_size;
    let mut changed = false;
    trim_bag_value(value, 0, max_depth, &mut budget, &mut changed);
    changed
}

/// Returns whether `value` is kept.
fn trim_bag_value(
    value: &mut Value,
    depth: usize,
    max_depth: usize,
    budget: &mut usize,
    changed: &mut bool,
) -> bool {
    if depth >= max_depth && (value.is_object() || value.is_array()) {
        *value = Value::String(value.to_string());
        *changed = true;
    }
    match value {
        Value::Object(map) => {
            *budget = budget.saturating_sub(2);
            map.retain(|key, child| {
                let cost = key.len() + 3;
                if *budget <= cost {
                    *changed = true;
                    return false;
                }
                *budget -= cost;
                trim_bag_value(child, depth + 1, max_depth, budget, changed)
            });
            true
        }
        Value::Array(items) => {
            *budget = budget.saturating_sub(2);
            items.retain_mut(|child| {
                if *budget <= 1 {
                    *changed = true;
                    return false;
                }
                *budget -= 1;
                trim_bag_value(child, depth + 1, max_depth, budget, changed)
            });
            true
        }
        Value::String(s) => {
            let cost = s.len() + 2;
            if cost <= *budget {
                *budget -= cost;
                return true;
            }
            *changed = true;
            if *budget < 16 {
                *budget = 0;
                return false;
            }
            let max_chars = *budget - 5;
            // Byte budget: cut at a char boundary no later than `max_chars` bytes.
            let mut cut = max_chars.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
            *budget = 0;
            true
        }
        _ => {
            let cost = 8;
            if *budget < cost {
                *changed = true;
                return false;
            }
            *budget -= cost;
            true
        }
    }
}

fn normalize_extra(obj: &mut Map<String, Value>, limits: &NormalizeLimits, errors: &mut Errors) {
    let Some(extra) = obj.get_mut("extra") else {
        return;
    };
    if extra.is_object() {
        if trim_bag(extra, limits.extra_depth, limits.extra_size) {
            errors.push("truncated", "extra");
        }
    } else if let Some(v) = obj.remove("extra")
        && !v.is_null()
    {
        errors.push_value("invalid_data", "extra", &v);
    }
}

// ---------------------------------------------------------------------------------------------
// breadcrumbs
// ---------------------------------------------------------------------------------------------

fn normalize_breadcrumbs(
    obj: &mut Map<String, Value>,
    drift: Option<f64>,
    limits: &NormalizeLimits,
    errors: &mut Errors,
) {
    let Some(raw) = obj.remove("breadcrumbs") else {
        return;
    };
    let Some(mut values) = into_values(raw) else {
        errors.push("invalid_data", "breadcrumbs");
        return;
    };
    values.retain(Value::is_object);
    if values.len() > limits.max_breadcrumbs {
        let drop = values.len() - limits.max_breadcrumbs;
        values.drain(..drop);
        errors.0.push(json!({
            "type": "truncated",
            "name": "breadcrumbs.values",
            "original_length": drop + limits.max_breadcrumbs,
        }));
    }
    values.retain_mut(|crumb| {
        let Some(crumb) = crumb.as_object_mut() else {
            return false;
        };
        match crumb.get("timestamp") {
            None | Some(Value::Null) => {
                crumb.remove("timestamp");
            }
            Some(raw) => match parse_timestamp(raw) {
                Some(ts) => {
                    crumb.insert("timestamp".into(), secs_value(ts + drift.unwrap_or(0.0)));
                }
                // Pre-1970 and unreadable timestamps: Relay drops such breadcrumbs.
                None => return false,
            },
        }
        let ty = match crumb.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            _ => "default".to_owned(),
        };
        crumb.insert("type".into(), Value::String(ty));
        let level = crumb.get("level").and_then(parse_level).unwrap_or("info");
        crumb.insert("level".into(), Value::String(level.into()));
        for key in ["category", "origin"] {
            if crumb.get(key).is_some_and(|v| !v.is_string()) {
                crumb.remove(key);
            }
        }
        match crumb.get("message").map(value_text) {
            Some(Some(mut m)) => {
                trim_chars(&mut m, limits.max_string);
                crumb.insert("message".into(), Value::String(m));
            }
            Some(None) => {
                crumb.remove("message");
            }
            None => {}
        }
        if crumb.get("data").is_some_and(|d| !d.is_object()) {
            crumb.remove("data");
        }
        true
    });
    if !values.is_empty() {
        obj.insert("breadcrumbs".into(), values_object(values));
    }
}

// ---------------------------------------------------------------------------------------------
// tags
// ---------------------------------------------------------------------------------------------

/// Tag key rules: trimmed, spaces → `-`, only `[a-zA-Z0-9_.:-]`.
fn tag_key(raw: &str) -> Option<String> {
    let key: String = raw
        .trim()
        .chars()
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    let valid = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    valid.then_some(key)
}

/// Tag value rules: numbers stringified, booleans `True`/`False`; null, containers, empty
/// strings and newlines rejected.
fn tag_value(raw: &Value) -> Option<String> {
    let value = match raw {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        _ => return None,
    };
    (!value.is_empty() && !value.contains(['\n', '\r'])).then_some(value)
}

fn normalize_tags(obj: &mut Map<String, Value>, limits: &NormalizeLimits, errors: &mut Errors) {
    let Some(raw) = obj.remove("tags") else {
        return;
    };
    let pairs: Vec<(Value, Value)> = match raw {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (Value::String(k), v))
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let v = pair.pop()?;
                    let k = pair.pop()?;
                    Some((k, v))
                }
                Value::Object(mut o) => Some((o.remove("key")?, o.remove("value")?)),
                other => {
                    errors.push_value("invalid_data", "tags", &other);
                    None
                }
            })
            .collect(),
        Value::Null => return,
        other => {
            errors.push_value("invalid_data", "tags", &other);
            return;
        }
    };
    let mut seen = HashSet::with_capacity(pairs.len());
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let Some(mut key) = scalar_string(&k).as_deref().and_then(tag_key) else {
            errors.push_value("invalid_data", "tags", &k);
            continue;
        };
        if v.is_null() {
            continue;
        }
        let Some(mut value) = tag_value(&v) else {
            errors.push_value("invalid_data", &format!("tags.{key}"), &v);
            continue;
        };
        if trim_chars(&mut key, limits.max_tag_key) {
            errors.push("value_too_long", "tags");
        }
        if trim_chars(&mut value, limits.max_tag_value) {
            errors.push("value_too_long", &format!("tags.{key}"));
        }
        if seen.insert(key.clone()) {
            out.push(pair(key, value));
        }
    }
    if !out.is_empty() {
        obj.insert("tags".into(), Value::Array(out));
    }
}

// ---------------------------------------------------------------------------------------------
// request
// ---------------------------------------------------------------------------------------------

/// `%xx` and (for query strings) `+` decoding, lossy on invalid UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                match hex
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a pair list is read from a string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PairSource {
    Headers,
    Query,
    Cookies,
}

/// A header / query / cookie value as text: lists (PHP headers) joined with `, `.
fn pair_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(pair_value).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        other => Some(other.to_string()),
    }
}

/// Headers, query strings and cookies as `[[name, value], …]`.
fn to_pairs(value: Value, source: PairSource) -> Option<Vec<Value>> {
    let pairs: Vec<(String, String)> = match value {
        Value::String(s) => match source {
            PairSource::Headers => return None,
            PairSource::Query => s
                .trim()
                .trim_start_matches('?')
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
            PairSource::Cookies => s
                .split(';')
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    let k = k.trim();
                    (!k.is_empty()).then(|| (k.to_owned(), v.trim().to_owned()))
                })
                .collect(),
        },
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| Some((k, pair_value(&v)?)))
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let pair = item.as_array()?;
                match pair.as_slice() {
                    [k, v] => Some((scalar_string(k)?, pair_value(v)?)),
                    _ => None,
                }
            })
            .collect(),
        _ => return None,
    };
    Some(pairs.into_iter().map(|(k, v)| pair(k, v)).collect())
}

/// The value of the first pair named `name` (case-insensitive) in a pair list.
pub(crate) fn pair_lookup<'v>(pairs: Option<&'v Value>, name: &str) -> Option<&'v str> {
    pairs?.as_array()?.iter().find_map(|pair| {
        let pair = pair.as_array()?;
        let key = pair.first()?.as_str()?;
        key.eq_ignore_ascii_case(name)
            .then(|| pair.get(1)?.as_str())
            .flatten()
    })
}

fn normalize_request(
    obj: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    errors: &mut Errors,
) {
    let Some(request) = obj.get_mut("request") else {
        return;
    };
    let Some(req) = request.as_object_mut() else {
        if let Some(v) = obj.remove("request")
            && !v.is_null()
        {
            errors.push_value("invalid_data", "request", &v);
        }
        return;
    };

    // URL: query string and fragment move to their own fields (which win if both are set).
    match req.get("url").map(scalar_string) {
        Some(Some(url)) => {
            let (rest, fragment) = match url.split_once('#') {
                Some((r, f)) => (r, Some(f)),
                None => (url.as_str(), None),
            };
            let (base, query) = match rest.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (rest, None),
            };
            if let Some(q) = query.filter(|q| !q.is_empty())
                && req
                    .get("query_string")
                    .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
            {
                req.insert("query_string".into(), Value::String(q.to_owned()));
            }
            if let Some(f) = fragment.filter(|f| !f.is_empty())
                && req.get("fragment").is_none_or(Value::is_null)
            {
                req.insert("fragment".into(), Value::String(f.to_owned()));
            }
            let base = base.to_owned();
            req.insert("url".into(), Value::String(base));
        }
        Some(None) => {
            req.remove("url");
        }
        None => {}
    }
    match req.get("method") {
        Some(Value::String(m)) => {
            let m = m.trim().to_ascii_uppercase();
            req.insert("method".into(), Value::String(m));
        }
        Some(_) => {
            req.remove("method");
        }
        None => {}
    }
    for (key, source) in [
        ("headers", PairSource::Headers),
        ("query_string", PairSource::Query),
        ("cookies", PairSource::Cookies),
    ] {
        if let Some(raw) = req.remove(key) {
            match to_pairs(raw, source) {
                Some(pairs) if !pairs.is_empty() => {
                    req.insert(key.into(), Value::Array(pairs));
                }
                Some(_) => {}
                None => errors.push("invalid_data", &format!("request.{key}")),
            }
        }
    }
    if !req.contains_key("cookies")
        && let Some(cookie) = pair_lookup(req.get("headers"), "Cookie")
        && let Some(pairs) = to_pairs(Value::String(cookie.to_owned()), PairSource::Cookies)
        && !pairs.is_empty()
    {
        req.insert("cookies".into(), Value::Array(pairs));
    }
    if req.get("fragment").is_some_and(|v| !v.is_string()) {
        req.remove("fragment");
    }
    match req.get_mut("env") {
        Some(Value::Object(env))
            if env.get("REMOTE_ADDR").and_then(Value::as_str) == Some("{{auto}}") =>
        {
            match ctx.client_ip {
                Some(ip) => {
                    env.insert("REMOTE_ADDR".into(), Value::String(ip.to_string()));
                }
                None => {
                    env.remove("REMOTE_ADDR");
                }
            }
        }
        Some(Value::Object(_)) => {}
        Some(_) => {
            req.remove("env");
        }
        None => {}
    }
}

// ---------------------------------------------------------------------------------------------
// user
// ---------------------------------------------------------------------------------------------

const USER_KEYS: &[&str] = &[
    "id",
    "email",
    "username",
    "name",
    "ip_address",
    "segment",
    "geo",
    "data",
    "sentry_user",
];

fn normalize_user(
    obj: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    platform: &str,
    errors: &mut Errors,
) {
    let infer_ip = obj
        .get("sdk")
        .and_then(|s| s.get("settings"))
        .and_then(|s| s.get("infer_ip"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let remote_addr = obj
        .get("request")
        .and_then(|r| r.get("env"))
        .and_then(|e| e.get("REMOTE_ADDR"))
        .and_then(Value::as_str)
        .and_then(|a| a.trim().parse::<IpAddr>().ok());

    let mut user = match obj.remove("user") {
        Some(Value::Object(user)) => user,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            errors.push_value("invalid_data", "user", &other);
            Map::new()
        }
    };

    // Unknown keys move into `data`.
    let unknown: Vec<String> = user
        .keys()
        .filter(|k| !USER_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let mut data = match user.remove("data") {
            Some(Value::Object(d)) => d,
            _ => Map::new(),
        };
        for key in unknown {
            if let Some(v) = user.remove(&key) {
                data.entry(key).or_insert(v);
            }
        }
        user.insert("data".into(), Value::Object(data));
    }
    if user.get("data").is_some_and(|d| !d.is_object()) {
        user.remove("data");
    }
    if user.get("geo").is_some_and(|d| !d.is_object()) {
        user.remove("geo");
    }
    match user.get("id").map(scalar_string) {
        Some(Some(id)) if !id.is_empty() => {
            user.insert("id".into(), Value::String(id));
        }
        Some(_) => {
            user.remove("id");
        }
        None => {}
    }
    for key in ["email", "username", "name", "segment", "sentry_user"] {
        match user.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => {
                user.remove(key);
            }
            None => {}
        }
    }

    let never = infer_ip.as_deref() == Some("never");
    let ip = match user.remove("ip_address") {
        Some(Value::String(s)) if s.trim() == "{{auto}}" => ctx.client_ip.filter(|_| !never),
        Some(Value::String(s)) => {
            let parsed = s.trim().parse::<IpAddr>().ok();
            if parsed.is_none() {
                errors.push_value("invalid_data", "user.ip_address", &Value::String(s));
            }
            parsed
        }
        Some(Value::Null) | None => None,
        Some(other) => {
            errors.push_value("invalid_data", "user.ip_address", &other);
            None
        }
    };
    let ip = ip.or_else(|| match infer_ip.as_deref() {
        Some("never") => None,
        Some("auto") => ctx.client_ip,
        // Legacy: the request's REMOTE_ADDR, else the client for browser-like platforms.
        _ => remote_addr.or_else(|| {
            matches!(platform, "javascript" | "cocoa" | "objc")
                .then_some(ctx.client_ip)
                .flatten()
        }),
    });
    if let Some(ip) = ip {
        user.insert("ip_address".into(), Value::String(ip.to_string()));
    }
    if !user.is_empty() {
        obj.insert("user".into(), Value::Object(user));
    }
}

// ---------------------------------------------------------------------------------------------
// contexts
// ---------------------------------------------------------------------------------------------

fn normalize_contexts(
    obj: &mut Map<String, Value>,
    ctx: &NormalizeContext<'_>,
    platform: &str,
    errors: &mut Errors,
) {
    let mut contexts = match obj.remove("contexts") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            errors.push_value("invalid_data", "contexts", &other);
            Map::new()
        }
    };
    contexts.retain(|key, value| {
        let Some(context) = value.as_object_mut() else {
            return false;
        };
        if !context.get("type").is_some_and(Value::is_string) {
            context.insert("type".into(), Value::String(key.clone()));
        }
        if TRIMMED_CONTEXTS.contains(&key.as_str()) {
            for v in context.values_mut() {
                if let Value::String(s) = v {
                    let trimmed = s.trim_end();
                    if trimmed.len() != s.len() {
                        *s = trimmed.to_owned();
                    }
                }
            }
        }
        true
    });

    let os_key = if platform == "javascript" {
        "os"
    } else {
        "client_os"
    };
    let wants_ua = !contexts.contains_key("browser")
        || !contexts.contains_key(os_key)
        || !contexts.contains_key("device");
    if wants_ua {
        let header = obj
            .get("request")
            .and_then(|r| pair_lookup(r.get("headers"), "User-Agent"));
        let ua = header.or(if platform == "javascript" {
            ctx.user_agent
        } else {
            None
        });
        if let Some(ua) = ua {
            let parsed = useragent::parse(ua);
            if let Some((name, version)) = parsed.browser
                && !contexts.contains_key("browser")
            {
                contexts.insert("browser".into(), named_context("browser", name, version));
            }
            if let Some((name, version)) = parsed.os
                && !contexts.contains_key(os_key)
            {
                contexts.insert(os_key.into(), named_context("os", name, version));
            }
            if let Some(family) = parsed.device
                && !contexts.contains_key("device")
            {
                contexts.insert("device".into(), json!({"family": family, "type": "device"}));
            }
        }
    }
    if !contexts.is_empty() {
        obj.insert("contexts".into(), Value::Object(contexts));
    }
}

fn named_context(ty: &str, name: String, version: Option<String>) -> Value {
    let mut map = Map::new();
    map.insert("name".into(), Value::String(name));
    if let Some(v) = version {
        map.insert("version".into(), Value::String(v));
    }
    map.insert("type".into(), Value::String(ty.into()));
    Value::Object(map)
}

// ---------------------------------------------------------------------------------------------
// fingerprint, type
// ---------------------------------------------------------------------------------------------

fn normalize_fingerprint(obj: &mut Map<String, Value>, errors: &mut Errors) {
    let Some(raw) = obj.remove("fingerprint") else {
        return;
    };
    let Value::Array(items) = raw else {
        if !raw.is_null() {
            errors.push_value("invalid_data", "fingerprint", &raw);
        }
        return;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) => out.push(Value::String(s)),
            Value::Number(n) => out.push(Value::String(n.to_string())),
            Value::Bool(b) => out.push(Value::String(if b { "True" } else { "False" }.into())),
            Value::Null => {}
            other => {
                errors.push_value("invalid_data", "fingerprint", &other);
                return;
            }
        }
    }
    if !out.is_empty() {
        obj.insert("fingerprint".into(), Value::Array(out));
    }
}

fn normalize_type(obj: &mut Map<String, Value>) {
    let has_exception = obj
        .get("exception")
        .and_then(|e| e.get("values"))
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty());
    let ty = if has_exception {
        "error"
    } else {
        match obj.get("type").and_then(Value::as_str) {
            Some(t) if KEPT_TYPES.contains(&t) => KEPT_TYPES
                .iter()
                .copied()
                .find(|k| *k == t)
                .unwrap_or("default"),
            _ => "default",
        }
    };
    obj.insert("type".into(), Value::String(ty.into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static LIMITS: LazyLock<NormalizeLimits> = LazyLock::new(NormalizeLimits::default);

    /// 2026-11-24T06:45:00Z
    const RECEIVED: i64 = 1_795_502_700;

    fn ctx() -> NormalizeContext<'static> {
        NormalizeContext {
            event_id: None,
            received: Utc.timestamp_opt(RECEIVED, 0).unwrap(),
            sent_at: None,
            client_ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: None,
            limits: &LIMITS,
        }
    }

    fn norm(event: Value) -> Value {
        norm_with(event, &ctx())
    }

    #[test]
    fn frame_fields_of_the_wrong_type_are_dropped_and_line_numbers_read() {
        let e = norm(
            json!({"exception": {"values": [{"type": "E", "stacktrace": {"frames": [
                {"function": "", "raw_function": "?", "filename": 3, "abs_path": "/a.py",
                 "module": ["m"], "in_app": "yes", "lineno": "12", "colno": " 7 ", "custom": 1},
                {"function": "f", "raw_function": "f(int)", "in_app": true, "lineno": 12,
                 "colno": 3.5, "platform": "python", "symbol": null},
                {"function": "g", "lineno": -1, "colno": "x"},
            ]}}]}}),
        );
        let frames = &e["exception"]["values"][0]["stacktrace"]["frames"];
        assert_eq!(
            frames[0],
            json!({"abs_path": "/a.py", "lineno": 12, "colno": 7, "custom": 1})
        );
        assert_eq!(
            frames[1],
            json!({"function": "f", "raw_function": "f(int)", "in_app": true, "lineno": 12,
                   "platform": "python"})
        );
        assert_eq!(frames[2], json!({"function": "g"}));
    }

    fn norm_with(mut event: Value, ctx: &NormalizeContext<'_>) -> Value {
        normalize(&mut event, ctx).unwrap();
        event
    }

    fn error_types(event: &Value) -> Vec<(String, String)> {
        event["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        (
                            e["type"].as_str().unwrap().to_owned(),
                            e["name"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn rejects_non_objects() {
        for payload in [json!([1, 2]), json!("event"), json!(null)] {
            let mut payload = payload;
            assert!(matches!(
                normalize(&mut payload, &ctx()),
                Err(NormalizeError::NotAnObject)
            ));
        }
    }

    #[test]
    fn event_id_forms() {
        let e = norm(json!({"event_id": "9EC79C33-EC99-42AB-8353-589FCB2E04DC"}));
        assert_eq!(e["event_id"], "9ec79c33ec9942ab8353589fcb2e04dc");

        let header = "{d2f9b1b4-2b5f-4c9a-8a37-4b0d9f1c2e3a}";
        let e = norm_with(
            json!({"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"}),
            &NormalizeContext {
                event_id: Some(header),
                ..ctx()
            },
        );
        assert_eq!(e["event_id"], "d2f9b1b42b5f4c9a8a374b0d9f1c2e3a");

        for payload in [
            json!({}),
            json!({"event_id": "../../etc/passwd"}),
            json!({"event_id": 42}),
        ] {
            let e = norm(payload);
            let id = e["event_id"].as_str().unwrap();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn timestamps_become_unix_seconds() {
        let e = norm(json!({"timestamp": "2026-11-24T06:43:48.5Z"}));
        assert_eq!(e["timestamp"], json!(1_795_502_628.5));
        assert_eq!(e["received"], json!(RECEIVED as f64));

        // No zone means UTC; numbers pass through.
        let e = norm(json!({"timestamp": "2026-11-24T06:43:48"}));
        assert_eq!(e["timestamp"], json!(1_795_502_628.0));
        let e = norm(json!({"timestamp": 1_795_502_600.25}));
        assert_eq!(e["timestamp"], json!(1_795_502_600.25));

        // Missing → received; future / too old → received with an error.
        assert_eq!(norm(json!({}))["timestamp"], json!(RECEIVED as f64));
        let e = norm(json!({"timestamp": RECEIVED + 3600}));
        assert_eq!(e["timestamp"], json!(RECEIVED as f64));
        assert_eq!(
            error_types(&e),
            [("future_timestamp".into(), "timestamp".into())]
        );
        let e = norm(json!({"timestamp": RECEIVED - 91 * 86_400}));
        assert_eq!(e["timestamp"], json!(RECEIVED as f64));
        assert_eq!(error_types(&e)[0].0, "past_timestamp");
        let e = norm(json!({"timestamp": "yesterday"}));
        assert_eq!(e["timestamp"], json!(RECEIVED as f64));
        assert_eq!(error_types(&e)[0].0, "invalid_data");
    }

    #[test]
    fn clock_drift_shifts_event_and_breadcrumbs() {
        // The client's clock is two hours behind.
        let sent_at = Utc.timestamp_opt(RECEIVED - 7200, 0).unwrap();
        let e = norm_with(
            json!({
                "timestamp": RECEIVED - 7205,
                "breadcrumbs": [{"timestamp": RECEIVED - 7210, "message": "a"}],
            }),
            &NormalizeContext {
                sent_at: Some(sent_at),
                ..ctx()
            },
        );
        assert_eq!(e["timestamp"], json!((RECEIVED - 5) as f64));
        assert_eq!(
            e["breadcrumbs"]["values"][0]["timestamp"],
            json!((RECEIVED - 10) as f64)
        );
        assert_eq!(e["errors"][0]["type"], "clock_drift");

        // Small drift is left alone.
        let sent_at = Utc.timestamp_opt(RECEIVED - 60, 0).unwrap();
        let e = norm_with(
            json!({"timestamp": RECEIVED - 65}),
            &NormalizeContext {
                sent_at: Some(sent_at),
                ..ctx()
            },
        );
        assert_eq!(e["timestamp"], json!((RECEIVED - 65) as f64));
    }

    #[test]
    fn levels_and_platforms() {
        let level = |v: Value| norm(json!({"level": v}))["level"].clone();
        assert_eq!(level(json!("warning")), "warning");
        assert_eq!(level(json!("log")), "info");
        assert_eq!(level(json!("critical")), "fatal");
        assert_eq!(level(json!("WARN")), "warning");
        assert_eq!(level(json!(10)), "debug");
        assert_eq!(level(json!(40)), "error");
        assert_eq!(level(json!("loud")), "error");
        assert_eq!(level(json!(null)), "error");
        let e = norm(json!({"level": "loud"}));
        assert_eq!(error_types(&e), [("invalid_data".into(), "level".into())]);

        assert_eq!(norm(json!({"platform": "python"}))["platform"], "python");
        assert_eq!(norm(json!({"platform": "cobol"}))["platform"], "other");
        assert_eq!(norm(json!({}))["platform"], "other");
    }

    #[test]
    fn message_lives_in_logentry() {
        let e = norm(json!({"message": "Order 991 stuck"}));
        assert_eq!(e["logentry"], json!({"formatted": "Order 991 stuck"}));
        assert!(e.get("message").is_none());

        let e =
            norm(json!({"message": {"message": "Order %s stuck in %s", "params": [991, "eu"]}}));
        assert_eq!(
            e["logentry"],
            json!({"message": "Order %s stuck in %s", "params": [991, "eu"], "formatted": "Order 991 stuck in eu"})
        );

        let e = norm(json!({"logentry": {"message": "Hi {name}, {}", "params": {"name": "Jo"}}}));
        assert_eq!(e["logentry"]["formatted"], "Hi Jo, {}");

        let e = norm(
            json!({"logentry": {"message": "Order %s", "params": ["1"], "formatted": "Order #1"}}),
        );
        assert_eq!(e["logentry"]["formatted"], "Order #1");
        assert_eq!(e["logentry"]["message"], "Order %s");

        // A logentry wins over a top-level message; empty ones disappear.
        let e = norm(json!({"message": "old", "logentry": {"formatted": "new"}}));
        assert_eq!(e["logentry"], json!({"formatted": "new"}));
        assert!(
            norm(json!({"message": "", "logentry": {}}))
                .get("logentry")
                .is_none()
        );

        let long = "x".repeat(10_000);
        let e = norm(json!({"message": long}));
        let formatted = e["logentry"]["formatted"].as_str().unwrap();
        assert_eq!(formatted.chars().count(), 8192);
        assert!(formatted.ends_with("..."));
        assert_eq!(
            error_types(&e),
            [("value_too_long".into(), "logentry.formatted".into())]
        );
    }

    #[test]
    fn template_formatting() {
        assert_eq!(
            format_template("%s%% of %(n)s", &json!({"n": 3})),
            Some("%s% of 3".into())
        );
        assert_eq!(
            format_template("%d and %s", &json!([1, true])),
            Some("1 and true".into())
        );
        assert_eq!(
            format_template("{1} {0} {{x}}", &json!(["a", "b"])),
            Some("b a {x}}".into())
        );
        assert_eq!(format_template("no placeholders", &json!(["a"])), None);
        assert_eq!(format_template("%s", &json!([])), None);
        assert_eq!(
            format_template("ünï %s ✓ {", &json!(["é"])),
            Some("ünï é ✓ {".into())
        );
    }

    #[test]
    fn exceptions_become_values() {
        let e = norm(json!({
            "exception": [
                {"value": "TypeError: x is undefined"},
                {"type": "E", "value": 42},
                {"mechanism": {"type": "generic"}},
                "junk",
                {"type": "Outer", "value": {"nested": true}, "module": null},
            ]
        }));
        let values = e["exception"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0]["type"], "TypeError");
        assert_eq!(values[0]["value"], "x is undefined");
        assert_eq!(values[1]["value"], "42");
        assert_eq!(values[2]["value"], r#"{"nested":true}"#);
        assert!(values[2].get("module").is_none());
        assert_eq!(e["type"], "error");
        assert!(error_types(&e).contains(&("invalid_data".into(), "exception.values.2".into())));

        let e = norm(json!({"exception": {"values": [{"value": "Uncaught Error: spaced type"}]}}));
        assert!(e["exception"]["values"][0].get("type").is_none());

        let e = norm(json!({"exception": {"values": []}}));
        assert!(e.get("exception").is_none());
        assert_eq!(e["type"], "default");
    }

    #[test]
    fn stack_traces_are_capped_and_slimmed() {
        let frames: Vec<Value> = (0..300)
            .map(|i| {
                json!({
                    "function": if i == 299 { "?".to_owned() } else { format!("f{i}") },
                    "lineno": i,
                    "vars": {"i": i},
                    "pre_context": ["a"],
                    "post_context": ["b", null],
                })
            })
            .collect();
        let e = norm(json!({
            "exception": {"values": [{"type": "E", "stacktrace": {"frames": frames}}]},
            "threads": {"values": [{"id": 1, "stacktrace": {"frames": []}}]},
            "stacktrace": {"frames": [{"function": "main", "lineno": "12"}]},
        }));
        let frames = e["exception"]["values"][0]["stacktrace"]["frames"]
            .as_array()
            .unwrap();
        assert_eq!(frames.len(), 250);
        assert_eq!(frames[0]["function"], "f50");
        assert!(
            frames[249].get("function").is_none(),
            "`?` functions are dropped"
        );
        assert_eq!(frames[0]["vars"], json!({"i": 50}));
        assert_eq!(
            frames[0]["context_line"], "",
            "context_line is filled when context exists"
        );
        assert_eq!(frames[0]["post_context"], json!(["b", ""]));
        assert!(frames[100].get("vars").is_none() && frames[100].get("pre_context").is_none());
        assert!(frames[249].get("vars").is_some());
        assert!(error_types(&e).iter().any(|(t, _)| t == "truncated"));

        // A thread without frames keeps its other data; the top-level trace is kept.
        assert!(e["threads"]["values"][0].get("stacktrace").is_none());
        assert_eq!(e["stacktrace"]["frames"][0]["lineno"], 12);
    }

    #[test]
    fn vars_and_extra_are_depth_and_size_limited() {
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
        let e = norm(json!({
            "exception": {"values": [{"type": "E", "stacktrace": {"frames": [{"vars": deep.clone()}]}}]},
            "extra": {"deep": {"x": deep}, "zbig": "y".repeat(300_000), "zz": 1},
        }));
        let vars = &e["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"];
        assert_eq!(vars["a"]["b"]["c"]["d"]["e"], json!(r#"{"f":1}"#));
        let extra = &e["extra"];
        assert_eq!(
            extra["deep"]["x"]["a"]["b"]["c"]["d"]["e"],
            json!(r#"{"f":1}"#)
        );
        let big = extra["zbig"].as_str().unwrap();
        assert!(big.len() < 256 * 1024 && big.ends_with("..."));
        assert!(
            extra.get("zz").is_none(),
            "entries past the size budget are dropped"
        );
        assert!(error_types(&e).contains(&("truncated".into(), "extra".into())));

        let e = norm(json!({"extra": "not an object"}));
        assert!(e.get("extra").is_none());
    }

    #[test]
    fn breadcrumbs_become_values_with_defaults() {
        let crumbs: Vec<Value> = (0..120)
            .map(|i| json!({"message": format!("m{i}"), "timestamp": "2026-11-24T06:40:00Z"}))
            .collect();
        let e = norm(json!({"breadcrumbs": crumbs}));
        let values = e["breadcrumbs"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 100);
        assert_eq!(values[0]["message"], "m20");
        assert_eq!(values[0]["type"], "default");
        assert_eq!(values[0]["level"], "info");
        assert_eq!(values[0]["timestamp"], json!((RECEIVED - 300) as f64));

        let e = norm(json!({"breadcrumbs": {"values": [
            {"category": "checkout", "level": "warning", "type": "http", "data": {"sku": "SKU-1"}},
            {"timestamp": -5},
            "junk",
        ]}}));
        let values = e["breadcrumbs"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0]["level"], "warning");
        assert_eq!(values[0]["type"], "http");
        assert_eq!(values[0]["data"]["sku"], "SKU-1");
    }

    #[test]
    fn tags_become_pairs() {
        let e = norm(
            json!({"tags": {"customer_tier": "pro", "count": 3, "ok": true, "gone": null, "my tag": "x", "bad/key": "y", "nl": "a\nb"}}),
        );
        let tags = e["tags"].as_array().unwrap();
        assert!(tags.contains(&json!(["customer_tier", "pro"])));
        assert!(tags.contains(&json!(["count", "3"])));
        assert!(tags.contains(&json!(["ok", "True"])));
        assert!(tags.contains(&json!(["my-tag", "x"])));
        assert_eq!(tags.len(), 4);
        let errs = error_types(&e);
        assert!(errs.contains(&("invalid_data".into(), "tags".into())));
        assert!(errs.contains(&("invalid_data".into(), "tags.nl".into())));

        let e = norm(json!({"tags": [["a", "1"], ["a", "2"], ["b", "x".repeat(300)], "junk"]}));
        let tags = e["tags"].as_array().unwrap();
        assert_eq!(tags[0], json!(["a", "1"]));
        assert_eq!(tags[1][1].as_str().unwrap().chars().count(), 200);
        assert_eq!(tags.len(), 2);
    }

    #[test]
    fn user_fields() {
        let e = norm(json!({
            "platform": "python",
            "user": {"id": 42, "email": "jane@example.com", "plan": "pro", "ip_address": "{{auto}}"}
        }));
        assert_eq!(e["user"]["id"], "42");
        assert_eq!(e["user"]["data"], json!({"plan": "pro"}));
        assert_eq!(e["user"]["ip_address"], "203.0.113.7");

        // Browser events get the client IP unless the SDK says never.
        let e = norm(json!({"platform": "javascript"}));
        assert_eq!(e["user"], json!({"ip_address": "203.0.113.7"}));
        let e = norm(json!({"platform": "javascript", "sdk": {"settings": {"infer_ip": "never"}}}));
        assert!(e.get("user").is_none());
        let e = norm(json!({"platform": "node", "sdk": {"settings": {"infer_ip": "auto"}}}));
        assert_eq!(e["user"]["ip_address"], "203.0.113.7");
        // Server platforms do not, but REMOTE_ADDR counts.
        assert!(
            norm(json!({"platform": "python", "user": {"id": "u"}}))["user"]
                .get("ip_address")
                .is_none()
        );
        let e =
            norm(json!({"platform": "python", "request": {"env": {"REMOTE_ADDR": "{{auto}}"}}}));
        assert_eq!(e["request"]["env"]["REMOTE_ADDR"], "203.0.113.7");
        assert_eq!(e["user"]["ip_address"], "203.0.113.7");

        let e = norm(json!({"user": {"ip_address": "not an ip"}}));
        assert!(e.get("user").is_none());
        assert_eq!(
            error_types(&e),
            [("invalid_data".into(), "user.ip_address".into())]
        );
    }

    #[test]
    fn request_pairs_and_url() {
        let e = norm(json!({"request": {
            "url": "http://127.0.0.1:8080/shop?item=1#top",
            "method": "post",
            "headers": {"User-Agent": "curl/8", "Accept": ["text/html", "application/json"]},
            "cookies": "a=1; b=2",
        }}));
        let req = &e["request"];
        assert_eq!(req["url"], "http://127.0.0.1:8080/shop");
        assert_eq!(req["query_string"], json!([["item", "1"]]));
        assert_eq!(req["fragment"], "top");
        assert_eq!(req["method"], "POST");
        assert!(
            req["headers"]
                .as_array()
                .unwrap()
                .contains(&json!(["Accept", "text/html, application/json"]))
        );
        assert_eq!(req["cookies"], json!([["a", "1"], ["b", "2"]]));

        let e = norm(json!({"request": {
            "query_string": "?q=a%20b+c&flag",
            "headers": [["Cookie", "s=x"], ["X-Null", null]],
        }}));
        assert_eq!(
            e["request"]["query_string"],
            json!([["q", "a b c"], ["flag", ""]])
        );
        assert_eq!(e["request"]["headers"], json!([["Cookie", "s=x"]]));
        assert_eq!(e["request"]["cookies"], json!([["s", "x"]]));

        let e = norm(json!({"request": {"url": "http://x/?a=1", "query_string": ""}}));
        assert_eq!(e["request"]["query_string"], json!([["a", "1"]]));
        assert_eq!(e["request"]["url"], "http://x/");

        let e = norm(json!({"request": {"query_string": {"a": 1}}}));
        assert_eq!(e["request"]["query_string"], json!([["a", "1"]]));
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }

    #[test]
    fn contexts_and_user_agent() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  HeadlessChrome/131.0.6778.33 Safari/537.36";
        let e = norm(json!({
            "platform": "javascript",
            "request": {"headers": {"User-Agent": ua}},
            "contexts": {"trace": {"trace_id": "abc"}, "weird": 5},
        }));
        let contexts = &e["contexts"];
        assert_eq!(
            contexts["browser"],
            json!({"name": "Chrome", "version": "131.0.6778", "type": "browser"})
        );
        assert_eq!(contexts["os"], json!({"name": "Linux", "type": "os"}));
        assert_eq!(contexts["trace"]["type"], "trace");
        assert!(contexts.get("weird").is_none());

        // Non-browser platforms: the client's OS goes to `client_os`; the ingest User-Agent is
        // only used for javascript; existing contexts win.
        let e = norm(json!({
            "platform": "python",
            "request": {"headers": [["user-agent", ua]]},
            "contexts": {"os": {"name": "Linux", "version": "12.11\n"}, "browser": {"name": "Mine"}},
        }));
        assert_eq!(
            e["contexts"]["os"],
            json!({"name": "Linux", "version": "12.11", "type": "os"})
        );
        assert_eq!(e["contexts"]["client_os"]["name"], "Linux");
        assert_eq!(e["contexts"]["browser"]["name"], "Mine");

        let ctx = NormalizeContext {
            user_agent: Some(ua),
            ..ctx()
        };
        assert_eq!(
            norm_with(json!({"platform": "javascript"}), &ctx)["contexts"]["browser"]["name"],
            "Chrome"
        );
        assert!(
            norm_with(json!({"platform": "python"}), &ctx)
                .get("contexts")
                .is_none()
        );
    }

    #[test]
    fn scalar_fields_are_trimmed_or_dropped() {
        let e = norm(json!({
            "release": format!("r{}", "1".repeat(300)),
            "environment": "prod/eu",
            "dist": "a b",
            "logger": "app.module",
            "server_name": 7,
            "culprit": ["x"],
            "transaction": "/checkout",
        }));
        let release = e["release"].as_str().unwrap();
        assert_eq!(release.chars().count(), 200);
        assert!(e.get("environment").is_none());
        assert!(e.get("dist").is_none());
        assert_eq!(e["logger"], "app.module");
        assert_eq!(e["server_name"], "7");
        assert!(e.get("culprit").is_none());
        assert_eq!(e["transaction"], "/checkout");
        let errs = error_types(&e);
        assert!(errs.contains(&("value_too_long".into(), "release".into())));
        assert!(errs.contains(&("invalid_data".into(), "environment".into())));
        assert!(errs.contains(&("invalid_data".into(), "dist".into())));

        for bad in ["latest", "..", "a/b", "a\nb", "  "] {
            assert!(
                norm(json!({"release": bad})).get("release").is_none(),
                "{bad:?}"
            );
        }
        assert_eq!(
            norm(json!({"release": " sdk-test@1.0.0 "}))["release"],
            "sdk-test@1.0.0"
        );
        assert_eq!(norm(json!({"environment": "e2e"}))["environment"], "e2e");
        assert_eq!(
            norm(json!({"errors": [{"type": "fake"}], "_meta": {}})).get("errors"),
            None,
            "payload `errors` are server-written"
        );
    }

    #[test]
    fn types_and_fingerprints() {
        assert_eq!(norm(json!({"type": "transaction"}))["type"], "transaction");
        assert_eq!(norm(json!({"type": "csp"}))["type"], "csp");
        assert_eq!(norm(json!({"type": "made-up"}))["type"], "default");
        assert_eq!(norm(json!({"exception": [{"type": "E"}]}))["type"], "error");

        let e = norm(json!({"fingerprint": ["{{ default }}", 42, true, null]}));
        assert_eq!(e["fingerprint"], json!(["{{ default }}", "42", "True"]));
        assert!(
            norm(json!({"fingerprint": []}))
                .get("fingerprint")
                .is_none()
        );
        assert!(
            norm(json!({"fingerprint": ["a", {"b": 1}]}))
                .get("fingerprint")
                .is_none()
        );
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        let once = norm(json!({
            "event_id": "9ec79c33-ec99-42ab-8353-589fcb2e04dc",
            "timestamp": "2026-11-24T06:43:48Z",
            "platform": "javascript",
            "message": {"message": "Order %s stuck", "params": [991]},
            "exception": [{"value": "TypeError: x", "stacktrace": {"frames": [{"function": "?", "lineno": "3"}]}}],
            "breadcrumbs": [{"timestamp": "2026-11-24T06:43:40Z", "message": "m"}],
            "tags": {"a": 1, "b": true},
            "user": {"id": 7, "extra_key": "x"},
            "request": {"url": "http://x/p?q=1", "headers": {"User-Agent": "Mozilla/5.0 Chrome/131.0.0.0", "Cookie": "c=1"}},
            "contexts": {"os": {"version": "1\n"}},
            "fingerprint": ["{{ default }}", 1],
            "extra": {"k": [1, 2]},
        }));
        let twice = norm(once.clone());
        assert_eq!(once, twice);
    }

    #[test]
    fn hostile_strings_do_not_panic() {
        let odd = "é✓\u{0}".repeat(5000);
        let e = norm(json!({
            "message": odd, "release": odd, "environment": odd, "logger": odd, "dist": odd,
            "tags": {"k": odd}, "user": {"id": odd, "ip_address": odd},
            "request": {"url": odd, "query_string": odd, "cookies": odd, "headers": [[odd, odd]]},
            "exception": [{"value": odd, "stacktrace": {"frames": [{"function": odd, "vars": {"x": odd}}]}}],
            "breadcrumbs": [{"message": odd, "timestamp": odd}],
            "timestamp": odd, "level": odd, "platform": odd, "fingerprint": [odd],
        }));
        assert_eq!(e["level"], "error");
        let tag = e["tags"][0][1].as_str().unwrap();
        assert_eq!(tag.chars().count(), 200);
    }
}
