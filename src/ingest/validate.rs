//! Checks an envelope's items before it is spooled: sizes, counts and JSON validity.
//!
//! Only what must be refused synchronously is checked here (so the SDK hears about it with the
//! right status); everything else is normalized later, during digestion.

use serde::Deserialize;
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

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    event_id: Option<Value>,
}

/// Checks that `payload` is a JSON object within the depth limit; returns its `event_id`.
pub fn check_json_event(payload: &[u8], limits: &Limits) -> Result<Option<String>, ApiError> {
    if json_depth(payload) > limits.max_json_depth {
        return Err(
            ApiError::bad_request("invalid JSON data").with_cause(format!(
                "nesting deeper than {} levels",
                limits.max_json_depth
            )),
        );
    }
    let peek: Peek = serde_json::from_slice(payload)
        .map_err(|e| ApiError::bad_request("invalid JSON data").with_cause(e.to_string()))?;
    Ok(peek
        .event_id
        .as_ref()
        .and_then(Value::as_str)
        .and_then(parse_event_id))
}

/// The deepest nesting of arrays and objects in a JSON text (strings are skipped).
pub fn json_depth(data: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in data {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::parse;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a":"[[[{{{","b":[1,[2]]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"\"[["}"#), 1);
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
