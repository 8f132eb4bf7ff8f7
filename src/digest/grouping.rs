//! Grouping: the fingerprint hash that decides which issue an event belongs to, and a readable
//! description of what went into it.
//!
//! Follows Sentry's `newstyle` grouping (reference §9): an SDK `fingerprint` overrides
//! everything (`{{ default }}` mixes the default hash back in); otherwise the first strategy
//! that finds something wins: exceptions (type + frames of every exception in the chain) →
//! threads → top-level stack trace → security report → message. Frames contribute module (or
//! file name), function and, for script languages, the source line — never line numbers,
//! variables or addresses, so the same error on a moved line groups together. The `app`
//! variant uses only in-app frames and wins when any contributes; `system` uses all frames.
//!
//! Two deliberate differences from Sentry: a *synthetic* exception (node's `captureMessage`
//! sends one carrying the message) contributes its parameterized value next to its frames, so
//! different messages logged from one helper do not collapse into one issue; and only the
//! winning variant's hash is computed.

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use super::parameterize::parameterize;
use super::security::{blocked_origin, csp_directive};

/// The outcome of grouping one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// 32 lowercase hex digits (MD5 over the canonical form of `components`).
    pub hash: String,
    /// Which rule produced the hash: `custom-fingerprint`, `app`, `system`, `security`,
    /// `message` or `fallback`. With `{{ default }}` in a fingerprint, the default's variant.
    pub variant: &'static str,
    /// What contributed, for display, e.g. `{"variant": "app", "exceptions": [{"type":
    /// "ValueError", "frames": [{"module": "app.x", "function": "f"}]}]}` or
    /// `{"variant": "message", "message": "Order <int> stuck"}`.
    pub components: Value,
}

impl Grouping {
    /// `{"hash", "variant", "components"}`: what is stored and shown for a fingerprint.
    pub fn into_json(self) -> Value {
        object([
            ("hash", Value::String(self.hash)),
            ("variant", Value::String(self.variant.into())),
            ("components", self.components),
        ])
    }
}

/// Platforms whose frames contribute their (whitespace-collapsed) source line.
const CONTEXT_LINE_PLATFORMS: &[&str] = &["javascript", "node", "python", "php", "ruby"];

/// Context lines longer than this are likely minified code and ignored.
const MAX_CONTEXT_LINE: usize = 120;

/// Groups a normalized event.
pub fn group(event: &Value) -> Grouping {
    let default = default_grouping(event);
    let Some(parts) = fingerprint(event) else {
        return default;
    };
    if !parts.iter().any(|p| is_default_marker(p)) {
        let resolved: Vec<Value> = parts
            .iter()
            .map(|p| Value::String(resolve_variable(p, event)))
            .collect();
        return finish(
            "custom-fingerprint",
            object([
                ("variant", Value::String("custom-fingerprint".into())),
                ("fingerprint", Value::Array(resolved)),
            ]),
        );
    }
    // `{{ default }}`: the default hash combined with the other parts.
    let resolved: Vec<Value> = parts
        .iter()
        .map(|p| {
            if is_default_marker(p) {
                Value::String(format!("default:{}", default.hash))
            } else {
                Value::String(resolve_variable(p, event))
            }
        })
        .collect();
    let mut components = default.components;
    let fingerprint = object([("fingerprint", Value::Array(resolved))]);
    let hash = hash_value(&fingerprint);
    if let (Some(map), Value::Object(mut fp)) = (components.as_object_mut(), fingerprint) {
        map.append(&mut fp);
    }
    Grouping {
        hash,
        variant: default.variant,
        components,
    }
}

/// An object from owned values (`json!` would serialize them again).
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn finish(variant: &'static str, components: Value) -> Grouping {
    Grouping {
        hash: hash_value(&components),
        variant,
        components,
    }
}

/// MD5 over a canonical encoding of `value` (object keys sorted, every node tagged), so the
/// hash does not depend on how `serde_json` orders maps.
fn hash_value(value: &Value) -> String {
    let mut hasher = Md5::new();
    feed(&mut hasher, value);
    hex::encode(hasher.finalize())
}

fn feed(hasher: &mut Md5, value: &Value) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(b) => hasher.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            hasher.update(b"#");
            hasher.update(n.to_string().as_bytes());
            hasher.update(b"\0");
        }
        Value::String(s) => {
            hasher.update(b"s");
            hasher.update((s.len() as u64).to_le_bytes());
            hasher.update(s.as_bytes());
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                feed(hasher, item);
            }
            hasher.update(b"]");
        }
        Value::Object(map) => {
            hasher.update(b"{");
            let mut entry = |key: &String, value: &Value| {
                hasher.update((key.len() as u64).to_le_bytes());
                hasher.update(key.as_bytes());
                feed(hasher, value);
            };
            // serde_json keeps maps sorted unless its `preserve_order` feature is on.
            if map.keys().is_sorted() {
                map.iter().for_each(|(k, v)| entry(k, v));
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by_key(|(k, _)| *k);
                entries.into_iter().for_each(|(k, v)| entry(k, v));
            }
            hasher.update(b"}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// custom fingerprints
// ---------------------------------------------------------------------------------------------

/// The SDK's fingerprint, if it is a non-empty list of strings.
fn fingerprint(event: &Value) -> Option<Vec<&str>> {
    let parts: Vec<&str> = event
        .get("fingerprint")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!parts.is_empty()).then_some(parts)
}

/// `{{ name }}` → `name` (trimmed); `None` for anything else.
fn variable_name(part: &str) -> Option<&str> {
    part.trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")
        .map(str::trim)
}

fn is_default_marker(part: &str) -> bool {
    variable_name(part).is_some_and(|n| n.eq_ignore_ascii_case("default"))
}

/// Substitutes a fingerprint variable (`{{ type }}`, `{{ tags.NAME }}`, …); other parts are
/// kept as they are.
fn resolve_variable(part: &str, event: &Value) -> String {
    let Some(name) = variable_name(part) else {
        return part.to_owned();
    };
    let lower = name.to_ascii_lowercase();
    let main = main_exception(event);
    let crashing = main
        .and_then(|e| e.pointer("/stacktrace/frames"))
        .and_then(Value::as_array)
        .and_then(|f| f.last());
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let found = match lower.as_str() {
        "type" | "error.type" => text(main.and_then(|e| e.get("type"))),
        "value" | "error.value" => text(main.and_then(|e| e.get("value"))),
        "function" => text(crashing.and_then(|f| f.get("function"))),
        "module" => text(crashing.and_then(|f| f.get("module"))),
        "message" => text(event.pointer("/logentry/formatted"))
            .or_else(|| text(event.pointer("/logentry/message")))
            .or_else(|| text(event.get("message"))),
        "level" => text(event.get("level")),
        "logger" => text(event.get("logger")),
        "transaction" => text(event.get("transaction")),
        _ => match name.split_once('.') {
            Some((prefix, tag)) if prefix.eq_ignore_ascii_case("tags") => {
                return tag_value(event, tag)
                    .map_or_else(|| format!("<no-value-for-tag-{tag}>"), str::to_owned);
            }
            // Unknown variables are literal text.
            _ => return part.to_owned(),
        },
    };
    found.unwrap_or_else(|| format!("<no-{lower}>"))
}

/// A tag's value from `tags` as pairs (canonical) or as an object.
fn tag_value<'e>(event: &'e Value, key: &str) -> Option<&'e str> {
    match event.get("tags")? {
        Value::Array(pairs) => pairs.iter().find_map(|p| {
            let p = p.as_array()?;
            (p.first()?.as_str()? == key)
                .then(|| p.get(1)?.as_str())
                .flatten()
        }),
        Value::Object(map) => map.get(key)?.as_str(),
        _ => None,
    }
}

/// The main exception: the one `main_exception_id` names, else the last value.
pub(crate) fn main_exception(event: &Value) -> Option<&Value> {
    let values = event.pointer("/exception/values")?.as_array()?;
    if let Some(id) = event.get("main_exception_id").and_then(Value::as_u64)
        && let Some(found) = values
            .iter()
            .find(|v| v.pointer("/mechanism/exception_id").and_then(Value::as_u64) == Some(id))
    {
        return Some(found);
    }
    values.last()
}

// ---------------------------------------------------------------------------------------------
// default strategies
// ---------------------------------------------------------------------------------------------

fn default_grouping(event: &Value) -> Grouping {
    let platform = event
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or("other");
    if let Some(g) = exception_grouping(event, platform) {
        return g;
    }
    if let Some(frames) = thread_frames(event)
        && let Some(g) = stack_grouping(frames, platform, "threads")
    {
        return g;
    }
    if let Some(frames) = event
        .pointer("/stacktrace/frames")
        .and_then(Value::as_array)
        && let Some(g) = stack_grouping(frames, platform, "stacktrace")
    {
        return g;
    }
    if let Some(g) = security_grouping(event) {
        return g;
    }
    if let Some(g) = message_grouping(event) {
        return g;
    }
    finish("fallback", json!({"variant": "fallback"}))
}

/// What one frame contributes, or `None` when nothing about it is stable enough.
fn frame_component(frame: &Value, event_platform: &str) -> Option<Map<String, Value>> {
    let platform = frame
        .get("platform")
        .and_then(Value::as_str)
        .unwrap_or(event_platform);
    let is_js = matches!(platform, "javascript" | "node");
    let get = |key: &str| {
        frame
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let filename = get("filename");
    let abs_path = get("abs_path");
    let path = abs_path.or(filename);
    let from_url = path.is_some_and(is_web_url);
    let special_file = |f: &str| {
        matches!(
            f,
            "<anonymous>" | "[native code]" | "native" | "eval" | "eval code"
        )
    };
    let module = get("module");
    if is_js && module.is_none() && filename.or(abs_path).is_some_and(special_file) {
        return None;
    }

    let mut out = Map::new();
    if let Some(module) = module {
        out.insert("module".into(), Value::String(module.to_owned()));
    } else if let Some(file) = filename.or(abs_path)
        && !from_url
        && !special_file(file)
    {
        let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
        if !base.is_empty() {
            out.insert("filename".into(), Value::String(base.to_lowercase()));
        }
    }
    let function = get("function").and_then(|f| {
        let f = if is_js {
            f.rsplit('.').next().unwrap_or(f)
        } else {
            f
        };
        let ignored = matches!(f, "?" | "<anonymous>" | "Anonymous function" | "eval")
            || (is_js && f.ends_with("/<"));
        (!ignored && !f.is_empty()).then_some(f)
    });
    if let Some(function) = function {
        out.insert("function".into(), Value::String(function.to_owned()));
    }
    if CONTEXT_LINE_PLATFORMS.contains(&platform)
        && let Some(line) = frame.get("context_line").and_then(Value::as_str)
        && !(is_js && from_url && function.is_none())
        && let Some(collapsed) = collapse_whitespace(line, MAX_CONTEXT_LINE)
    {
        out.insert("context_line".into(), Value::String(collapsed));
    }
    (!out.is_empty()).then_some(out)
}

/// `line` trimmed, with every run of whitespace made one space; `None` when that is empty or
/// longer than `max` characters.
fn collapse_whitespace(line: &str, max: usize) -> Option<String> {
    let mut out = String::with_capacity(line.len().min(4 * max));
    let mut chars = 0;
    for word in line.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += word.chars().count();
        if chars > max {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

fn is_web_url(path: &str) -> bool {
    let lower = path.get(..8).unwrap_or(path).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The contributing frames of a stack (oldest first), in-app ones only for the app variant.
/// Identical consecutive frames (recursion) count once.
fn frame_components(frames: &[Value], platform: &str, app_only: bool) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for frame in frames {
        if app_only && frame.get("in_app").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        if let Some(component) = frame_component(frame, platform) {
            let component = Value::Object(component);
            if out.last() != Some(&component) {
                out.push(component);
            }
        }
    }
    out
}

fn exception_grouping(event: &Value, platform: &str) -> Option<Grouping> {
    let values = event.pointer("/exception/values")?.as_array()?;
    if values.is_empty() {
        return None;
    }
    let build = |app_only: bool| -> (Vec<Value>, bool) {
        let mut exceptions = Vec::with_capacity(values.len());
        let mut any_frames = false;
        for exc in values {
            let synthetic =
                exc.pointer("/mechanism/synthetic").and_then(Value::as_bool) == Some(true);
            let frames = exc
                .pointer("/stacktrace/frames")
                .and_then(Value::as_array)
                .map(|f| frame_components(f, platform, app_only))
                .unwrap_or_default();
            let mut component = Map::new();
            if !synthetic
                && let Some(ty) = exc
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
            {
                component.insert("type".into(), Value::String(ty.to_owned()));
            }
            let with_value = frames.is_empty() || synthetic;
            if with_value
                && let Some(value) = exc
                    .get("value")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
            {
                component.insert(
                    "value".into(),
                    Value::String(parameterize(value).into_owned()),
                );
            }
            if !frames.is_empty() {
                any_frames = true;
                component.insert("frames".into(), Value::Array(frames));
            }
            if !component.is_empty() {
                exceptions.push(Value::Object(component));
            }
        }
        (exceptions, any_frames)
    };
    let (app, app_has_frames) = build(true);
    let (variant, exceptions) = if app_has_frames {
        ("app", app)
    } else {
        ("system", build(false).0)
    };
    if exceptions.is_empty() {
        return None;
    }
    Some(finish(
        variant,
        object([
            ("variant", Value::String(variant.into())),
            ("exceptions", Value::Array(exceptions)),
        ]),
    ))
}

/// Frames of the crashed thread, else the current one, else the only one with a stack trace.
fn thread_frames(event: &Value) -> Option<&Vec<Value>> {
    let threads = event.pointer("/threads/values")?.as_array()?;
    let flagged = |flag: &str| {
        threads
            .iter()
            .filter(|t| t.get(flag).and_then(Value::as_bool) == Some(true))
            .find_map(stack_frames)
    };
    flagged("crashed")
        .or_else(|| flagged("current"))
        .or_else(|| {
            let mut with_frames = threads.iter().filter_map(stack_frames);
            let only = with_frames.next()?;
            with_frames.next().is_none().then_some(only)
        })
}

/// A thread's non-empty frame list.
fn stack_frames(thread: &Value) -> Option<&Vec<Value>> {
    thread
        .pointer("/stacktrace/frames")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
}

fn stack_grouping(frames: &[Value], platform: &str, source: &str) -> Option<Grouping> {
    let app = frame_components(frames, platform, true);
    let (variant, frames) = if app.is_empty() {
        ("system", frame_components(frames, platform, false))
    } else {
        ("app", app)
    };
    if frames.is_empty() {
        return None;
    }
    let mut components = Map::new();
    components.insert("variant".into(), Value::String(variant.into()));
    components.insert(source.into(), object([("frames", Value::Array(frames))]));
    Some(finish(variant, Value::Object(components)))
}

fn security_grouping(event: &Value) -> Option<Grouping> {
    let security = if let Some(csp) = event.get("csp").filter(|c| c.is_object()) {
        let directive = csp_directive(csp).unwrap_or_default();
        let blocked = csp.get("blocked_uri").and_then(Value::as_str).unwrap_or("");
        json!({"type": "csp", "directive": directive, "blocked": blocked_origin(blocked)})
    } else {
        let ty = ["expectct", "hpkp"]
            .into_iter()
            .find(|t| event.get(*t).is_some_and(Value::is_object))?;
        let hostname = event
            .get(ty)
            .and_then(|r| r.get("hostname"))
            .and_then(Value::as_str)
            .unwrap_or("");
        json!({"type": ty, "hostname": hostname.to_ascii_lowercase()})
    };
    Some(finish(
        "security",
        object([
            ("variant", Value::String("security".into())),
            ("security", security),
        ]),
    ))
}

fn message_grouping(event: &Value) -> Option<Grouping> {
    let text = |p: &str| {
        event
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    let message = text("/logentry/message")
        .or_else(|| text("/logentry/formatted"))
        .or_else(|| text("/message"))?;
    let parameterized = parameterize(message);
    Some(finish(
        "message",
        json!({"variant": "message", "message": parameterized}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issues are found by these hashes: if one changes, every existing issue splits in two.
    #[test]
    fn hashes_stay_the_same_from_one_version_to_the_next() {
        let exception = json!({
            "platform": "python",
            "exception": {"values": [{"type": "KeyError", "value": "'sku'", "stacktrace": {"frames": [
                {"module": "django.core.handlers", "function": "inner", "in_app": false},
                {"filename": "/srv/app/Cart.py", "function": "total", "in_app": true,
                 "context_line": "  return   sum(\titems)  "},
                {"module": "app.views", "function": "checkout", "in_app": true, "lineno": 10,
                 "context_line": "    total = cart.total()"},
            ]}}]},
        });
        assert_eq!(group(&exception).hash, "e1deae0d7ef8b7ca05f31b367ddfb88d");
        let message = json!({"message": {"formatted": "Order 991 stuck after 3.5s"}});
        assert_eq!(group(&message).hash, "c218c94d63fe772a56072968e8d54507");
        let custom = json!({"message": "x", "fingerprint": ["{{ default }}", "checkout", 7]});
        assert_eq!(group(&custom).hash, "ac45995a99168322d3025352957f898c");
    }

    #[test]
    fn source_lines_collapse_their_whitespace_within_the_limit() {
        assert_eq!(
            collapse_whitespace("  a \t b\n  c  ", 120).as_deref(),
            Some("a b c")
        );
        assert_eq!(collapse_whitespace(" \t\n ", 120), None);
        let wide = "é".repeat(120);
        assert_eq!(
            collapse_whitespace(&wide, 120).as_deref(),
            Some(wide.as_str())
        );
        assert_eq!(collapse_whitespace(&"é".repeat(121), 120), None);
        // The limit counts the collapsed line: 60 + one space + 59.
        let spaced = format!("{}     {}", "a".repeat(60), "b".repeat(59));
        assert_eq!(
            collapse_whitespace(&spaced, 120).map(|l| l.len()),
            Some(120)
        );
    }

    fn frame(module: &str, function: &str, lineno: u64, in_app: bool) -> Value {
        json!({"module": module, "function": function, "lineno": lineno, "in_app": in_app,
               "context_line": "    raise ValueError(x)", "vars": {"x": lineno}})
    }

    fn python_error(ty: &str, value: &str, frames: Vec<Value>) -> Value {
        json!({
            "platform": "python",
            "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": frames}}]},
        })
    }

    #[test]
    fn hash_is_32_lowercase_hex() {
        let g = group(&json!({}));
        assert_eq!(g.hash.len(), 32);
        assert!(
            g.hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(g.variant, "fallback");
        assert_eq!(
            g,
            group(&json!({"level": "error"})),
            "empty events share one group"
        );
    }

    #[test]
    fn line_numbers_values_and_vars_do_not_matter() {
        let a = python_error(
            "ValueError",
            "bad 1",
            vec![frame("lib", "g", 1, false), frame("app.x", "f", 10, true)],
        );
        let b = python_error(
            "ValueError",
            "bad 2",
            vec![frame("lib", "g", 7, false), frame("app.x", "f", 99, true)],
        );
        let (ga, gb) = (group(&a), group(&b));
        assert_eq!(ga.hash, gb.hash);
        assert_eq!(ga.variant, "app");
        assert_eq!(
            ga.components,
            json!({"variant": "app", "exceptions": [{"type": "ValueError", "frames": [
                {"module": "app.x", "function": "f", "context_line": "raise ValueError(x)"}
            ]}]})
        );

        let other_type = python_error("KeyError", "bad 1", vec![frame("app.x", "f", 10, true)]);
        assert_ne!(group(&other_type).hash, ga.hash);
        let other_function =
            python_error("ValueError", "bad 1", vec![frame("app.x", "h", 10, true)]);
        assert_ne!(group(&other_function).hash, ga.hash);
    }

    #[test]
    fn system_variant_without_in_app_frames() {
        let e = python_error("ValueError", "x", vec![frame("lib", "g", 1, false)]);
        let g = group(&e);
        assert_eq!(g.variant, "system");
        assert_eq!(g.components["exceptions"][0]["frames"][0]["module"], "lib");
        // Library frames change nothing about the app variant.
        let a = python_error(
            "E",
            "x",
            vec![frame("lib", "g", 1, false), frame("app", "f", 1, true)],
        );
        let b = python_error(
            "E",
            "x",
            vec![frame("lib2", "h", 1, false), frame("app", "f", 1, true)],
        );
        assert_eq!(group(&a).hash, group(&b).hash);
    }

    #[test]
    fn chained_exceptions_all_contribute() {
        let chain = |cause: &str| {
            json!({"platform": "node", "exception": {"values": [
                {"type": cause, "value": "missing setting: payment_gateway",
                 "stacktrace": {"frames": [{"filename": "/app/checkout.js", "function": "loadPaymentConfig", "in_app": true, "lineno": 3}]}},
                {"type": "CheckoutError", "value": "checkout failed",
                 "stacktrace": {"frames": [{"filename": "/app/checkout.js", "function": "Object.processCheckout", "in_app": true, "lineno": 9}]}},
            ]}})
        };
        let g = group(&chain("ConfigError"));
        assert_eq!(g.components["exceptions"][0]["type"], "ConfigError");
        assert_eq!(
            g.components["exceptions"][1]["frames"][0],
            json!({"filename": "checkout.js", "function": "processCheckout"})
        );
        assert_ne!(g.hash, group(&chain("OtherError")).hash);
    }

    #[test]
    fn exceptions_without_frames_use_the_parameterized_value() {
        let e = |v: &str| json!({"exception": {"values": [{"type": "TimeoutError", "value": v}]}});
        let g = group(&e("timed out after 30 s for order 991"));
        assert_eq!(g.variant, "system");
        assert_eq!(
            g.components["exceptions"][0]["value"],
            "timed out after <int> s for order <int>"
        );
        assert_eq!(g.hash, group(&e("timed out after 31 s for order 992")).hash);
    }

    #[test]
    fn javascript_frames() {
        let frames = json!([
            {"filename": "<anonymous>", "function": "Array.reduce"},
            {"filename": "http://127.0.0.1:8000/app.js", "abs_path": "http://127.0.0.1:8000/app.js",
             "function": "HTMLButtonElement.onClick", "in_app": true, "context_line": "x()"},
            {"filename": "http://127.0.0.1:8000/app.js", "function": "?", "in_app": true, "context_line": "y()"},
            {"filename": "http://127.0.0.1:8000/app.js", "function": "recurse", "in_app": true},
            {"filename": "http://127.0.0.1:8000/app.js", "function": "recurse", "in_app": true},
        ]);
        let e = json!({"platform": "javascript", "exception": {"values": [{"type": "TypeError", "value": "x", "stacktrace": {"frames": frames}}]}});
        let g = group(&e);
        assert_eq!(
            g.components["exceptions"][0]["frames"],
            json!([{"function": "onClick", "context_line": "x()"}, {"function": "recurse"}])
        );
    }

    #[test]
    fn synthetic_exceptions_skip_the_type_and_keep_the_message() {
        let e = |msg: &str| {
            json!({"platform": "node", "logentry": {"formatted": msg}, "exception": {"values": [{
                "value": msg, "mechanism": {"type": "generic", "handled": true, "synthetic": true},
                "stacktrace": {"frames": [{"filename": "/app/main.js", "function": "main", "in_app": true, "context_line": "Sentry.captureMessage(`Order ${order} stuck`);"}]}
            }]}})
        };
        let (a, b) = (group(&e("Order 991 stuck")), group(&e("Order 992 stuck")));
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.components["exceptions"][0]["value"], "Order <int> stuck");
        assert!(a.components["exceptions"][0].get("type").is_none());
        assert_ne!(a.hash, group(&e("Payment declined")).hash);
    }

    #[test]
    fn messages_group_by_parameterized_template() {
        let m = |s: &str| json!({"logentry": {"formatted": s}});
        let g = group(&m("Order 991 stuck"));
        assert_eq!(g.variant, "message");
        assert_eq!(
            g.components,
            json!({"variant": "message", "message": "Order <int> stuck"})
        );
        assert_eq!(g.hash, group(&m("Order 992 stuck")).hash);
        assert_ne!(g.hash, group(&m("Order 991 shipped")).hash);
        // The template wins over the formatted message.
        let t = json!({"logentry": {"message": "Order %s stuck", "formatted": "Order 1 stuck"}});
        assert_eq!(group(&t).components["message"], "Order %s stuck");
    }

    #[test]
    fn threads_then_stacktrace() {
        let t = json!({"platform": "python", "logentry": {"formatted": "hi"}, "threads": {"values": [
            {"id": 1, "stacktrace": {"frames": [frame("bg", "loop", 1, true)]}},
            {"id": 2, "current": true, "stacktrace": {"frames": [frame("app", "main", 1, true)]}},
        ]}});
        let g = group(&t);
        assert_eq!(g.components["threads"]["frames"][0]["function"], "main");
        let s = json!({"platform": "python", "stacktrace": {"frames": [frame("app", "main", 1, false)]}});
        assert_eq!(
            group(&s).components["stacktrace"]["frames"][0]["module"],
            "app"
        );
    }

    #[test]
    fn security_reports() {
        let csp = |blocked: &str| json!({"type": "csp", "logentry": {"formatted": "x"}, "csp": {"effective_directive": "script-src", "blocked_uri": blocked}});
        let g = group(&csp("https://evil.example.com/a.js"));
        assert_eq!(g.variant, "security");
        assert_eq!(
            g.components["security"],
            json!({"type": "csp", "directive": "script-src", "blocked": "evil.example.com"})
        );
        assert_eq!(
            g.hash,
            group(&csp("https://evil.example.com/b.js?v=2")).hash
        );
        assert_ne!(g.hash, group(&csp("https://other.example.com/a.js")).hash);
    }

    #[test]
    fn custom_fingerprints() {
        let base = python_error("ValueError", "bad", vec![frame("app", "f", 1, true)]);
        let with = |fp: Value| {
            let mut e = base.clone();
            e["fingerprint"] = fp;
            e["tags"] = json!([["shard", "eu-1"]]);
            e["transaction"] = json!("/checkout");
            group(&e)
        };
        let g = with(json!([
            "{{ type }}",
            "{{transaction}}",
            "{{ tags.shard }}",
            "{{ tags.none }}",
            "fixed",
            "{{ nope }}"
        ]));
        assert_eq!(g.variant, "custom-fingerprint");
        assert_eq!(
            g.components["fingerprint"],
            json!([
                "ValueError",
                "/checkout",
                "eu-1",
                "<no-value-for-tag-none>",
                "fixed",
                "{{ nope }}"
            ])
        );
        assert_eq!(with(json!(["a"])).hash, with(json!(["a"])).hash);
        assert_ne!(with(json!(["a"])).hash, with(json!(["b"])).hash);

        // `{{ default }}` / `{{default}}` mix the default hash in.
        let default = group(&base);
        let d1 = with(json!(["{{ default }}", "eu"]));
        let d2 = with(json!(["{{default}}", "eu"]));
        assert_eq!(d1.hash, d2.hash);
        assert_ne!(d1.hash, default.hash);
        assert_eq!(d1.variant, "app");
        assert_eq!(
            d1.components["exceptions"],
            default.components["exceptions"]
        );
        assert_ne!(d1.hash, with(json!(["{{ default }}", "us"])).hash);

        let mut empty = base.clone();
        empty["fingerprint"] = json!([]);
        assert_eq!(group(&empty), default);
    }

    #[test]
    fn hash_ignores_map_order() {
        let mut a = Map::new();
        a.insert("x".into(), json!(1));
        a.insert("y".into(), json!("s"));
        let mut b = Map::new();
        b.insert("y".into(), json!("s"));
        b.insert("x".into(), json!(1));
        assert_eq!(hash_value(&Value::Object(a)), hash_value(&Value::Object(b)));
        assert_ne!(
            hash_value(&json!(["ab", "c"])),
            hash_value(&json!(["a", "bc"]))
        );
    }
}
