//! Checks an envelope's items before it is spooled: sizes, counts and JSON validity.
//!
//! Only what must be refused synchronously is checked here (so the SDK hears about it with the
//! right status); everything else is normalized later, during digestion.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::config::Limits;
use crate::envelope::{Envelope, parse_event_id};
use crate::http::ApiError;

/// Item types whose payload is a JSON event.
const EVENT_TYPES: &[&str] = &["event", "transaction", "feedback", "security"];

/// Item types that belong to an event and make the answer carry its id.
const EVENT_ID_TYPES: &[&str] = &[
    "event",
    "transaction",
    "feedback",
    "attachment",
    "user_report",
];

/// Checks every item; returns the event id the answer carries, if any.
pub fn check_envelope(env: &Envelope, limits: &Limits) -> Result<Option<String>, ApiError> {
    let mut event_id = env.event_id();
    let mut has_event = false;
    let mut attachments = 0usize;
    for item in &env.items {
        let ty = item.ty();
        if EVENT_ID_TYPES.contains(&ty) {
            has_event = true;
        }
        if EVENT_TYPES.contains(&ty) {
            if item.payload.len() > limits.max_event_size {
                return Err(ApiError::too_large(format!(
                    "envelope exceeded size limits for type '{ty}' (max {} bytes)",
                    limits.max_event_size
                )));
            }
            let id = check_json_event(item.payload, limits)?;
            if event_id.is_none() {
                event_id = id;
            }
        } else if ty == "attachment" {
            attachments += 1;
            if item.payload.len() > limits.max_attachment_size {
                return Err(ApiError::too_large(format!(
                    "envelope exceeded size limits for type 'attachment' (max {} bytes)",
                    limits.max_attachment_size
                )));
            }
        } else if matches!(ty, "session" | "sessions" | "client_report" | "user_report")
            && item.payload.len() > limits.max_event_size
        {
            return Err(ApiError::too_large(format!(
                "envelope exceeded size limits for type '{ty}'"
            )));
        }
    }
    if attachments > 100 {
        return Err(ApiError::too_large("too many attachments in envelope"));
    }
    if has_event && event_id.is_none() {
        event_id = Some(uuid::Uuid::new_v4().simple().to_string());
    }
    Ok(if has_event { event_id } else { None })
}

/// Checks that `payload` is a JSON object within the depth limit; returns its `event_id`.
///
/// Three quick passes instead of one slow one: UTF-8, then the JSON parser with every member
/// but `event_id` skipped (checked, not decoded), then the nesting depth on bytes known to be
/// valid JSON.
pub fn check_json_event(payload: &[u8], limits: &Limits) -> Result<Option<String>, ApiError> {
    let invalid = |cause: String| ApiError::bad_request("invalid JSON data").with_cause(cause);
    // The parser skips over strings without decoding them, so it would not see bad UTF-8.
    std::str::from_utf8(payload).map_err(|e| invalid(e.to_string()))?;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let event_id = TopLevel
        .deserialize(&mut de)
        .and_then(|id| de.end().map(|()| id))
        .map_err(|e| invalid(e.to_string()))?;
    if nests_deeper_than(payload, limits.max_json_depth) {
        return Err(invalid(format!(
            "nesting deeper than {} levels",
            limits.max_json_depth
        )));
    }
    Ok(event_id.as_deref().and_then(parse_event_id))
}

/// Whether arrays and objects in `json` (valid JSON) nest more than `max` levels deep.
fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => {
                // Skip the string: to its closing quote, stepping over escaped characters.
                i += 1;
                while let Some(at) = memchr::memchr2(b'"', b'\\', json.get(i..).unwrap_or(&[])) {
                    i += at;
                    if json[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The event object: its `event_id` if it is a string; every other member is skipped.
struct TopLevel;

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut event_id = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "event_id" {
                let v: Value = map.next_value()?;
                if let Value::String(s) = v {
                    event_id = Some(s);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse;

    #[test]
    fn depth_counts_arrays_and_objects_not_brackets_in_strings() {
        let limits = Limits {
            max_json_depth: 3,
            ..Limits::default()
        };
        let ok = br#"{"a":"[[[{{{","b":[1,[2]],"c":{"d":[]},"e":"\"[["}"#;
        assert_eq!(check_json_event(ok, &limits).unwrap(), None);
        let deep = br#"{"b":[1,[2,{"x":1}]]}"#;
        let err = check_json_event(deep, &limits).unwrap_err();
        assert_eq!(err.status, 400);
        // A string that ends in an escaped backslash, then real nesting.
        let ok = br#"{"a":"\\\\","b":[[1]]}"#;
        assert_eq!(check_json_event(ok, &limits).unwrap(), None);
        let deep = br#"{"a":"\\\\","b":[[[1]]]}"#;
        assert_eq!(check_json_event(deep, &limits).unwrap_err().status, 400);
        // Invalid UTF-8 inside a string the parser skips over.
        let bad_utf8 = b"{\"a\":\"\xff\xfe\"}";
        assert_eq!(check_json_event(bad_utf8, &limits).unwrap_err().status, 400);
        // Not an object, or not JSON at all, or something after it.
        for bad in [&b"[1]"[..], b"\"x\"", b"{\"a\":", b"{} {}"] {
            assert_eq!(check_json_event(bad, &limits).unwrap_err().status, 400);
        }
    }

    #[test]
    fn invalid_or_deep_json_is_400_and_big_events_413() {
        let limits = Limits::default();
        let env = parse(b"{}\n{\"type\":\"event\"}\n{not json}", 10).unwrap();
        assert_eq!(check_envelope(&env, &limits).unwrap_err().status, 400);
        let deep = format!(
            "{{}}\n{{\"type\":\"event\"}}\n{}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let env = parse(deep.as_bytes(), 10).unwrap();
        assert_eq!(check_envelope(&env, &limits).unwrap_err().status, 400);
        let big = format!(
            "{{}}\n{{\"type\":\"event\"}}\n{{\"message\":\"{}\"}}",
            "x".repeat(limits.max_event_size)
        );
        let env = parse(big.as_bytes(), 10).unwrap();
        assert_eq!(check_envelope(&env, &limits).unwrap_err().status, 413);
    }

    #[test]
    fn event_id_comes_from_header_then_payload_then_is_generated() {
        let limits = Limits::default();
        let env = parse(
            b"{}\n{\"type\":\"event\"}\n{\"event_id\":\"0F8A1C2E3D4B4C5D9E6F7A8B9C0D1E2F\"}",
            10,
        )
        .unwrap();
        assert_eq!(
            check_envelope(&env, &limits).unwrap().as_deref(),
            Some("0f8a1c2e3d4b4c5d9e6f7a8b9c0d1e2f")
        );
        let env = parse(b"{}\n{\"type\":\"event\"}\n{}", 10).unwrap();
        assert_eq!(check_envelope(&env, &limits).unwrap().unwrap().len(), 32);
        let env = parse(b"{}\n{\"type\":\"session\"}\n{}", 10).unwrap();
        assert_eq!(check_envelope(&env, &limits).unwrap(), None);
    }
}
