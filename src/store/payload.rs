//! Stored event payloads: one zstd frame per event, compressed with its project's trained
//! dictionary once the project has one. The frame names its dictionary (zstd's dictionary ID),
//! so reading needs nothing but the frame and the dictionaries table.
//!
//! Events of one application repeat the same keys, stack frames, source lines and contexts; a
//! dictionary trained on a project's own events lets every event refer to them instead of
//! carrying them (on the benchmark's 18 KB events: 3.9 KB instead of 6.6 KB at the same speed).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

/// zstd level of stored events. Level 1 compresses as fast as the negative (faster) levels on
/// events and makes them ~16 % smaller: fewer pages for the database to write.
pub const LEVEL: i32 = 1;
/// Size of a trained dictionary: larger ones compressed the benchmark's events no better.
pub const DICT_SIZE: usize = 64 * 1024;
/// Largest payload a frame may claim to hold (events are limited far below this).
const MAX_DECOMPRESSED: u64 = 64 << 20;
/// Dictionaries kept prepared per cache (~113 KB each to compress with, ~93 KB to read with, for
/// a 64 KB dictionary at level 1); beyond it the cache starts over: preparing one again costs a
/// database read and well under a millisecond.
const PREPARED: usize = 16;

/// A trained dictionary, prepared for compressing.
pub struct EncoderDict {
    /// The ID that every frame compressed with it carries.
    pub id: u32,
    cdict: CDict<'static>,
}

impl EncoderDict {
    /// Prepares a dictionary; `None` when `data` is not a zstd dictionary with an ID.
    pub fn new(data: &[u8]) -> Option<EncoderDict> {
        let id = zstd_safe::get_dict_id_from_dict(data)?.get();
        let cdict = CDict::try_create(data, LEVEL)?;
        Some(EncoderDict { id, cdict })
    }
}

thread_local! {
    /// One compression context per thread: creating one per event costs more than compressing
    /// a typical event.
    static CCTX: RefCell<Option<CCtx<'static>>> = RefCell::new(CCtx::try_create());
}

/// The stored form of an event's JSON: a zstd frame, with `dict` when the project has one.
pub fn compress(json: &[u8], dict: Option<&EncoderDict>) -> Vec<u8> {
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(json.len()));
    let done = CCTX.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.as_mut()?;
        match dict {
            Some(d) => c.compress_using_cdict(&mut out, json, &d.cdict).ok(),
            None => c.compress(&mut out, json, LEVEL).ok(),
        }
    });
    if done.is_none() {
        out = zstd::bulk::compress(json, LEVEL).unwrap_or_default();
    }
    // The output was sized for the worst case (larger than the input); a batch holds hundreds
    // of these until it is stored, so give the spare room back.
    out.shrink_to_fit();
    out
}

/// The ID of the dictionary a stored payload was compressed with, if any.
pub fn dict_id(frame: &[u8]) -> Option<u32> {
    zstd_safe::get_dict_id_from_frame(frame).map(|id| id.get())
}

/// The JSON of a stored payload. `dict` must be the dictionary [`dict_id`] names (`None` for a
/// frame without one); `None` when the payload is damaged or the dictionary is missing.
pub fn decompress(frame: &[u8], dict: Option<&DDict<'_>>) -> Option<Vec<u8>> {
    match dict {
        None if dict_id(frame).is_none() => zstd::decode_all(frame).ok(),
        None => None,
        Some(d) => {
            let size = zstd_safe::get_frame_content_size(frame).ok()??;
            if size > MAX_DECOMPRESSED {
                return None;
            }
            let mut out = Vec::with_capacity(size as usize);
            DCtx::try_create()?
                .decompress_using_ddict(&mut out, frame, d)
                .ok()?;
            Some(out)
        }
    }
}

/// Trains a dictionary on sample payloads (event JSON): its ID and bytes. `None` when zstd
/// cannot make one of them, for instance from too few or too small samples.
pub fn train(samples: &[Vec<u8>]) -> Option<(u32, Vec<u8>)> {
    let dict = zstd::dict::from_samples(samples, DICT_SIZE).ok()?;
    let id = zstd_safe::get_dict_id_from_dict(&dict)?.get();
    Some((id, dict))
}

/// Dictionaries by ID, prepared (for compressing or for reading), at most [`PREPARED`] of them.
pub struct Prepared<T> {
    map: Mutex<HashMap<u32, Arc<T>>>,
}

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Prepared {
            map: Mutex::default(),
        }
    }
}

impl<T> Prepared<T> {
    /// The dictionary prepared under `id`, if it is.
    pub fn get(&self, id: u32) -> Option<Arc<T>> {
        self.lock().get(&id).cloned()
    }

    /// Keeps `dict` under `id`, starting over when the cache is full.
    pub fn insert(&self, id: u32, dict: T) -> Arc<T> {
        let dict = Arc::new(dict);
        let mut map = self.lock();
        if map.len() >= PREPARED {
            map.clear();
        }
        map.insert(id, dict.clone());
        dict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Dictionaries by ID, prepared for decompressing, loaded on first use.
#[derive(Default)]
pub struct DictCache {
    prepared: Prepared<DDict<'static>>,
}

impl DictCache {
    /// The JSON of a stored payload, loading the dictionary it names with `load` (its bytes by
    /// ID) the first time it is needed.
    pub fn decompress<E>(
        &self,
        frame: &[u8],
        load: impl FnOnce(u32) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        let Some(id) = dict_id(frame) else {
            return Ok(decompress(frame, None));
        };
        let dict = match self.prepared.get(id) {
            Some(d) => d,
            None => {
                let Some(d) = load(id)?.and_then(|data| DDict::try_create(&data)) else {
                    return Ok(None);
                };
                self.prepared.insert(id, d)
            }
        };
        Ok(decompress(frame, Some(&dict)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of one made-up application: the same shape and frames, different values.
    fn samples(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                serde_json::to_vec(&serde_json::json!({
                    "event_id": format!("{:032x}", i * 7919),
                    "level": "error",
                    "exception": {"values": [{"type": "KeyError", "value": format!("'k{i}'"),
                        "stacktrace": {"frames": (0..10).map(|f| serde_json::json!({
                            "filename": format!("app/module_{f}.py"),
                            "function": format!("handler_{}", (f + i) % 12),
                            "lineno": 10 + f * 3 + i % 5,
                            "context_line": format!("    result = compute_{f}(request, {i})"),
                        })).collect::<Vec<_>>()}}]},
                    "user": {"id": format!("user-{}", i % 17)},
                    "tags": {"worker": format!("w{}", i % 3)},
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_trained_dictionary_shrinks_events_and_reads_back() {
        let all = samples(400);
        let (train_on, rest) = all.split_at(300);
        let (id, data) = train(train_on).expect("a dictionary");
        let dict = EncoderDict::new(&data).expect("prepared");
        assert_eq!(dict.id, id);
        let cache = DictCache::default();
        let mut loads = 0;
        for json in rest {
            let plain = compress(json, None);
            let with = compress(json, Some(&dict));
            assert!(
                with.len() < plain.len(),
                "{} vs {}",
                with.len(),
                plain.len()
            );
            assert_eq!(dict_id(&with), Some(dict.id));
            assert_eq!(dict_id(&plain), None);
            let back = cache.decompress(&with, |id| {
                assert_eq!(id, dict.id);
                loads += 1;
                Ok::<_, ()>(Some(data.clone()))
            });
            assert_eq!(back, Ok(Some(json.clone())));
            assert_eq!(decompress(&plain, None).as_ref(), Some(json));
        }
        assert_eq!(loads, 1, "the dictionary is loaded once");
    }

    #[test]
    fn a_full_cache_of_prepared_dictionaries_starts_over() {
        let cache = Prepared::default();
        for id in 0..PREPARED as u32 {
            cache.insert(id, id * 10);
        }
        assert_eq!(cache.get(3).as_deref(), Some(&30));
        assert_eq!(*cache.insert(99, 990), 990);
        assert_eq!(cache.get(3), None, "the full cache was emptied");
        assert_eq!(cache.get(99).as_deref(), Some(&990));
    }

    #[test]
    fn a_missing_or_damaged_dictionary_reads_as_nothing() {
        let all = samples(300);
        let (_, data) = train(&all).expect("a dictionary");
        let dict = EncoderDict::new(&data).expect("prepared");
        let frame = compress(&all[0], Some(&dict));
        assert_eq!(decompress(&frame, None), None);
        let cache = DictCache::default();
        assert_eq!(cache.decompress(&frame, |_| Ok::<_, ()>(None)), Ok(None));
        let cache = DictCache::default();
        assert_eq!(
            cache.decompress(&frame, |_| Ok::<_, ()>(Some(b"not a dictionary".to_vec()))),
            Ok(None)
        );
        assert_eq!(
            cache.decompress(&frame[..10], |_| Ok::<_, ()>(None)),
            Ok(None)
        );
        assert_eq!(
            train(&all[..2]),
            None,
            "two small samples make no dictionary"
        );
    }
}
