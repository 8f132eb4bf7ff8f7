//! The Sentry envelope wire format: splitting a request body into its header and items.
//!
//! ```text
//! envelope := header-line ( "\n" item-header-line "\n" payload )* [ "\n" ]
//! ```
//! Each header is a one-line JSON object. An item whose header carries `"length": N` has a payload
//! of exactly N bytes (binary, may contain newlines); without `length` the payload runs to the next
//! newline or the end of the body. Parsing is lenient the way Relay is: unknown header keys and
//! unknown item types are kept, whitespace between items and trailing newlines are ignored.
//! This module does no I/O and knows nothing about HTTP.
//!
//! - [`decode`]: bodies as sent (`Content-Encoding` gzip, deflate, br, zstd), decompressed within
//!   limits.

pub mod decode;

use serde_json::{Map, Value};

/// Why a body is not a valid envelope. Rendered as the `causes` of a 400 answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("empty request body")]
    Empty,
    #[error("invalid envelope header: {0}")]
    InvalidHeader(String),
    #[error("invalid item header: {0}")]
    InvalidItemHeader(String),
    #[error("missing newline after header or payload")]
    MissingNewline,
    #[error("unexpected end of file")]
    UnexpectedEof,
    #[error("too many items in envelope (limit {0})")]
    TooManyItems(usize),
}

/// A parsed envelope borrowing its payloads from the request body.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The envelope header: `event_id`, `dsn`, `sent_at`, `sdk`, `trace`, and anything else.
    pub header: Map<String, Value>,
    pub items: Vec<Item<'a>>,
}

/// One item: its header (with `type`) and its raw payload bytes.
#[derive(Debug)]
pub struct Item<'a> {
    pub header: Map<String, Value>,
    pub payload: &'a [u8],
}

impl Item<'_> {
    /// The item type (`event`, `attachment`, `session`, …); always present after parsing.
    pub fn ty(&self) -> &str {
        self.header
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A string field of the item header.
    pub fn header_str(&self, key: &str) -> Option<&str> {
        self.header.get(key).and_then(Value::as_str)
    }
}

impl Envelope<'_> {
    /// The event id of the envelope header, normalized to 32 lowercase hex digits.
    pub fn event_id(&self) -> Option<String> {
        self.header
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(parse_event_id)
    }

    /// A string field of the envelope header.
    pub fn header_str(&self, key: &str) -> Option<&str> {
        self.header.get(key).and_then(Value::as_str)
    }
}

/// Parses an event id in any UUID form (simple or hyphenated, any case) into 32 lowercase hex.
/// Anything else — including path tricks like `../x` — is rejected.
pub fn parse_event_id(s: &str) -> Option<String> {
    uuid::Uuid::try_parse(s.trim())
        .ok()
        .map(|u| u.simple().to_string())
}

/// Splits `data` into an envelope. `max_items` bounds the number of items.
pub fn parse(data: &[u8], max_items: usize) -> Result<Envelope<'_>, EnvelopeError> {
    if skip_whitespace(data).is_empty() {
        return Err(EnvelopeError::Empty);
    }
    let (header_line, mut rest) = split_line(data);
    let header = parse_object(header_line).map_err(EnvelopeError::InvalidHeader)?;
    let mut items = Vec::new();
    loop {
        rest = skip_whitespace(rest);
        if rest.is_empty() {
            break;
        }
        if items.len() >= max_items {
            return Err(EnvelopeError::TooManyItems(max_items));
        }
        let (line, after) = split_line(rest);
        let header = parse_object(line).map_err(EnvelopeError::InvalidItemHeader)?;
        if !header.get("type").is_some_and(Value::is_string) {
            return Err(EnvelopeError::InvalidItemHeader("missing item type".into()));
        }
        let payload;
        match header.get("length") {
            Some(len) => {
                let len = len.as_u64().ok_or_else(|| {
                    EnvelopeError::InvalidItemHeader("length is not a number".into())
                })?;
                let len = usize::try_from(len).map_err(|_| EnvelopeError::UnexpectedEof)?;
                if after.len() < len {
                    return Err(EnvelopeError::UnexpectedEof);
                }
                payload = &after[..len];
                rest = &after[len..];
                match rest.first() {
                    None => {}
                    Some(b'\n') => rest = &rest[1..],
                    Some(b'\r') if rest.get(1) == Some(&b'\n') => rest = &rest[2..],
                    Some(_) => return Err(EnvelopeError::MissingNewline),
                }
            }
            None => {
                let (line, after) = split_line(after);
                payload = line;
                rest = after;
            }
        }
        items.push(Item { header, payload });
    }
    Ok(Envelope { header, items })
}

/// Returns the bytes up to the first `\n` and the bytes after it.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'\n', data) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn memchr(needle: u8, data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == needle)
}

fn skip_whitespace(data: &[u8]) -> &[u8] {
    let n = data.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &data[n..]
}

fn trim_trailing_whitespace(data: &[u8]) -> &[u8] {
    let n = data
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    &data[..data.len() - n]
}

fn parse_object(line: &[u8]) -> Result<Map<String, Value>, String> {
    let line = trim_trailing_whitespace(line);
    if line.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Serializes an envelope from a header and `(item header, payload)` pairs, with explicit lengths.
pub fn write(header: &Value, items: &[(Value, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, header);
    for (item_header, payload) in items {
        out.push(b'\n');
        let mut h = item_header.clone();
        if let Value::Object(m) = &mut h {
            m.insert("length".into(), Value::from(payload.len()));
        }
        let _ = serde_json::to_writer(&mut out, &h);
        out.push(b'\n');
        out.extend_from_slice(payload);
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &[u8] = b"{\"event_id\":\"0f8a1c2e3d4b4c5d9e6f7a8b9c0d1e2f\",\"sent_at\":\"2026-11-24T10:00:00.123Z\"}
{\"type\":\"event\",\"length\":48,\"content_type\":\"application/json\"}
{\"message\":\"disk almost full\",\"level\":\"warning\"}
{\"type\":\"attachment\",\"length\":5,\"filename\":\"note.txt\",\"content_type\":\"text/plain\"}
hello
{\"type\":\"client_report\"}
{\"timestamp\":1795500000.5,\"discarded_events\":[{\"reason\":\"sample_rate\",\"category\":\"transaction\",\"quantity\":3}]}
";

    #[test]
    fn parses_the_reference_envelope() {
        let env = parse(REFERENCE, 100).unwrap();
        assert_eq!(
            env.event_id().as_deref(),
            Some("0f8a1c2e3d4b4c5d9e6f7a8b9c0d1e2f")
        );
        let types: Vec<_> = env.items.iter().map(Item::ty).collect();
        assert_eq!(types, ["event", "attachment", "client_report"]);
        assert_eq!(env.items[1].payload, b"hello");
        assert!(env.items[2].payload.starts_with(b"{\"timestamp\""));
    }

    #[test]
    fn length_framed_payload_may_contain_newlines() {
        let body = b"{}\n{\"type\":\"attachment\",\"length\":6}\na\nb\r\nc\n{\"type\":\"x\"}\n{}";
        let env = parse(body, 100).unwrap();
        assert_eq!(env.items[0].payload, b"a\nb\r\nc");
        assert_eq!(env.items[1].ty(), "x");
        assert_eq!(env.items[1].payload, b"{}");
    }

    #[test]
    fn no_trailing_newline_and_extra_trailing_newlines_are_fine() {
        let a = parse(b"{}\n{\"type\":\"event\"}\n{\"a\":1}", 10).unwrap();
        let b = parse(b"{}\n{\"type\":\"event\"}\n{\"a\":1}\n\n\n", 10).unwrap();
        assert_eq!(a.items[0].payload, b"{\"a\":1}");
        assert_eq!(b.items[0].payload, b"{\"a\":1}");
    }

    #[test]
    fn a_last_length_framed_payload_may_end_in_whitespace() {
        let env = parse(b"{}\n{\"type\":\"attachment\",\"length\":6}\nhello\n\n", 10).unwrap();
        assert_eq!(env.items[0].payload, b"hello\n");
        let env = parse(b"{}\n{\"type\":\"attachment\",\"length\":6}\nhello\n", 10).unwrap();
        assert_eq!(env.items[0].payload, b"hello\n");
    }

    #[test]
    fn empty_items_and_header_only() {
        let env = parse(b"{\"type\":\"attachment\",\"length\":0}", 10).unwrap();
        assert!(env.items.is_empty());
        let env = parse(b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n", 10).unwrap();
        assert_eq!(env.items.len(), 1);
        assert!(env.items[0].payload.is_empty());
        let env = parse(b"{}\n{\"type\":\"session\"}", 10).unwrap();
        assert!(env.items[0].payload.is_empty());
    }

    #[test]
    fn malformed_envelopes_are_errors_not_panics() {
        assert_eq!(parse(b"", 10).unwrap_err(), EnvelopeError::Empty);
        assert!(matches!(
            parse(b"not json\n", 10),
            Err(EnvelopeError::InvalidHeader(_))
        ));
        assert!(matches!(
            parse(b"{}\n{\"length\":2}\nab", 10),
            Err(EnvelopeError::InvalidItemHeader(_))
        ));
        assert_eq!(
            parse(b"{}\n{\"type\":\"event\",\"length\":10}\nabc", 10).unwrap_err(),
            EnvelopeError::UnexpectedEof
        );
        assert_eq!(
            parse(b"{}\n{\"type\":\"event\",\"length\":1}\nabc", 10).unwrap_err(),
            EnvelopeError::MissingNewline
        );
        assert!(matches!(
            parse(b"{}\n{\"type\":\"event\",\"length\":-1}\nabc", 10),
            Err(EnvelopeError::InvalidItemHeader(_))
        ));
        assert_eq!(
            parse(b"{}\n{\"type\":\"a\"}\n{}\n{\"type\":\"b\"}\n{}", 1).unwrap_err(),
            EnvelopeError::TooManyItems(1)
        );
    }

    #[test]
    fn event_ids_are_normalized_and_path_tricks_rejected() {
        assert_eq!(
            parse_event_id("0F8A1C2E-3D4B-4C5D-9E6F-7A8B9C0D1E2F").as_deref(),
            Some("0f8a1c2e3d4b4c5d9e6f7a8b9c0d1e2f")
        );
        assert_eq!(parse_event_id("../../etc/passwd"), None);
        assert_eq!(parse_event_id(""), None);
    }

    #[test]
    fn parses_what_real_sdks_send() {
        for (name, body) in [
            (
                "python",
                &include_bytes!("../../tests/fixtures/envelopes/python.envelope")[..],
            ),
            (
                "node",
                &include_bytes!("../../tests/fixtures/envelopes/node.envelope")[..],
            ),
            (
                "browser",
                &include_bytes!("../../tests/fixtures/envelopes/browser.envelope")[..],
            ),
        ] {
            let env = parse(body, 100).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(env.event_id().is_some(), "{name}: no event id");
            let event = env
                .items
                .iter()
                .find(|i| i.ty() == "event")
                .expect("an event item");
            let json: Value = serde_json::from_slice(event.payload).unwrap();
            assert!(
                json.get("exception").is_some() || json.get("message").is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn write_round_trips() {
        let header = serde_json::json!({"event_id": "0f8a1c2e3d4b4c5d9e6f7a8b9c0d1e2f"});
        let body = write(
            &header,
            &[(serde_json::json!({"type": "event"}), b"{\"a\":\n1}")],
        );
        let env = parse(&body, 10).unwrap();
        assert_eq!(env.items[0].payload, b"{\"a\":\n1}");
        assert_eq!(env.items[0].header["length"], 8);
    }
}
