//! The tags an event is counted under: its own tags plus those Sentry derives from its fields
//! (`level`, `release`, `browser`, `os`, `user`, `handled`, …), and the key that identifies
//! its user for "users affected".

use std::collections::HashSet;

use serde_json::Value;

use super::grouping::main_exception;

/// Longest tag value, in characters.
const MAX_VALUE: usize = 200;

/// The event's own tags (first occurrence of a key wins), then derived tags for keys the event
/// did not set: `level`, `environment`, `release`, `dist`, `logger`, `server_name`,
/// `transaction`, `url` (without query), `user`, `browser`, `browser.name`, `os`, `os.name`,
/// `device`, `runtime`, `runtime.name`, `handled` (`yes`/`no`), `mechanism`.
///
/// Values are at most 200 characters and contain no newlines; empty values are left out.
pub fn event_tags(event: &Value) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut add = |key: &str, value: Option<&str>, tags: &mut Vec<(String, String)>| {
        if key.is_empty() || seen.contains(key) {
            return;
        }
        if let Some(value) = value.and_then(clean_value) {
            seen.insert(key.to_owned());
            tags.push((key.to_owned(), value));
        }
    };

    match event.get("tags") {
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let Some([k, v]) = pair.as_array().map(Vec::as_slice)
                    && let (Some(k), Some(v)) = (k.as_str(), v.as_str())
                {
                    add(k, Some(v), &mut tags);
                }
            }
        }
        Some(Value::Object(map)) => {
            for (k, v) in map {
                add(k, v.as_str(), &mut tags);
            }
        }
        _ => {}
    }

    let field = |key: &str| event.get(key).and_then(Value::as_str);
    for key in [
        "level",
        "environment",
        "release",
        "dist",
        "logger",
        "server_name",
        "transaction",
    ] {
        add(key, field(key), &mut tags);
    }
    let url = event
        .pointer("/request/url")
        .and_then(Value::as_str)
        .map(|u| u.split(['?', '#']).next().unwrap_or(u));
    add("url", url, &mut tags);
    add("user", user_key(event).as_deref(), &mut tags);

    let context = |name: &str, key: &str| {
        event
            .get("contexts")
            .and_then(|c| c.get(name))
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
    };
    for name in ["browser", "os", "runtime"] {
        let display = context(name, "name").map(|n| match context(name, "version") {
            Some(v) if !v.trim().is_empty() => format!("{n} {v}"),
            _ => n.to_owned(),
        });
        add(name, display.as_deref(), &mut tags);
        add(&format!("{name}.name"), context(name, "name"), &mut tags);
    }
    add(
        "device",
        context("device", "model").or_else(|| context("device", "family")),
        &mut tags,
    );

    if let Some(mechanism) = main_exception(event).and_then(|e| e.get("mechanism")) {
        let handled = match mechanism.get("handled").and_then(Value::as_bool) {
            Some(true) => Some("yes"),
            Some(false) => Some("no"),
            None => None,
        };
        add("handled", handled, &mut tags);
        add(
            "mechanism",
            mechanism.get("type").and_then(Value::as_str),
            &mut tags,
        );
    }
    tags
}

/// The key of the event's user for counting distinct users: `id:…`, else `email:…`, else
/// `username:…`, else `ip:…`; `None` without any of them.
pub fn user_key(event: &Value) -> Option<String> {
    let user = event.get("user")?;
    [
        ("id", "id"),
        ("email", "email"),
        ("username", "username"),
        ("ip_address", "ip"),
    ]
    .into_iter()
    .find_map(|(field, prefix)| {
        let value = match user.get(field)? {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        (!value.is_empty()).then(|| format!("{prefix}:{value}"))
    })
}

/// One value per user field the event has, to search issues by (the keys of
/// [`SEARCH_ONLY`](crate::store::SEARCH_ONLY)).
pub fn search_tags(event: &Value) -> Vec<(String, String)> {
    let Some(user) = event.get("user") else {
        return Vec::new();
    };
    [
        ("id", "user.id"),
        ("email", "user.email"),
        ("username", "user.username"),
        ("ip_address", "user.ip"),
    ]
    .into_iter()
    .filter_map(|(field, key)| {
        let value = match user.get(field)? {
            Value::String(s) => clean_value(s)?,
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some((key.to_string(), value))
    })
    .collect()
}

/// Trimmed, newlines replaced by spaces, cut to 200 characters; `None` when empty.
fn clean_value(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    // Most values: short, on one line.
    if value.len() <= MAX_VALUE && !value.contains(['\n', '\r']) {
        return Some(value.to_owned());
    }
    let mut out: String = value
        .chars()
        .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
        .collect();
    if let Some((cut, _)) = out.char_indices().nth(MAX_VALUE) {
        let keep = out
            .char_indices()
            .nth(MAX_VALUE - 3)
            .map_or(cut, |(i, _)| i);
        out.truncate(keep);
        out.push_str("...");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_field_is_searchable() {
        let event = serde_json::json!({"user": {"id": 7, "email": "a@b.c", "username": " "}});
        assert_eq!(
            search_tags(&event),
            [
                ("user.id".to_string(), "7".to_string()),
                ("user.email".to_string(), "a@b.c".to_string())
            ]
        );
        assert_eq!(user_key(&event).as_deref(), Some("id:7"));
    }

    /// The store searches these keys where digestion writes them only if it knows them all.
    #[test]
    fn search_keys_are_the_ones_the_store_searches_apart() {
        let event = serde_json::json!({"user": {
            "id": "7", "email": "a@b.c", "username": "ada", "ip_address": "10.0.0.1"
        }});
        let keys: Vec<String> = search_tags(&event).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, crate::store::SEARCH_ONLY);
    }
    use serde_json::json;

    fn get<'t>(tags: &'t [(String, String)], key: &str) -> Option<&'t str> {
        tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn own_and_derived_tags() {
        let event = json!({
            "level": "error", "environment": "e2e", "release": "sdk-test@1.0.0", "logger": "app",
            "server_name": "web-1", "transaction": "/checkout",
            "tags": [["customer_tier", "pro"], ["level", "custom"], ["customer_tier", "ignored"]],
            "request": {"url": "http://127.0.0.1:8000/shop"},
            "user": {"id": "user-42", "email": "jane@example.com"},
            "contexts": {
                "browser": {"name": "Chrome", "version": "131.0.6778", "type": "browser"},
                "os": {"name": "Windows", "version": "10", "type": "os"},
                "runtime": {"name": "CPython", "version": "3.11.7"},
                "device": {"family": "iPhone"},
            },
            "exception": {"values": [{"type": "E", "mechanism": {"type": "onerror", "handled": false}}]},
        });
        let tags = event_tags(&event);
        assert_eq!(tags[0], ("customer_tier".to_owned(), "pro".to_owned()));
        assert_eq!(
            get(&tags, "level"),
            Some("custom"),
            "the event's own tag wins"
        );
        assert_eq!(tags.iter().filter(|(k, _)| k == "customer_tier").count(), 1);
        assert_eq!(get(&tags, "environment"), Some("e2e"));
        assert_eq!(get(&tags, "release"), Some("sdk-test@1.0.0"));
        assert_eq!(get(&tags, "logger"), Some("app"));
        assert_eq!(get(&tags, "server_name"), Some("web-1"));
        assert_eq!(get(&tags, "transaction"), Some("/checkout"));
        assert_eq!(get(&tags, "url"), Some("http://127.0.0.1:8000/shop"));
        assert_eq!(get(&tags, "user"), Some("id:user-42"));
        assert_eq!(get(&tags, "browser"), Some("Chrome 131.0.6778"));
        assert_eq!(get(&tags, "browser.name"), Some("Chrome"));
        assert_eq!(get(&tags, "os"), Some("Windows 10"));
        assert_eq!(get(&tags, "os.name"), Some("Windows"));
        assert_eq!(get(&tags, "runtime"), Some("CPython 3.11.7"));
        assert_eq!(get(&tags, "runtime.name"), Some("CPython"));
        assert_eq!(get(&tags, "device"), Some("iPhone"));
        assert_eq!(get(&tags, "handled"), Some("no"));
        assert_eq!(get(&tags, "mechanism"), Some("onerror"));
        assert_eq!(get(&tags, "dist"), None);
    }

    #[test]
    fn values_are_cleaned() {
        let event = json!({
            "tags": {"multi": "a\nb", "long": "é".repeat(300), "blank": "  ", "num": 3,
                     "full": "a".repeat(200), "over": "a".repeat(201), "wide": "é".repeat(150)},
            "request": {"url": "http://x/y?secret=1#frag"},
        });
        let tags = event_tags(&event);
        assert_eq!(get(&tags, "multi"), Some("a b"));
        assert_eq!(get(&tags, "long").map(|v| v.chars().count()), Some(200));
        assert_eq!(get(&tags, "full"), Some("a".repeat(200).as_str()));
        assert_eq!(
            get(&tags, "over"),
            Some(format!("{}...", "a".repeat(197)).as_str())
        );
        assert_eq!(get(&tags, "wide"), Some("é".repeat(150).as_str()));
        assert_eq!(get(&tags, "blank"), None);
        assert_eq!(get(&tags, "num"), None);
        assert_eq!(get(&tags, "url"), Some("http://x/y"));
    }

    #[test]
    fn user_keys() {
        assert_eq!(
            user_key(&json!({"user": {"id": 42, "email": "a@b"}})).as_deref(),
            Some("id:42")
        );
        assert_eq!(
            user_key(&json!({"user": {"email": "a@b", "username": "x"}})).as_deref(),
            Some("email:a@b")
        );
        assert_eq!(
            user_key(&json!({"user": {"username": "x"}})).as_deref(),
            Some("username:x")
        );
        assert_eq!(
            user_key(&json!({"user": {"ip_address": "127.0.0.1"}})).as_deref(),
            Some("ip:127.0.0.1")
        );
        assert_eq!(user_key(&json!({"user": {"id": ""}})), None);
        assert_eq!(user_key(&json!({})), None);
    }
}
