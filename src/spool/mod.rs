//! The spool: a durable append-only log on local disk between ingestion and digestion.
//!
//! Ingestion appends one record per accepted request and answers the SDK only after the record
//! is on disk. Appends are group-committed: a single writer thread takes every request that is
//! waiting, writes them in one go and covers them all with one `fdatasync`, so the cost of a sync
//! is shared by a whole batch. The digest worker reads records up to the durable end and keeps its
//! own position in the database, in the same transaction as what it stored, so a crash at any
//! moment neither loses nor double-counts an acknowledged event.
//!
//! On disk: `spool/<segment>.log` files, each a sequence of records
//! `[u32 LE payload length][u32 LE crc32 of payload][payload]`, where the payload is
//! `[u32 LE meta length][meta JSON][body]`. A process never appends to a segment it did not
//! create, so a torn tail left by a crash is only ever at the end of an old segment, where the
//! reader stops and moves on.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

/// Segments are rotated once they grow past this size.
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Most requests covered by one sync.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer; past this, appends wait (bounding memory).
const QUEUE: usize = 1024;
const RECORD_HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("the spool writer has stopped")]
    Closed,
}

/// A place in the spool: a segment number and a byte offset inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// What kind of body a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An envelope, still encoded as it came (`encoding`).
    Envelope,
    /// A legacy store-endpoint event, already decoded to JSON.
    Store,
    /// A browser security report (CSP, Expect-CT, HPKP), raw.
    Security,
}

/// Facts about the request that digestion needs besides the body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordMeta {
    pub project_id: i64,
    pub kind: RecordKind,
    /// `Content-Encoding` of the body, when it is still compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Arrival time, Unix seconds.
    pub received: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The event id answered to the SDK, when the request carried an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Extra request parameters (security reports: `sentry_release`, `sentry_environment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// The event replaces the one stored with the same id (reprocessing), instead of being
    /// dropped as a duplicate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaces: bool,
}

/// One spooled request.
#[derive(Debug, Clone)]
pub struct Record {
    pub meta: RecordMeta,
    pub body: Vec<u8>,
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        let payload_len = 4 + meta.len() + self.body.len();
        let start = out.len();
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        let crc = crc32fast::hash(&out[start + RECORD_HEADER..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let meta_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let meta = payload.get(4..4 + meta_len)?;
        let meta = serde_json::from_slice(meta).ok()?;
        Some(Record {
            meta,
            body: payload.get(4 + meta_len..)?.to_vec(),
        })
    }
}

struct WriteRequest {
    record: Record,
    done: oneshot::Sender<Result<(), String>>,
}

/// The writing side of the spool, shared by every ingest handler.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<WriteRequest>,
    durable: watch::Receiver<Position>,
    stats: Arc<Stats>,
    dir: PathBuf,
}

#[derive(Default)]
struct Stats {
    /// Bytes appended since start plus what was pending at start.
    written: AtomicU64,
    /// Bytes the digest has consumed.
    digested: AtomicU64,
}

impl Spool {
    /// Opens the spool in `dir`, creating it, and starts the writer thread.
    /// Returns the spool and the durable end position feed for readers.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let pending: u64 = segments
            .iter()
            .filter_map(|s| fs::metadata(segment_path(dir, *s)).ok())
            .map(|m| m.len())
            .sum();
        let segment = segments.last().copied().unwrap_or(0) + 1;
        let file = create_segment(dir, segment)?;
        let start = Position { segment, offset: 0 };
        let (durable_tx, durable) = watch::channel(start);
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        stats.written.store(pending, Ordering::Relaxed);
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            position: start,
            durable: durable_tx,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Spool {
            tx,
            durable,
            stats,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends a record and returns once it is on disk.
    pub async fn append(&self, record: Record) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(WriteRequest { record, done })
            .await
            .map_err(|_| SpoolError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SpoolError::Io(io::Error::other(e))),
            Err(_) => Err(SpoolError::Closed),
        }
    }

    /// Bytes accepted but not yet digested.
    pub fn backlog(&self) -> u64 {
        let written = self.stats.written.load(Ordering::Relaxed);
        written.saturating_sub(self.stats.digested.load(Ordering::Relaxed))
    }

    /// Bytes appended since the process started (and pending at start).
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }

    /// A feed of the durable end of the spool, for the digest worker.
    pub fn durable(&self) -> watch::Receiver<Position> {
        self.durable.clone()
    }

    /// Records that the digest consumed `bytes`.
    pub fn mark_digested(&self, bytes: u64) {
        self.stats.digested.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A reader starting at `from` (the digest's saved position).
    pub fn reader(&self, from: Position) -> Reader {
        Reader {
            dir: self.dir.clone(),
            position: from,
            file: None,
            consumed: 0,
        }
    }

    /// Deletes segments entirely before `position` (already digested).
    pub fn remove_before(&self, position: Position) {
        if let Ok(segments) = list_segments(&self.dir) {
            for s in segments.into_iter().filter(|s| *s < position.segment) {
                let _ = fs::remove_file(segment_path(&self.dir, s));
            }
        }
    }

    /// Whether the spool directory accepts writes (for `/_health/`).
    pub fn is_writable(&self) -> bool {
        let probe = self.dir.join(".health");
        fs::write(&probe, b"ok")
            .and_then(|_| fs::remove_file(&probe))
            .is_ok()
            && !self.tx.is_closed()
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    position: Position,
    durable: watch::Sender<Position>,
    stats: Arc<Stats>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = Vec::with_capacity(1 << 20);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            buf.clear();
            for r in &batch {
                r.record.encode(&mut buf);
            }
            let result = self
                .file
                .write_all(&buf)
                .and_then(|_| self.file.sync_data());
            match result {
                Ok(()) => {
                    self.position.offset += buf.len() as u64;
                    self.stats
                        .written
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    self.durable.send_replace(self.position);
                    for r in batch.drain(..) {
                        let _ = r.done.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool write failed");
                    // Whatever part of the batch reached the file is garbage now: start a new
                    // segment so the reader skips it, and fail the whole batch.
                    for r in batch.drain(..) {
                        let _ = r.done.send(Err(e.to_string()));
                    }
                    self.rotate();
                    continue;
                }
            }
            if self.position.offset >= SEGMENT_SIZE {
                self.rotate();
            }
        }
    }

    fn rotate(&mut self) {
        let next = self.position.segment + 1;
        match create_segment(&self.dir, next) {
            Ok(file) => {
                self.file = file;
                self.position = Position {
                    segment: next,
                    offset: 0,
                };
                self.durable.send_replace(self.position);
            }
            Err(e) => tracing::error!(error = %e, "cannot rotate spool segment"),
        }
    }
}

/// Reads records in order from a position up to the durable end.
pub struct Reader {
    dir: PathBuf,
    position: Position,
    file: Option<(u64, File)>,
    consumed: u64,
}

impl Reader {
    /// The position after the last record returned.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Bytes of records read so far (and taken out of the count by [`Reader::take_consumed`]).
    pub fn take_consumed(&mut self) -> u64 {
        std::mem::take(&mut self.consumed)
    }

    /// Reads up to `max` records (and roughly `max_bytes`) that lie before `durable`.
    /// Returns the records with the position after each one.
    pub fn read(
        &mut self,
        durable: Position,
        max: usize,
        max_bytes: usize,
    ) -> io::Result<Vec<(Record, Position)>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max && bytes < max_bytes && self.position < durable {
            let limit = if self.position.segment == durable.segment {
                durable.offset
            } else {
                u64::MAX
            };
            match self.next_record(limit)? {
                Some(record) => {
                    bytes += record.body.len();
                    out.push((record, self.position));
                }
                None if self.position.segment < durable.segment => {
                    // End (or torn tail) of an older segment: go on with the next one.
                    self.advance_segment(durable.segment)?;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn advance_segment(&mut self, last: u64) -> io::Result<()> {
        let next = list_segments(&self.dir)?
            .into_iter()
            .find(|s| *s > self.position.segment)
            .unwrap_or(last)
            .min(last);
        self.position = Position {
            segment: next,
            offset: 0,
        };
        self.file = None;
        Ok(())
    }

    fn next_record(&mut self, limit: u64) -> io::Result<Option<Record>> {
        if self.position.offset + RECORD_HEADER as u64 > limit {
            return Ok(None);
        }
        let file = match &mut self.file {
            Some((seg, f)) if *seg == self.position.segment => f,
            _ => {
                let path = segment_path(&self.dir, self.position.segment);
                let mut f = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                f.seek(SeekFrom::Start(self.position.offset))?;
                &mut self.file.insert((self.position.segment, f)).1
            }
        };
        let mut header = [0u8; RECORD_HEADER];
        if read_full(file, &mut header)? < RECORD_HEADER {
            self.file = None;
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let end = self.position.offset + RECORD_HEADER as u64 + len;
        if end > limit || len > 1 << 31 {
            self.file = None;
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        if read_full(file, &mut payload)? < payload.len() || crc32fast::hash(&payload) != crc {
            tracing::warn!(
                segment = self.position.segment,
                offset = self.position.offset,
                "torn or corrupt spool record; skipping the rest of the segment"
            );
            self.file = None;
            return Ok(None);
        }
        self.position.offset = end;
        self.consumed += RECORD_HEADER as u64 + len;
        match Record::decode(&payload) {
            Some(r) => Ok(Some(r)),
            None => {
                tracing::warn!("undecodable spool record skipped");
                self.next_record(limit)
            }
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.log"))
}

fn create_segment(dir: &Path, segment: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, segment))?;
    // Make the new file's directory entry durable too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record {
            meta: RecordMeta {
                project_id: 1,
                kind: RecordKind::Envelope,
                encoding: None,
                received: 1.0,
                client_ip: None,
                user_agent: None,
                event_id: Some(format!("{i:032x}")),
                params: None,
                replaces: false,
            },
            body: format!("body {i}\nwith newline").into_bytes(),
        }
    }

    #[tokio::test]
    async fn appended_records_are_read_back_in_order_across_restarts() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        for i in 0..10 {
            spool.append(record(i)).await.unwrap();
        }
        let durable = *spool.durable().borrow();
        let mut reader = spool.reader(Position::default());
        let got = reader.read(durable, 4, usize::MAX).unwrap();
        assert_eq!(got.len(), 4);
        let saved = got[3].1;
        assert_eq!(got[0].0.body, b"body 0\nwith newline");
        drop(spool);

        // A second process resumes from the saved position and also sees its own new records.
        let spool = Spool::open(&dir).unwrap();
        spool.append(record(10)).await.unwrap();
        let durable = *spool.durable().borrow();
        let mut reader = spool.reader(saved);
        let got = reader.read(durable, 100, usize::MAX).unwrap();
        let ids: Vec<_> = got
            .iter()
            .map(|(r, _)| r.meta.event_id.clone().unwrap())
            .collect();
        assert_eq!(ids.len(), 7);
        assert_eq!(ids[0], format!("{:032x}", 4));
        assert_eq!(ids[6], format!("{:032x}", 10));
        spool.remove_before(reader.position());
        assert_eq!(list_segments(&dir).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn huge_request_metadata_survives() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        let mut r = record(1);
        r.meta.user_agent = Some("x".repeat(200_000));
        spool.append(r).await.unwrap();
        let durable = *spool.durable().borrow();
        let got = spool
            .reader(Position::default())
            .read(durable, 10, usize::MAX)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0.meta.user_agent.as_ref().map(String::len),
            Some(200_000)
        );
    }

    #[tokio::test]
    async fn a_torn_tail_is_skipped() {
        let dir = tempdir();
        let spool = Spool::open(&dir).unwrap();
        spool.append(record(1)).await.unwrap();
        drop(spool);
        // Simulate a crash in the middle of a write.
        let seg = segment_path(&dir, 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let spool = Spool::open(&dir).unwrap();
        spool.append(record(2)).await.unwrap();
        let durable = *spool.durable().borrow();
        let got = spool
            .reader(Position::default())
            .read(durable, 100, usize::MAX)
            .unwrap();
        let ids: Vec<_> = got.iter().map(|(r, _)| r.meta.event_id.clone()).collect();
        assert_eq!(ids.len(), 2);
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("faultline-spool-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
