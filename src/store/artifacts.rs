//! Uploaded release artifacts (source maps, minified and original sources): the records and the
//! part of the storage interface that keeps them.
//!
//! sentry-cli uploads in chunks ([`ArtifactStore::put_chunks`]), then asks the server to
//! assemble them into a bundle; the assembled bundle's files are indexed by debug id and by
//! (release, dist, URL), which is how the symbolicator finds them during digestion.

use async_trait::async_trait;
use serde_json::Value;

use super::StoreResult;

/// What kind of upload a bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// `SYSB` artifact bundle through `artifactbundle/assemble/` (debug ids and/or a release).
    ArtifactBundle,
    /// Legacy release bundle through `releases/{version}/assemble/`.
    ReleaseBundle,
    /// One file posted to `releases/{version}/files/`.
    ReleaseFile,
}

impl BundleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::ArtifactBundle => "artifact_bundle",
            BundleKind::ReleaseBundle => "release_bundle",
            BundleKind::ReleaseFile => "release_file",
        }
    }
}

/// One file of a bundle to store.
#[derive(Debug, Clone)]
pub struct NewArtifactFile {
    /// `~/static/app.min.js` or a full URL, as uploaded.
    pub url: String,
    /// `source`, `minified_source`, `source_map` or `indexed_ram_bundle`.
    pub file_type: String,
    /// The lowercase, hyphenated debug id, when the file has one.
    pub debug_id: Option<String>,
    /// The `Sourcemap` header: where the file's map is, relative to its URL.
    pub sourcemap: Option<String>,
    /// Every header, lowercase names.
    pub headers: Value,
    pub data: Vec<u8>,
}

/// A bundle to store, with the projects it serves (none: every project of the organization).
#[derive(Debug, Clone)]
pub struct NewBundle {
    pub org_id: i64,
    /// Lowercase SHA-1 hex of the uploaded bytes.
    pub checksum: String,
    pub kind: BundleKind,
    pub project_ids: Vec<i64>,
    /// `""` when none.
    pub release: String,
    /// `""` when none.
    pub dist: String,
    pub files: Vec<NewArtifactFile>,
    pub now: f64,
}

/// A stored file, without its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactFile {
    pub id: i64,
    pub bundle_id: i64,
    pub release: String,
    pub dist: String,
    pub url: String,
    pub file_type: String,
    pub debug_id: Option<String>,
    pub sourcemap: Option<String>,
    pub headers: Value,
    pub size: i64,
    pub sha1: String,
    pub date_created: f64,
}

/// Storage of chunks, bundles and their files.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores chunks `(sha1, bytes)` of an organization until `expires` (a chunk already there
    /// gets the later expiry), and drops chunks that expired before `now`.
    async fn put_chunks(
        &self,
        org_id: i64,
        chunks: Vec<(String, Vec<u8>)>,
        expires: f64,
        now: f64,
    ) -> StoreResult<()>;
    /// Which of `sha1s` the organization has no (unexpired) chunk for, in the order given.
    async fn missing_chunks(
        &self,
        org_id: i64,
        sha1s: &[String],
        now: f64,
    ) -> StoreResult<Vec<String>>;
    /// The bytes of the chunks, in the order given; NotFound when one is missing.
    async fn chunks(&self, org_id: i64, sha1s: &[String]) -> StoreResult<Vec<Vec<u8>>>;
    /// The bundle of the organization with this checksum and release, if one was assembled.
    async fn bundle_by_checksum(
        &self,
        org_id: i64,
        checksum: &str,
        release: &str,
    ) -> StoreResult<Option<i64>>;
    /// Lets a stored bundle also serve these projects (the same bundle uploaded for another
    /// project). A bundle that serves every project of its organization stays so.
    async fn add_bundle_projects(&self, bundle_id: i64, project_ids: &[i64]) -> StoreResult<()>;
    /// Stores a bundle and indexes its files, in one transaction; returns its id.
    async fn save_bundle(&self, bundle: NewBundle) -> StoreResult<i64>;
    /// The files of a release of an organization (when `project_id` is given, only those that
    /// serve that project), by id.
    async fn release_files(
        &self,
        org_id: i64,
        project_id: Option<i64>,
        release: &str,
    ) -> StoreResult<Vec<ArtifactFile>>;
    /// Removes one file of a release; NotFound when the release has no such file.
    async fn delete_release_file(&self, org_id: i64, release: &str, id: i64) -> StoreResult<()>;
    /// The newest file serving the project with this debug id and one of `file_types`.
    async fn artifact_by_debug_id(
        &self,
        project_id: i64,
        debug_id: &str,
        file_types: &[&str],
    ) -> StoreResult<Option<ArtifactFile>>;
    /// The files serving the project in a release and dist at one of `urls`, newest first.
    async fn artifacts_by_url(
        &self,
        project_id: i64,
        release: &str,
        dist: &str,
        urls: &[String],
    ) -> StoreResult<Vec<ArtifactFile>>;
    /// The bytes of a file.
    async fn artifact_data(&self, id: i64) -> StoreResult<Vec<u8>>;
}
