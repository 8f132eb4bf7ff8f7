//! Realistic error envelopes, pre-rendered once and gzip-compressed once.
//!
//! Content follows `/work/shared/bench/loadgen.py` (a sentry-python/Django error event: exception
//! with a ~20-frame stack trace with source context and `in_app`, breadcrumbs, user, request with
//! headers, contexts os/runtime/browser/device/trace, tags, extra, release, environment, sdk), made
//! larger and less repetitive so that one gzip body is ~6 KB (loadgen's is ~2 KB): source context
//! (2 lines each side) on every frame, local variables on the innermost application frames, richer
//! breadcrumbs (HTTP, SQL, navigation, clicks, cache, tasks), cookies, request data, more contexts,
//! `modules`. Mean sizes (50 groups, 2000 bodies): ~6.2 KB gzip, ~18.5 KB uncompressed.
//!
//! Events fall into `groups` issues: exception type, value and frames (including their vars) are
//! fixed per group; everything else varies per event.
//!
//! Per request only the envelope header changes (unique `event_id`, `sent_at`). A body is one
//! gzip member, as an SDK sends it, whose deflate stream is two parts:
//!
//! * built per request: the envelope header line in a *stored* (uncompressed), non-final deflate
//!   block — 5 bytes of framing around ~120 bytes, costing one CRC-32 and no compressor;
//! * compressed once (level 9, like sentry-python): item header, payload, trailing newline, as
//!   the stream's remaining blocks. The payload has no `event_id` (the envelope header's wins).
//!
//! A stored block ends on a byte boundary, so the pre-compressed blocks follow it as they are;
//! the member's CRC-32 is combined from the two parts' CRCs. (Until 2026-12-07 the two parts were
//! two gzip members, which real SDKs never send and which a server may decode on a slower path.)

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------
// A small deterministic PRNG (SplitMix64): content generation must be reproducible, and the
// per-request event id generator must be cheap.
// ------------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Seeded from the clock, the pid and std's per-process random hash keys.
    pub fn from_entropy(salt: u64) -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        Rng::new(h.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    pub fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let v = self.next_u64();
            for i in 0..16 {
                if s.len() == n {
                    break;
                }
                s.push(HEX[((v >> (i * 4)) & 15) as usize] as char);
            }
        }
        s
    }

    /// Base62-ish token (session ids, CSRF tokens).
    pub fn token(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| A[self.below(A.len() as u64) as usize] as char)
            .collect()
    }

    /// A random version-4 UUID as 32 lowercase hex characters, written into `out`.
    pub fn uuid4_hex(&mut self, out: &mut [u8; 32]) {
        let a = self.next_u64();
        let b = self.next_u64();
        for i in 0..16 {
            out[i] = HEX[((a >> (60 - 4 * i)) & 15) as usize];
            out[16 + i] = HEX[((b >> (60 - 4 * i)) & 15) as usize];
        }
        out[12] = b'4';
        out[16] = HEX[8 + ((b >> 60) & 3) as usize];
    }
}

pub const HEX: &[u8; 16] = b"0123456789abcdef";

// ------------------------------------------------------------------------------------------------
// Vocabulary
// ------------------------------------------------------------------------------------------------

const EXC_TYPES: &[&str] = &[
    "ValueError",
    "KeyError",
    "TypeError",
    "AttributeError",
    "ZeroDivisionError",
    "RuntimeError",
    "ConnectionError",
    "TimeoutError",
    "PermissionError",
    "IndexError",
];
const MODULES: &[&str] = &[
    "app.api.orders",
    "app.api.users",
    "app.services.billing",
    "app.services.search",
    "app.workers.email",
    "app.models.cart",
    "app.util.cache",
    "app.db.session",
    "app.views.checkout",
    "app.integrations.stripe",
    "app.auth.tokens",
    "app.reports.export",
    "app.services.inventory",
    "app.api.webhooks",
    "app.models.invoice",
    "app.util.retry",
];
const LIB_FRAMES: &[(&str, &str, &str)] = &[
    (
        "django/core/handlers/exception.py",
        "django.core.handlers.exception",
        "inner",
    ),
    (
        "django/core/handlers/base.py",
        "django.core.handlers.base",
        "_get_response",
    ),
    (
        "django/views/generic/base.py",
        "django.views.generic.base",
        "view",
    ),
    (
        "django/views/generic/base.py",
        "django.views.generic.base",
        "dispatch",
    ),
    (
        "rest_framework/views.py",
        "rest_framework.views",
        "handle_exception",
    ),
    (
        "rest_framework/views.py",
        "rest_framework.views",
        "dispatch",
    ),
    (
        "sqlalchemy/orm/session.py",
        "sqlalchemy.orm.session",
        "execute",
    ),
    (
        "urllib3/connectionpool.py",
        "urllib3.connectionpool",
        "urlopen",
    ),
    ("django/db/models/query.py", "django.db.models.query", "get"),
    ("celery/app/task.py", "celery.app.task", "__call__"),
];
const VERBS: &[&str] = &[
    "load", "parse", "validate", "compute", "render", "fetch", "store", "apply", "resolve",
    "build", "sync", "charge", "notify", "lookup", "encode", "refund", "reserve", "release",
    "merge", "split", "publish", "schedule", "cancel", "archive", "verify",
];
const NOUNS: &[&str] = &[
    "order",
    "invoice",
    "user",
    "cart",
    "token",
    "report",
    "payload",
    "session",
    "item",
    "price",
    "address",
    "batch",
    "webhook",
    "profile",
    "quota",
    "coupon",
    "shipment",
    "refund",
    "ledger",
    "tenant",
    "voucher",
    "account",
    "plan",
    "receipt",
    "warehouse",
];
const ADJS: &[&str] = &[
    "pending", "stale", "active", "partial", "cached", "remote", "default", "primary", "legacy",
    "expired", "locked", "draft", "shared", "archived", "external",
];
const BROWSERS: &[(&str, &str)] = &[
    ("Chrome", "131.0.6778.85"),
    ("Firefox", "133.0"),
    ("Safari", "18.1.1"),
    ("Edge", "131.0.2903.63"),
    ("Opera", "114.0.5282"),
];
const OSES: &[(&str, &str, &str)] = &[
    ("Windows", "10", "19045"),
    ("macOS", "15.1.1", "24B91"),
    ("Linux", "6.8.0", "6.8.0-49-generic"),
    ("iOS", "18.1", "22B83"),
    ("Android", "15", "AP3A.241105.007"),
];
const DEVICES: &[(&str, &str, &str)] = &[
    ("Desktop", "x86_64", "Other"),
    ("iPhone", "arm64e", "Apple"),
    ("Pixel 8", "arm64-v8a", "Google"),
    ("Mac", "arm64", "Apple"),
    ("Galaxy S24", "arm64-v8a", "samsung"),
];
const REGIONS: &[&str] = &[
    "eu-west-1",
    "us-east-1",
    "us-west-2",
    "ap-southeast-1",
    "eu-central-1",
];
const CRUMB_CATS: &[&str] = &[
    "http",
    "navigation",
    "ui.click",
    "query",
    "console",
    "auth",
    "cache",
    "celery",
];
const LOCALES: &[&str] = &[
    "en-US", "de-DE", "fr-FR", "es-ES", "pt-BR", "ja-JP", "nl-NL", "en-GB",
];
const TZS: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Europe/London",
    "America/Sao_Paulo",
];
const PKGS: &[&str] = &[
    "django",
    "djangorestframework",
    "celery",
    "redis",
    "psycopg",
    "sqlalchemy",
    "urllib3",
    "requests",
    "certifi",
    "charset-normalizer",
    "idna",
    "kombu",
    "billiard",
    "vine",
    "amqp",
    "pydantic",
    "pydantic-core",
    "typing-extensions",
    "gunicorn",
    "whitenoise",
    "stripe",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "six",
    "pytz",
    "sentry-sdk",
    "structlog",
    "orjson",
    "markupsafe",
    "jinja2",
    "pillow",
    "cryptography",
    "cffi",
    "pycparser",
    "pyjwt",
    "asgiref",
    "sqlparse",
];

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A group's identity spelled in letters g..z (servers strip digits/hex from messages before
/// grouping, so digits alone would not make distinct issues).
fn group_tag(g: usize) -> String {
    let letters = b"ghijklmnopqrstuvwxyz";
    let mut tag = Vec::new();
    let mut k = g;
    loop {
        tag.push(letters[k % 20]);
        k /= 20;
        if k == 0 {
            break;
        }
    }
    tag.reverse();
    String::from_utf8(tag).unwrap()
}

/// One line of plausible Python source.
fn code_line(r: &mut Rng, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let a = format!("{}_{}", r.pick(ADJS), r.pick(NOUNS));
    let b = r.pick(NOUNS).to_string();
    let v = r.pick(VERBS);
    let n = r.pick(NOUNS);
    let line = match r.below(12) {
        0 => format!(
            "{a} = {b}.{v}_{n}({b}_id, strict={})",
            if r.chance(0.5) { "True" } else { "False" }
        ),
        1 => format!("if not {a}.is_{}:", r.pick(ADJS)),
        2 => format!(
            "    raise {}(f\"cannot {v} {n} {{{a}.pk}}: {{reason}}\")",
            r.pick(EXC_TYPES)
        ),
        3 => format!(
            "for {n} in {a}.{b}_set.filter(status=\"{}\"):",
            r.pick(ADJS)
        ),
        4 => format!("logger.debug(\"{v} %s for %s took %.2fms\", {a}, {b}.id, elapsed)"),
        5 => format!(
            "return self._{v}_{n}({a}, timeout={}, retries={})",
            r.int(1, 60),
            r.int(0, 5)
        ),
        6 => format!(
            "with transaction.atomic(using=\"{}\"):",
            r.pick(&["default", "replica", "billing"])
        ),
        7 => format!(
            "{a}[\"{n}_{}\"] = {b}.get(\"{}\", {})",
            r.pick(ADJS),
            r.pick(NOUNS),
            r.int(0, 500)
        ),
        8 => format!(
            "{a} = await client.{v}(\"/v{}/{n}s/\", json={b}.as_dict())",
            r.int(1, 3)
        ),
        9 => format!(
            "# {v} the {} {n} before we {} the {b}",
            r.pick(ADJS),
            r.pick(VERBS)
        ),
        10 => format!(
            "self.{a} = {}({b}, {n}={a}, cache_ttl={})",
            title(r.pick::<&str>(NOUNS)),
            r.int(10, 3600)
        ),
        _ => format!("assert {a} is not None, \"{n} missing for {b} %s\" % {b}.pk"),
    };
    format!("{pad}{line}")
}

fn repr(r: &mut Rng, module: &str) -> String {
    match r.below(7) {
        0 => format!(
            "<{}Handler object at 0x7f{}>",
            title(module.rsplit('.').next().unwrap_or("x")),
            r.hex(10)
        ),
        1 => format!("{}", r.int(1, 9_999_999)),
        2 => format!("'{}-{}'", r.pick(NOUNS), r.hex(8)),
        3 => format!(
            "{{'id': {}, 'status': '{}', '{}': {}}}",
            r.int(1, 99999),
            r.pick(ADJS),
            r.pick(NOUNS),
            r.int(0, 999)
        ),
        4 => format!(
            "<QuerySet [<{}: {}>, <{}: {}>]>",
            title(r.pick::<&str>(NOUNS)),
            r.int(1, 9999),
            title(r.pick::<&str>(NOUNS)),
            r.int(1, 9999)
        ),
        5 => {
            if r.chance(0.5) {
                "None".into()
            } else {
                "True".into()
            }
        }
        _ => format!(
            "datetime.datetime(2026, {}, {}, {}, {}, {}, tzinfo=<UTC>)",
            r.int(1, 12),
            r.int(1, 28),
            r.int(0, 23),
            r.int(0, 59),
            r.int(0, 59)
        ),
    }
}

/// The fixed, grouping-relevant part of a group.
pub struct Group {
    exc_type: String,
    exc_value: String,
    frames: Value,
    transaction: String,
    logger: String,
}

impl Group {
    /// The event's `exception`: the group's type, value and frames, as Django's SDK reports an
    /// unhandled error.
    fn exception(&self) -> Value {
        json!({"values": [{
            "type": self.exc_type, "value": self.exc_value, "module": self.logger,
            "mechanism": {"type": "django", "handled": false},
            "stacktrace": {"frames": self.frames},
        }]})
    }
}

pub fn make_groups(n: usize, seed: u64) -> Vec<Group> {
    let mut r = Rng::new(seed);
    (0..n).map(|g| make_group(g, &mut r)).collect()
}

/// Group `g`; `r` must have made groups `0..g` before (as [`make_groups`] does), so that a group
/// is the same whatever the number of groups.
pub fn make_group(g: usize, r: &mut Rng) -> Group {
    make_group_with(
        g,
        r,
        "/venv/lib/python3.12/site-packages",
        |r, place, i, nframes| {
            let FramePlace {
                filename,
                module,
                function,
                abs_path,
                in_app,
            } = place;
            let lineno = r.int(20, 900);
            let mut indent = 4 * r.int(1, 2) as usize;
            let pre: Vec<String> = (0..2).map(|_| code_line(r, indent)).collect();
            indent = 4 * r.int(1, 3) as usize;
            let context_line = code_line(r, indent);
            let post: Vec<String> = (0..2)
                .map(|_| {
                    let ind = 4 * r.int(1, 2) as usize;
                    code_line(r, ind)
                })
                .collect();
            let mut frame = json!({
                "filename": filename, "abs_path": abs_path, "module": module,
                "function": function, "lineno": lineno, "in_app": in_app,
                "pre_context": pre, "context_line": context_line, "post_context": post,
            });
            if in_app && i + 10 >= nframes {
                let mut vars = serde_json::Map::new();
                vars.insert("self".into(), Value::String(repr(r, &module)));
                for _ in 0..r.int(0, 2) {
                    let k = format!("{}_{}", r.pick(ADJS), r.pick(NOUNS));
                    vars.insert(k, Value::String(repr(r, &module)));
                }
                frame["vars"] = Value::Object(vars);
            }
            frame
        },
    )
}

/// Where frame `i` of a group is: the first four are the framework's, the rest the app's.
struct FramePlace {
    filename: String,
    module: String,
    function: String,
    abs_path: String,
    in_app: bool,
}

/// Group `g`: its exception, then each frame made by `frame` from where it is, then its
/// transaction. The draws from `r` come in that order, so a group depends only on `r`'s state.
fn make_group_with(
    g: usize,
    r: &mut Rng,
    lib_root: &str,
    mut frame: impl FnMut(&mut Rng, FramePlace, usize, usize) -> Value,
) -> Group {
    let exc_type = EXC_TYPES[g % EXC_TYPES.len()].to_string();
    let noun = NOUNS[g % NOUNS.len()];
    let exc_value = format!(
        "could not {} {noun} in stage {}: invalid state '{}'",
        r.pick(VERBS),
        group_tag(g),
        r.pick(NOUNS)
    );
    let nframes = 17 + g % 5;
    let frames: Vec<Value> = (0..nframes)
        .map(|i| {
            let place = if i < 4 {
                let (f, m, func) = LIB_FRAMES[(g + i) % LIB_FRAMES.len()];
                FramePlace {
                    filename: f.to_string(),
                    module: m.to_string(),
                    function: func.to_string(),
                    abs_path: format!("{lib_root}/{f}"),
                    in_app: false,
                }
            } else {
                let module = MODULES[(g * 7 + i) % MODULES.len()].to_string();
                let function = format!("{}_{}", r.pick(VERBS), r.pick(NOUNS));
                let filename = format!("{}.py", module.replace('.', "/"));
                FramePlace {
                    abs_path: format!("/srv/app/{filename}"),
                    filename,
                    module,
                    function,
                    in_app: true,
                }
            };
            frame(r, place, i, nframes)
        })
        .collect();
    Group {
        exc_type,
        exc_value,
        frames: Value::Array(frames),
        transaction: format!("/api/v1/{noun}s/{{id}}/{}", r.pick(VERBS)),
        logger: MODULES[g % MODULES.len()].to_string(),
    }
}

/// RFC 3339 UTC with microseconds, like sentry-python's `format_timestamp`.
pub fn iso_utc(unix_micros: i64) -> String {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Writes the same as [`iso_utc`] into a fixed 27-byte buffer (per request, no allocation).
pub fn iso_utc_into(unix_micros: i64, out: &mut [u8; 27]) {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut put = |pos: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            out[pos + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, (sod / 60) % 60);
    put(17, 2, sod % 60);
    put(20, 6, micros);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'.';
    out[26] = b'Z';
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

/// One event of `group`, without `event_id`; `ts` is its timestamp (Unix µs).
fn make_event(group: &Group, r: &mut Rng, ts: i64) -> Value {
    let (browser, bver) = *r.pick(BROWSERS);
    let (osname, osver, osbuild) = *r.pick(OSES);
    let (device, arch, brand) = *r.pick(DEVICES);
    let uid = r.int(1, 500_000);
    let order = r.int(1000, 9_999_999);
    let region = *r.pick(REGIONS);
    let t0 = ts as f64 / 1e6 - 30.0;
    let trace_id = r.hex(32);
    let host = format!("web-{:02}.{region}.internal", r.int(1, 24));

    let crumbs: Vec<Value> = (0..r.int(6, 10))
        .map(|i| {
            let cat = *r.pick(CRUMB_CATS);
            let ts = t0 + i as f64 * 2.37 + r.below(1000) as f64 / 1000.0;
            let mut c = json!({"timestamp": ts, "category": cat, "level": "info", "type": "default"});
            match cat {
                "http" => {
                    let status = *r.pick(&[200, 200, 201, 204, 404, 409, 500, 502]);
                    c["type"] = json!("http");
                    c["data"] = json!({
                        "http.method": r.pick(&["GET", "POST", "PATCH", "DELETE"]),
                        "status_code": status,
                        "reason": match status { 200 => "OK", 201 => "Created", 204 => "No Content", 404 => "Not Found", 409 => "Conflict", 500 => "Internal Server Error", _ => "Bad Gateway" },
                        "url": format!("https://{}.example.com/v{}/{}s/{}/{}", r.pick(&["api", "payments", "search", "inventory"]), r.int(1, 3), r.pick(NOUNS), r.int(1, 999_999), r.pick(VERBS)),
                        "http.query": format!("expand={}&cursor={}", r.pick(NOUNS), r.token(12)),
                        "http.response_content_length": r.int(80, 90_000),
                        "duration_ms": r.int(2, 4000),
                    });
                    if status >= 400 {
                        c["level"] = json!(if status >= 500 { "error" } else { "warning" });
                    }
                }
                "query" => {
                    let t = r.pick(NOUNS);
                    let j = r.pick(NOUNS);
                    c["type"] = json!("query");
                    c["message"] = json!(format!(
                        "SELECT \"{t}s\".\"id\", \"{t}s\".\"{a}_{j}_id\", \"{t}s\".\"status\", \"{t}s\".\"{}_at\" FROM \"{t}s\" INNER JOIN \"{j}s\" ON (\"{t}s\".\"{a}_{j}_id\" = \"{j}s\".\"id\") WHERE (\"{j}s\".\"tenant_id\" = %s AND \"{t}s\".\"status\" IN (%s, %s)) ORDER BY \"{t}s\".\"created_at\" DESC LIMIT {}",
                        r.pick(VERBS), r.int(1, 100), a = r.pick(ADJS)
                    ));
                    c["data"] = json!({"db.system": "postgresql", "db.params": [r.int(1, 99999), r.pick(ADJS), r.pick(ADJS)], "duration_ms": r.int(1, 900)});
                }
                "navigation" => {
                    c["type"] = json!("navigation");
                    c["data"] = json!({
                        "from": format!("/{}s/{}/{}", r.pick(NOUNS), r.int(1, 99999), r.pick(VERBS)),
                        "to": format!("/{}s/{}?tab={}", r.pick(NOUNS), r.int(1, 99999), r.pick(ADJS)),
                    });
                }
                "ui.click" => {
                    c["type"] = json!("user");
                    c["message"] = json!(format!(
                        "div#{}-{} > form.{}-form > button.btn.btn-{}[name=\"{}\"][data-testid=\"{}-{}\"]",
                        r.pick(NOUNS), r.token(6), r.pick(VERBS), r.pick(&["primary", "secondary", "danger"]), r.pick(VERBS), r.pick(ADJS), r.pick(NOUNS)
                    ));
                }
                "cache" => {
                    c["message"] = json!(format!("cache {} {}:{}:{}", r.pick(&["hit", "miss", "set"]), r.pick(NOUNS), r.int(1, 999_999), r.hex(8)));
                    c["data"] = json!({"cache.hit": r.chance(0.5), "cache.item_size": r.int(10, 20000), "network.peer.address": format!("10.{}.{}.{}", r.int(0, 255), r.int(0, 255), r.int(1, 254))});
                }
                "celery" => {
                    c["message"] = json!(format!("task {}.tasks.{}_{} enqueued", r.pick(MODULES), r.pick(VERBS), r.pick(NOUNS)));
                    c["data"] = json!({"task_id": r.hex(32), "queue": r.pick(&["default", "high", "email", "billing"]), "retries": r.int(0, 3)});
                }
                "auth" => {
                    c["message"] = json!(format!("user {} authenticated via {} (session {})", r.int(1, 500_000), r.pick(&["password", "sso", "api_token", "oauth"]), r.token(10)));
                }
                _ => {
                    c["type"] = json!("debug");
                    c["message"] = json!(format!(
                        "{} {} #{} for {} {} in {}ms ({})",
                        r.pick(VERBS), r.pick(NOUNS), r.int(1, 99999), r.pick(ADJS), r.pick(NOUNS), r.int(1, 3000), r.token(8)
                    ));
                    c["data"] = json!({"logger": r.pick(MODULES), "extra": {"attempt": r.int(1, 5)}});
                }
            }
            c
        })
        .collect();

    let ua = format!(
        "Mozilla/5.0 ({osname} {osver}; {arch}) AppleWebKit/537.36 (KHTML, like Gecko) {browser}/{bver} Safari/537.36"
    );
    let cookie = format!(
        "sessionid={}; csrftoken={}; _ga=GA1.1.{}.{}; locale={}; cart={}",
        r.token(32),
        r.token(32),
        r.int(100_000_000, 999_999_999),
        r.int(1_700_000_000, 1_770_000_000),
        r.pick(LOCALES),
        r.hex(12)
    );
    let body: serde_json::Map<String, Value> = (0..r.int(3, 6))
        .map(|_| {
            (
                format!("{}_{}", r.pick(ADJS), r.pick(NOUNS)),
                match r.below(3) {
                    0 => json!(r.int(0, 100_000)),
                    1 => json!(format!("{}-{}", r.pick(NOUNS), r.token(6))),
                    _ => json!([r.int(1, 999), r.int(1, 999), r.pick(ADJS)]),
                },
            )
        })
        .collect();
    let items: Vec<Value> = (0..r.int(1, 4))
        .map(|_| json!({"sku": format!("{}-{}", r.pick(NOUNS).to_uppercase(), r.int(10000, 99999)), "qty": r.int(1, 5), "price": format!("{}.{:02}", r.int(1, 400), r.int(0, 99))}))
        .collect();
    let mut modules = serde_json::Map::new();
    for p in PKGS {
        if r.chance(0.45) {
            modules.insert(
                p.to_string(),
                json!(format!("{}.{}.{}", r.int(0, 5), r.int(0, 30), r.int(0, 12))),
            );
        }
    }
    let method = *r.pick(&["GET", "POST", "PUT", "PATCH"]);

    json!({
        "timestamp": iso_utc(ts),
        "platform": "python",
        "level": "error",
        "logger": group.logger,
        "transaction": group.transaction,
        "transaction_info": {"source": "route"},
        "server_name": host,
        "release": format!("shop@2.{}.{}+{}", r.int(0, 3), r.int(0, 9), r.hex(7)),
        "environment": r.pick(&["production", "production", "staging"]),
        "exception": group.exception(),
        "breadcrumbs": {"values": crumbs},
        "user": {
            "id": uid.to_string(), "email": format!("{}.{}{}@example.com", r.pick(ADJS), r.pick(NOUNS), uid),
            "username": format!("{}_{}{}", r.pick(ADJS), r.pick(NOUNS), uid % 1000),
            "ip_address": format!("{}.{}.{}.{}", r.int(11, 223), r.int(0, 255), r.int(0, 255), r.int(1, 254)),
            "subscription": r.pick(&["free", "pro", "enterprise"]),
        },
        "request": {
            "url": format!("https://shop.example.com{}", group.transaction.replace("{id}", &order.to_string())),
            "method": method,
            "query_string": format!("page={}&sort={}&filter[{}]={}&utm_source={}", r.int(1, 20), r.pick(NOUNS), r.pick(ADJS), r.pick(NOUNS), r.pick(&["newsletter", "google", "partner"])),
            "cookies": cookie,
            "data": Value::Object(body),
            "headers": {
                "Host": "shop.example.com",
                "User-Agent": ua,
                "Accept": "application/json, text/plain, */*",
                "Accept-Language": format!("{},en;q=0.9", r.pick(LOCALES)),
                "Accept-Encoding": "gzip, deflate, br, zstd",
                "Content-Type": "application/json",
                "Content-Length": r.int(40, 4000).to_string(),
                "Referer": format!("https://shop.example.com/{}s/{}", r.pick(NOUNS), r.int(1, 99999)),
                "Origin": "https://shop.example.com",
                "X-Request-Id": r.hex(32),
                "X-Forwarded-For": format!("{}.{}.{}.{}, 10.0.{}.{}", r.int(11, 223), r.int(0, 255), r.int(0, 255), r.int(1, 254), r.int(0, 255), r.int(1, 254)),
                "X-Forwarded-Proto": "https",
                "Sentry-Trace": format!("{trace_id}-{}-1", r.hex(16)),
                "Baggage": format!("sentry-trace_id={trace_id},sentry-environment=production,sentry-public_key={},sentry-sample_rate=0.{}", r.hex(32), r.int(1, 9)),
            },
            "env": {"REMOTE_ADDR": format!("10.0.{}.{}", r.int(0, 255), r.int(1, 254)), "SERVER_NAME": host, "SERVER_PORT": "443"},
        },
        "contexts": {
            "os": {"name": osname, "version": osver, "build": osbuild},
            "runtime": {"name": "CPython", "version": "3.12.7", "build": "3.12.7 (main, Oct  1 2024, 08:52:12) [GCC 12.2.0]"},
            "browser": {"name": browser, "version": bver},
            "device": {"family": device, "arch": arch, "brand": brand, "processor_count": r.int(2, 16), "memory_size": r.int(2, 64) * 1_073_741_824i64, "screen_resolution": format!("{}x{}", r.pick(&[1280, 1440, 1920, 2560, 390]), r.pick(&[720, 900, 1080, 1440, 844])), "timezone": r.pick(TZS)},
            "trace": {"trace_id": trace_id, "span_id": r.hex(16), "parent_span_id": r.hex(16), "op": "http.server", "status": "internal_error", "origin": "auto.http.django"},
            "culture": {"locale": r.pick(LOCALES), "timezone": r.pick(TZS)},
            "app": {"app_start_time": iso_utc(ts - r.int(60, 86_400) * 1_000_000), "app_memory": r.int(80_000_000, 900_000_000)},
            "cloud_resource": {"cloud.provider": "aws", "cloud.region": region, "cloud.availability_zone": format!("{region}{}", r.pick(&["a", "b", "c"])), "host.id": format!("i-{}", r.hex(17))},
        },
        "tags": {
            "region": region, "browser": browser, "os.name": osname,
            "customer_tier": r.pick(&["free", "pro", "enterprise"]),
            "feature_flag.new_checkout": r.pick(&["on", "off"]),
            "shard": r.int(0, 15).to_string(),
            "tenant": format!("{}-{}", r.pick(ADJS), r.pick(NOUNS)),
            "worker": format!("gunicorn-{}", r.int(1, 8)),
            "url_route": group.transaction,
        },
        "extra": {
            "order_id": order, "cart_items": items, "retry": r.int(0, 3),
            "idempotency_key": r.hex(24),
            "feature_flags": {"new_checkout": r.chance(0.5), "fast_search": r.chance(0.5), "beta_ui": r.chance(0.2)},
            "sys.argv": ["/venv/bin/gunicorn", "shop.wsgi:application", "--workers", r.int(2, 8).to_string()],
        },
        "modules": Value::Object(modules),
        "sdk": {"name": "sentry.python.django", "version": "2.19.0",
                "integrations": ["argv", "atexit", "celery", "dedupe", "django", "excepthook", "logging", "modules", "redis", "stdlib", "threading"],
                "packages": [{"name": "pypi:sentry-sdk", "version": "2.19.0"}]},
    })
}

/// Which events a corpus holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Events {
    /// This bench's own events: loadgen's made larger, ~6.2 KB gzip and ~18.5 KB of JSON each.
    #[default]
    Large,
    /// Events shaped and sized like `shared/bench/loadgen.py`'s own: 4–8 KB of JSON (median
    /// ~7.9 KB), ~2 KB gzip.
    Loadgen,
}

impl Events {
    /// The name `--event-size` takes.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The groups of a corpus of `events`.
pub fn groups_of(events: Events, n: usize, seed: u64) -> Vec<Group> {
    match events {
        Events::Large => make_groups(n, seed),
        Events::Loadgen => {
            let mut r = Rng::new(seed);
            (0..n).map(|g| make_loadgen_group(g, &mut r)).collect()
        }
    }
}

/// Group `g` as loadgen.py makes it: 17–21 frames, one line of context on each, one line
/// before and after on the application's frames, two local variables on the last two frames.
fn make_loadgen_group(g: usize, r: &mut Rng) -> Group {
    let noun = NOUNS[g % NOUNS.len()];
    make_group_with(g, r, "/venv/site-packages", |r, place, i, nframes| {
        let class = title(place.module.rsplit('.').next().unwrap_or("app"));
        let mut frame = json!({
            "filename": place.filename, "abs_path": place.abs_path, "module": place.module,
            "function": place.function, "lineno": r.int(20, 900), "in_app": place.in_app,
            "context_line": format!("    r = self.{}({noun})", r.pick(VERBS)),
        });
        if place.in_app {
            frame["pre_context"] = json!([format!("    {noun} = get({noun}_id)")]);
            frame["post_context"] = json!(["    return r"]);
        }
        if i + 2 >= nframes {
            frame["vars"] = json!({
                "self": format!("<{class}Handler at 0x7f3a2c{g:02x}{i:04x}>"),
                format!("{noun}_id"): r.int(1, 99999).to_string(),
            });
        }
        frame
    })
}

/// One event of `group` as loadgen.py makes it.
fn make_loadgen_event(group: &Group, r: &mut Rng, ts: i64) -> Value {
    let (browser, bver) = *r.pick(BROWSERS);
    let (osname, osver, _) = *r.pick(OSES);
    let uid = r.int(1, 50_000);
    let order = r.int(1000, 999_999);
    let t0 = ts as f64 / 1e6 - 10.0;
    let crumbs: Vec<Value> = (0..r.int(5, 10))
        .map(|i| {
            let cat = *r.pick(&["http", "navigation", "ui.click", "query", "console", "auth", "cache"]);
            let mut c = json!({"timestamp": t0 + i as f64 * 0.37, "category": cat, "level": "info"});
            match cat {
                "http" => {
                    c["type"] = json!("http");
                    c["data"] = json!({
                        "method": r.pick(&["GET", "POST"]),
                        "status_code": r.pick(&[200, 200, 201, 404, 500]),
                        "url": format!("https://api.example.com/v1/{}s/{}", r.pick(NOUNS), r.int(1, 9999)),
                    });
                }
                "query" => {
                    c["message"] = json!(format!(
                        "SELECT * FROM {}s WHERE id = %s LIMIT {}",
                        r.pick(NOUNS),
                        r.int(1, 50)
                    ));
                }
                _ => {
                    c["message"] =
                        json!(format!("{} {} #{}", r.pick(VERBS), r.pick(NOUNS), r.int(1, 9999)));
                }
            }
            c
        })
        .collect();
    json!({
        "timestamp": iso_utc(ts),
        "platform": "python",
        "level": "error",
        "logger": group.logger,
        "transaction": group.transaction,
        "server_name": format!("web-{:02}", r.int(1, 12)),
        "release": format!("shop@2.{}.{}", r.int(0, 3), r.int(0, 9)),
        "environment": r.pick(&["production", "production", "staging"]),
        "exception": group.exception(),
        "breadcrumbs": {"values": crumbs},
        "user": {
            "id": uid.to_string(), "email": format!("user{uid}@example.com"),
            "username": format!("user{uid}"),
            "ip_address": format!("10.{}.{}.{}", r.int(0, 255), r.int(0, 255), r.int(1, 254)),
        },
        "request": {
            "url": format!("https://shop.example.com{}", group.transaction.replace("{id}", &order.to_string())),
            "method": r.pick(&["GET", "POST", "PUT"]),
            "query_string": format!("page={}&sort={}", r.int(1, 20), r.pick(NOUNS)),
            "headers": {
                "User-Agent": format!("Mozilla/5.0 ({osname} {osver}) {browser}/{bver}"),
                "Accept": "application/json", "Accept-Language": "en-US,en;q=0.9",
                "Referer": format!("https://shop.example.com/{}s", r.pick(NOUNS)),
            },
            "env": {"REMOTE_ADDR": "10.0.0.1", "SERVER_NAME": "shop.example.com", "SERVER_PORT": "443"},
        },
        "contexts": {
            "os": {"name": osname, "version": osver},
            "runtime": {"name": "CPython", "version": "3.12.7"},
            "browser": {"name": browser, "version": bver},
            "device": {"family": r.pick(&["Desktop", "iPhone", "Pixel 8"]), "arch": "x86_64"},
            "trace": {"trace_id": r.hex(32), "span_id": r.hex(16), "op": "http.server"},
        },
        "tags": {
            "region": r.pick(REGIONS), "browser": browser, "os.name": osname,
            "customer_tier": r.pick(&["free", "pro", "enterprise"]),
            "feature_flag.new_checkout": r.pick(&["on", "off"]),
            "shard": r.int(0, 15).to_string(),
        },
        "extra": {"order_id": order, "cart_items": r.int(1, 12), "retry": r.int(0, 3)},
        "sdk": {"name": "sentry.python.django", "version": "2.19.0",
                "integrations": ["django", "logging", "stdlib", "threading"]},
    })
}

/// One pre-rendered variant: the compressed tail of a body.
pub struct Variant {
    pub group: usize,
    /// The tail's deflate blocks (the last one final).
    pub tail_deflate: Bytes,
    /// CRC-32 of the uncompressed tail.
    pub tail_crc: u32,
    /// Uncompressed length of the tail (item header + payload + newline).
    pub tail_len: usize,
}

impl Variant {
    /// Compresses `tail` once (level 9, like sentry-python).
    fn new(group: usize, tail: &[u8]) -> Variant {
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(8192),
            flate2::Compression::new(9),
        );
        enc.write_all(tail).expect("deflate into memory");
        Variant {
            group,
            tail_deflate: Bytes::from(enc.finish().expect("deflate into memory")),
            tail_crc: crc32fast::hash(tail),
            tail_len: tail.len(),
        }
    }

    /// A whole gzip body: `head` (built per request) in a stored block, then the tail.
    fn body(&self, head: &[&[u8]]) -> Bytes {
        let hl: usize = head.iter().map(|h| h.len()).sum();
        assert!(
            hl <= u16::MAX as usize,
            "per-request part of a body too long"
        );
        let mut out = BytesMut::with_capacity(hl + 23 + self.tail_deflate.len());
        // gzip member header: magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown)
        out.put_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        // a stored block, not the last: BFINAL=0 BTYPE=00 (then padding), LEN, NLEN
        out.put_u8(0);
        out.put_u16_le(hl as u16);
        out.put_u16_le(!(hl as u16));
        let mut crc = crc32fast::Hasher::new();
        for h in head {
            out.put_slice(h);
            crc.update(h);
        }
        out.put_slice(&self.tail_deflate);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            self.tail_crc,
            self.tail_len as u64,
        ));
        out.put_u32_le(crc.finalize());
        out.put_u32_le((hl + self.tail_len) as u32);
        out.freeze()
    }
}

pub struct Corpus {
    pub variants: Vec<Variant>,
    /// `{"event_id":"` — then 32 hex, then `HDR_MID`, then 27-byte sent_at, then `hdr_end`.
    pub hdr_end: Vec<u8>,
    /// UI corpus ([`Corpus::build_ui`]): the parts of the event rendered per request.
    pub split: Option<Arc<Split>>,
}

/// Keys a UI corpus renders per request (the rest of the event is pre-compressed per group).
const UI_PER_REQUEST_KEYS: &[&str] = &[
    "timestamp",
    "user",
    "contexts",
    "environment",
    "release",
    "request",
    "tags",
];

/// The per-request part of a UI corpus ([`Corpus::build_ui`]).
pub struct Split {
    /// `"environment":…,"release":…,"request":…,"tags":…,"contexts":{…,"trace":{"trace_id":"`
    /// (an object's inside, left open for the per-request trace id).
    snippets: Vec<Vec<u8>>,
    /// Timestamps are drawn uniformly over `[now − spread_us, now]` at send time.
    pub spread_us: i64,
    pub users: u64,
    pub skewed: bool,
}

const HDR_START: &[u8] = b"{\"event_id\":\"";
const HDR_MID: &[u8] = b"\",\"sent_at\":\"";

impl Corpus {
    /// Builds `n` variants over `groups` groups (deterministic for a seed); the envelope header
    /// carries the DSN like loadgen.py's.
    pub fn build(dsn: &str, events: Events, groups: usize, n: usize, seed: u64) -> Corpus {
        let gs = groups_of(events, groups, seed);
        let make = match events {
            Events::Large => make_event,
            Events::Loadgen => make_loadgen_event,
        };
        let mut r = Rng::new(seed.wrapping_add(1));
        let ts0 = now_micros();
        let variants = (0..n.max(groups))
            .map(|v| {
                let g = v % groups;
                let ts = ts0 - r.int(0, 2_000_000);
                let payload = serde_json::to_vec(&make(&gs[g], &mut r, ts)).unwrap();
                let mut tail = format!(
                    "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
                    payload.len()
                )
                .into_bytes();
                tail.extend_from_slice(&payload);
                tail.push(b'\n');
                Variant::new(g, &tail)
            })
            .collect();
        let hdr_end =
            format!("\",\"dsn\":{}}}\n", serde_json::to_string(dsn).unwrap()).into_bytes();
        Corpus {
            variants,
            hdr_end,
            split: None,
        }
    }

    /// A corpus of the given events (group, payload), pre-compressed like [`Corpus::build`]'s.
    pub fn from_events(dsn: &str, events: &[(usize, Value)]) -> anyhow::Result<Corpus> {
        let mut variants = Vec::with_capacity(events.len());
        for (group, event) in events {
            let payload = serde_json::to_vec(event)?;
            let mut tail = format!(
                "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
                payload.len()
            )
            .into_bytes();
            tail.extend_from_slice(&payload);
            tail.push(b'\n');
            variants.push(Variant::new(*group, &tail));
        }
        Ok(Corpus {
            variants,
            hdr_end: format!("\",\"dsn\":{}}}\n", serde_json::to_string(dsn)?).into_bytes(),
            split: None,
        })
    }

    /// The same bodies for another DSN (only the per-request header names it).
    pub fn with_dsn(&self, dsn: &str) -> Corpus {
        Corpus {
            variants: self
                .variants
                .iter()
                .map(|v| Variant {
                    group: v.group,
                    tail_deflate: v.tail_deflate.clone(),
                    tail_crc: v.tail_crc,
                    tail_len: v.tail_len,
                })
                .collect(),
            hdr_end: format!("\",\"dsn\":{}}}\n", serde_json::to_string(dsn).unwrap()).into_bytes(),
            split: self.split.clone(),
        }
    }

    /// Length of the envelope header line (constant).
    pub fn header_len(&self) -> usize {
        HDR_START.len() + 32 + HDR_MID.len() + 27 + self.hdr_end.len()
    }

    /// The complete gzip body of variant `i` with `event_id`/`sent_at`.
    pub fn body(&self, i: usize, event_id: &[u8; 32], sent_at: &[u8; 27]) -> Bytes {
        self.variants[i].body(&[HDR_START, event_id, HDR_MID, sent_at, &self.hdr_end])
    }

    /// Mean compressed body size and mean uncompressed envelope size over all variants.
    pub fn mean_sizes(&self) -> (f64, f64) {
        let n = self.variants.len() as f64;
        if let Some(s) = &self.split {
            let mut rng = Rng::new(3);
            let (mut gz, mut raw) = (0usize, 0usize);
            for v in 0..self.variants.len() {
                let (b, r) = self.split_body(s, v, &[b'0'; 32], &[b'0'; 27], &mut rng);
                gz += b.len();
                raw += r;
            }
            return (gz as f64 / n, raw as f64 / n);
        }
        let hl = self.header_len();
        let gz: usize = self
            .variants
            .iter()
            .map(|v| v.tail_deflate.len() + hl + 23)
            .sum();
        let raw: usize = self.variants.iter().map(|v| v.tail_len + hl).sum();
        (gz as f64 / n, raw as f64 / n)
    }

    /// The body of the `i`-th request of a load (`i` counts from 0 over the whole fill): variant
    /// `i % variants`, or for a UI corpus the group [`Corpus::variant_for`] picks, with the
    /// per-request parts drawn from `rng`.
    pub fn request_body(
        &self,
        i: u64,
        event_id: &[u8; 32],
        sent_at: &[u8; 27],
        rng: &mut Rng,
    ) -> Bytes {
        match &self.split {
            None => self.body((i % self.variants.len() as u64) as usize, event_id, sent_at),
            Some(s) => {
                self.split_body(s, self.variant_for(i), event_id, sent_at, rng)
                    .0
            }
        }
    }

    /// A body of variant `v` (either kind of corpus).
    fn body_of(&self, v: usize, event_id: &[u8; 32], sent_at: &[u8; 27], rng: &mut Rng) -> Bytes {
        match &self.split {
            None => self.body(v, event_id, sent_at),
            Some(s) => self.split_body(s, v, event_id, sent_at, rng).0,
        }
    }

    /// UI corpus: which variant (= group) request `i` goes to. The first `groups` requests go to
    /// every group once (so every group becomes an issue); after that, `skewed`: half of the
    /// requests uniformly over the groups, half log-uniformly (group `k` gets a share ∝ ~1/(k+1),
    /// Zipf-like: a few issues get most of those events, as in real projects); otherwise uniform.
    pub fn variant_for(&self, i: u64) -> usize {
        let g = self.variants.len() as u64;
        let skewed = self.split.as_ref().is_some_and(|s| s.skewed);
        if i < g {
            return i as usize;
        }
        let h = Rng::new(i ^ 0xA5A5_5A5A_C3C3_3C3C).next_u64();
        if !skewed || h & 1 == 0 {
            return (((h >> 1) as u128 * g as u128) >> 63) as usize;
        }
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        ((g as f64).powf(u) as u64).saturating_sub(1).min(g - 1) as usize
    }

    /// A UI-corpus body: the stored block holds the envelope header, the item header and the
    /// start of the payload rendered now — `{"timestamp":…,"user":{…},` + a snippet + the trace
    /// context's ids + `}},` — and the pre-compressed blocks the group's rest of the payload.
    /// Returns the body and its uncompressed length.
    fn split_body(
        &self,
        s: &Split,
        v: usize,
        event_id: &[u8; 32],
        sent_at: &[u8; 27],
        rng: &mut Rng,
    ) -> (Bytes, usize) {
        use std::io::Write as _;
        let var = &self.variants[v];
        let snippet = &s.snippets[rng.below(s.snippets.len() as u64) as usize];
        let ts = now_micros()
            - if s.spread_us > 0 {
                rng.below(s.spread_us as u64) as i64
            } else {
                0
            };
        let mut ts_buf = [0u8; 27];
        iso_utc_into(ts, &mut ts_buf);
        let uid = 1 + rng.below(s.users.max(1));
        let ip = rng.next_u64();
        let mut pre = Vec::with_capacity(snippet.len() + 200);
        pre.extend_from_slice(b"{\"timestamp\":\"");
        pre.extend_from_slice(&ts_buf);
        let _ = write!(
            pre,
            "\",\"user\":{{\"id\":\"{uid}\",\"email\":\"user{uid}@example.com\",\"ip_address\":\"10.{}.{}.{}\"}},",
            ip & 255,
            (ip >> 8) & 255,
            1 + (ip >> 16) % 254
        );
        pre.extend_from_slice(snippet);
        let mut hex = [0u8; 32];
        rng.uuid4_hex(&mut hex);
        pre.extend_from_slice(&hex);
        pre.extend_from_slice(b"\",\"span_id\":\"");
        rng.uuid4_hex(&mut hex);
        pre.extend_from_slice(&hex[..16]);
        pre.extend_from_slice(b"\",\"op\":\"http.server\",\"status\":\"internal_error\"}},");
        let mut item = format!(
            "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
            pre.len() + var.tail_len - 1
        )
        .into_bytes();
        item.extend_from_slice(&pre);
        let hl = self.header_len() + item.len();
        let body = var.body(&[HDR_START, event_id, HDR_MID, sent_at, &self.hdr_end, &item]);
        (body, hl + var.tail_len)
    }

    /// A corpus for the UI benchmark: one variant per group (the group's pre-compressed part),
    /// and per request a fresh timestamp (uniform over the last `spread_secs`), a user out of
    /// `users`, a trace id, and one of 2,048 pre-rendered snippets with `contexts`, `environment`,
    /// `release` (8 releases), `request` and `tags`, so that an issue's events differ in browser,
    /// OS, release, environment, user and URL (its tag breakdown has values to count), are spread
    /// over time (its trend chart has points) and each is alone in its trace. Built on every core.
    pub fn build_ui(
        dsn: &str,
        groups: usize,
        seed: u64,
        spread_secs: f64,
        users: u64,
        skewed: bool,
    ) -> Corpus {
        let ts0 = now_micros();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(16);
        // Groups are made in batches (a group's stack trace as a JSON tree is tens of KB: all
        // 10,000 at once would take hundreds of MB), each batch compressed on every core.
        let mut gen_rng = Rng::new(seed);
        let mut variants: Vec<Variant> = Vec::with_capacity(groups);
        let mut first_group = None;
        while variants.len() < groups.max(1) {
            let from = variants.len();
            let batch: Vec<Group> = (from..(from + 256).min(groups.max(1)))
                .map(|g| make_group(g, &mut gen_rng))
                .collect();
            let per = batch.len().div_ceil(threads);
            let made: Vec<Variant> = std::thread::scope(|sc| {
                let handles: Vec<_> = batch
                    .chunks(per)
                    .enumerate()
                    .map(|(c, chunk)| {
                        sc.spawn(move || {
                            chunk
                                .iter()
                                .enumerate()
                                .map(|(k, g)| {
                                    let v = from + c * per + k;
                                    let mut r = Rng::new(
                                        seed.wrapping_mul(0x1000_0000_01B3)
                                            .wrapping_add(v as u64 + 7),
                                    );
                                    let mut ev = make_event(g, &mut r, ts0);
                                    let obj = ev.as_object_mut().unwrap();
                                    for key in UI_PER_REQUEST_KEYS {
                                        obj.remove(*key);
                                    }
                                    let rest = serde_json::to_vec(&ev).unwrap();
                                    let mut tail = rest[1..].to_vec();
                                    tail.push(b'\n');
                                    Variant::new(v, &tail)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect()
            });
            variants.extend(made);
            if first_group.is_none() {
                first_group = batch.into_iter().next();
            }
        }
        // The snippets do not depend on the group (its URL and route are replaced).
        let g0 = first_group.expect("at least one group");
        let mut r = Rng::new(seed ^ 0x5EED_0F5A);
        let snippets = (0..2048)
            .map(|_| {
                let ev = make_event(&g0, &mut r, ts0);
                let (noun, verb) = (*r.pick(NOUNS), *r.pick(VERBS));
                let mut request = ev["request"].clone();
                request["url"] = json!(format!(
                    "https://shop.example.com/api/v1/{noun}s/{}/{verb}",
                    r.int(1, 40)
                ));
                let mut tags = ev["tags"].clone();
                tags["url_route"] = json!(format!("/api/v1/{noun}s/{{id}}/{verb}"));
                let rel = r.below(8);
                let mut m = serde_json::Map::new();
                m.insert("environment".into(), ev["environment"].clone());
                m.insert(
                    "release".into(),
                    json!(format!("shop@2.{}.{}", 3 + rel / 3, rel % 3)),
                );
                m.insert("request".into(), request);
                m.insert("tags".into(), tags);
                let mut text = serde_json::to_vec(&Value::Object(m)).unwrap();
                text.pop();
                text.remove(0);
                // `contexts` last and left open: the trace context (ids) is written per request.
                let mut contexts = ev["contexts"].clone();
                contexts.as_object_mut().unwrap().remove("trace");
                let c = serde_json::to_vec(&contexts).unwrap();
                text.extend_from_slice(b",\"contexts\":");
                text.extend_from_slice(&c[..c.len() - 1]);
                text.extend_from_slice(b",\"trace\":{\"trace_id\":\"");
                text
            })
            .collect();
        let hdr_end =
            format!("\",\"dsn\":{}}}\n", serde_json::to_string(dsn).unwrap()).into_bytes();
        Corpus {
            variants,
            hdr_end,
            split: Some(Arc::new(Split {
                snippets,
                spread_us: (spread_secs.max(0.0) * 1e6) as i64,
                users,
                skewed,
            })),
        }
    }

    /// Decompresses every variant's body as one gzip member (CRC-32 and length checked) and checks
    /// that it is a valid envelope: header line with our event_id, one event item whose `length` matches,
    /// a JSON payload without `event_id` and with the group's exception.
    pub fn verify_all(&self) -> anyhow::Result<()> {
        let mut rng = Rng::new(42);
        let mut sent = [0u8; 27];
        iso_utc_into(now_micros(), &mut sent);
        let mut seen_values = std::collections::HashMap::new();
        for (i, v) in self.variants.iter().enumerate() {
            let mut id = [0u8; 32];
            rng.uuid4_hex(&mut id);
            let body = self.body_of(i, &id, &sent, &mut rng);
            let mut raw = Vec::new();
            let mut gz = flate2::bufread::GzDecoder::new(&body[..]);
            gz.read_to_end(&mut raw)
                .with_context(|| format!("variant {i}: gzip"))?;
            ensure!(
                gz.into_inner().is_empty(),
                "variant {i}: more than one gzip member"
            );
            let nl = raw
                .iter()
                .position(|&b| b == b'\n')
                .context("no header line")?;
            let hdr: Value = serde_json::from_slice(&raw[..nl]).context("envelope header")?;
            ensure!(
                hdr["event_id"].as_str() == Some(std::str::from_utf8(&id)?),
                "variant {i}: event_id"
            );
            ensure!(
                hdr["sent_at"].as_str() == Some(std::str::from_utf8(&sent)?),
                "variant {i}: sent_at"
            );
            let rest = &raw[nl + 1..];
            let nl2 = rest
                .iter()
                .position(|&b| b == b'\n')
                .context("no item header")?;
            let ih: Value = serde_json::from_slice(&rest[..nl2]).context("item header")?;
            ensure!(ih["type"] == "event", "variant {i}: item type");
            let len = ih["length"].as_u64().context("length")? as usize;
            let payload = &rest[nl2 + 1..];
            ensure!(
                payload.len() == len + 1 && payload[len] == b'\n',
                "variant {i}: length {len} vs {}",
                payload.len()
            );
            let ev: Value = serde_json::from_slice(&payload[..len]).context("payload")?;
            ensure!(
                ev.get("event_id").is_none(),
                "variant {i}: payload has an event_id"
            );
            if self.split.is_some() {
                for p in [
                    "/contexts/trace/trace_id",
                    "/timestamp",
                    "/user/id",
                    "/tags/browser",
                    "/release",
                    "/environment",
                    "/request/url",
                    "/contexts/os/name",
                ] {
                    ensure!(
                        ev.pointer(p).and_then(Value::as_str).is_some(),
                        "variant {i}: no {p}"
                    );
                }
            }
            let val = ev["exception"]["values"][0]["value"]
                .as_str()
                .context("exception value")?
                .to_string();
            if seen_values
                .insert(val, v.group)
                .is_some_and(|g| g != v.group)
            {
                bail!("variant {i}: two groups share an exception value");
            }
        }
        Ok(())
    }

    /// The uncompressed envelope of variant `i` (for `sample`).
    pub fn sample(&self, i: usize) -> String {
        let mut id = [0u8; 32];
        Rng::new(7).uuid4_hex(&mut id);
        let mut sent = [0u8; 27];
        iso_utc_into(now_micros(), &mut sent);
        let body = self.body_of(i, &id, &sent, &mut Rng::new(8));
        let mut raw = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut raw)
            .unwrap();
        raw
    }
}

/// The payload of an event that opens a brand-new issue: a realistic event shaped like group
/// `n % groups.len()`, with `fingerprint: [tag]` (so it groups alone) and the tag appended to the
/// exception value (so the issue titles differ), without `event_id`.
pub fn new_issue_event(groups: &[Group], n: usize, tag: &str, r: &mut Rng, ts: i64) -> Value {
    let mut ev = make_event(&groups[n % groups.len()], r, ts);
    ev["fingerprint"] = json!([tag]);
    if let Some(v) = ev["exception"]["values"][0]["value"].as_str() {
        ev["exception"]["values"][0]["value"] = json!(format!("{v} [{tag}]"));
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formats_agree() {
        for t in [
            0i64,
            1_795_500_000_123_456,
            951_782_400_000_001,
            4_102_444_799_999_999,
        ] {
            let mut b = [0u8; 27];
            iso_utc_into(t, &mut b);
            assert_eq!(std::str::from_utf8(&b).unwrap(), iso_utc(t));
        }
        assert_eq!(iso_utc(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
    }

    #[test]
    fn ui_bodies_are_valid_envelopes_spread_over_time_and_groups() {
        let c = Corpus::build_ui("http://k@127.0.0.1:1/1", 50, 1, 14.0 * 86400.0, 1000, true);
        c.verify_all().unwrap();
        let mut rng = Rng::new(5);
        let (mut oldest, mut newest) = ("9".to_string(), "0".to_string());
        let mut traces = std::collections::HashSet::new();
        for i in 0..200 {
            let body = c.request_body(i, &[b'a'; 32], &[b'0'; 27], &mut rng);
            let mut raw = String::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_string(&mut raw)
                .unwrap();
            let payload: Value = serde_json::from_str(raw.lines().nth(2).unwrap()).unwrap();
            traces.insert(
                payload["contexts"]["trace"]["trace_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            let ts = payload["timestamp"].as_str().unwrap().to_string();
            oldest = oldest.min(ts.clone());
            newest = newest.max(ts);
        }
        assert_eq!(traces.len(), 200);
        // RFC 3339 UTC strings of one format sort like the times they name
        let ago = |days: i64| iso_utc(now_micros() - days * 86_400_000_000);
        assert!(newest <= ago(0) && newest > ago(1), "{newest}");
        assert!(oldest < ago(10) && oldest >= ago(15), "{oldest}");
        // every group first, then a skewed spread that still reaches the tail
        assert_eq!(
            (0..50).map(|i| c.variant_for(i)).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        let mut hits = [0u32; 50];
        for i in 50..100_050 {
            hits[c.variant_for(i)] += 1;
        }
        assert!(hits[0] > 5 * hits[49] && hits[49] > 0, "{hits:?}");
    }

    #[test]
    fn bodies_are_valid_envelopes() {
        let c = Corpus::build("http://k@127.0.0.1:1/1", Events::Large, 7, 30, 1);
        c.verify_all().unwrap();
        let c = Corpus::build("http://k@127.0.0.1:1/1", Events::Loadgen, 7, 30, 1);
        c.verify_all().unwrap();
    }

    #[test]
    fn event_sizes_are_the_ones_the_report_names() {
        let dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:8000/1";
        let (gz, raw) = Corpus::build(dsn, Events::Large, 50, 400, 1).mean_sizes();
        assert!(
            (5500.0..7000.0).contains(&gz) && (16_000.0..21_000.0).contains(&raw),
            "{gz} {raw}"
        );
        // loadgen.py: 4-8 KB of JSON (median ~7.9 KB), ~2 KB gzip.
        let (gz, raw) = Corpus::build(dsn, Events::Loadgen, 50, 400, 1).mean_sizes();
        assert!(
            (1700.0..2700.0).contains(&gz) && (6500.0..9000.0).contains(&raw),
            "{gz} {raw}"
        );
    }
}
