//! The issue search language: space-separated terms, all of which must hold.
//!
//! `is:unresolved|resolved|ignored`, `level:error`, `release:1.2`, `environment:prod`, any tag
//! `key:value` (`key:"a b"`, `!key:value`, `value*` prefixes), `has:key`, `firstSeen:-24h`,
//! `lastSeen:-1h`, `times_seen:>10`, `user.email:a@b`, and free text matched against title and
//! culprit.

use crate::store::{IssueFilter, IssueSort};

/// The issue filter of a list request, for the API and the web UI alike: `query` (default
/// `is:unresolved`), `sort` (`date`, `new`, `freq`, `user`), `environment`, `release`, `level`.
pub fn from_params(project_ids: Vec<i64>, q: &[(String, String)], now: f64) -> IssueFilter {
    let mut filter = IssueFilter {
        project_ids,
        sort: sort(super::param(q, "sort")),
        ..Default::default()
    };
    apply(
        super::param(q, "query").unwrap_or("is:unresolved"),
        &mut filter,
        now,
    );
    for (k, v) in q {
        match k.as_str() {
            "environment" | "release" if !v.is_empty() => {
                filter.tags.push((k.clone(), v.clone(), false))
            }
            "level" if !v.is_empty() => filter.levels.push(v.clone()),
            _ => {}
        }
    }
    filter
}

/// `sort=` → the issue order (last seen by default).
pub fn sort(name: Option<&str>) -> IssueSort {
    match name {
        Some("new") => IssueSort::FirstSeen,
        Some("freq") => IssueSort::Events,
        Some("user") => IssueSort::Users,
        _ => IssueSort::LastSeen,
    }
}

/// Applies a query string to a filter. `now` is Unix seconds.
pub fn apply(query: &str, filter: &mut IssueFilter, now: f64) {
    for token in tokenize(query) {
        let (negated, token) = match token.strip_prefix('!') {
            Some(rest) => (true, rest.to_string()),
            None => (false, token),
        };
        let Some((key, value)) = token.split_once(':').filter(|(k, _)| !k.is_empty()) else {
            filter.text.push(token);
            continue;
        };
        let value = value.trim_matches('"').to_string();
        match key {
            "is" => match value.as_str() {
                "unresolved" | "resolved" | "ignored" => filter.statuses.push(value),
                "archived" => filter.statuses.push("ignored".into()),
                _ => {}
            },
            "level" if !negated => filter.levels.push(value),
            "has" => filter.has.push(value),
            "firstSeen" | "first_seen" | "age" => {
                if let Some(secs) = relative(&value) {
                    filter.first_seen_after = Some(now - secs);
                }
            }
            "lastSeen" | "last_seen" => {
                if let Some(secs) = relative(&value) {
                    filter.last_seen_after = Some(now - secs);
                }
            }
            "times_seen" | "timesSeen" => {
                let n = value.trim_start_matches(['>', '=']).parse().ok();
                filter.times_seen_min = n.map(|n: i64| {
                    if value.starts_with(">=") {
                        n
                    } else if value.starts_with('>') {
                        n + 1
                    } else {
                        n
                    }
                });
            }
            "user.ip_address" => filter.tags.push(("user.ip".into(), value, negated)),
            "browser" | "os" | "device" | "runtime"
                if !value.contains(' ') && !value.ends_with('*') =>
            {
                // `browser:Chrome` matches every version of Chrome.
                filter.tags.push((format!("{key}.name"), value, negated));
            }
            _ => filter.tags.push((key.to_string(), value, negated)),
        }
    }
}

/// `-24h`, `-14d`, `-30m`, `-2w` → seconds.
fn relative(v: &str) -> Option<f64> {
    let v = v.trim_start_matches(['-', '+', '>', '<', '=']);
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        "w" => n * 7.0 * 86400.0,
        _ => return None,
    })
}

/// Splits on spaces, keeping `"quoted strings"` together.
fn tokenize(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_search_language() {
        let mut f = IssueFilter::default();
        apply(
            "is:unresolved browser:Safari release:1.2 custom:\"a b\" !env:x has:url timeout error firstSeen:-24h times_seen:>10",
            &mut f,
            100_000.0,
        );
        assert_eq!(f.statuses, ["unresolved"]);
        assert_eq!(
            f.tags,
            [
                ("browser.name".to_string(), "Safari".to_string(), false),
                ("release".to_string(), "1.2".to_string(), false),
                ("custom".to_string(), "a b".to_string(), false),
                ("env".to_string(), "x".to_string(), true),
            ]
        );
        assert_eq!(f.has, ["url"]);
        assert_eq!(f.text, ["timeout", "error"]);
        assert_eq!(f.first_seen_after, Some(100_000.0 - 86400.0));
        assert_eq!(f.times_seen_min, Some(11));
    }
}
