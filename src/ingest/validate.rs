//! Checks an envelope's items before it is spooled: sizes, counts and JSON validity.
//!
//! Only what must be refused synchronously is checked here (so the SDK hears about it with the
//! right status); everything else is normalized later, during digestion.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
/// One pass of the JSON parser does both: values are visited (not built), counting how deep
/// arrays and objects nest.
pub fn check_json_event(payload: &[u8], limits: &Limits) -> Result<Option<String>, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let top = TopLevel {
        depth: Depth {
            left: limits.max_json_depth.saturating_sub(1),
            max: limits.max_json_depth,
        },
    };
    let event_id = top
        .deserialize(&mut de)
        .and_then(|id| de.end().map(|()| id))
        .map_err(|e| ApiError::bad_request("invalid JSON data").with_cause(e.to_string()))?;
    Ok(event_id.as_deref().and_then(parse_event_id))
}

/// Visits one JSON value, failing when arrays and objects nest more than `left` levels below.
#[derive(Clone, Copy)]
struct Depth {
    left: usize,
    /// The limit, for the error message.
    max: usize,
}

impl Depth {
    fn below<E: de::Error>(self) -> Result<Depth, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Depth { left, ..self }),
            None => Err(E::custom(format_args!(
                "nesting deeper than {} levels",
                self.max
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Depth {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Depth {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.below()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.below()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// The event object: its `event_id` if it is a string, every other member checked for depth.
struct TopLevel {
    depth: Depth,
}

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
                map.next_value_seed(self.depth)?;
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
