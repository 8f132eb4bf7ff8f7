//! Title, culprit and metadata of an event, as Sentry shows them for its issue (reference §9).
//!
//! - Errors: `Type: first line of value` of the main exception (the last value, or the one
//!   `main_exception_id` names); `Error` when it has no type.
//! - Messages: the first line of the message; `<unlabeled event>` when there is none.
//! - Security reports: the report's message, e.g. `Blocked 'script' from 'evil.example.com'`.
//!
//! Titles are cut to 100 characters and culprits to 200 (with `...`). A *synthetic* main
//! exception (node's `captureMessage` sends one) has a meaningless type, so such events are
//! titled by their message, like message events, and get an empty culprit as in Sentry.

use serde_json::{Map, Value, json};

use super::grouping::main_exception;
use super::security::{blocked_origin, csp_directive, csp_message};

/// Longest title, in characters.
const MAX_TITLE: usize = 100;
/// Longest culprit, in characters.
const MAX_CULPRIT: usize = 200;
/// Longest exception value kept in metadata, in characters.
const MAX_METADATA_VALUE: usize = 1024;

/// Title shown for an issue or event.
pub fn title(event: &Value) -> String {
    let title = match kind(event) {
        Kind::Security(ty) => security_title(event, ty),
        Kind::Transaction => text(event.get("transaction"))
            .unwrap_or("<unlabeled event>")
            .to_owned(),
        Kind::Error(main) => error_title(main),
        Kind::SyntheticError(main) => message_text(event)
            .or_else(|| text(main.get("value")))
            .map_or_else(
                || "<unlabeled event>".to_owned(),
                |m| first_line(m).to_owned(),
            ),
        Kind::Message => message_text(event).map_or_else(
            || "<unlabeled event>".to_owned(),
            |m| first_line(m).to_owned(),
        ),
    };
    truncate(&title, MAX_TITLE)
}

/// Where the event happened: the transaction if set; else, from the last stack trace, the most
/// recent in-app frame (else the most recent frame) as `module in function` (JS:
/// `function(module)`, native: `function`); else the request URL. Security events use their own
/// culprit (the directive / host).
pub fn culprit(event: &Value) -> String {
    if let Some(transaction) = text(event.get("transaction")) {
        return truncate(transaction, MAX_CULPRIT);
    }
    if let Kind::Security(_) = kind(event)
        && let Some(c) = text(event.get("culprit"))
    {
        return truncate(c, MAX_CULPRIT);
    }
    let platform = text(event.get("platform")).unwrap_or("other");
    let culprit = match kind(event) {
        Kind::SyntheticError(_) => return String::new(),
        _ => last_frames(event)
            .map(|frames| stack_culprit(frames, platform))
            .filter(|c| !c.is_empty())
            .or_else(|| text(event.pointer("/request/url")).map(str::to_owned))
            .unwrap_or_default(),
    };
    truncate(&culprit, MAX_CULPRIT)
}

/// The issue's `metadata`: errors `{type, value, filename?, function?}`, messages `{title}`,
/// CSP `{directive, uri, message}`, Expect-CT / HPKP `{origin, message}`.
pub fn metadata(event: &Value) -> Value {
    match kind(event) {
        Kind::Security("csp") => {
            let csp = event.get("csp").unwrap_or(&Value::Null);
            let blocked = text(csp.get("blocked_uri")).unwrap_or("");
            json!({
                "directive": csp_directive(csp).unwrap_or_default(),
                "uri": blocked_origin(blocked),
                "message": title(event),
            })
        }
        Kind::Security(ty) => {
            let hostname = text(event.get(ty).and_then(|r| r.get("hostname"))).unwrap_or("");
            json!({"origin": hostname, "message": title(event)})
        }
        Kind::Error(main) => {
            let mut meta = Map::new();
            meta.insert(
                "type".into(),
                Value::String(text(main.get("type")).unwrap_or("Error").to_owned()),
            );
            meta.insert(
                "value".into(),
                Value::String(truncate(
                    text(main.get("value")).unwrap_or(""),
                    MAX_METADATA_VALUE,
                )),
            );
            crash_location(event, &mut meta);
            Value::Object(meta)
        }
        Kind::SyntheticError(main) => {
            let mut meta = Map::new();
            meta.insert("title".into(), Value::String(title(event)));
            meta.insert(
                "value".into(),
                Value::String(truncate(
                    text(main.get("value")).unwrap_or(""),
                    MAX_METADATA_VALUE,
                )),
            );
            crash_location(event, &mut meta);
            Value::Object(meta)
        }
        Kind::Message | Kind::Transaction => json!({ "title": title(event) }),
    }
}

/// What kind of event this is, for titles.
enum Kind<'e> {
    Security(&'static str),
    Transaction,
    Error(&'e Value),
    SyntheticError(&'e Value),
    Message,
}

fn kind(event: &Value) -> Kind<'_> {
    let ty = text(event.get("type")).unwrap_or("");
    if let Some(security) = ["csp", "expectct", "hpkp"].into_iter().find(|t| *t == ty) {
        return Kind::Security(security);
    }
    if ty == "transaction" {
        return Kind::Transaction;
    }
    match main_exception(event) {
        Some(main)
            if main
                .pointer("/mechanism/synthetic")
                .and_then(Value::as_bool)
                == Some(true) =>
        {
            Kind::SyntheticError(main)
        }
        Some(main) => Kind::Error(main),
        None => Kind::Message,
    }
}

/// A non-empty (after trimming) string value.
fn text(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// The event's message: `logentry.formatted`, else the template, else a top-level `message`.
fn message_text(event: &Value) -> Option<&str> {
    text(event.pointer("/logentry/formatted"))
        .or_else(|| text(event.pointer("/logentry/message")))
        .or_else(|| text(event.get("message")))
}

/// The first non-empty line, trimmed.
fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// At most `max` characters; longer strings end in `...`. Safe on any UTF-8.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) => {
            let keep = max.saturating_sub(3);
            let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            format!("{}...", &s[..cut])
        }
    }
}

fn error_title(main: &Value) -> String {
    let ty = text(main.get("type")).unwrap_or("Error");
    match text(main.get("value"))
        .map(first_line)
        .filter(|v| !v.is_empty())
    {
        Some(value) => format!("{ty}: {value}"),
        None => ty.to_owned(),
    }
}

fn security_title(event: &Value, ty: &str) -> String {
    if let Some(message) = message_text(event) {
        return first_line(message).to_owned();
    }
    let report = event.get(ty).unwrap_or(&Value::Null);
    match ty {
        "csp" => {
            let directive = csp_directive(report).unwrap_or_default();
            csp_message(&directive, text(report.get("blocked_uri")).unwrap_or(""))
        }
        _ => {
            let host = text(report.get("hostname")).unwrap_or("");
            if ty == "expectct" {
                format!("Expect-CT failed for '{host}'")
            } else {
                format!("Public key pinning validation failed for '{host}'")
            }
        }
    }
}

/// Frames of the last exception with frames; without exceptions, the crashed/current thread's
/// or the top-level stack trace.
fn last_frames(event: &Value) -> Option<&Vec<Value>> {
    if let Some(values) = event.pointer("/exception/values").and_then(Value::as_array)
        && !values.is_empty()
    {
        return values
            .iter()
            .rev()
            .find_map(|e| non_empty(e.pointer("/stacktrace/frames")));
    }
    let threads = event.pointer("/threads/values").and_then(Value::as_array);
    let thread = threads.and_then(|ts| {
        ["crashed", "current"].into_iter().find_map(|flag| {
            ts.iter()
                .filter(|t| t.get(flag).and_then(Value::as_bool) == Some(true))
                .find_map(|t| non_empty(t.pointer("/stacktrace/frames")))
        })
    });
    thread.or_else(|| non_empty(event.pointer("/stacktrace/frames")))
}

/// The frame a culprit / crash location is read from: most recent in-app, else most recent.
/// A non-empty frame list.
fn non_empty(frames: Option<&Value>) -> Option<&Vec<Value>> {
    frames.and_then(Value::as_array).filter(|f| !f.is_empty())
}

fn culprit_frame(frames: &[Value]) -> Option<&Value> {
    frames
        .iter()
        .rev()
        .find(|f| f.get("in_app").and_then(Value::as_bool) == Some(true))
        .or_else(|| frames.last())
}

fn stack_culprit(frames: &[Value], platform: &str) -> String {
    // The most recent in-app frame with a culprit, else the most recent frame's.
    let in_app = frames
        .iter()
        .rev()
        .filter(|f| f.get("in_app").and_then(Value::as_bool) == Some(true))
        .map(|f| frame_culprit(f, platform))
        .find(|c| !c.is_empty());
    in_app.unwrap_or_else(|| {
        frames
            .last()
            .map(|f| frame_culprit(f, platform))
            .unwrap_or_default()
    })
}

fn frame_culprit(frame: &Value, event_platform: &str) -> String {
    let platform = text(frame.get("platform")).unwrap_or(event_platform);
    let function = text(frame.get("function")).unwrap_or("?");
    if matches!(platform, "objc" | "cocoa" | "native") {
        return function.to_owned();
    }
    let Some(fileloc) = text(frame.get("module")).or_else(|| text(frame.get("filename"))) else {
        return String::new();
    };
    if matches!(platform, "javascript" | "node") {
        format!("{function}({fileloc})")
    } else {
        format!("{fileloc} in {function}")
    }
}

fn crash_location(event: &Value, meta: &mut Map<String, Value>) {
    let Some(frame) = last_frames(event).and_then(|f| culprit_frame(f)) else {
        return;
    };
    if let Some(file) = text(frame.get("filename")).or_else(|| text(frame.get("abs_path"))) {
        meta.insert("filename".into(), Value::String(file.to_owned()));
    }
    if let Some(function) = text(frame.get("function")) {
        meta.insert("function".into(), Value::String(function.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout_error(platform: &str) -> Value {
        json!({
            "platform": platform,
            "type": "error",
            "exception": {"values": [
                {"type": "ConfigError", "value": "missing setting: payment_gateway",
                 "stacktrace": {"frames": [{"module": "checkout", "filename": "checkout.py", "function": "load_payment_config", "in_app": true}]}},
                {"type": "CheckoutError", "value": "checkout failed\nsecond line",
                 "mechanism": {"type": "generic", "handled": true},
                 "stacktrace": {"frames": [
                     {"module": "checkout", "filename": "checkout.py", "function": "report_checkout_failure", "in_app": true},
                     {"module": "checkout", "filename": "checkout.py", "function": "process_checkout", "in_app": true},
                     {"module": "lib", "filename": "lib.py", "function": "helper", "in_app": false},
                 ]}},
            ]},
            "request": {"url": "http://127.0.0.1/checkout"},
        })
    }

    #[test]
    fn error_title_culprit_metadata() {
        let e = checkout_error("python");
        assert_eq!(title(&e), "CheckoutError: checkout failed");
        assert_eq!(culprit(&e), "checkout in process_checkout");
        assert_eq!(
            metadata(&e),
            json!({"type": "CheckoutError", "value": "checkout failed\nsecond line",
                   "filename": "checkout.py", "function": "process_checkout"})
        );

        let node = checkout_error("node");
        assert_eq!(culprit(&node), "process_checkout(checkout)");

        let mut t = checkout_error("python");
        t["transaction"] = json!("/checkout");
        assert_eq!(culprit(&t), "/checkout");
    }

    #[test]
    fn error_without_type_or_frames() {
        let e =
            json!({"exception": {"values": [{"value": "boom"}]}, "request": {"url": "http://x/y"}});
        assert_eq!(title(&e), "Error: boom");
        assert_eq!(culprit(&e), "http://x/y");
        let e = json!({"exception": {"values": [{"type": "Panic"}]}});
        assert_eq!(title(&e), "Panic");
        assert_eq!(culprit(&e), "");
        let native = json!({"platform": "native", "exception": {"values": [{"type": "SIGSEGV", "stacktrace": {"frames": [{"function": "crash", "filename": "a.c"}]}}]}});
        assert_eq!(culprit(&native), "crash");
    }

    #[test]
    fn main_exception_id_picks_the_main_exception() {
        let e = json!({"main_exception_id": 1, "exception": {"values": [
            {"type": "A", "value": "a", "mechanism": {"exception_id": 1}},
            {"type": "B", "value": "b", "mechanism": {"exception_id": 2}},
        ]}});
        assert_eq!(title(&e), "A: a");
    }

    #[test]
    fn message_titles() {
        let e = json!({"logentry": {"formatted": "\n Order 991 stuck \nmore"}});
        assert_eq!(title(&e), "Order 991 stuck");
        assert_eq!(metadata(&e), json!({"title": "Order 991 stuck"}));
        assert_eq!(title(&json!({})), "<unlabeled event>");
        assert_eq!(title(&json!({"message": "legacy"})), "legacy");
    }

    #[test]
    fn synthetic_exceptions_are_titled_by_their_message() {
        let e = json!({
            "platform": "node",
            "logentry": {"formatted": "Order 991 stuck"},
            "exception": {"values": [{"value": "Order 991 stuck",
                "mechanism": {"type": "generic", "handled": true, "synthetic": true},
                "stacktrace": {"frames": [{"filename": "/app/main.js", "function": "main", "in_app": true}]}}]},
        });
        assert_eq!(title(&e), "Order 991 stuck");
        assert_eq!(culprit(&e), "");
        assert_eq!(metadata(&e)["title"], "Order 991 stuck");
        assert_eq!(metadata(&e)["function"], "main");
    }

    #[test]
    fn titles_are_cut_at_100_characters_safely() {
        let e = json!({"exception": {"values": [{"type": "E", "value": "é".repeat(300)}]}});
        let t = title(&e);
        assert_eq!(t.chars().count(), 100);
        assert!(t.starts_with("E: é") && t.ends_with("..."));
        let exactly = "x".repeat(100);
        assert_eq!(title(&json!({"logentry": {"formatted": exactly}})), exactly);
        let long_culprit = json!({"transaction": "✓".repeat(500)});
        assert_eq!(culprit(&long_culprit).chars().count(), 200);
    }

    #[test]
    fn security_events() {
        let e = json!({
            "type": "csp", "culprit": "script-src-elem",
            "logentry": {"formatted": "Blocked 'script' from 'evil.example.com'"},
            "csp": {"effective_directive": "script-src-elem", "blocked_uri": "https://evil.example.com/x.js"},
            "transaction": null,
        });
        assert_eq!(title(&e), "Blocked 'script' from 'evil.example.com'");
        assert_eq!(culprit(&e), "script-src-elem");
        assert_eq!(
            metadata(&e),
            json!({"directive": "script-src-elem", "uri": "evil.example.com", "message": "Blocked 'script' from 'evil.example.com'"})
        );
        let bare = json!({"type": "csp", "csp": {"violated-directive": "x", "violated_directive": "img-src 'self'", "blocked_uri": "data:"}});
        assert_eq!(title(&bare), "Blocked 'image' from 'data:'");
        let ct = json!({"type": "expectct", "expectct": {"hostname": "www.example.com"}});
        assert_eq!(title(&ct), "Expect-CT failed for 'www.example.com'");
        assert_eq!(metadata(&ct)["origin"], "www.example.com");
    }
}
