//! The event as the issue page shows it: a stored event's normalized payload turned into plain,
//! bounded view data (exceptions outermost first, frames most recent first, breadcrumbs ending
//! with the error, key/value lists, links only for `http(s)` URLs).
//!
//! Every byte of an event is attacker-controlled. Nothing here produces HTML: the templates
//! escape every string. What this module guarantees is the rest: only `http://` and `https://`
//! URLs become links ([`Link`]), and everything shown is bounded (frames per stack, breadcrumbs,
//! variables per frame, characters per value), so a hostile event cannot make a page huge.

use serde_json::Value;

use crate::api::serialize::iso;
use crate::digest::tags;

/// Frames shown per stack trace (the most recent ones).
pub const MAX_FRAMES: usize = 250;
/// Breadcrumbs shown (the most recent ones).
pub const MAX_CRUMBS: usize = 200;
/// Local variables shown per frame.
pub const MAX_VARS: usize = 100;
/// Bytes of one shown value before it is cut with an ellipsis.
pub const MAX_VALUE: usize = 4096;
/// Bytes of one source line (minified code can have very long lines).
const MAX_LINE: usize = 1024;
/// Bytes of a request body or an `extra` value.
const MAX_BODY: usize = 8192;
/// Exceptions of a chain and threads shown.
const MAX_CHAIN: usize = 50;
/// Entries of one key/value list (headers, cookies, a context, breadcrumb data, …).
const MAX_PAIRS: usize = 200;
/// Source lines around a frame's line.
const MAX_CONTEXT_LINES: usize = 50;
/// Lines describing the grouping components.
const MAX_GROUPING_LINES: usize = 500;

/// Cuts `s` to at most `max` bytes (at a character boundary), marking the cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A JSON value as text: strings as they are, anything else as compact JSON; clipped.
pub fn value_text(v: &Value, max: usize) -> String {
    match v {
        Value::String(s) => clip(s, max),
        Value::Null => "null".to_string(),
        other => clip(&other.to_string(), max),
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A string field, or a number shown as text.
fn text_at(v: &Value, key: &str, max: usize) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(clip(s, max)),
        n @ Value::Number(_) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `s` when it is an absolute `http://` or `https://` URL, the only links an event may make.
pub fn web_url(s: &str) -> Option<&str> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let is_web = lower.starts_with("http://") || lower.starts_with("https://");
    (is_web && !s.chars().any(|c| c.is_whitespace() || c.is_control())).then_some(s)
}

/// Text that is a link when (and only when) it is a web URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub text: String,
    /// The target; `None` renders the text plainly.
    pub href: Option<String>,
}

impl Link {
    /// The text, clipped to `max` bytes; a link to the whole URL when it is a web URL that fits
    /// (a clipped URL would point somewhere else).
    pub fn new(s: &str, max: usize) -> Link {
        Link {
            text: clip(s, max),
            href: web_url(s)
                .filter(|u| u.len() <= MAX_VALUE)
                .map(str::to_string),
        }
    }
}

/// One line of a key/value list; the value is a link when it is a web URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: Link,
}

impl Pair {
    fn new(key: &str, value: &Value) -> Pair {
        Pair {
            key: clip(key, 200),
            value: match value {
                Value::String(s) => Link::new(s, MAX_VALUE),
                other => Link {
                    text: value_text(other, MAX_VALUE),
                    href: None,
                },
            },
        }
    }

    fn text(key: &str, value: &str) -> Pair {
        Pair::new(key, &Value::String(value.to_string()))
    }
}

/// Entries of an object (or `[key, value]` pairs) as key/value lines, at most `MAX_PAIRS`.
fn pairs(v: Option<&Value>) -> Vec<Pair> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .take(MAX_PAIRS)
            .map(|(k, v)| Pair::new(k, v))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .take(MAX_PAIRS)
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([k, v]) => Pair::new(&value_text(k, 200), v),
                _ => Pair::new("", p),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One line of source code around a frame.
#[derive(Debug, Clone)]
pub struct SourceLine {
    pub number: Option<u64>,
    pub text: String,
    /// The frame's own line.
    pub current: bool,
}

/// One stack frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub function: String,
    /// File name, else module, else absolute path.
    pub location: String,
    /// The module, when the location is a file name and the module says more.
    pub module: Option<String>,
    /// The absolute path (a link only for `http(s)` URLs), when it differs from the location.
    pub abs_path: Option<Link>,
    pub package: Option<String>,
    /// `12`, `12:5`.
    pub line: Option<String>,
    pub in_app: bool,
    pub context: Vec<SourceLine>,
    pub vars: Vec<Pair>,
    pub vars_omitted: usize,
    pub address: Option<String>,
    /// Resolved with a source map: how (`source map via debug id`).
    pub symbolicated: Option<String>,
    /// Why a source map could not resolve the frame.
    pub unresolved: Option<String>,
}

impl Frame {
    /// Whether the frame has anything to show when expanded.
    pub fn has_details(&self) -> bool {
        !self.context.is_empty()
            || !self.vars.is_empty()
            || self.abs_path.is_some()
            || self.module.is_some()
            || self.package.is_some()
            || self.address.is_some()
            || self.unresolved.is_some()
    }
}

/// A stack trace, most recent call first.
#[derive(Debug, Clone)]
pub struct Stack {
    pub frames: Vec<Frame>,
    /// Older frames not shown.
    pub omitted: usize,
}

/// One exception of a chain.
#[derive(Debug, Clone)]
pub struct Exception {
    pub ty: String,
    pub value: String,
    pub module: Option<String>,
    pub mechanism: Option<String>,
    /// `Some(false)`: unhandled.
    pub handled: Option<bool>,
    /// Shown after the one it caused ("caused by").
    pub is_cause: bool,
    pub stack: Option<Stack>,
    /// The minified frames, when source maps rewrote the stack.
    pub raw_stack: Option<Stack>,
}

/// One thread of the `threads` interface.
#[derive(Debug, Clone)]
pub struct Thread {
    pub name: String,
    pub crashed: bool,
    pub current: bool,
    pub stack: Option<Stack>,
}

/// One breadcrumb (or, last, the error itself).
#[derive(Debug, Clone)]
pub struct Crumb {
    /// `14:03:22.123`; the full time is in `iso`.
    pub time: String,
    pub iso: String,
    pub category: String,
    pub kind: String,
    pub level: String,
    pub message: Link,
    pub data: Vec<Pair>,
    /// The last entry: the event itself.
    pub is_error: bool,
}

/// The request the event happened in.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Option<String>,
    pub url: Option<Link>,
    pub query: Vec<Pair>,
    pub fragment: Option<String>,
    pub headers: Vec<Pair>,
    pub cookies: Vec<Pair>,
    pub data: Option<String>,
    pub env: Vec<Pair>,
}

/// One context (`browser`, `os`, `runtime`, …).
#[derive(Debug, Clone)]
pub struct Context {
    pub name: String,
    pub pairs: Vec<Pair>,
}

/// One tag of the event, with the issue search it links to.
#[derive(Debug, Clone)]
pub struct Tag {
    pub key: String,
    pub value: String,
    pub href: String,
}

/// What made the issue: the grouping variant, hash and contributing components.
#[derive(Debug, Clone, Default)]
pub struct Grouping {
    pub variant: String,
    pub hash: String,
    /// `exceptions.0.frames.1.function` → `handle`.
    pub components: Vec<Pair>,
}

/// Everything the issue page shows of one event.
#[derive(Debug, Clone, Default)]
pub struct EventView {
    pub level: String,
    pub platform: Option<String>,
    /// Outermost first; the rest are its causes.
    pub exceptions: Vec<Exception>,
    pub exceptions_omitted: usize,
    /// Some frame could not be resolved with a source map (reprocessing may help).
    pub unresolved_frames: bool,
    /// Threads with stack traces (only when there is no exception).
    pub threads: Vec<Thread>,
    /// A stack trace attached to a message event.
    pub stacktrace: Option<Stack>,
    pub message: Option<String>,
    /// Oldest first, ending with the error itself.
    pub crumbs: Vec<Crumb>,
    pub crumbs_omitted: usize,
    pub user: Vec<Pair>,
    pub request: Option<Request>,
    pub contexts: Vec<Context>,
    pub tags: Vec<Tag>,
    pub extra: Vec<Pair>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub sdk: Option<String>,
    pub transaction: Option<String>,
    pub server_name: Option<String>,
    pub trace_id: Option<String>,
    pub grouping: Grouping,
    /// What normalization dropped or cut (`type` at `name`).
    pub errors: Vec<Pair>,
}

/// The issue search for `key:"value"`, as a link to the issues list.
pub fn tag_search(key: &str, value: &str) -> String {
    let query = format!("{key}:\"{value}\"");
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("/issues/?query={q}")
}

/// Builds the view of a stored event: its normalized `payload`, the `grouping` it was stored
/// with, and its `timestamp` (Unix seconds).
pub fn build(payload: &Value, grouping: &Value, timestamp: f64) -> EventView {
    let p = payload;
    let level = str_at(p, "level").unwrap_or("error").to_string();
    let (exceptions, exceptions_omitted) = exceptions(p);
    let threads = if exceptions.is_empty() {
        threads(p)
    } else {
        Vec::new()
    };
    let message = p
        .pointer("/logentry/formatted")
        .or_else(|| p.pointer("/logentry/message"))
        .or_else(|| p.get("message"))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(|m| clip(m, MAX_VALUE));
    let headline = exceptions
        .first()
        .map(|e| match (e.ty.is_empty(), e.value.is_empty()) {
            (false, false) => format!("{}: {}", e.ty, e.value),
            (false, true) => e.ty.clone(),
            _ => e.value.clone(),
        })
        .or_else(|| message.clone())
        .unwrap_or_else(|| crate::digest::title::title(p));
    let (crumbs, crumbs_omitted) = crumbs(
        p,
        Crumb {
            time: clock(timestamp),
            iso: iso(timestamp),
            category: if exceptions.is_empty() {
                "message"
            } else {
                "exception"
            }
            .to_string(),
            kind: "error".to_string(),
            level: level.clone(),
            message: Link::new(&headline, MAX_VALUE),
            data: Vec::new(),
            is_error: true,
        },
    );
    let mut event_tags = tags::event_tags(p);
    event_tags.sort();
    let sdk = p.get("sdk").and_then(|s| {
        let name = str_at(s, "name")?;
        Some(match str_at(s, "version") {
            Some(v) => clip(&format!("{name} {v}"), 200),
            None => clip(name, 200),
        })
    });
    let unresolved_frames = exceptions
        .iter()
        .filter_map(|e| e.stack.as_ref())
        .any(|s| s.frames.iter().any(|f| f.unresolved.is_some()));
    EventView {
        level,
        platform: text_at(p, "platform", 64),
        unresolved_frames,
        exceptions,
        exceptions_omitted,
        threads,
        stacktrace: p.get("stacktrace").and_then(stack),
        message,
        crumbs,
        crumbs_omitted,
        user: user(p.get("user")),
        request: p.get("request").filter(|r| r.is_object()).map(request),
        contexts: contexts(p.get("contexts")),
        tags: event_tags
            .into_iter()
            .map(|(k, v)| Tag {
                href: tag_search(&k, &v),
                key: k,
                value: v,
            })
            .collect(),
        extra: match p.get("extra") {
            Some(Value::Object(m)) => m
                .iter()
                .take(MAX_PAIRS)
                .map(|(k, v)| Pair {
                    key: clip(k, 200),
                    value: Link {
                        text: value_text(v, MAX_BODY),
                        href: v.as_str().and_then(web_url).map(str::to_string),
                    },
                })
                .collect(),
            _ => Vec::new(),
        },
        release: text_at(p, "release", 200),
        environment: text_at(p, "environment", 200),
        sdk,
        transaction: text_at(p, "transaction", MAX_VALUE),
        server_name: text_at(p, "server_name", 256),
        trace_id: p
            .pointer("/contexts/trace/trace_id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 64)
            .map(str::to_string),
        grouping: grouping_view(grouping),
        errors: p
            .get("errors")
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .take(MAX_PAIRS)
                    .map(|e| {
                        Pair::text(
                            &text_at(e, "type", 100).unwrap_or_else(|| "error".into()),
                            &text_at(e, "name", 500).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time.
fn clock(ts: f64) -> String {
    let full = iso(ts);
    full.get(11..23).unwrap_or(&full).to_string()
}

/// The exception chain, outermost first (it is stored cause first, outermost last), and how
/// many older causes were left out.
fn exceptions(p: &Value) -> (Vec<Exception>, usize) {
    let Some(values) = p.pointer("/exception/values").and_then(Value::as_array) else {
        return (Vec::new(), 0);
    };
    let values: Vec<&Value> = values.iter().filter(|v| v.is_object()).collect();
    let omitted = values.len().saturating_sub(MAX_CHAIN);
    let list = values
        .iter()
        .rev()
        .take(MAX_CHAIN)
        .enumerate()
        .map(|(i, e)| {
            let mechanism = e.get("mechanism");
            Exception {
                ty: text_at(e, "type", 256).unwrap_or_default(),
                value: text_at(e, "value", MAX_VALUE).unwrap_or_default(),
                module: text_at(e, "module", 256),
                mechanism: mechanism.and_then(|m| text_at(m, "type", 100)),
                handled: mechanism
                    .and_then(|m| m.get("handled"))
                    .and_then(Value::as_bool),
                is_cause: i > 0,
                stack: e.get("stacktrace").and_then(stack),
                raw_stack: e.get("raw_stacktrace").and_then(stack),
            }
        })
        .collect();
    (list, omitted)
}

/// Threads with a stack trace, the crashed one first.
fn threads(p: &Value) -> Vec<Thread> {
    let Some(values) = p.pointer("/threads/values").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut list: Vec<Thread> = values
        .iter()
        .filter_map(|t| {
            let stack = t.get("stacktrace").and_then(stack)?;
            let id = text_at(t, "id", 64);
            let name = text_at(t, "name", 256);
            let name = match (name, id) {
                (Some(n), Some(id)) => format!("{n} (#{id})"),
                (Some(n), None) => n,
                (None, Some(id)) => format!("Thread #{id}"),
                (None, None) => "Thread".to_string(),
            };
            Some(Thread {
                name,
                crashed: t.get("crashed").and_then(Value::as_bool) == Some(true),
                current: t.get("current").and_then(Value::as_bool) == Some(true),
                stack: Some(stack),
            })
        })
        .take(MAX_CHAIN)
        .collect();
    list.sort_by_key(|t| (!t.crashed, !t.current));
    list
}

/// A stack trace, most recent call first, at most [`MAX_FRAMES`] frames.
fn stack(st: &Value) -> Option<Stack> {
    let frames: Vec<&Value> = st
        .get("frames")?
        .as_array()?
        .iter()
        .filter(|f| f.is_object())
        .collect();
    if frames.is_empty() {
        return None;
    }
    let omitted = frames.len().saturating_sub(MAX_FRAMES);
    Some(Stack {
        frames: frames
            .iter()
            .rev()
            .take(MAX_FRAMES)
            .map(|f| frame(f))
            .collect(),
        omitted,
    })
}

fn frame(f: &Value) -> Frame {
    let filename = text_at(f, "filename", 1024);
    let module = text_at(f, "module", 1024);
    let abs_path = str_at(f, "abs_path");
    let location = filename
        .clone()
        .or_else(|| module.clone())
        .or_else(|| abs_path.map(|a| clip(a, 1024)))
        .unwrap_or_else(|| "?".to_string());
    let lineno = f.get("lineno").and_then(Value::as_u64);
    let colno = f.get("colno").and_then(Value::as_u64);
    let line = match (lineno, colno) {
        (Some(l), Some(c)) => Some(format!("{l}:{c}")),
        (Some(l), None) => Some(l.to_string()),
        _ => None,
    };
    let mut context = Vec::new();
    let lines = |key: &str| -> Vec<String> {
        f.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|l| value_text(l, MAX_LINE)).collect())
            .unwrap_or_default()
    };
    let pre = lines("pre_context");
    let pre_skip = pre.len().saturating_sub(MAX_CONTEXT_LINES);
    let n = (pre.len() - pre_skip) as u64;
    for (i, text) in pre.into_iter().skip(pre_skip).enumerate() {
        // Numbered backwards from the frame's own line.
        context.push(SourceLine {
            number: lineno.and_then(|l| l.checked_sub(n - i as u64)),
            text,
            current: false,
        });
    }
    let has_context_line = f.get("context_line").is_some_and(Value::is_string);
    if has_context_line || !context.is_empty() {
        context.push(SourceLine {
            number: lineno,
            text: f
                .get("context_line")
                .map(|l| value_text(l, MAX_LINE))
                .unwrap_or_default(),
            current: true,
        });
    }
    if has_context_line || !context.is_empty() {
        for (i, text) in lines("post_context")
            .into_iter()
            .take(MAX_CONTEXT_LINES)
            .enumerate()
        {
            context.push(SourceLine {
                number: lineno.map(|l| l + 1 + i as u64),
                text,
                current: false,
            });
        }
    }
    let (vars, vars_omitted) = match f.get("vars") {
        Some(Value::Object(m)) => (
            m.iter()
                .take(MAX_VARS)
                .map(|(k, v)| Pair {
                    key: clip(k, 200),
                    value: Link {
                        text: value_text(v, MAX_VALUE),
                        href: None,
                    },
                })
                .collect(),
            m.len().saturating_sub(MAX_VARS),
        ),
        _ => (Vec::new(), 0),
    };
    Frame {
        function: text_at(f, "function", 1024)
            .or_else(|| text_at(f, "raw_function", 1024))
            .or_else(|| text_at(f, "symbol", 1024))
            .unwrap_or_else(|| "?".to_string()),
        module: module.filter(|m| filename.is_some() && Some(m) != filename.as_ref()),
        abs_path: abs_path
            .filter(|a| Some(*a) != filename.as_deref())
            .map(|a| Link::new(a, 1024)),
        location,
        package: text_at(f, "package", 1024),
        line,
        in_app: f.get("in_app").and_then(Value::as_bool) == Some(true),
        context,
        vars,
        vars_omitted,
        address: text_at(f, "instruction_addr", 64),
        symbolicated: (f.pointer("/data/symbolicated") == Some(&Value::Bool(true))).then(
            || match f.pointer("/data/resolved_with").and_then(Value::as_str) {
                Some("debug-id") => "source map (debug id)".to_string(),
                Some("release") => "source map (release)".to_string(),
                _ => "source map".to_string(),
            },
        ),
        unresolved: f
            .get("data")
            .and_then(|d| text_at(d, "symbolicator_reason", 500)),
    }
}

/// Breadcrumbs oldest first (at most [`MAX_CRUMBS`], the most recent), then `error`.
fn crumbs(p: &Value, error: Crumb) -> (Vec<Crumb>, usize) {
    let values: Vec<&Value> = p
        .pointer("/breadcrumbs/values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|c| c.is_object()).collect())
        .unwrap_or_default();
    let omitted = values.len().saturating_sub(MAX_CRUMBS);
    let mut list: Vec<Crumb> = values
        .iter()
        .skip(omitted)
        .map(|c| {
            let ts = c.get("timestamp").and_then(Value::as_f64);
            Crumb {
                time: ts.map(clock).unwrap_or_default(),
                iso: ts.map(iso).unwrap_or_default(),
                category: text_at(c, "category", 200).unwrap_or_default(),
                kind: text_at(c, "type", 100).unwrap_or_else(|| "default".into()),
                level: text_at(c, "level", 20).unwrap_or_else(|| "info".into()),
                message: Link::new(str_at(c, "message").unwrap_or_default(), MAX_VALUE),
                data: pairs(c.get("data")),
                is_error: false,
            }
        })
        .collect();
    list.push(error);
    (list, omitted)
}

fn user(u: Option<&Value>) -> Vec<Pair> {
    let Some(u) = u.filter(|u| u.is_object()) else {
        return Vec::new();
    };
    let mut out: Vec<Pair> = ["id", "email", "username", "name", "ip_address", "segment"]
        .iter()
        .filter_map(|k| text_at(u, k, MAX_VALUE).map(|v| Pair::text(k, &v)))
        .collect();
    for (prefix, bag) in [("geo", u.get("geo")), ("data", u.get("data"))] {
        for p in pairs(bag) {
            out.push(Pair {
                key: format!("{prefix}.{}", p.key),
                value: p.value,
            });
        }
    }
    out
}

fn request(r: &Value) -> Request {
    let data = r.get("data").filter(|d| !d.is_null()).map(|d| match d {
        Value::String(s) => clip(s, MAX_BODY),
        other => clip(
            &serde_json::to_string_pretty(other).unwrap_or_default(),
            MAX_BODY,
        ),
    });
    Request {
        method: text_at(r, "method", 32),
        url: str_at(r, "url").map(|u| Link::new(u, MAX_VALUE)),
        query: match r.get("query_string") {
            Some(Value::String(q)) => vec![Pair::text("", q)],
            other => pairs(other),
        },
        fragment: text_at(r, "fragment", MAX_VALUE),
        headers: pairs(r.get("headers")),
        cookies: pairs(r.get("cookies"))
            .into_iter()
            .map(|mut p| {
                p.value.text = clip(&p.value.text, 256);
                p.value.href = None;
                p
            })
            .collect(),
        data,
        env: pairs(r.get("env")),
    }
}

/// Contexts, the well-known ones first, each as key/value lines (its `type` left out when it
/// only repeats the name).
fn contexts(c: Option<&Value>) -> Vec<Context> {
    const FIRST: &[&str] = &[
        "browser",
        "os",
        "client_os",
        "device",
        "runtime",
        "app",
        "trace",
    ];
    let Some(Value::Object(m)) = c else {
        return Vec::new();
    };
    let mut names: Vec<&String> = m.keys().collect();
    names.sort_by_key(|n| {
        (
            FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
            n.to_string(),
        )
    });
    names
        .into_iter()
        .take(MAX_PAIRS)
        .filter_map(|name| {
            let ctx = m.get(name)?;
            let pairs = match ctx {
                Value::Object(o) => o
                    .iter()
                    .filter(|(k, v)| !(k.as_str() == "type" && v.as_str() == Some(name.as_str())))
                    .take(MAX_PAIRS)
                    .map(|(k, v)| Pair::new(k, v))
                    .collect(),
                other => vec![Pair::new("", other)],
            };
            Some(Context {
                name: clip(name, 200),
                pairs,
            })
        })
        .collect()
}

/// The stored grouping (`{hash, variant, components}`) as plain lines.
fn grouping_view(g: &Value) -> Grouping {
    let mut components = Vec::new();
    if let Some(c) = g.get("components") {
        flatten("", c, &mut components);
    }
    components.retain(|p| p.key != "variant");
    Grouping {
        variant: text_at(g, "variant", 100).unwrap_or_default(),
        hash: text_at(g, "hash", 100).unwrap_or_default(),
        components,
    }
}

fn flatten(path: &str, v: &Value, out: &mut Vec<Pair>) {
    if out.len() >= MAX_GROUPING_LINES {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&join(&clip(k, 100)), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        other => out.push(Pair {
            key: path.to_string(),
            value: Link {
                text: value_text(other, MAX_VALUE),
                href: None,
            },
        }),
    }
}

/// The one-line summary of an event for lists: the outermost exception's `type: value`, else
/// the message, else the title.
pub fn summary(p: &Value) -> String {
    let outer = p
        .pointer("/exception/values")
        .and_then(Value::as_array)
        .and_then(|v| v.iter().rev().find(|e| e.is_object()));
    let text = match outer {
        Some(e) => match (str_at(e, "type"), str_at(e, "value")) {
            (Some(t), Some(v)) => format!("{t}: {v}"),
            (Some(t), None) => t.to_string(),
            (None, Some(v)) => v.to_string(),
            (None, None) => crate::digest::title::title(p),
        },
        None => p
            .pointer("/logentry/formatted")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| crate::digest::title::title(p)),
    };
    clip(text.lines().next().unwrap_or_default(), 300)
}

/// The user of an event in one short line: email, else username, else id, else IP address.
pub fn user_label(p: &Value) -> Option<String> {
    let u = p.get("user")?;
    ["email", "username", "id", "ip_address"]
        .iter()
        .find_map(|k| text_at(u, k, 200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chained() -> Value {
        json!({
            "level": "error",
            "timestamp": 1_700_000_000.5,
            "exception": {"values": [
                {"type": "ConfigError", "value": "missing setting",
                 "stacktrace": {"frames": [
                     {"function": "main", "filename": "app.py", "lineno": 3, "in_app": true},
                     {"function": "load", "filename": "lib/config.py", "lineno": 40, "in_app": false},
                 ]}},
                {"type": "CheckoutError", "value": "checkout failed",
                 "mechanism": {"type": "generic", "handled": false},
                 "stacktrace": {"frames": [
                     {"function": "dispatch", "module": "flask.app", "filename": "flask/app.py",
                      "in_app": false, "lineno": 1498},
                     {"function": "checkout", "filename": "shop/checkout.py", "lineno": 12,
                      "colno": 5, "in_app": true, "pre_context": ["a", "b"],
                      "context_line": "raise CheckoutError()", "post_context": ["c"],
                      "vars": {"cart": "[1, 2]", "n": 3}},
                 ]}},
            ]},
            "breadcrumbs": {"values": [
                {"timestamp": 1_700_000_000.0, "category": "nav", "message": "first"},
                {"timestamp": 1_700_000_000.2, "category": "http",
                 "data": {"url": "https://api.example.com/x", "to": "javascript:alert(1)"}},
            ]},
        })
    }

    #[test]
    fn chained_exceptions_show_outermost_first_with_causes_after() {
        let v = build(&chained(), &Value::Null, 1_700_000_000.5);
        let chain: Vec<(&str, bool)> = v
            .exceptions
            .iter()
            .map(|e| (e.ty.as_str(), e.is_cause))
            .collect();
        assert_eq!(chain, [("CheckoutError", false), ("ConfigError", true)]);
        assert_eq!(v.exceptions[0].handled, Some(false));
        assert_eq!(v.exceptions[0].mechanism.as_deref(), Some("generic"));
        assert_eq!(summary(&chained()), "CheckoutError: checkout failed");
    }

    #[test]
    fn frames_read_most_recent_first_with_in_app_flags_context_and_vars() {
        let v = build(&chained(), &Value::Null, 0.0);
        let stack = v.exceptions[0].stack.as_ref().unwrap();
        let frames: Vec<(&str, bool)> = stack
            .frames
            .iter()
            .map(|f| (f.function.as_str(), f.in_app))
            .collect();
        assert_eq!(frames, [("checkout", true), ("dispatch", false)]);
        let top = &stack.frames[0];
        assert_eq!(top.line.as_deref(), Some("12:5"));
        let lines: Vec<(Option<u64>, &str, bool)> = top
            .context
            .iter()
            .map(|l| (l.number, l.text.as_str(), l.current))
            .collect();
        assert_eq!(
            lines,
            [
                (Some(10), "a", false),
                (Some(11), "b", false),
                (Some(12), "raise CheckoutError()", true),
                (Some(13), "c", false)
            ]
        );
        assert_eq!(top.vars[0].key, "cart");
        assert_eq!(top.vars[0].value.text, "[1, 2]");
        assert_eq!(top.vars[1].value.text, "3");
        assert_eq!(stack.frames[1].module.as_deref(), Some("flask.app"));
    }

    #[test]
    fn breadcrumbs_end_with_the_error_and_only_web_urls_link() {
        let v = build(&chained(), &Value::Null, 1_700_000_000.5);
        let last = v.crumbs.last().unwrap();
        assert!(last.is_error);
        assert_eq!(last.message.text, "CheckoutError: checkout failed");
        assert_eq!(last.category, "exception");
        assert_eq!(v.crumbs[0].message.text, "first");
        assert_eq!(v.crumbs[0].time, "22:13:20.000");
        let data = &v.crumbs[1].data;
        let url = data.iter().find(|p| p.key == "url").unwrap();
        assert_eq!(url.value.href.as_deref(), Some("https://api.example.com/x"));
        let to = data.iter().find(|p| p.key == "to").unwrap();
        assert_eq!(to.value.href, None);
        assert_eq!(to.value.text, "javascript:alert(1)");
    }

    #[test]
    fn links_are_made_only_of_http_and_https_urls() {
        assert!(Link::new("https://example.com/a?b=c", 100).href.is_some());
        assert!(Link::new("HTTP://example.com/", 100).href.is_some());
        for inert in [
            "javascript:alert(1)",
            " javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "//evil.example/",
            "/relative/path.js",
            "http://exa mple.com/",
            "https://x\n.example/",
            "vbscript:x",
            "",
        ] {
            assert_eq!(Link::new(inert, 100).href, None, "{inert:?}");
        }
        let p = json!({"request": {"url": "javascript:alert(1)", "method": "GET"},
            "exception": {"values": [{"type": "E", "stacktrace": {"frames": [
                {"function": "f", "filename": "a.js", "abs_path": "javascript:alert(1)"},
                {"function": "g", "filename": "b.js", "abs_path": "https://cdn.example/b.js"}]}}]}});
        let v = build(&p, &Value::Null, 0.0);
        assert_eq!(v.request.unwrap().url.unwrap().href, None);
        let frames = &v.exceptions[0].stack.as_ref().unwrap().frames;
        assert_eq!(
            frames[0].abs_path.as_ref().unwrap().href.as_deref(),
            Some("https://cdn.example/b.js")
        );
        assert_eq!(frames[1].abs_path.as_ref().unwrap().href, None);
    }

    #[test]
    fn everything_shown_is_bounded() {
        let long = "é".repeat(10_000);
        let clipped = clip(&long, MAX_VALUE);
        assert!(clipped.len() <= MAX_VALUE + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short", 10), "short");

        let frames: Vec<Value> = (0..400)
            .map(|i| {
                let vars: serde_json::Map<String, Value> =
                    (0..150).map(|j| (format!("v{j}"), json!(long))).collect();
                json!({"function": format!("f{i}"), "lineno": i, "vars": vars})
            })
            .collect();
        let crumbs: Vec<Value> = (0..300)
            .map(|i| json!({"message": format!("c{i}")}))
            .collect();
        let p = json!({"exception": {"values": [{"type": "E", "value": long,
            "stacktrace": {"frames": frames}}]}, "breadcrumbs": {"values": crumbs}});
        let v = build(&p, &Value::Null, 0.0);
        let stack = v.exceptions[0].stack.as_ref().unwrap();
        assert_eq!(stack.frames.len(), MAX_FRAMES);
        assert_eq!(stack.omitted, 150);
        assert_eq!(
            stack.frames[0].function, "f399",
            "the most recent frames are kept"
        );
        assert_eq!(stack.frames[0].vars.len(), MAX_VARS);
        assert_eq!(stack.frames[0].vars_omitted, 50);
        assert!(stack.frames[0].vars[0].value.text.len() <= MAX_VALUE + 3);
        assert!(v.exceptions[0].value.ends_with('…'));
        assert_eq!(
            v.crumbs.len(),
            MAX_CRUMBS + 1,
            "200 breadcrumbs and the error"
        );
        assert_eq!(v.crumbs_omitted, 100);
        assert_eq!(
            v.crumbs[0].message.text, "c100",
            "the most recent breadcrumbs are kept"
        );
    }

    #[test]
    fn threads_show_without_an_exception_and_odd_shapes_do_not_panic() {
        let p = json!({"logentry": {"formatted": "hello"}, "threads": {"values": [
            {"id": 1, "name": "worker", "stacktrace": {"frames": [{"function": "w"}]}},
            {"id": 2, "crashed": true, "stacktrace": {"frames": [{"function": "c"}]}},
            {"id": 3},
        ]}});
        let v = build(&p, &Value::Null, 0.0);
        assert_eq!(v.message.as_deref(), Some("hello"));
        let names: Vec<&str> = v.threads.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Thread #2", "worker (#1)"]);
        assert_eq!(v.crumbs.len(), 1);
        assert_eq!(v.crumbs[0].message.text, "hello");

        for odd in [
            json!(null),
            json!([]),
            json!({"exception": 3, "threads": "x", "breadcrumbs": {"values": [1, null]}}),
            json!({"exception": {"values": [{"stacktrace": {"frames": [1, "x", {}]}}]},
                   "request": {"headers": [[1], "x", [1, 2, 3]], "url": 5},
                   "user": {"geo": "x", "data": [1]}, "contexts": {"a": 1},
                   "sdk": {"name": 1}, "tags": 5}),
        ] {
            let _ = build(&odd, &json!({"components": [1, {"a": null}]}), f64::NAN);
            let _ = summary(&odd);
        }
    }

    #[test]
    fn grouping_components_flatten_to_lines() {
        let g = json!({"hash": "abc", "variant": "app", "components": {"variant": "app",
            "exceptions": [{"type": "ValueError", "frames": [{"module": "m", "function": "f"}]}]}});
        let v = build(&json!({}), &g, 0.0);
        assert_eq!(v.grouping.hash, "abc");
        assert_eq!(v.grouping.variant, "app");
        let lines: Vec<(&str, &str)> = v
            .grouping
            .components
            .iter()
            .map(|p| (p.key.as_str(), p.value.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                ("exceptions.0.frames.0.function", "f"),
                ("exceptions.0.frames.0.module", "m"),
                ("exceptions.0.type", "ValueError")
            ]
        );
    }

    #[test]
    fn tags_link_to_the_issue_search() {
        assert_eq!(
            tag_search("browser", "Chrome 1\"&x"),
            "/issues/?query=browser%3A%22Chrome+1%22%26x%22"
        );
        let v = build(
            &json!({"tags": [["tier", "pro"]], "level": "error"}),
            &Value::Null,
            0.0,
        );
        let tier = v.tags.iter().find(|t| t.key == "tier").unwrap();
        assert_eq!(tier.href, "/issues/?query=tier%3A%22pro%22");
    }
}
