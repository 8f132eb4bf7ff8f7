//! Browser, operating system and device family read from a `User-Agent` header (via `woothee`).
//!
//! Names follow what Sentry shows (`Chrome`, `Firefox`, `Safari`, `Edge`, `Opera`; `Windows`,
//! `Mac OS X`, `Linux`, `iOS`, `Android`), versions are cut to `major.minor.patch`. Anything
//! woothee cannot tell (`UNKNOWN`, crawlers it only knows as "misc") is left out rather than
//! reported as `Other`.

use std::sync::LazyLock;

use regex::Regex;
use woothee::parser::Parser;

/// What a `User-Agent` header says about the client. Every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgent {
    /// Browser name and version, e.g. `("Chrome", Some("131.0.6778"))`.
    pub browser: Option<(String, Option<String>)>,
    /// Operating system name and version, e.g. `("Windows", Some("10"))`.
    pub os: Option<(String, Option<String>)>,
    /// Device family, e.g. `iPhone`, `iPad`, `Mac`, or an Android model such as `Pixel 8`.
    pub device: Option<String>,
}

/// woothee's marker for "could not tell".
const UNKNOWN: &str = "UNKNOWN";

/// Longest header we look at; real ones are a few hundred bytes.
const MAX_LEN: usize = 1024;

/// The Android device model: `Android 14; Pixel 8)` or `Android 10; SM-G973F Build/QP1A…)`.
static ANDROID_MODEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Android[ -][0-9.]+;(?: [a-zA-Z]{2}[-_][a-zA-Z]{2};)? ([^;)]+?)(?: Build/[^;)]*)?\)",
    )
    .expect("static regex")
});

/// Headers parsed lately: the same few browsers send most events, and woothee's parse was ~1 %
/// of the server's CPU under load. At most this many (of at most [`MAX_LEN`] bytes each).
const CACHED: usize = 1024;

static PARSED: LazyLock<quick_cache::sync::Cache<String, UserAgent>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(CACHED));

/// Parses a `User-Agent` header. Never fails: unknown agents give an empty [`UserAgent`].
pub fn parse(ua: &str) -> UserAgent {
    let ua = ua.trim();
    let ua = truncate_at_char(ua, MAX_LEN);
    if let Some(known) = PARSED.get(ua) {
        return known;
    }
    let parsed = parse_uncached(ua);
    PARSED.insert(ua.to_owned(), parsed.clone());
    parsed
}

fn parse_uncached(ua: &str) -> UserAgent {
    let mut out = UserAgent::default();
    if ua.is_empty() {
        return out;
    }
    let Some(result) = Parser::new().parse(ua) else {
        return out;
    };

    if result.browser_type == "browser" && result.name != UNKNOWN {
        out.browser = Some((
            browser_name(result.name).to_owned(),
            version(result.version),
        ));
    } else if result.category == "crawler" && !result.name.starts_with("misc") {
        out.browser = Some((result.name.to_owned(), None));
    }

    let os_version = result.os_version.as_ref();
    out.os = os(result.os, os_version);

    out.device = match result.os {
        "iPhone" | "iPad" | "iPod" => Some(result.os.to_owned()),
        "Mac OSX" => Some("Mac".to_owned()),
        "Android" => ANDROID_MODEL
            .captures(ua)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().trim())
            // Chrome's reduced User-Agent says `K` instead of the model.
            .filter(|m| !m.is_empty() && *m != "K" && !m.eq_ignore_ascii_case("Mobile"))
            .map(str::to_owned),
        _ => None,
    };
    out
}

/// Sentry-like browser names for woothee's.
fn browser_name(name: &str) -> &str {
    match name {
        "Internet Explorer" => "IE",
        "SamsungBrowser" => "Samsung Internet",
        "Webview" => "WebView",
        other => other,
    }
}

/// Operating system name and version from woothee's `os` and `os_version`.
fn os(name: &str, raw_version: &str) -> Option<(String, Option<String>)> {
    let known_version = (raw_version != UNKNOWN).then_some(raw_version);
    let (name, version) = match name {
        UNKNOWN | "" => return None,
        "Windows UNKNOWN Ver" => ("Windows", None),
        "Windows Phone OS" => ("Windows Phone", known_version.and_then(version)),
        "Mac OSX" => ("Mac OS X", known_version.and_then(version)),
        "Mac OS Classic" => ("Mac OS", None),
        "iPhone" | "iPad" | "iPod" | "iOS" => ("iOS", known_version.and_then(version)),
        "ChromeOS" => ("Chrome OS", known_version.and_then(version)),
        windows if windows.starts_with("Windows ") => {
            // "Windows 10", "Windows 8.1", "Windows XP": the version is in the name.
            let v = windows.trim_start_matches("Windows ").trim();
            ("Windows", (!v.is_empty()).then(|| v.to_owned()))
        }
        other => (other, known_version.and_then(version)),
    };
    Some((name.to_owned(), version))
}

/// `131.0.6778.33` → `131.0.6778`; `17_1_2` → `17.1.2`; nothing numeric → `None`.
fn version(raw: &str) -> Option<String> {
    if raw == UNKNOWN {
        return None;
    }
    let parts: Vec<&str> = raw
        .split(['.', '_'])
        .take(3)
        .take_while(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, version: Option<&str>) -> Option<(String, Option<String>)> {
        Some((name.to_owned(), version.map(str::to_owned)))
    }

    #[test]
    fn a_header_seen_before_gives_the_same_answer() {
        let ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
                  (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
        let first = parse(ua);
        assert_eq!(first.device.as_deref(), Some("iPhone"));
        assert_eq!(parse(ua), first);
        // Surrounding space does not make it another header.
        assert_eq!(parse(&format!("  {ua} ")), first);
        assert_eq!(parse(""), UserAgent::default());
    }

    #[test]
    fn headless_chrome_is_chrome_with_a_version() {
        let ua = parse(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             HeadlessChrome/131.0.6778.33 Safari/537.36",
        );
        assert_eq!(ua.browser, pair("Chrome", Some("131.0.6778")));
        assert_eq!(ua.os, pair("Linux", None));
        assert_eq!(ua.device, None);
    }

    #[test]
    fn desktop_browsers() {
        let edge = parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        );
        assert_eq!(edge.browser, pair("Edge", Some("120.0.2210")));
        assert_eq!(edge.os, pair("Windows", Some("10")));

        let firefox = parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        );
        assert_eq!(firefox.browser, pair("Firefox", Some("121.0")));

        let safari = parse(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like \
             Gecko) Version/17.1 Safari/605.1.15",
        );
        assert_eq!(safari.browser, pair("Safari", Some("17.1")));
        assert_eq!(safari.os, pair("Mac OS X", Some("10.15.7")));
        assert_eq!(safari.device.as_deref(), Some("Mac"));

        let opera = parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
        );
        assert_eq!(opera.browser, pair("Opera", Some("106.0.0")));
    }

    #[test]
    fn mobile_devices() {
        let iphone = parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(iphone.os, pair("iOS", Some("17.1.2")));
        assert_eq!(iphone.device.as_deref(), Some("iPhone"));

        let pixel = parse(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.6099.144 Mobile Safari/537.36",
        );
        assert_eq!(pixel.browser, pair("Chrome", Some("120.0.6099")));
        assert_eq!(pixel.os, pair("Android", Some("14")));
        assert_eq!(pixel.device.as_deref(), Some("Pixel 8"));

        let reduced = parse(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Mobile Safari/537.36",
        );
        assert_eq!(reduced.device, None);
    }

    #[test]
    fn unknown_and_hostile_agents_give_nothing() {
        assert_eq!(parse(""), UserAgent::default());
        assert_eq!(parse("python-requests/2.31.0"), UserAgent::default());
        let curl = parse("curl/8.4.0");
        assert_eq!(curl.browser, None);
        assert_eq!(curl.os, None);
        // Long, odd and multi-byte input must not panic.
        let long = "é".repeat(5000);
        assert_eq!(parse(&long), UserAgent::default());
        let _ = parse("Mozilla/5.0 (Linux; Android 14; \u{0}) Chrome/x");
    }

    #[test]
    fn versions_are_cut_to_three_numeric_parts() {
        assert_eq!(version("131.0.6778.33").as_deref(), Some("131.0.6778"));
        assert_eq!(version("17_1_2").as_deref(), Some("17.1.2"));
        assert_eq!(version("121.0").as_deref(), Some("121.0"));
        assert_eq!(version("UNKNOWN"), None);
        assert_eq!(version("curl"), None);
        assert_eq!(version("10.x").as_deref(), Some("10"));
    }
}
