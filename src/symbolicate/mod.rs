//! Source maps: JavaScript frames from minified bundles rewritten to the original file,
//! function, line and column, during digestion and before grouping (so one bug is one issue
//! whatever the bundle's hash).
//!
//! - [`bundle`]: unpacking an uploaded artifact bundle (`SYSB` + ZIP + `manifest.json`).
//! - [`urls`]: `~/` URL matching and map references relative to a file.
//! - [`reprocess`]: an issue's events digested again once their maps are there.
//!
//! For each frame with `abs_path`, `lineno` and `colno` in a `javascript` or `node` event, the
//! map is found by the debug id the SDK reported for the frame's file
//! (`debug_meta.images[{type: "sourcemap", code_file, debug_id}]`), else by the event's release
//! and dist and the frame's URL (the minified file's `Sourcemap` header or its
//! `//# sourceMappingURL=` comment names the map, relative to the file). A resolved frame keeps
//! its minified self in the exception's `raw_stacktrace` and says how it was resolved in
//! `data`; a frame that cannot be resolved says why in `data.symbolicator_status`, and the event
//! lists it in `errors`. Nothing is ever fetched from the network.
//!
//! Artifacts come from the store (every node reaches them). Parsed maps and minified sources
//! are kept per node in a cache bounded by bytes; stored files never change, so it is never
//! stale (a deleted file may be used until it is evicted). The store's answers to lookups (by
//! debug id, or by release, dist and URLs), found or not, are remembered per node for
//! [`LOOKUP_TTL`] (at most [`LOOKUP_ENTRIES`] of them), so that a stream of events costs no
//! query per event, whether its files have maps or not; a map uploaded meanwhile is used once
//! that time has passed (at once on the node that took the upload, or that reprocesses: both
//! forget the node's lookups).

pub mod bundle;
pub mod reprocess;
pub mod urls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use serde_json::{Map, Value, json};
use sourcemap::{DecodedMap, SourceMap, SourceView};

use crate::store::{ArtifactFile, Store, StoreError};

/// Largest map (or minified source) read during digestion.
const MAX_FILE: i64 = 32 * 1024 * 1024;
/// Frames looked at per event, and distinct files per event.
const MAX_FRAMES: usize = 500;
const MAX_FILES: usize = 32;
/// Lines of context on each side, and the longest line kept.
const CONTEXT_LINES: u32 = 5;
const MAX_LINE: usize = 300;
/// How long the store's answer to a lookup is remembered, and how many answers are.
pub const LOOKUP_TTL: Duration = Duration::from_secs(5);
pub const LOOKUP_ENTRIES: usize = 10_000;

/// Why a frame stayed as it was.
#[derive(Debug, Clone, PartialEq)]
pub enum Unresolved {
    /// The SDK named a debug id for the file, and no uploaded map has it.
    MissingDebugIdArtifact { debug_id: String },
    /// No debug id, and the event names no release to look the file up in.
    NoRelease,
    /// No file uploaded for that URL in the event's release and dist.
    MissingReleaseFile { release: String, dist: String },
    /// The minified file names no source map (no `Sourcemap` header, no `sourceMappingURL`).
    NoSourceMapReference,
    /// The minified file names a map that was not uploaded.
    MissingSourceMap { url: String },
    /// The map could not be read.
    InvalidSourceMap { url: String, error: String },
    /// The map has no mapping on the frame's line.
    NoMapping { line: u64, column: u64 },
    /// The artifacts could not be read from the database.
    Storage(String),
}

impl Unresolved {
    /// The short code stored in `data.symbolicator_status`.
    pub fn code(&self) -> &'static str {
        match self {
            Unresolved::MissingDebugIdArtifact { .. } => "missing_debug_id_artifact",
            Unresolved::NoRelease => "no_release",
            Unresolved::MissingReleaseFile { .. } => "missing_release_file",
            Unresolved::NoSourceMapReference => "no_sourcemap_reference",
            Unresolved::MissingSourceMap { .. } => "missing_sourcemap",
            Unresolved::InvalidSourceMap { .. } => "invalid_sourcemap",
            Unresolved::NoMapping { .. } => "no_mapping",
            Unresolved::Storage(_) => "storage_error",
        }
    }

    /// Sentry's event error type for the same problem.
    fn error_type(&self) -> &'static str {
        match self {
            Unresolved::InvalidSourceMap { .. } => "js_invalid_source",
            Unresolved::NoMapping { .. } => "js_invalid_sourcemap_location",
            Unresolved::Storage(_) => "js_fetch_error",
            _ => "js_no_source",
        }
    }

    /// What the UI shows next to the frame.
    pub fn message(&self) -> String {
        match self {
            Unresolved::MissingDebugIdArtifact { debug_id } => {
                format!("no uploaded source map has debug id {debug_id}")
            }
            Unresolved::NoRelease => {
                "the file has no debug id and the event names no release".to_string()
            }
            Unresolved::MissingReleaseFile { release, dist } if dist.is_empty() => {
                format!("no file uploaded for this URL in release {release}")
            }
            Unresolved::MissingReleaseFile { release, dist } => {
                format!("no file uploaded for this URL in release {release}, dist {dist}")
            }
            Unresolved::NoSourceMapReference => {
                "the uploaded file names no source map (no Sourcemap header or sourceMappingURL)"
                    .to_string()
            }
            Unresolved::MissingSourceMap { url } => {
                format!("the source map {url} was not uploaded")
            }
            Unresolved::InvalidSourceMap { url, error } => {
                format!("the source map {url} cannot be read: {error}")
            }
            Unresolved::NoMapping { line, column } => {
                format!("the source map has no mapping at line {line}, column {column}")
            }
            Unresolved::Storage(e) => format!("cannot read source maps: {e}"),
        }
    }
}

/// A parsed artifact in the cache.
enum Cached {
    Map(SourceMap),
    Source(SourceView),
    Invalid(String),
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<(i64, bool), Arc<(Cached, u64)>> for ByBytes {
    fn weight(&self, _key: &(i64, bool), val: &Arc<(Cached, u64)>) -> u64 {
        val.1.max(1)
    }
}

/// A map found for a file, and what was used to find it.
struct Found {
    map: Arc<(Cached, u64)>,
    view: Option<Arc<(Cached, u64)>>,
    map_url: String,
    via: &'static str,
}

/// A lookup in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LookupKey {
    /// (project, debug id): the map and the minified source with that id.
    DebugId(i64, String),
    /// (project, release, dist, candidate URLs): the files with any of the URLs.
    Urls(i64, String, String, Vec<String>),
}

/// What the store answered to a lookup.
#[derive(Clone)]
enum Answer {
    /// The source map and the minified source with a debug id.
    DebugId(Option<Arc<ArtifactFile>>, Option<Arc<ArtifactFile>>),
    Urls(Arc<Vec<ArtifactFile>>),
}

/// The time source of the lookup cache (the monotonic clock, or a test's).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The store's recent answers, each with the time it was given.
struct Lookups {
    ttl: Duration,
    clock: Clock,
    entries: quick_cache::sync::Cache<LookupKey, (Instant, Answer)>,
}

impl Lookups {
    /// The answer to `key` given less than the TTL ago.
    fn get(&self, key: &LookupKey) -> Option<Answer> {
        let (at, answer) = self.entries.get(key)?;
        if (self.clock)().saturating_duration_since(at) < self.ttl {
            return Some(answer);
        }
        self.entries.remove_if(key, |v| v.0 == at);
        None
    }

    fn put(&self, key: LookupKey, answer: Answer) {
        if !self.ttl.is_zero() {
            self.entries.insert(key, ((self.clock)(), answer));
        }
    }
}

/// Resolves JavaScript frames with uploaded source maps; one per node, shared by the digest
/// threads.
pub struct Symbolicator {
    store: Arc<dyn Store>,
    handle: tokio::runtime::Handle,
    /// Parsed files by (artifact id, parsed as map?).
    cache: quick_cache::sync::Cache<(i64, bool), Arc<(Cached, u64)>, ByBytes>,
    lookups: Lookups,
}

impl Symbolicator {
    /// A symbolicator reading artifacts from `store` through the runtime `handle`, keeping at
    /// most about `cache_bytes` of parsed files, and remembering the store's answers for
    /// [`LOOKUP_TTL`].
    pub fn new(store: Arc<dyn Store>, handle: tokio::runtime::Handle, cache_bytes: u64) -> Self {
        Self::with_lookup_ttl(
            store,
            handle,
            cache_bytes,
            LOOKUP_TTL,
            Arc::new(Instant::now),
        )
    }

    /// As [`Symbolicator::new`], remembering the store's answers for `ttl` (zero: never) as
    /// measured by `clock`.
    pub fn with_lookup_ttl(
        store: Arc<dyn Store>,
        handle: tokio::runtime::Handle,
        cache_bytes: u64,
        ttl: Duration,
        clock: Clock,
    ) -> Self {
        Symbolicator {
            store,
            handle,
            cache: quick_cache::sync::Cache::with_weighter(1024, cache_bytes.max(1), ByBytes),
            lookups: Lookups {
                ttl,
                clock,
                entries: quick_cache::sync::Cache::new(LOOKUP_ENTRIES),
            },
        }
    }

    /// Forgets the store's remembered answers (after an upload on this node, or before
    /// reprocessing), so that the next events look again.
    pub fn forget_lookups(&self) {
        self.lookups.entries.clear();
    }

    /// Rewrites the event's JavaScript frames in place. Must run on a thread outside the async
    /// runtime (a digest thread): it waits for the store.
    pub fn symbolicate(&self, project_id: i64, event: &mut Value) {
        let platform = event.get("platform").and_then(Value::as_str).unwrap_or("");
        if !matches!(platform, "javascript" | "node") {
            return;
        }
        let text = |k: &str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let ctx = EventContext {
            project_id,
            release: text("release"),
            dist: text("dist"),
            debug_ids: debug_ids(event),
        };
        let mut found: HashMap<String, Result<Arc<Found>, Unresolved>> = HashMap::new();
        let mut errors: Vec<Value> = Vec::new();
        let mut budget = MAX_FRAMES;
        for container in ["exception", "threads"] {
            let Some(values) = event
                .get_mut(container)
                .and_then(|c| c.get_mut("values"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for value in values {
                self.stacktrace(&ctx, value, &mut found, &mut errors, &mut budget);
            }
        }
        if !errors.is_empty()
            && let Some(obj) = event.as_object_mut()
        {
            let list = obj
                .entry("errors")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(list) = list.as_array_mut() {
                list.extend(errors);
            }
        }
    }

    /// Resolves the frames of one exception or thread, keeping the original as
    /// `raw_stacktrace`.
    fn stacktrace(
        &self,
        ctx: &EventContext,
        holder: &mut Value,
        found: &mut HashMap<String, Result<Arc<Found>, Unresolved>>,
        errors: &mut Vec<Value>,
        budget: &mut usize,
    ) {
        let Some(frames) = holder
            .pointer("/stacktrace/frames")
            .and_then(Value::as_array)
        else {
            return;
        };
        if !frames.iter().any(|f| position(f).is_some()) {
            return;
        }
        let raw = holder.get("stacktrace").cloned();
        let Some(frames) = holder
            .pointer_mut("/stacktrace/frames")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        let mut resolved = false;
        for frame in frames.iter_mut() {
            let Some((abs_path, line, column)) = position(frame) else {
                continue;
            };
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            let file = if found.len() >= MAX_FILES && !found.contains_key(&abs_path) {
                Err(Unresolved::Storage("too many files in one event".into()))
            } else {
                found
                    .entry(abs_path.clone())
                    .or_insert_with(|| self.find(ctx, &abs_path).map(Arc::new))
                    .clone()
            };
            let outcome = file.and_then(|f| apply(frame, &f, line, column));
            resolved |= outcome.is_ok();
            if let Err(reason) = outcome {
                set_data(
                    frame,
                    &[
                        ("symbolicator_status", json!(reason.code())),
                        ("symbolicator_reason", json!(reason.message())),
                    ],
                );
                let error = json!({
                    "type": reason.error_type(),
                    "url": abs_path,
                    "reason": reason.code(),
                    "message": reason.message(),
                });
                if !errors.contains(&error) {
                    errors.push(error);
                }
            }
        }
        // The minified frames are kept when they differ from what is shown.
        if let (true, Some(raw), Some(obj)) = (resolved, raw, holder.as_object_mut()) {
            obj.insert("raw_stacktrace".into(), raw);
        }
    }

    /// The map (and minified source) for a frame's file.
    fn find(&self, ctx: &EventContext, abs_path: &str) -> Result<Found, Unresolved> {
        if let Some(debug_id) = ctx.debug_ids.get(abs_path) {
            return match self.by_debug_id(ctx.project_id, debug_id)? {
                Some(found) => Ok(found),
                // An upload without debug ids may still serve the release.
                None => match self.by_release(ctx, abs_path) {
                    Ok(found) => Ok(found),
                    Err(_) => Err(Unresolved::MissingDebugIdArtifact {
                        debug_id: debug_id.clone(),
                    }),
                },
            };
        }
        self.by_release(ctx, abs_path)
    }

    fn by_debug_id(&self, project_id: i64, debug_id: &str) -> Result<Option<Found>, Unresolved> {
        let key = LookupKey::DebugId(project_id, debug_id.to_string());
        let (map, minified) = match self.lookups.get(&key) {
            Some(Answer::DebugId(map, minified)) => (map, minified),
            _ => {
                let store = self.store.clone();
                let id = debug_id.to_string();
                let (map, minified) = self
                    .handle
                    .block_on(async move {
                        let map = store
                            .artifact_by_debug_id(project_id, &id, &["source_map"])
                            .await?;
                        let minified = store
                            .artifact_by_debug_id(project_id, &id, &["minified_source", "source"])
                            .await?;
                        Ok::<_, StoreError>((map.map(Arc::new), minified.map(Arc::new)))
                    })
                    .map_err(|e| Unresolved::Storage(e.to_string()))?;
                self.lookups
                    .put(key, Answer::DebugId(map.clone(), minified.clone()));
                (map, minified)
            }
        };
        let Some(map) = map else {
            return Ok(None);
        };
        let view = minified.and_then(|f| self.load(&f, false).ok());
        Ok(Some(Found {
            map: self.load(&map, true)?,
            view,
            map_url: map.url.clone(),
            via: "debug-id",
        }))
    }

    fn by_release(&self, ctx: &EventContext, abs_path: &str) -> Result<Found, Unresolved> {
        if ctx.release.is_empty() {
            return Err(Unresolved::NoRelease);
        }
        let candidates = urls::candidates(abs_path);
        let files = self.lookup_urls(ctx, &candidates)?;
        let file = best(&files, &candidates, |t| t != "source_map").ok_or_else(|| {
            Unresolved::MissingReleaseFile {
                release: ctx.release.clone(),
                dist: ctx.dist.clone(),
            }
        })?;
        let view = self.load(file, false)?;
        let reference = match (&file.sourcemap, &view.0) {
            (Some(r), _) => Some(r.clone()),
            (None, Cached::Source(sv)) => source_mapping_url(sv.source()),
            _ => None,
        }
        .ok_or(Unresolved::NoSourceMapReference)?;
        let map_url = urls::join(&file.url, &reference);
        if map_url.starts_with("data:") {
            let parsed = match sourcemap::decode_data_url(&map_url) {
                Ok(m) => into_map(m).map_or_else(Cached::Invalid, Cached::Map),
                Err(e) => Cached::Invalid(e.to_string()),
            };
            return Ok(Found {
                map: Arc::new((parsed, map_url.len() as u64 * 4)),
                view: Some(view),
                map_url: file.url.clone(),
                via: "release",
            });
        }
        let map_candidates = urls::candidates(&map_url);
        let maps = self.lookup_urls(ctx, &map_candidates)?;
        let map =
            best(&maps, &map_candidates, |_| true).ok_or_else(|| Unresolved::MissingSourceMap {
                url: map_url.clone(),
            })?;
        Ok(Found {
            map: self.load(map, true)?,
            view: Some(view),
            map_url: map.url.clone(),
            via: "release",
        })
    }

    fn lookup_urls(
        &self,
        ctx: &EventContext,
        candidates: &[String],
    ) -> Result<Arc<Vec<ArtifactFile>>, Unresolved> {
        let key = LookupKey::Urls(
            ctx.project_id,
            ctx.release.clone(),
            ctx.dist.clone(),
            candidates.to_vec(),
        );
        if let Some(Answer::Urls(files)) = self.lookups.get(&key) {
            return Ok(files);
        }
        let store = self.store.clone();
        let (project_id, release, dist) = (ctx.project_id, ctx.release.clone(), ctx.dist.clone());
        let urls = candidates.to_vec();
        let files = self
            .handle
            .block_on(async move {
                store
                    .artifacts_by_url(project_id, &release, &dist, &urls)
                    .await
            })
            .map_err(|e| Unresolved::Storage(e.to_string()))?;
        let files = Arc::new(files);
        self.lookups.put(key, Answer::Urls(files.clone()));
        Ok(files)
    }

    /// A stored file parsed as a map or kept as a source view, from the cache when it is there.
    fn load(&self, file: &ArtifactFile, as_map: bool) -> Result<Arc<(Cached, u64)>, Unresolved> {
        if file.size > MAX_FILE {
            return Ok(Arc::new((
                Cached::Invalid(format!("larger than {MAX_FILE} bytes")),
                1,
            )));
        }
        self.cache.get_or_insert_with(&(file.id, as_map), || {
            let store = self.store.clone();
            let id = file.id;
            let data = self
                .handle
                .block_on(async move { store.artifact_data(id).await })
                .map_err(|e| Unresolved::Storage(e.to_string()))?;
            let size = data.len() as u64;
            let parsed = if as_map {
                match sourcemap::decode_slice(&data) {
                    Ok(m) => into_map(m).map_or_else(Cached::Invalid, Cached::Map),
                    Err(e) => Cached::Invalid(e.to_string()),
                }
            } else {
                Cached::Source(SourceView::from_string(
                    String::from_utf8_lossy(&data).into_owned(),
                ))
            };
            // A parsed map takes several times its text in memory.
            let weight = if as_map { size * 4 } else { size * 2 };
            Ok(Arc::new((parsed, weight)))
        })
    }
}

/// Puts an event's frames back as the SDK sent them (the minified `raw_stacktrace`s, without
/// the reasons recorded for unresolved frames, nor the source map errors), so that it can be
/// symbolicated again, e.g. after its maps were uploaded.
pub fn restore(event: &mut Value) {
    for container in ["exception", "threads"] {
        let Some(values) = event
            .get_mut(container)
            .and_then(|c| c.get_mut("values"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for value in values.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(raw) = value.remove("raw_stacktrace") {
                value.insert("stacktrace".into(), raw);
            }
            let frames = value
                .get_mut("stacktrace")
                .and_then(|s| s.get_mut("frames"))
                .and_then(Value::as_array_mut);
            for frame in frames
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                let emptied = frame
                    .get_mut("data")
                    .and_then(Value::as_object_mut)
                    .is_some_and(|data| {
                        let had = data.remove("symbolicator_status").is_some();
                        data.remove("symbolicator_reason");
                        had && data.is_empty()
                    });
                if emptied {
                    frame.remove("data");
                }
            }
        }
    }
    if let Some(errors) = event.get_mut("errors").and_then(Value::as_array_mut) {
        errors.retain(|e| {
            !e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("js_"))
        });
    }
}

/// What every frame of one event is resolved with.
struct EventContext {
    project_id: i64,
    release: String,
    dist: String,
    /// `code_file` → debug id, from `debug_meta.images` of type `sourcemap`.
    debug_ids: HashMap<String, String>,
}

fn debug_ids(event: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let images = event
        .pointer("/debug_meta/images")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for image in images.iter().take(1000) {
        if image.get("type").and_then(Value::as_str) != Some("sourcemap") {
            continue;
        }
        let code_file = image.get("code_file").and_then(Value::as_str);
        let debug_id = image
            .get("debug_id")
            .and_then(Value::as_str)
            .and_then(bundle::normalize_debug_id);
        if let (Some(code_file), Some(debug_id)) = (code_file, debug_id) {
            out.insert(code_file.to_string(), debug_id);
        }
    }
    out
}

/// A frame's file (`abs_path`, else `filename`), line and column (1-based) when it can be
/// looked up in a map.
fn position(frame: &Value) -> Option<(String, u64, u64)> {
    // Browser SDKs send the script's URL as `filename` only.
    let abs_path = ["abs_path", "filename"].iter().find_map(|k| {
        frame
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    })?;
    let line = frame.get("lineno").and_then(Value::as_u64)?;
    let column = frame.get("colno").and_then(Value::as_u64)?;
    if abs_path.is_empty() || line == 0 || line > u32::MAX as u64 || column > u32::MAX as u64 {
        return None;
    }
    // Frames of the engine itself (`<anonymous>`, `native`, `node:internal/…`) name no file.
    if !(abs_path.contains('/') || abs_path.contains('.'))
        || abs_path.starts_with("node:")
        || abs_path.starts_with('<')
        || abs_path.starts_with('[')
    {
        return None;
    }
    Some((abs_path.to_string(), line, column))
}

/// The best of `files` for the candidate URLs: the first candidate any file matches, newest
/// upload first.
fn best<'a>(
    files: &'a [ArtifactFile],
    candidates: &[String],
    type_ok: impl Fn(&str) -> bool,
) -> Option<&'a ArtifactFile> {
    candidates
        .iter()
        .find_map(|c| files.iter().find(|f| &f.url == c && type_ok(&f.file_type)))
}

fn into_map(m: DecodedMap) -> Result<SourceMap, String> {
    match m {
        DecodedMap::Regular(sm) => Ok(sm),
        DecodedMap::Index(smi) => smi.flatten().map_err(|e| e.to_string()),
        DecodedMap::Hermes(_) => Err("Hermes source maps are not supported".into()),
    }
}

/// The last `//# sourceMappingURL=` (or `//@`) of a file, looked for in its last lines.
fn source_mapping_url(source: &str) -> Option<String> {
    source.lines().rev().take(10).find_map(|line| {
        let line = line.trim();
        let rest = line
            .strip_prefix("//# sourceMappingURL=")
            .or_else(|| line.strip_prefix("//@ sourceMappingURL="))?;
        let url = rest.trim();
        (!url.is_empty()).then(|| url.to_string())
    })
}

/// The frame's `data` object, made one when it is missing or not an object.
fn set_data(frame: &mut Value, entries: &[(&str, Value)]) {
    let Some(obj) = frame.as_object_mut() else {
        return;
    };
    let data = obj
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in entries {
            d.insert((*k).to_string(), v.clone());
        }
    }
}

/// Rewrites one frame with its original position, or says why it cannot.
fn apply(frame: &mut Value, found: &Found, line: u64, column: u64) -> Result<(), Unresolved> {
    let map = match &found.map.0 {
        Cached::Map(m) => m,
        Cached::Invalid(e) => {
            return Err(Unresolved::InvalidSourceMap {
                url: found.map_url.clone(),
                error: e.clone(),
            });
        }
        Cached::Source(_) => {
            return Err(Unresolved::InvalidSourceMap {
                url: found.map_url.clone(),
                error: "not a source map".into(),
            });
        }
    };
    let (line0, col0) = (line as u32 - 1, column.saturating_sub(1) as u32);
    let no_mapping = Unresolved::NoMapping { line, column };
    let token = map
        .lookup_token(line0, col0)
        .filter(|t| t.get_dst_line() == line0)
        .ok_or(no_mapping.clone())?;
    let source = token.get_source().ok_or(no_mapping)?.to_string();
    let (src_line, src_col) = (token.get_src_line(), token.get_src_col());
    let minified_name = frame
        .get("function")
        .and_then(Value::as_str)
        .map(str::to_string);
    let original_name = match (&found.view.as_ref().map(|v| &v.0), &minified_name) {
        (Some(Cached::Source(view)), Some(name)) => {
            let last = name.rsplit('.').next().unwrap_or(name);
            map.get_original_function_name(line0, col0, name, view)
                .or_else(|| map.get_original_function_name(line0, col0, last, view))
                .map(str::to_string)
        }
        _ => None,
    };
    let context = map
        .get_source_contents(token.get_src_id())
        .map(|text| context_lines(text, src_line));

    let Some(obj) = frame.as_object_mut() else {
        return Ok(());
    };
    obj.insert(
        "abs_path".into(),
        json!(urls::join(&found.map_url, &source)),
    );
    obj.insert("filename".into(), json!(urls::display_name(&source)));
    obj.insert("lineno".into(), json!(u64::from(src_line) + 1));
    obj.insert("colno".into(), json!(u64::from(src_col) + 1));
    if let Some(name) = original_name {
        obj.insert("function".into(), json!(name));
    }
    if let Some((pre, line, post)) = context {
        obj.insert("pre_context".into(), json!(pre));
        obj.insert("context_line".into(), json!(line));
        obj.insert("post_context".into(), json!(post));
    }
    if source.contains("/node_modules/") {
        obj.insert("in_app".into(), json!(false));
    }
    set_data(
        frame,
        &[
            ("symbolicated", json!(true)),
            ("resolved_with", json!(found.via)),
            ("sourcemap", json!(found.map_url)),
        ],
    );
    Ok(())
}

/// The lines before, at and after `line` (0-based) of a source.
fn context_lines(text: &str, line: u32) -> (Vec<String>, String, Vec<String>) {
    let clip = |s: &str| s.chars().take(MAX_LINE).collect::<String>();
    let first = line.saturating_sub(CONTEXT_LINES) as usize;
    let lines: Vec<&str> = text
        .lines()
        .skip(first)
        .take((line as usize - first) + 1 + CONTEXT_LINES as usize)
        .collect();
    let at = line as usize - first;
    let pre = lines.iter().take(at).map(|l| clip(l)).collect();
    let current = lines.get(at).map(|l| clip(l)).unwrap_or_default();
    let post = lines.iter().skip(at + 1).map(|l| clip(l)).collect();
    (pre, current, post)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{BundleKind, NewArtifactFile, NewBundle};

    const DEBUG_ID: &str = "3b1cb0b8-8a4c-4c1b-9c7a-6b2f3e0a1d11";
    const ORIGINAL: &str = "// Checkout\nfunction applyDiscount(code) {\n  throw new Error(\"unknown code \" + code);\n}\n";
    const MINIFIED: &str = "function a(b){throw new Error(\"unknown code \"+b)}";

    /// A map of [`MINIFIED`] back to [`ORIGINAL`] (`src/app.js`), with its sources.
    fn map_json(debug_id: Option<&str>) -> Vec<u8> {
        let mut b = sourcemap::SourceMapBuilder::new(Some("app.min.js"));
        let src = b.add_source("../src/app.js");
        b.set_source_contents(src, Some(ORIGINAL));
        let name = b.add_name("applyDiscount");
        b.add_raw(0, 0, 1, 0, Some(src), None, false);
        b.add_raw(0, 9, 1, 9, Some(src), Some(name), false);
        b.add_raw(0, 15, 2, 2, Some(src), None, false);
        let mut map = b.into_sourcemap();
        map.set_debug_id(debug_id.and_then(|d| d.parse().ok()));
        let mut out = Vec::new();
        map.to_writer(&mut out).unwrap();
        out
    }

    fn file(
        url: &str,
        ty: &str,
        debug_id: Option<&str>,
        sourcemap: Option<&str>,
        data: &[u8],
    ) -> NewArtifactFile {
        NewArtifactFile {
            url: url.into(),
            file_type: ty.into(),
            debug_id: debug_id.map(str::to_string),
            sourcemap: sourcemap.map(str::to_string),
            headers: json!({}),
            data: data.to_vec(),
        }
    }

    struct Fixture {
        rt: tokio::runtime::Runtime,
        store: Arc<dyn Store>,
        sym: Symbolicator,
        /// Milliseconds the fixture's clock is ahead of the real one.
        skew: Arc<std::sync::atomic::AtomicU64>,
        org_id: i64,
        project_id: i64,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("t.db").display());
            let (store, org_id, project_id) = rt.block_on(async {
                let store = crate::store::open(&url).await.unwrap();
                let org = store.ensure_organization("acme").await.unwrap();
                let p = store.create_project(org.id, "web", "Web").await.unwrap();
                (store, org.id, p.id)
            });
            let skew = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let clock_skew = skew.clone();
            let clock: Clock = Arc::new(move || {
                Instant::now()
                    + Duration::from_millis(clock_skew.load(std::sync::atomic::Ordering::Relaxed))
            });
            let sym = Symbolicator::with_lookup_ttl(
                store.clone(),
                rt.handle().clone(),
                1 << 20,
                LOOKUP_TTL,
                clock,
            );
            Fixture {
                rt,
                store,
                sym,
                skew,
                org_id,
                project_id,
                _dir: dir,
            }
        }

        fn upload(&self, release: &str, files: Vec<NewArtifactFile>) {
            let bundle = NewBundle {
                org_id: self.org_id,
                checksum: format!("{:040}", files.len()),
                kind: BundleKind::ArtifactBundle,
                project_ids: vec![self.project_id],
                release: release.into(),
                dist: String::new(),
                files,
                now: 1.0,
            };
            self.rt.block_on(self.store.save_bundle(bundle)).unwrap();
        }

        /// Moves the symbolicator's clock forward.
        fn advance(&self, by: Duration) {
            let ms = u64::try_from(by.as_millis()).unwrap();
            self.skew
                .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
        }

        fn run(&self, mut event: Value) -> Value {
            self.sym.symbolicate(self.project_id, &mut event);
            event
        }
    }

    fn event(
        abs_path: &str,
        line: u64,
        col: u64,
        release: Option<&str>,
        debug_id: Option<&str>,
    ) -> Value {
        let mut e = json!({
            "platform": "javascript",
            "exception": {"values": [{"type": "Error", "stacktrace": {"frames": [
                {"filename": abs_path, "function": "a", "lineno": line, "colno": col, "in_app": true}
            ]}}]},
        });
        if let Some(r) = release {
            e["release"] = json!(r);
        }
        if let Some(d) = debug_id {
            e["debug_meta"] =
                json!({"images": [{"type": "sourcemap", "code_file": abs_path, "debug_id": d}]});
        }
        e
    }

    fn top(e: &Value) -> &Value {
        &e["exception"]["values"][0]["stacktrace"]["frames"][0]
    }

    fn status(e: &Value) -> &str {
        top(e)["data"]["symbolicator_status"]
            .as_str()
            .unwrap_or("-")
    }

    #[test]
    fn resolves_by_debug_id_with_name_line_and_context() {
        let f = Fixture::new();
        f.upload(
            "",
            vec![
                file(
                    "~/app.min.js",
                    "minified_source",
                    Some(DEBUG_ID),
                    None,
                    MINIFIED.as_bytes(),
                ),
                file(
                    "~/app.min.js.map",
                    "source_map",
                    Some(DEBUG_ID),
                    None,
                    &map_json(Some(DEBUG_ID)),
                ),
            ],
        );
        let url = "https://shop.example/app.min.js";
        // The SDK may send the id in capitals and without hyphens.
        let e = f.run(event(
            url,
            1,
            16,
            None,
            Some("3B1CB0B88A4C4C1B9C7A6B2F3E0A1D11"),
        ));
        let frame = top(&e);
        assert_eq!(frame["function"], "applyDiscount", "{frame:#}");
        assert_eq!(frame["filename"], "src/app.js");
        assert_eq!(frame["abs_path"], "~/src/app.js");
        assert_eq!(frame["lineno"], 3);
        assert_eq!(frame["colno"], 3);
        assert_eq!(
            frame["context_line"],
            "  throw new Error(\"unknown code \" + code);"
        );
        assert_eq!(
            frame["pre_context"],
            json!(["// Checkout", "function applyDiscount(code) {"])
        );
        assert_eq!(frame["post_context"], json!(["}"]));
        assert_eq!(frame["data"]["resolved_with"], "debug-id");
        let raw = &e["exception"]["values"][0]["raw_stacktrace"]["frames"][0];
        assert_eq!(raw["function"], "a");
        assert_eq!(raw["filename"], url);
        assert!(e.get("errors").is_none(), "{e:#}");
    }

    #[test]
    fn resolves_by_release_through_tilde_urls_and_source_mapping_url() {
        let f = Fixture::new();
        let minified = format!("{MINIFIED}\n//# sourceMappingURL=app.min.js.map\n");
        f.upload(
            "shop@1",
            vec![
                file(
                    "~/static/app.min.js",
                    "minified_source",
                    None,
                    None,
                    minified.as_bytes(),
                ),
                file(
                    "~/static/app.min.js.map",
                    "source_map",
                    None,
                    None,
                    &map_json(None),
                ),
            ],
        );
        let e = f.run(event(
            "https://shop.example/static/app.min.js?v=2#top",
            1,
            16,
            Some("shop@1"),
            None,
        ));
        assert_eq!(top(&e)["function"], "applyDiscount", "{e:#}");
        assert_eq!(top(&e)["lineno"], 3);
        assert_eq!(top(&e)["data"]["resolved_with"], "release");
        assert_eq!(top(&e)["data"]["sourcemap"], "~/static/app.min.js.map");
        // Another release has nothing.
        let e = f.run(event(
            "https://shop.example/static/app.min.js",
            1,
            16,
            Some("shop@2"),
            None,
        ));
        assert_eq!(status(&e), "missing_release_file");
    }

    #[test]
    fn each_unresolved_frame_says_why() {
        let f = Fixture::new();
        f.upload(
            "r1",
            vec![
                // A Sourcemap header naming a map that was never uploaded.
                file(
                    "~/lonely.min.js",
                    "minified_source",
                    None,
                    Some("lonely.min.js.map"),
                    MINIFIED.as_bytes(),
                ),
                // Neither header nor comment.
                file(
                    "~/bare.min.js",
                    "minified_source",
                    None,
                    None,
                    MINIFIED.as_bytes(),
                ),
                // A map that is no JSON.
                file(
                    "~/broken.min.js",
                    "minified_source",
                    None,
                    Some("broken.map"),
                    MINIFIED.as_bytes(),
                ),
                file("~/broken.map", "source_map", None, None, b"{not json"),
                file(
                    "~/good.min.js",
                    "minified_source",
                    None,
                    Some("good.map"),
                    MINIFIED.as_bytes(),
                ),
                file("~/good.map", "source_map", None, None, &map_json(None)),
            ],
        );
        let host = "https://h";
        let cases = [
            (
                event(&format!("{host}/x.js"), 1, 1, None, Some(DEBUG_ID)),
                "missing_debug_id_artifact",
                "js_no_source",
            ),
            (
                event(&format!("{host}/x.js"), 1, 1, None, None),
                "no_release",
                "js_no_source",
            ),
            (
                event(&format!("{host}/x.js"), 1, 1, Some("r1"), None),
                "missing_release_file",
                "js_no_source",
            ),
            (
                event(&format!("{host}/lonely.min.js"), 1, 1, Some("r1"), None),
                "missing_sourcemap",
                "js_no_source",
            ),
            (
                event(&format!("{host}/bare.min.js"), 1, 1, Some("r1"), None),
                "no_sourcemap_reference",
                "js_no_source",
            ),
            (
                event(&format!("{host}/broken.min.js"), 1, 1, Some("r1"), None),
                "invalid_sourcemap",
                "js_invalid_source",
            ),
            (
                event(&format!("{host}/good.min.js"), 7, 1, Some("r1"), None),
                "no_mapping",
                "js_invalid_sourcemap_location",
            ),
        ];
        for (e, code, error_type) in cases {
            let e = f.run(e);
            assert_eq!(status(&e), code, "{e:#}");
            assert!(
                top(&e)["data"]["symbolicator_reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty())
            );
            assert_eq!(top(&e)["function"], "a", "the frame stays as it was");
            assert_eq!(e["errors"][0]["type"], error_type, "{e:#}");
            assert_eq!(e["errors"][0]["reason"], code);
            assert!(e["exception"]["values"][0].get("raw_stacktrace").is_none());
        }
    }

    #[test]
    fn restored_events_resolve_once_their_maps_are_uploaded() {
        let f = Fixture::new();
        let url = "https://shop.example/app.min.js";
        let sent = event(url, 1, 16, None, Some(DEBUG_ID));
        let mut e = f.run(sent.clone());
        assert_eq!(status(&e), "missing_debug_id_artifact");
        restore(&mut e);
        assert_eq!(e["exception"], sent["exception"]);
        assert_eq!(e["errors"], json!([]));
        f.upload(
            "",
            vec![
                file(
                    "~/app.min.js",
                    "minified_source",
                    Some(DEBUG_ID),
                    None,
                    MINIFIED.as_bytes(),
                ),
                file(
                    "~/app.min.js.map",
                    "source_map",
                    Some(DEBUG_ID),
                    None,
                    &map_json(Some(DEBUG_ID)),
                ),
            ],
        );
        // The store's answer is remembered for a few seconds.
        f.advance(LOOKUP_TTL);
        let mut e = f.run(e);
        assert_eq!(top(&e)["function"], "applyDiscount");
        restore(&mut e);
        assert_eq!(
            e["exception"], sent["exception"],
            "the minified frames come back"
        );
    }

    #[test]
    fn answers_are_remembered_until_the_ttl_has_passed() {
        let f = Fixture::new();
        let minified = format!("{MINIFIED}\n//# sourceMappingURL=app.min.js.map\n");
        let by_release = || {
            event(
                "https://shop.example/app.min.js",
                1,
                16,
                Some("shop@1"),
                None,
            )
        };
        let by_id = || {
            event(
                "https://shop.example/app.min.js",
                1,
                16,
                None,
                Some(DEBUG_ID),
            )
        };
        assert_eq!(status(&f.run(by_release())), "missing_release_file");
        assert_eq!(status(&f.run(by_id())), "missing_debug_id_artifact");
        f.upload(
            "shop@1",
            vec![
                file(
                    "~/app.min.js",
                    "minified_source",
                    Some(DEBUG_ID),
                    None,
                    minified.as_bytes(),
                ),
                file(
                    "~/app.min.js.map",
                    "source_map",
                    Some(DEBUG_ID),
                    None,
                    &map_json(Some(DEBUG_ID)),
                ),
            ],
        );
        // Within the TTL the store is not asked again: the misses stand.
        f.advance(LOOKUP_TTL - Duration::from_millis(500));
        assert_eq!(status(&f.run(by_release())), "missing_release_file");
        assert_eq!(status(&f.run(by_id())), "missing_debug_id_artifact");
        // Other keys are looked up: another release, another dist.
        let mut other = by_release();
        other["dist"] = json!("7");
        assert_eq!(status(&f.run(other)), "missing_release_file");
        f.advance(Duration::from_millis(500));
        let e = f.run(by_release());
        assert_eq!(top(&e)["function"], "applyDiscount", "{e:#}");
        assert_eq!(top(&e)["data"]["resolved_with"], "release");
        let e = f.run(by_id());
        assert_eq!(top(&e)["function"], "applyDiscount", "{e:#}");
        assert_eq!(top(&e)["data"]["resolved_with"], "debug-id");
    }

    #[test]
    fn forgetting_lookups_uses_a_new_upload_at_once() {
        let f = Fixture::new();
        let url = "https://shop.example/app.min.js";
        assert_eq!(
            status(&f.run(event(url, 1, 16, None, Some(DEBUG_ID)))),
            "missing_debug_id_artifact"
        );
        f.upload(
            "",
            vec![file(
                "~/app.min.js.map",
                "source_map",
                Some(DEBUG_ID),
                None,
                &map_json(Some(DEBUG_ID)),
            )],
        );
        f.sym.forget_lookups();
        let e = f.run(event(url, 1, 16, None, Some(DEBUG_ID)));
        assert_eq!(top(&e)["data"]["symbolicated"], true, "{e:#}");
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let f = Fixture::new();
        let sym = Symbolicator::with_lookup_ttl(
            f.store.clone(),
            f.rt.handle().clone(),
            1 << 20,
            Duration::ZERO,
            Arc::new(Instant::now),
        );
        let url = "https://shop.example/app.min.js";
        let mut e = event(url, 1, 16, None, Some(DEBUG_ID));
        sym.symbolicate(f.project_id, &mut e);
        assert_eq!(status(&e), "missing_debug_id_artifact");
        f.upload(
            "",
            vec![file(
                "~/app.min.js.map",
                "source_map",
                Some(DEBUG_ID),
                None,
                &map_json(Some(DEBUG_ID)),
            )],
        );
        let mut e = event(url, 1, 16, None, Some(DEBUG_ID));
        sym.symbolicate(f.project_id, &mut e);
        assert_eq!(top(&e)["data"]["symbolicated"], true, "{e:#}");
    }

    #[test]
    fn other_projects_and_platforms_are_left_alone() {
        let f = Fixture::new();
        f.upload(
            "",
            vec![file(
                "~/app.min.js.map",
                "source_map",
                Some(DEBUG_ID),
                None,
                &map_json(Some(DEBUG_ID)),
            )],
        );
        let other = f.rt.block_on(async {
            let org = f.store.ensure_organization("globex").await.unwrap();
            f.store
                .create_project(org.id, "web", "Web")
                .await
                .unwrap()
                .id
        });
        let mut e = event("https://h/app.min.js", 1, 16, None, Some(DEBUG_ID));
        f.sym.symbolicate(other, &mut e);
        assert_eq!(
            status(&e),
            "missing_debug_id_artifact",
            "another organization's maps are not used"
        );
        let mut python = event("https://h/app.min.js", 1, 16, None, Some(DEBUG_ID));
        python["platform"] = json!("python");
        let before = python.clone();
        assert_eq!(f.run(python), before);
        let internal = event("node:internal/process/task_queues", 95, 5, Some("r"), None);
        assert_eq!(
            f.run(internal.clone()),
            internal,
            "engine frames are not looked up"
        );
    }
}
