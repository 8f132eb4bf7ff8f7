//! Message parameterization: replace the variable parts of a message (numbers, ids, dates, …)
//! with `<kind>` placeholders so that `Order 991 stuck` and `Order 992 stuck` group together.
//!
//! Follows Sentry's `grouping/parameterization.py`: the message is cut to its first two
//! non-empty lines, then one left-to-right pass replaces, at each position, the first kind in
//! this order that matches there: email, url, hostname, ip, uuid, sha1, md5, date, duration,
//! hex, float, int, quoted string and bool (the last two only as the value of `key=value`).
//!
//! Rust's `regex` has no look-around, so each kind is its own regex and the look-arounds Sentry
//! uses are checked on the match (`Kind::accept`); a rejected match is retried one character
//! later, which is what a backtracking engine does at that position.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Replaces the variable parts of `message` with placeholders (`<int>`, `<date>`, `<uuid>`, …).
///
/// Returns the input unchanged (borrowed) when there is nothing to cut or replace.
pub fn parameterize(message: &str) -> Cow<'_, str> {
    let trimmed = first_two_lines(message);
    if !may_have_parameters(&trimmed) {
        return trimmed;
    }
    match replace_all(&trimmed) {
        Some(replaced) => Cow::Owned(replaced),
        None => trimmed,
    }
}

/// The first two non-empty lines, trimmed and joined by `\n`; `...` is appended when more
/// non-empty lines followed.
fn first_two_lines(message: &str) -> Cow<'_, str> {
    let mut lines = message.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Cow::Borrowed("");
    };
    let Some(second) = lines.next() else {
        return Cow::Borrowed(first.trim());
    };
    let mut out = String::with_capacity(first.len() + second.len() + 4);
    out.push_str(first.trim());
    out.push('\n');
    out.push_str(second.trim());
    if lines.next().is_some() {
        out.push_str("...");
    }
    Cow::Owned(out)
}

/// Fast path: every kind needs a digit, `@`, `:`, `.`, a quote or `=` somewhere.
fn may_have_parameters(s: &str) -> bool {
    s.bytes()
        .any(|b| b.is_ascii_digit() || matches!(b, b'@' | b':' | b'.' | b'\'' | b'"' | b'='))
}

/// One kind of parameter: its placeholder, its regex and the check standing in for the
/// look-arounds Sentry's regex has.
struct Kind {
    placeholder: &'static str,
    re: Regex,
    accept: Accept,
}

/// How a raw regex match is turned into an accepted span (or rejected).
enum Accept {
    /// Every match counts.
    Always,
    /// The match must not follow an ASCII letter, digit or `_` (IPv6: `(?<![0-9a-zA-Z_])`);
    /// the regex consumed one trailing non-alphanumeric character (its look-ahead), which
    /// capture group 1 excludes.
    Ipv6,
    /// Kitchen clock times: not after a digit; group 1 is the time, group 2 an AM/PM suffix
    /// (both before the consumed look-ahead character).
    Clock,
    /// Hex without prefix: must contain a digit.
    HasDigit,
    /// A leading `-` counts as a minus sign only if not preceded by a word character.
    SignedNumber,
    /// Must directly follow `=`.
    AfterEquals,
}

const MONTHS: &str = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec";
const DAYS: &str = "Sun|Mon|Tue|Wed|Thu|Fri|Sat";
const ZONES: &str = "UT|GMT|[ECMP][SD]T|[A-IK-Z]";

/// The kinds in priority order (earlier wins when two match at the same position).
static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    let b = r"(?-u:\b)";
    let octet = r"(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])";
    let ipv4 = format!(r"(?:{octet}\.){{3}}{octet}");
    let h = "[0-9a-fA-F]{1,4}";
    // Forms with an embedded IPv4 address and zone ids first, then the full form, then `::`
    // compression with greedy sides (so the longest address wins; the group count is checked in
    // `Accept::Ipv6`).
    let ipv6 = [
        format!("::(?:ffff(?::0{{1,4}})?:)?{ipv4}"),
        format!("(?:{h}:){{1,4}}:{ipv4}{b}"),
        "fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]+".to_owned(),
        format!("(?:{h}:){{7}}{h}"),
        format!("(?:{h}(?::{h}){{0,6}})?::(?:{h}(?::{h}){{0,6}})?"),
    ]
    .join("|");
    let tlds = "com|net|org|jp|de|uk|fr|br|it|ru|es|me|gov|pl|ca|au|cn|co|in|nl|edu|info|eu|ch|\
                id|at|kr|cz|mx|be|tv|se|tr|tw|al|ua|ir|vn|cl|sk|ly|cc|to|no|fi|us|pt|dk|ar|hu|tk|\
                gr|il|news|ro|my|biz|ie|za|nz|sg|ee|th|io|xyz|pe|bg|hk|rs|lt|link|ph|club|si|site|\
                mobi|by|cat|wiki|la|ga|xxx|cf|hr|ng|jobs|online|kz|ug|gq|ae|is|lv|pro|fm|tips|ms|\
                sa|app";
    let upper_tlds = tlds.to_uppercase();

    let dates_first = [
        // RFC 822 / 1123: `Mon, 02 Jan 2006 15:04:05 -0700`
        format!(
            r"(?:{DAYS}),\s[0-9]{{1,2}}\s(?:{MONTHS})\s[0-9]{{2,4}}\s[0-9]{{1,2}}:[0-9]{{1,2}}(?::[0-9]{{1,2}})?\s(?:[-+][0-9]{{2}}[0-5][0-9]|{ZONES})"
        ),
        // `Mon Jan 02, 1999`, `Jan 02, 1999`
        format!(r"(?:(?:{DAYS})\s)?(?:{MONTHS})\s[0-3][0-9],\s[0-9]{{2,4}}"),
        // RFC 850: `Monday, 02-Jan-06 15:04:05 MST`
        format!(
            r"(?:Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|{DAYS}),\s[0-9]{{2}}-(?:{MONTHS})-[0-9]{{2}}\s[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\s(?:{ZONES})"
        ),
        // RFC 3339 (with optional fraction and zone)
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?(?:[+-]?[0-9]{2}:[0-9]{2})?".to_owned(),
        // JavaScript `Date.toString()`
        format!(
            r"(?:{DAYS})\s(?:{MONTHS})\s[0-9]{{2}}\s[0-9]{{4}}\s[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\sGMT[+-][0-9]{{4}}(?:\s\([^)]+\))?"
        ),
        // ISO-like date time, with or without seconds, fraction and zone
        r"[0-9]{4}-?[01][0-9]-?[0-3][0-9][\sT][0-2][0-9]:?[0-5][0-9](?::?[0-5][0-9](?:\.[0-9]+)?)?(?:[+-][0-2][0-9]:?[0-5][0-9]|Z)?".to_owned(),
    ]
    .join("|");
    let dates_rest = [
        // Date, time
        r"[0-9]{4}-[01][0-9]-[0-3][0-9]".to_owned(),
        r"[0-2][0-9]:[0-5][0-9]:[0-5][0-9]".to_owned(),
        // `Jan 2 15:04:05 2006`
        format!(
            r"{b}(?:(?:{DAYS})\s+)?(?:{MONTHS})\s+[0-9]{{1,2}}\s+[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}\s+[0-9]{{4}}"
        ),
        // `Mon, 2 Jan 2006 15:04 +0000`
        format!(
            r"{b}(?:(?:{DAYS}),\s+)?(?:0[1-9]|[1-2]?[0-9]|3[01])\s+(?:{MONTHS})\s+(?:19[0-9]{{2}}|[2-9][0-9]{{3}})\s+(?:2[0-3]|[01][0-9]):[0-5][0-9](?::(?:60|[0-5][0-9]))?\s+(?:[-+][0-9]{{2}}[0-5][0-9]|{ZONES})"
        ),
        // Python reprs
        r"datetime\.datetime\([^)]*\)".to_owned(),
    ]
    .join("|");

    let kinds: Vec<(&'static str, String, Accept)> = vec![
        (
            "<email>",
            r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*".to_owned(),
            Accept::Always,
        ),
        (
            "<url>",
            format!(r"{b}(?:wss?|https?|ftp)://[^\s/$.?#].\S*"),
            Accept::Always,
        ),
        (
            "<hostname>",
            format!(r"{b}(?:[a-zA-Z0-9-]{{1,63}}\.)+?(?:{upper_tlds}|{tlds}){b}"),
            Accept::Always,
        ),
        ("<ip>", format!(r"({ipv6})(?:[^0-9a-zA-Z]|$)"), Accept::Ipv6),
        ("<ip>", format!(r"{b}{ipv4}{b}"), Accept::Always),
        (
            "<uuid>",
            format!(
                r"{b}[0-9a-fA-F]{{8}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{4}}-[0-9a-fA-F]{{12}}{b}"
            ),
            Accept::Always,
        ),
        (
            "<sha1>",
            format!(r"{b}[0-9a-fA-F]{{40}}{b}"),
            Accept::Always,
        ),
        ("<md5>", format!(r"{b}[0-9a-fA-F]{{32}}{b}"), Accept::Always),
        ("<date>", dates_first, Accept::Always),
        // Kitchen clocks, 12 h (with AM/PM) then 24 h.
        (
            "<date>",
            r"((?:1[0-2]|[1-9]):[0-5][0-9](?::[0-5][0-9])?)(?:(\s?[aApP][mM])|[^0-9:]|$)"
                .to_owned(),
            Accept::Clock,
        ),
        (
            "<date>",
            r"((?:2[0-3]|1[0-9]|0?[0-9]):[0-5][0-9](?::[0-5][0-9])?)()(?:[^0-9:]|$)".to_owned(),
            Accept::Clock,
        ),
        ("<date>", dates_rest, Accept::Always),
        (
            "<duration>",
            format!(r"{b}[0-9]+ms{b}|{b}[0-9]+(?:\.[0-9]+)?s{b}"),
            Accept::Always,
        ),
        ("<hex>", format!(r"{b}0[xX][0-9a-fA-F]+{b}"), Accept::Always),
        (
            "<hex>",
            format!(r"{b}(?:[0-9a-f]{{8,128}}|[0-9A-F]{{8,128}}){b}"),
            Accept::HasDigit,
        ),
        (
            "<float>",
            format!(r"(?:-|{b})[0-9]+\.[0-9]+{b}"),
            Accept::SignedNumber,
        ),
        // Eight digits and more are <hex> above.
        (
            "<int>",
            format!(r"(?:-|{b})[0-9]{{1,7}}{b}"),
            Accept::SignedNumber,
        ),
        (
            "<quoted_str>",
            r#"'[^']+'|"[^"]+""#.to_owned(),
            Accept::AfterEquals,
        ),
        (
            "<bool>",
            format!(r"(?:True|true|False|false){b}"),
            Accept::AfterEquals,
        ),
    ];
    kinds
        .into_iter()
        .map(|(placeholder, pattern, accept)| Kind {
            placeholder,
            re: Regex::new(&pattern).expect("static parameterization regex"),
            accept,
        })
        .collect()
});

impl Kind {
    /// The first accepted match starting at or after `pos`, as a byte span.
    fn next_match(&self, text: &str, mut pos: usize) -> Option<(usize, usize)> {
        while pos <= text.len() {
            let (start, span) = match self.accept {
                Accept::Always => {
                    let m = self.re.find_at(text, pos)?;
                    (m.start(), Some((m.start(), m.end())))
                }
                Accept::Ipv6 | Accept::Clock => {
                    let caps = self.re.captures_at(text, pos)?;
                    let start = caps.get(0)?.start();
                    (start, self.check_captures(text, &caps))
                }
                Accept::HasDigit | Accept::SignedNumber | Accept::AfterEquals => {
                    let m = self.re.find_at(text, pos)?;
                    let ok = match self.accept {
                        Accept::HasDigit => m.as_str().bytes().any(|b| b.is_ascii_digit()),
                        Accept::SignedNumber => {
                            !m.as_str().starts_with('-') || !follows_word_char(text, m.start())
                        }
                        _ => text[..m.start()].ends_with('='),
                    };
                    (m.start(), ok.then_some((m.start(), m.end())))
                }
            };
            if let Some(span) = span {
                return Some(span);
            }
            pos = next_char_boundary(text, start);
        }
        None
    }

    fn check_captures(&self, text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
        let main = caps.get(1)?;
        match self.accept {
            Accept::Ipv6 => {
                let before = text[..main.start()].chars().next_back();
                let bad = before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                // An address has at most eight groups, and `::` stands for at least one.
                let groups = main.as_str().split(':').filter(|g| !g.is_empty()).count();
                let too_many =
                    main.as_str().contains("::") && !main.as_str().contains('.') && groups > 7;
                (!bad && !too_many).then_some((main.start(), main.end()))
            }
            Accept::Clock => {
                if text[..main.start()].ends_with(|c: char| c.is_ascii_digit()) {
                    return None;
                }
                let end = caps.get(2).map_or(main.end(), |m| m.end().max(main.end()));
                Some((main.start(), end))
            }
            _ => None,
        }
    }
}

/// Whether the character before byte `at` is a word character (`\w`).
fn follows_word_char(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The byte index of the character after the one starting at `at`.
fn next_char_boundary(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len() + 1, |c| at + c.len_utf8())
}

/// One pass over `text`; `None` when nothing matched.
fn replace_all(text: &str) -> Option<String> {
    let kinds = &*KINDS;
    // Per kind, its next accepted match at or after the current position (`None` = none left).
    let mut next: Vec<Option<(usize, usize)>> =
        kinds.iter().map(|k| k.next_match(text, 0)).collect();
    let mut out: Option<String> = None;
    let mut pos = 0;
    loop {
        let mut best: Option<(usize, usize, usize)> = None;
        for (i, kind) in kinds.iter().enumerate() {
            if let Some((start, _)) = next[i]
                && start < pos
            {
                next[i] = kind.next_match(text, pos);
            }
            if let Some((start, end)) = next[i]
                && best.is_none_or(|(_, s, _)| start < s)
            {
                best = Some((i, start, end));
            }
        }
        let Some((i, start, end)) = best else { break };
        let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
        buf.push_str(&text[pos..start]);
        buf.push_str(kinds[i].placeholder);
        // Every pattern matches at least one character; stay safe regardless.
        pos = if end > start {
            end
        } else {
            next_char_boundary(text, start).min(text.len())
        };
    }
    let mut out = out?;
    out.push_str(&text[pos.min(text.len())..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parameterize(s).into_owned()
    }

    #[test]
    fn the_reference_example() {
        assert_eq!(
            p("Order 991 stuck since 2026-11-24T06:43:48Z"),
            "Order <int> stuck since <date>"
        );
        assert_eq!(p("Order 991 stuck"), p("Order 992 stuck"));
    }

    #[test]
    fn fast_path_borrows() {
        assert!(matches!(
            parameterize("nothing variable here"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            parameterize("  padded  "),
            Cow::Borrowed("padded")
        ));
    }

    #[test]
    fn kinds() {
        let cases = [
            (
                "blah test@email.com had a problem",
                "blah <email> had a problem",
            ),
            (
                "blah http://some.email.com had a problem",
                "blah <url> had a problem",
            ),
            (
                "blah www.some.email.com had a problem",
                "blah <hostname> had a problem",
            ),
            ("connect to 192.168.0.1 failed", "connect to <ip> failed"),
            (
                "connect to 2001:db8::ff00:42:8329 failed",
                "connect to <ip> failed",
            ),
            ("connect to ::1 failed", "connect to <ip> failed"),
            (
                "connect to ::ffff:10.0.0.1 failed",
                "connect to <ip> failed",
            ),
            ("dead::beef", "<ip>"),
            (
                "SomeClass::someMethod() failed",
                "SomeClass::someMethod() failed",
            ),
            (
                "id 3f2504e0-4f89-11d3-9a0c-0305e82c3301 gone",
                "id <uuid> gone",
            ),
            (
                "commit da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "commit <sha1>",
            ),
            ("md5 d41d8cd98f00b204e9800998ecf8427e", "md5 <md5>"),
            ("at Mon, 02 Jan 2006 15:04:05 -0700 ok", "at <date> ok"),
            ("at 2024-01-31 ok", "at <date> ok"),
            ("at 2024-01-31 10:20:30 ok", "at <date> ok"),
            ("at 10:20 ok", "at <date> ok"),
            ("at 9:05 PM ok", "at <date> ok"),
            (
                "at Tue Nov 24 2026 06:43:48 GMT+0000 (Coordinated Universal Time)",
                "at <date>",
            ),
            ("took 250ms", "took <duration>"),
            ("took 1.5s", "took <duration>"),
            ("ptr 0xDEADBEEF", "ptr <hex>"),
            ("token deadbeef12 bad", "token <hex> bad"),
            ("word deadbeefcafe stays", "word deadbeefcafe stays"),
            ("ratio 0.75 too high", "ratio <float> too high"),
            ("temperature -3 too low", "temperature <int> too low"),
            ("file-3 missing", "file-<int> missing"),
            ("big 123456789 number", "big <hex> number"),
            ("user='jane' flag=true", "user=<quoted_str> flag=<bool>"),
            ("said 'hello' and true", "said 'hello' and true"),
        ];
        for (input, expected) in cases {
            assert_eq!(p(input), expected, "input: {input}");
        }
    }

    #[test]
    fn first_two_non_empty_lines() {
        assert_eq!(
            p("\n  first 1  \n\n second 2\nthird\n"),
            "first <int>\nsecond <int>..."
        );
        assert_eq!(p("one\n\ntwo\n"), "one\ntwo");
        assert_eq!(p("   \n  "), "");
    }

    #[test]
    fn multibyte_and_odd_input_does_not_panic() {
        assert_eq!(p("ünïcødé 42 ✓"), "ünïcødé <int> ✓");
        assert_eq!(p("é-5"), "é-<int>");
        let long = "x=1 ".repeat(5000) + &"é".repeat(100);
        assert!(p(&long).starts_with("x=<int> x=<int>"));
        let _ = p("::::::::::::::::::::::");
        let _ = p("'''''''''\"\"\"\"===");
    }
}
