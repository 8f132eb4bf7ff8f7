//! Uploads of source maps and sources with sentry-cli: chunk upload, artifact bundle assembly,
//! and the legacy release-based flow (release bundles and single release files).
//!
//! Every upload is attacker-controlled bytes: chunks are checked against their SHA-1 after
//! decompression, requests and assembled files are bounded, and bundles are unpacked within
//! [`BundleLimits`]. Artifacts are keyed by organization, projects, release string and dist; no
//! release has to exist first.

use std::io::Read;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::{check_access, visible_project};
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{ArtifactFile, BundleKind, NewBundle, Organization, Project, User};
use crate::symbolicate::bundle::{self, BundleLimits};

/// Chunks are at most this large (a power of two, as older sentry-cli versions require).
const CHUNK_SIZE: usize = 8 * 1024 * 1024;
const CHUNKS_PER_REQUEST: usize = 64;
/// Largest chunk-upload request body.
const MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;
/// Largest assembled upload (bundle or single file).
const MAX_FILE_SIZE: usize = 64 * 1024 * 1024;
/// Uploaded chunks are kept this long for an assembly to use them.
const CHUNK_TTL: f64 = 3600.0;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/0/organizations/{org}/chunk-upload/",
            get(chunk_options).post(chunk_upload),
        )
        .route(
            "/api/0/organizations/{org}/artifactbundle/assemble/",
            post(assemble_bundle),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/assemble/",
            post(assemble_release),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/files/",
            get(list_org_files).post(upload_org_file),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/files/{id}/",
            get(get_org_file).delete(delete_org_file),
        )
        .route(
            "/api/0/projects/{org}/{project}/releases/{version}/files/",
            get(list_project_files).post(upload_project_file),
        )
        .route(
            "/api/0/projects/{org}/{project}/releases/{version}/files/{id}/",
            get(get_project_file).delete(delete_project_file),
        )
        .route(
            "/api/0/issues/{id}/reprocess/",
            post(super::reprocess::issue),
        )
        // Room for multipart framing around the largest body.
        .layer(DefaultBodyLimit::max(MAX_FILE_SIZE + 1024 * 1024))
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// The organization `slug` if the user belongs to it (superusers: any); 404 otherwise.
async fn member_org(state: &AppState, user: &User, slug: &str) -> Result<Organization, ApiError> {
    state
        .store
        .organizations_for(user)
        .await?
        .into_iter()
        .find(|o| o.slug == slug)
        .ok_or_else(ApiError::not_found)
}

/// Sentry's answer to bad assemble input: 400 `{"error": …}`.
fn assemble_error(msg: impl Into<String>) -> (StatusCode, Json<Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.into()})))
}

fn is_sha1(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET …/chunk-upload/`: how sentry-cli should upload.
async fn chunk_options(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = member_org(&state, &user, &org).await?;
    Ok(Json(json!({
        "url": format!("{}/api/0/organizations/{}/chunk-upload/", state.public_url, org.slug),
        "chunkSize": CHUNK_SIZE,
        "chunksPerRequest": CHUNKS_PER_REQUEST,
        "maxFileSize": MAX_FILE_SIZE,
        "maxRequestSize": MAX_REQUEST_SIZE,
        "concurrency": 4,
        "hashAlgorithm": "sha1",
        "compression": ["gzip"],
        "accept": ["release_files", "sources", "artifact_bundles", "artifact_bundles_v2"],
        "maxWait": 60,
    })))
}

/// `POST …/chunk-upload/`: multipart parts `file` or `file_gzip`, each named by the SHA-1 of
/// its uncompressed bytes.
async fn chunk_upload(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
    mut multipart: Multipart,
) -> Result<StatusCode, ApiError> {
    let org = member_org(&state, &user, &org).await?;
    let mut chunks: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?
    {
        let gzip = match field.name() {
            Some("file") => false,
            Some("file_gzip") => true,
            _ => continue,
        };
        let sha1 = field
            .file_name()
            .map(str::to_ascii_lowercase)
            .filter(|s| is_sha1(s))
            .ok_or_else(|| ApiError::bad_request("each chunk must be named by its SHA-1"))?;
        if chunks.len() >= CHUNKS_PER_REQUEST {
            return Err(ApiError::bad_request(format!(
                "at most {CHUNKS_PER_REQUEST} chunks per request"
            )));
        }
        let raw = field
            .bytes()
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
        total += raw.len();
        if total > MAX_REQUEST_SIZE {
            return Err(ApiError::too_large("the request is too large"));
        }
        let data = if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(CHUNK_SIZE as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::bad_request(format!("chunk {sha1}: invalid gzip: {e}")))?;
            out
        } else {
            raw.to_vec()
        };
        if data.len() > CHUNK_SIZE {
            return Err(ApiError::too_large(format!(
                "chunk {sha1} is larger than {CHUNK_SIZE} bytes"
            )));
        }
        if hex::encode(Sha1::digest(&data)) != sha1 {
            return Err(ApiError::bad_request(format!(
                "chunk {sha1}: the SHA-1 of its content differs"
            )));
        }
        chunks.push((sha1, data));
    }
    if !chunks.is_empty() {
        let now = now();
        state
            .store
            .put_chunks(org.id, chunks, now + CHUNK_TTL, now)
            .await?;
    }
    Ok(StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct AssembleRequest {
    checksum: String,
    #[serde(default)]
    chunks: Vec<String>,
    #[serde(default)]
    projects: Vec<String>,
    version: Option<String>,
    dist: Option<String>,
}

/// `POST …/artifactbundle/assemble/`
async fn assemble_bundle(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let org = member_org(&state, &user, &org).await?;
    let Ok(req) = serde_json::from_slice::<AssembleRequest>(&body) else {
        return Ok(assemble_error("invalid request body"));
    };
    let version = req.version.as_deref().filter(|v| !v.is_empty());
    let dist = req.dist.as_deref().filter(|d| !d.is_empty());
    if dist.is_some() && version.is_none() {
        return Ok(assemble_error("a dist needs a version"));
    }
    if req.projects.is_empty() {
        return Ok(assemble_error("no projects given"));
    }
    let mut projects = Vec::new();
    for p in &req.projects {
        match project_in_org(&state, &user, &org, p).await {
            Ok(project) => projects.push(project.id),
            Err(_) => return Ok(assemble_error(format!("unknown project {p}"))),
        }
    }
    let target = Target {
        kind: BundleKind::ArtifactBundle,
        project_ids: projects,
        release: version.map(str::to_string),
        dist: dist.map(str::to_string),
    };
    assemble(&state, &org, &req, target).await
}

/// `POST …/releases/{version}/assemble/`: a legacy release bundle, serving every project of
/// the organization.
async fn assemble_release(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let org = member_org(&state, &user, &org).await?;
    let Ok(req) = serde_json::from_slice::<AssembleRequest>(&body) else {
        return Ok(assemble_error("invalid request body"));
    };
    let target = Target {
        kind: BundleKind::ReleaseBundle,
        project_ids: Vec::new(),
        release: Some(version),
        dist: None,
    };
    assemble(&state, &org, &req, target).await
}

/// A project of `org` named by slug or id, that the user can see.
async fn project_in_org(
    state: &AppState,
    user: &User,
    org: &Organization,
    name: &str,
) -> Result<Project, ApiError> {
    let project = match state.store.project_by_slug(&org.slug, name).await {
        Ok(p) => p,
        Err(_) => {
            let id: i64 = name.parse().map_err(|_| ApiError::not_found())?;
            state.store.project(id).await?
        }
    };
    if project.org_slug != org.slug {
        return Err(ApiError::not_found());
    }
    check_access(state, user, &project).await?;
    Ok(project)
}

/// Where an assembled upload goes.
struct Target {
    kind: BundleKind,
    project_ids: Vec<i64>,
    /// From the request; else the manifest's.
    release: Option<String>,
    dist: Option<String>,
}

/// Assembles the chunks of an upload into a stored bundle, answering sentry-cli's states.
async fn assemble(
    state: &AppState,
    org: &Organization,
    req: &AssembleRequest,
    target: Target,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer = |state: &str, missing: Vec<String>, detail: Option<String>| {
        Ok((
            StatusCode::OK,
            Json(json!({"state": state, "missingChunks": missing, "detail": detail})),
        ))
    };
    let checksum = req.checksum.to_ascii_lowercase();
    let chunks: Vec<String> = req.chunks.iter().map(|c| c.to_ascii_lowercase()).collect();
    if !is_sha1(&checksum) || !chunks.iter().all(|c| is_sha1(c)) {
        return Ok(assemble_error("checksums must be SHA-1 hex"));
    }
    if chunks.len() > MAX_FILE_SIZE.div_ceil(CHUNK_SIZE) {
        return answer(
            "error",
            Vec::new(),
            Some(format!("the upload is larger than {MAX_FILE_SIZE} bytes")),
        );
    }
    let release_key = target.release.clone().unwrap_or_default();
    if let Some(bundle_id) = state
        .store
        .bundle_by_checksum(org.id, &checksum, &release_key)
        .await?
    {
        if !target.project_ids.is_empty() {
            state
                .store
                .add_bundle_projects(bundle_id, &target.project_ids)
                .await?;
        }
        return answer("ok", Vec::new(), None);
    }
    if chunks.is_empty() {
        return answer("not_found", Vec::new(), None);
    }
    let missing = state.store.missing_chunks(org.id, &chunks, now()).await?;
    if !missing.is_empty() {
        return answer("not_found", missing, None);
    }
    let parts = state.store.chunks(org.id, &chunks).await?;
    let size: usize = parts.iter().map(Vec::len).sum();
    if size > MAX_FILE_SIZE {
        return answer(
            "error",
            Vec::new(),
            Some(format!("the upload is larger than {MAX_FILE_SIZE} bytes")),
        );
    }
    let unpacked = tokio::task::spawn_blocking(move || {
        let bytes = parts.concat();
        if hex::encode(Sha1::digest(&bytes)) != checksum {
            return Err("the assembled upload does not match its checksum".to_string());
        }
        bundle::parse(&bytes, &BundleLimits::default()).map_err(|e| e.to_string())
    })
    .await
    .map_err(ApiError::internal)?;
    let unpacked = match unpacked {
        Ok(b) => b,
        Err(detail) => return answer("error", Vec::new(), Some(detail)),
    };
    let release = target.release.or(unpacked.release).unwrap_or_default();
    let dist = target.dist.or(unpacked.dist).unwrap_or_default();
    let files = unpacked.files.len();
    state
        .store
        .save_bundle(NewBundle {
            org_id: org.id,
            checksum: req.checksum.to_ascii_lowercase(),
            kind: target.kind,
            project_ids: target.project_ids,
            release: release.clone(),
            dist,
            files: unpacked.files,
            now: now(),
        })
        .await?;
    // This node sees the new files at once; other nodes once their remembered lookups expire.
    state.symbolicator.forget_lookups();
    tracing::info!(org = %org.slug, release, files, "assembled an artifact upload");
    answer("ok", Vec::new(), None)
}

fn file_json(f: &ArtifactFile) -> Value {
    json!({
        "id": f.id.to_string(),
        "name": f.url,
        "dist": (!f.dist.is_empty()).then_some(&f.dist),
        "headers": f.headers,
        "size": f.size,
        "sha1": f.sha1,
        "dateCreated": crate::api::serialize::iso(f.date_created),
    })
}

/// The organization, and the project when the route names one.
async fn scope(
    state: &AppState,
    user: &User,
    org: &str,
    project: Option<&str>,
) -> Result<(Organization, Option<Project>), ApiError> {
    let org = member_org(state, user, org).await?;
    let project = match project {
        Some(p) => Some(visible_project(state, user, &org.slug, p).await?),
        None => None,
    };
    Ok((org, project))
}

async fn list_files(
    state: &AppState,
    user: &User,
    org: &str,
    project: Option<&str>,
    version: &str,
) -> Result<Json<Value>, ApiError> {
    let (org, project) = scope(state, user, org, project).await?;
    let files = state
        .store
        .release_files(org.id, project.map(|p| p.id), version)
        .await?;
    Ok(Json(json!(files.iter().map(file_json).collect::<Vec<_>>())))
}

async fn get_file(
    state: &AppState,
    user: &User,
    org: &str,
    project: Option<&str>,
    version: &str,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    let (org, project) = scope(state, user, org, project).await?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    let files = state
        .store
        .release_files(org.id, project.map(|p| p.id), version)
        .await?;
    let file = files
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(file_json(file)))
}

async fn delete_file(
    state: &AppState,
    user: &User,
    org: &str,
    project: Option<&str>,
    version: &str,
    id: &str,
) -> Result<StatusCode, ApiError> {
    let (org, project) = scope(state, user, org, project).await?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    // Through a project, only a file that serves the project.
    if let Some(p) = &project {
        let files = state
            .store
            .release_files(org.id, Some(p.id), version)
            .await?;
        if !files.iter().any(|f| f.id == id) {
            return Err(ApiError::not_found());
        }
    }
    state.store.delete_release_file(org.id, version, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/releases/{version}/files/`: multipart `file`, `name` (`~/app.min.js`), `dist` and
/// repeated `header` (`Sourcemap:app.min.js.map`). 409 when the release already has that name.
async fn upload_file(
    state: &AppState,
    user: &User,
    org: &str,
    project: Option<&str>,
    version: &str,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (org, project) = scope(state, user, org, project).await?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("invalid multipart body: {e}"))
    };
    let (mut data, mut name, mut dist) = (None, None, None);
    let mut headers = Map::new();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let file_name = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > MAX_FILE_SIZE {
                    return Err(ApiError::too_large("the file is too large"));
                }
                data = Some(bytes.to_vec());
                if name.is_none() {
                    name = file_name;
                }
            }
            "name" => name = Some(field.text().await.map_err(bad)?),
            "dist" => dist = Some(field.text().await.map_err(bad)?),
            "header" => {
                let h = field.text().await.map_err(bad)?;
                let (k, v) = h.split_once(':').ok_or_else(|| {
                    ApiError::bad_request("headers must be of the form Name:Value")
                })?;
                if headers.len() < 32 {
                    headers.insert(k.trim().to_ascii_lowercase(), json!(v.trim()));
                }
            }
            _ => {}
        }
    }
    let data = data.ok_or_else(|| ApiError::bad_request("missing file"))?;
    let name = name
        .filter(|n| !n.is_empty() && n.len() <= 1024)
        .ok_or_else(|| ApiError::bad_request("missing name"))?;
    let dist = dist.unwrap_or_default();
    let existing = state.store.release_files(org.id, None, version).await?;
    if existing.iter().any(|f| f.url == name && f.dist == dist) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "A file matching this name already exists for the given release",
        ));
    }
    let file_type = if name.ends_with(".map") {
        "source_map"
    } else {
        "minified_source"
    };
    let checksum = hex::encode(Sha1::digest(&data));
    state
        .store
        .save_bundle(NewBundle {
            org_id: org.id,
            checksum,
            kind: BundleKind::ReleaseFile,
            project_ids: project.iter().map(|p| p.id).collect(),
            release: version.to_string(),
            dist: dist.clone(),
            files: vec![bundle::file(name.clone(), file_type.into(), headers, data)],
            now: now(),
        })
        .await?;
    // This node sees the new files at once; other nodes once their remembered lookups expire.
    state.symbolicator.forget_lookups();
    let stored = state
        .store
        .release_files(org.id, None, version)
        .await?
        .into_iter()
        .rev()
        .find(|f| f.url == name && f.dist == dist)
        .ok_or_else(|| ApiError::internal("the stored file is gone"))?;
    Ok((StatusCode::CREATED, Json(file_json(&stored))))
}

async fn list_org_files(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    list_files(&state, &user, &org, None, &version).await
}

async fn list_project_files(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, project, version)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    list_files(&state, &user, &org, Some(&project), &version).await
}

async fn get_org_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_file(&state, &user, &org, None, &version, &id).await
}

async fn get_project_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, project, version, id)): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_file(&state, &user, &org, Some(&project), &version, &id).await
}

async fn delete_org_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_file(&state, &user, &org, None, &version, &id).await
}

async fn delete_project_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, project, version, id)): Path<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_file(&state, &user, &org, Some(&project), &version, &id).await
}

async fn upload_org_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    upload_file(&state, &user, &org, None, &version, multipart).await
}

async fn upload_project_file(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, project, version)): Path<(String, String, String)>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    upload_file(&state, &user, &org, Some(&project), &version, multipart).await
}
