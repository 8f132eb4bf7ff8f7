//! Reading an uploaded bundle: `SYSB` + version 2 header (optional) + a ZIP archive whose root
//! `manifest.json` lists each file with its URL, type and headers.
//!
//! Every byte is the uploader's: the archive's own sizes are not trusted, each file is read
//! through a cap, and the total of what is unpacked is bounded (ZIP bombs).

use std::io::{Cursor, Read};

use serde_json::{Map, Value};

use crate::store::NewArtifactFile;

/// Bounds for unpacking one bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleLimits {
    /// Most files in one bundle.
    pub max_files: usize,
    /// Largest file once unpacked.
    pub max_file_size: u64,
    /// Largest total once unpacked.
    pub max_total_size: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_files: 10_000,
            max_file_size: 64 * 1024 * 1024,
            max_total_size: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("unsupported bundle version {0}")]
    Version(u32),
    #[error("not a ZIP archive: {0}")]
    Zip(String),
    #[error("the bundle has no manifest.json")]
    NoManifest,
    #[error("invalid manifest.json: {0}")]
    Manifest(String),
    #[error("the manifest names {0}, which the archive lacks")]
    MissingFile(String),
    #[error("too many files (at most {0})")]
    TooManyFiles(usize),
    #[error("{0} is larger than {1} bytes once unpacked")]
    FileTooLarge(String, u64),
    #[error("the bundle is larger than {0} bytes once unpacked")]
    TooLarge(u64),
    #[error("cannot read {0}: {1}")]
    Read(String, String),
}

/// An unpacked bundle: its files and the attributes of its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub files: Vec<NewArtifactFile>,
    /// The manifest's `release`, if any.
    pub release: Option<String>,
    /// The manifest's `dist`, if any.
    pub dist: Option<String>,
}

const MANIFEST: &str = "manifest.json";
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// Unpacks a bundle within `limits`.
pub fn parse(bytes: &[u8], limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let zip_bytes = match bytes.strip_prefix(b"SYSB") {
        Some(rest) => {
            let version = rest
                .get(..4)
                .and_then(|v| v.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(BundleError::Version(0))?;
            if version != 1 && version != 2 {
                return Err(BundleError::Version(version));
            }
            &rest[4..]
        }
        None => bytes,
    };
    // sentry-cli writes the ZIP after the header, with offsets counted from the start of the
    // file; other writers count from the ZIP itself. Try both.
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(a) => a,
        Err(_) => zip::ZipArchive::new(Cursor::new(zip_bytes))
            .map_err(|e| BundleError::Zip(e.to_string()))?,
    };
    if archive.len() > limits.max_files + 1 {
        return Err(BundleError::TooManyFiles(limits.max_files));
    }
    let manifest = read_entry(&mut archive, MANIFEST, MAX_MANIFEST)?;
    let manifest: Value =
        serde_json::from_slice(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let attr = |k: &str| {
        manifest
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (release, dist) = (attr("release"), attr("dist"));
    let entries = match manifest.get("files") {
        Some(Value::Object(files)) => files,
        Some(_) => return Err(BundleError::Manifest("files is not an object".into())),
        None => {
            return Ok(Bundle {
                files: Vec::new(),
                release,
                dist,
            });
        }
    };
    if entries.len() > limits.max_files {
        return Err(BundleError::TooManyFiles(limits.max_files));
    }
    let mut total = 0u64;
    let mut files = Vec::with_capacity(entries.len());
    for (path, info) in entries {
        let url = info
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| BundleError::Manifest(format!("{path} has no url")))?;
        let file_type = info
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("source")
            .to_string();
        let headers = lowercase_headers(info.get("headers"));
        let data = read_entry(&mut archive, path, limits.max_file_size)?;
        total += data.len() as u64;
        if total > limits.max_total_size {
            return Err(BundleError::TooLarge(limits.max_total_size));
        }
        files.push(file(url.to_string(), file_type, headers, data));
    }
    Ok(Bundle {
        files,
        release,
        dist,
    })
}

/// A file to store from its URL, type, lowercase headers and bytes: the debug id and the map
/// reference come from its headers.
pub fn file(
    url: String,
    file_type: String,
    headers: Map<String, Value>,
    data: Vec<u8>,
) -> NewArtifactFile {
    let header = |k: &str| headers.get(k).and_then(Value::as_str).map(str::trim);
    let debug_id = header("debug-id")
        .or_else(|| header("debug_id"))
        .and_then(normalize_debug_id);
    let sourcemap = header("sourcemap")
        .or_else(|| header("x-sourcemap"))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    NewArtifactFile {
        url,
        file_type,
        debug_id,
        sourcemap,
        headers: Value::Object(headers),
        data,
    }
}

/// A debug id as stored and looked up: lowercase, hyphenated, without an appendix
/// (`3b1cb0b8-…` from `3B1CB0B8…` or `3b1cb0b8-…-0`). None when it is no UUID.
pub fn normalize_debug_id(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let hex = hex.get(..32)?;
    let id = uuid::Uuid::parse_str(hex).ok()?;
    Some(id.hyphenated().to_string())
}

fn lowercase_headers(v: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(Value::Object(h)) = v {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.to_ascii_lowercase(), Value::String(v));
        }
    }
    out
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    let entry = match archive.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) if name == MANIFEST => {
            return Err(BundleError::NoManifest);
        }
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(BundleError::MissingFile(name.to_string()));
        }
        Err(e) => return Err(BundleError::Read(name.to_string(), e.to_string())),
    };
    let mut data = Vec::new();
    entry
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| BundleError::Read(name.to_string(), e.to_string()))?;
    if data.len() as u64 > limit {
        return Err(BundleError::FileTooLarge(name.to_string(), limit));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn sysb(zip: Vec<u8>) -> Vec<u8> {
        let mut out = b"SYSB".to_vec();
        out.extend(2u32.to_le_bytes());
        out.extend(zip);
        out
    }

    #[test]
    fn reads_files_headers_and_attributes() {
        let manifest = br#"{"files":{"files/_/_/app.min.js":{"url":"~/app.min.js","type":"minified_source",
            "headers":{"Debug-Id":"3B1CB0B8-8A4C-4C1B-9C7A-6B2F3E0A1D11","Sourcemap":"app.min.js.map"}},
            "files/_/_/app.min.js.map":{"url":"~/app.min.js.map","type":"source_map",
            "headers":{"debug-id":"3b1cb0b88a4c4c1b9c7a6b2f3e0a1d11"}}},
            "release":"shop@1.0","dist":"web"}"#;
        let bytes = sysb(zip_of(&[
            ("manifest.json", manifest),
            ("files/_/_/app.min.js", b"function a(){}"),
            ("files/_/_/app.min.js.map", b"{}"),
        ]));
        let b = parse(&bytes, &BundleLimits::default()).unwrap();
        assert_eq!(b.release.as_deref(), Some("shop@1.0"));
        assert_eq!(b.dist.as_deref(), Some("web"));
        let js = b.files.iter().find(|f| f.url == "~/app.min.js").unwrap();
        assert_eq!(js.file_type, "minified_source");
        assert_eq!(
            js.debug_id.as_deref(),
            Some("3b1cb0b8-8a4c-4c1b-9c7a-6b2f3e0a1d11")
        );
        assert_eq!(js.sourcemap.as_deref(), Some("app.min.js.map"));
        assert_eq!(js.data, b"function a(){}");
        let map = b
            .files
            .iter()
            .find(|f| f.url == "~/app.min.js.map")
            .unwrap();
        assert_eq!(map.debug_id, js.debug_id);
    }

    #[test]
    fn refuses_bombs_missing_files_and_bad_headers() {
        let big = vec![b'a'; 10_000];
        let manifest = br#"{"files":{"f":{"url":"~/a.js","type":"source"}}}"#;
        let bytes = zip_of(&[("manifest.json", manifest), ("f", &big)]);
        let tight = BundleLimits {
            max_file_size: 1000,
            ..Default::default()
        };
        assert!(matches!(
            parse(&bytes, &tight),
            Err(BundleError::FileTooLarge(..))
        ));
        let total = BundleLimits {
            max_total_size: 5000,
            ..Default::default()
        };
        assert!(matches!(
            parse(&bytes, &total),
            Err(BundleError::TooLarge(_))
        ));
        let lacking = zip_of(&[("manifest.json", manifest)]);
        assert!(matches!(
            parse(&lacking, &BundleLimits::default()),
            Err(BundleError::MissingFile(_))
        ));
        assert!(matches!(
            parse(&zip_of(&[("x", b"1")]), &BundleLimits::default()),
            Err(BundleError::NoManifest)
        ));
        assert!(matches!(
            parse(b"SYSB\x07\0\0\0", &BundleLimits::default()),
            Err(BundleError::Version(7))
        ));
        assert!(matches!(
            parse(b"garbage", &BundleLimits::default()),
            Err(BundleError::Zip(_))
        ));
    }
}
