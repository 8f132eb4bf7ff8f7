//! Request bodies: `Content-Encoding` decompression within limits.
//!
//! Limits apply to the decompressed bytes, read incrementally, so a decompression bomb costs at
//! most the cap in memory before it is refused with 413.

use std::borrow::Cow;
use std::io::Read;

use crate::config::{Limits, MIB};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unsupported content encoding {0:?}")]
    Unsupported(String),
    #[error("invalid request body: corrupt {0} data")]
    Corrupt(&'static str),
    #[error("decompressed body exceeds the limit of {0} bytes")]
    TooLarge(usize),
}

/// Decodes `body` according to `encoding` (a `Content-Encoding` header value).
pub fn decode<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limits: &Limits,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let hint = body.len().saturating_mul(4);
    let cap = limits
        .max_envelope_size
        .min(MIB.max(body.len().saturating_mul(limits.max_compression_ratio)));
    match encoding.as_deref() {
        None | Some("") | Some("identity") | Some("utf-8") => {
            if body.len() > limits.max_envelope_size {
                return Err(DecodeError::TooLarge(limits.max_envelope_size));
            }
            Ok(Cow::Borrowed(body))
        }
        Some("gzip") | Some("x-gzip") => match gunzip_single_member(body, cap) {
            Some(result) => result.map(Cow::Owned),
            // The body is in memory: the `bufread` decoders read it in place (the `read` ones
            // copy it through a buffer of their own first).
            None => read_capped(
                flate2::bufread::MultiGzDecoder::new(body),
                hint,
                cap,
                "gzip",
            )
            .map(Cow::Owned),
        },
        Some("deflate") => {
            // RFC 9110 says zlib-wrapped; some clients send raw deflate. Try both.
            match read_capped(
                flate2::bufread::ZlibDecoder::new(body),
                hint,
                cap,
                "deflate",
            ) {
                Err(DecodeError::Corrupt(_)) => read_capped(
                    flate2::bufread::DeflateDecoder::new(body),
                    hint,
                    cap,
                    "deflate",
                )
                .map(Cow::Owned),
                other => other.map(Cow::Owned),
            }
        }
        Some("br") => {
            read_capped(brotli::Decompressor::new(body, 4096), hint, cap, "brotli").map(Cow::Owned)
        }
        Some("zstd") => {
            let mut decoder =
                zstd::stream::read::Decoder::new(body).map_err(|_| DecodeError::Corrupt("zstd"))?;
            // Refuse frames that ask for windows over 128 MiB of memory.
            decoder
                .window_log_max(27)
                .map_err(|_| DecodeError::Corrupt("zstd"))?;
            read_capped(decoder, hint, cap, "zstd").map(Cow::Owned)
        }
        Some(other) => Err(DecodeError::Unsupported(other.to_string())),
    }
}

thread_local! {
    /// libdeflate's state, reused by every body this thread inflates.
    static GUNZIP: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

/// The gzip member that every SDK sends, inflated in one call with libdeflate (about twice as
/// fast as a streaming decoder): the output buffer is sized from the size the gzip trailer
/// states, capped at `cap`. `None` when the body may hold several members (the gzip magic
/// appears again after the first byte, in about 1 of 2,700 ordinary 6 KB bodies): those take
/// the streaming decoder, which reads every member.
fn gunzip_single_member(body: &[u8], cap: usize) -> Option<Result<Vec<u8>, DecodeError>> {
    const MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
    if body.len() < 18
        || !body.starts_with(MAGIC)
        || memchr::memmem::find(&body[1..], MAGIC).is_some()
    {
        return None;
    }
    let trailer: [u8; 4] = body[body.len() - 4..].try_into().ok()?;
    let stated = u32::from_le_bytes(trailer) as usize;
    let mut out = vec![0u8; stated.min(cap)];
    let result = GUNZIP.with(|d| d.borrow_mut().gzip_decompress(body, &mut out));
    Some(match result {
        Ok(n) => {
            out.truncate(n);
            Ok(out)
        }
        // More than the cap: a bomb. Otherwise the trailer understated the size, which
        // libdeflate would have refused as corrupt after inflating.
        Err(libdeflater::DecompressionError::InsufficientSpace) if stated >= cap => {
            Err(DecodeError::TooLarge(cap))
        }
        Err(_) => Err(DecodeError::Corrupt("gzip")),
    })
}

fn read_capped(
    reader: impl Read,
    hint: usize,
    cap: usize,
    kind: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    // Room for a typical ratio up front saves growing (and copying) the buffer several times.
    let mut out = Vec::with_capacity(hint.min(cap).min(MIB));
    let mut limited = reader.take(cap as u64 + 1);
    limited
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt(kind))?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge(cap));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_encoding_round_trips() {
        let limits = Limits::default();
        let data = b"{\"hello\":\"world\"}".repeat(100);
        assert_eq!(
            &*decode(Some("gzip"), &gzip(&data), &limits).unwrap(),
            &data[..]
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        assert_eq!(
            &*decode(Some("deflate"), &z.finish().unwrap(), &limits).unwrap(),
            &data[..]
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(&data).unwrap();
        assert_eq!(
            &*decode(Some("deflate"), &d.finish().unwrap(), &limits).unwrap(),
            &data[..]
        );
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(&data)
            .unwrap();
        assert_eq!(&*decode(Some("br"), &br, &limits).unwrap(), &data[..]);
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(&*decode(Some("zstd"), &zs, &limits).unwrap(), &data[..]);
        assert_eq!(&*decode(None, &data, &limits).unwrap(), &data[..]);
    }

    #[test]
    fn gzip_bodies_of_several_members_or_a_wrong_trailer() {
        let limits = Limits::default();
        // Several members: all of them, in order.
        let mut two = gzip(b"{\"a\":");
        two.extend(gzip(b"1}"));
        assert_eq!(&*decode(Some("gzip"), &two, &limits).unwrap(), b"{\"a\":1}");
        // A trailer that understates the size is corrupt data, not a short body.
        let mut lying = gzip(&b"x".repeat(10_000));
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            decode(Some("gzip"), &lying, &limits).unwrap_err(),
            DecodeError::Corrupt("gzip")
        );
        // One that overstates it gets a larger buffer, then fails libdeflate's size check.
        let mut big = gzip(b"{}");
        let n = big.len();
        big[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(Some("gzip"), &big, &limits).unwrap_err(),
            DecodeError::Corrupt("gzip")
        );
        // A bomb whose trailer hides its size is refused as corrupt once it outgrows the
        // buffer that trailer asked for, without inflating the rest.
        let mut hidden = gzip(&vec![0u8; 50 * MIB]);
        let n = hidden.len();
        hidden[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            decode(Some("gzip"), &hidden, &limits).unwrap_err(),
            DecodeError::Corrupt("gzip")
        );
    }

    #[test]
    fn bombs_corrupt_data_and_unknown_encodings_are_refused() {
        let limits = Limits::default();
        let bomb = gzip(&vec![0u8; 50 * MIB]);
        assert!(matches!(
            decode(Some("gzip"), &bomb, &limits),
            Err(DecodeError::TooLarge(_))
        ));
        assert_eq!(
            decode(Some("gzip"), b"not gzip", &limits).unwrap_err(),
            DecodeError::Corrupt("gzip")
        );
        assert!(matches!(
            decode(Some("compress"), b"x", &limits),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
