//! Formatting: what a notification's payload becomes on each channel — the e-mail's subject,
//! plain-text and HTML parts, the Slack-compatible message and the webhook's JSON body — for one
//! alert or for a digest of several.
//!
//! Every string of a payload is treated as attacker-controlled (titles, culprits, tag values and
//! messages come from events): the HTML part is rendered by askama with auto-escaping, Slack's
//! control characters (`&`, `<`, `>`) are escaped, links are links only when they are `http(s)`,
//! single-line fields lose their control characters (no header injection through the subject)
//! and every field is cut to a bounded length.

use askama::Template;
use serde_json::{Map, Value, json};

/// Longest single-line field kept (in characters); longer ones end with `…`.
const MAX_FIELD: usize = 300;
/// Longest multi-line field (an event's message).
const MAX_MESSAGE: usize = 2000;
/// Most top tags shown per alert.
const MAX_TAGS: usize = 10;
/// Longest subject.
const MAX_SUBJECT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("cannot render the alert template: {0}")]
    Template(#[from] askama::Error),
}

/// The counts of the window a frequency rule looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub minutes: i64,
    pub events: Option<i64>,
    pub users: Option<i64>,
}

/// One line of the tag breakdown: `browser: 92 % Safari 17`.
#[derive(Debug, Clone, PartialEq)]
pub struct TagLine {
    pub key: String,
    pub value: String,
    /// Formatted: `92`, `7.5`.
    pub percent: String,
}

/// One alert as read from a notification's payload: every field cleaned and bounded, missing
/// ones empty or `None`. Reading never fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub trigger: String,
    /// What happened, for people: `New issue`, `Regression`, … (from the trigger).
    pub label: String,
    pub reason: String,
    pub rule_name: String,
    /// `acme/checkout`.
    pub project: String,
    pub short_id: String,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub status: String,
    pub first_seen: String,
    pub last_seen: String,
    pub events: Option<i64>,
    pub users: Option<i64>,
    /// The issue's page; `None` unless `http(s)://`.
    pub url: Option<String>,
    pub message: String,
    pub environment: String,
    pub release: String,
    pub top_frame: String,
    pub window: Option<Window>,
    pub top_tags: Vec<TagLine>,
}

/// Everything one delivery sends, for one alert or a digest of several of one project.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Slack incoming-webhook / Mattermost message.
    pub slack: Value,
}

/// What a trigger is called in subjects and headings.
pub fn trigger_label(trigger: &str) -> &'static str {
    match trigger {
        "new_issue" => "New issue",
        "regression" => "Regression",
        "frequency" => "Frequent issue",
        "users" => "Many users affected",
        "spike" => "Spike",
        "unignored" => "Back from ignored",
        _ => "Alert",
    }
}

/// `s` without control characters (each becomes a space), trimmed, at most `max` characters.
pub fn clean_line(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(s.trim(), max)
}

/// `s` keeping newlines and tabs (other control characters become spaces), at most `max`
/// characters.
fn clean_text(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c == '\n' || c == '\t' {
                c
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    truncate(s.trim(), max)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", s[..at].trim_end()),
        None => s.to_string(),
    }
}

/// A string field (numbers are written out), cleaned to one line.
fn text(v: &Value, max: usize) -> String {
    match v {
        Value::String(s) => clean_line(s, max),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `url` if it is an absolute `http(s)` URL without whitespace or control characters.
pub fn safe_link(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let ok = (lower.starts_with("https://") || lower.starts_with("http://"))
        && url.len() <= 2000
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| url.to_string())
}

/// A percentage as people read it: `92`, `7.5`.
fn percent(p: f64) -> String {
    if !p.is_finite() {
        return "?".into();
    }
    let p = p.clamp(0.0, 100.0);
    let rounded = (p * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

impl Alert {
    /// Reads a payload (see the module docs of [`crate::alerts`] for its shape).
    pub fn from_payload(p: &Value) -> Alert {
        let issue = &p["issue"];
        let event = &p["event"];
        let project = &p["project"];
        let trigger = text(&p["trigger"], 40);
        let org = text(&project["org"], 100);
        let slug = text(&project["slug"], 100);
        let project = match (org.is_empty(), slug.is_empty()) {
            (false, false) => format!("{org}/{slug}"),
            (true, false) => slug,
            (false, true) => org,
            (true, true) => "unknown project".to_string(),
        };
        let window = p["window"].as_object().and_then(|w| {
            Some(Window {
                minutes: int(w.get("minutes")?)?,
                events: w.get("events").and_then(int),
                users: w.get("users").and_then(int),
            })
        });
        let top_tags = p["top_tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| {
                        let value = text(&t["value"], 100);
                        let key = text(&t["key"], 100);
                        if key.is_empty() && value.is_empty() {
                            return None;
                        }
                        Some(TagLine {
                            key,
                            value,
                            percent: t["percent"].as_f64().map(percent).unwrap_or_default(),
                        })
                    })
                    .take(MAX_TAGS)
                    .collect()
            })
            .unwrap_or_default();
        let mut title = text(&issue["title"], MAX_FIELD);
        if title.is_empty() {
            title = "(no title)".to_string();
        }
        Alert {
            label: trigger_label(&trigger).to_string(),
            trigger,
            reason: text(&p["reason"], MAX_FIELD),
            rule_name: text(&p["rule"]["name"], MAX_FIELD),
            project,
            short_id: text(&issue["short_id"], 100),
            title,
            culprit: text(&issue["culprit"], MAX_FIELD),
            level: text(&issue["level"], 40),
            status: text(&issue["status"], 40),
            first_seen: text(&issue["first_seen"], 60),
            last_seen: text(&issue["last_seen"], 60),
            events: int(&issue["events"]),
            users: int(&issue["users"]),
            url: issue["url"].as_str().and_then(safe_link),
            message: event["message"]
                .as_str()
                .map(|m| clean_text(m, MAX_MESSAGE))
                .unwrap_or_default(),
            environment: text(&event["environment"], 100),
            release: text(&event["release"], 200),
            top_frame: text(&event["top_frame"], MAX_FIELD),
            window,
            top_tags,
        }
    }

    /// `12 events, 10 in the last 60 minutes` (empty when nothing is known).
    pub fn events_line(&self) -> String {
        count_line(
            self.events,
            self.window.as_ref().and_then(|w| w.events),
            self.window.as_ref().map(|w| w.minutes),
            "event",
        )
    }

    /// `3 users, 3 in the last 60 minutes`.
    pub fn users_line(&self) -> String {
        count_line(
            self.users,
            self.window.as_ref().and_then(|w| w.users),
            self.window.as_ref().map(|w| w.minutes),
            "user",
        )
    }

    /// `92 % Safari 17`-style lines, `key: …`.
    pub fn tag_lines(&self) -> Vec<String> {
        self.top_tags
            .iter()
            .map(|t| {
                if t.percent.is_empty() {
                    format!("{}: {}", t.key, t.value)
                } else {
                    format!("{}: {} % {}", t.key, t.percent, t.value)
                }
            })
            .collect()
    }

    /// The culprit, or the top frame when there is no culprit.
    pub fn location(&self) -> &str {
        if self.culprit.is_empty() {
            &self.top_frame
        } else {
            &self.culprit
        }
    }
}

fn count_line(total: Option<i64>, window: Option<i64>, minutes: Option<i64>, noun: &str) -> String {
    let plural = |n: i64| if n == 1 { "" } else { "s" };
    let mut out = match total {
        Some(n) => format!("{n} {noun}{}", plural(n)),
        None => String::new(),
    };
    if let (Some(w), Some(m)) = (window, minutes) {
        let part = format!("{w} in the last {m} minute{}", plural(m));
        out = if out.is_empty() {
            format!("{part} ({noun}s)")
        } else {
            format!("{out}, {part}")
        };
    }
    out
}

#[derive(Template)]
#[template(path = "alert_email.html")]
struct HtmlEmail<'a> {
    heading: &'a str,
    alerts: &'a [Alert],
    digest: bool,
}

#[derive(Template)]
#[template(path = "alert_email.txt")]
struct TextEmail<'a> {
    heading: &'a str,
    alerts: &'a [Alert],
    digest: bool,
}

/// The subject of one alert: `[acme/checkout] New issue: TypeError: x is undefined`.
pub fn subject(alert: &Alert) -> String {
    clean_line(
        &format!("[{}] {}: {}", alert.project, alert.label, alert.title),
        MAX_SUBJECT,
    )
}

/// The subject of a digest: `[acme/checkout] 12 alerts: TypeError: …, KeyError: …`.
pub fn digest_subject(alerts: &[Alert]) -> String {
    let project = alerts
        .first()
        .map(|a| a.project.as_str())
        .unwrap_or("unknown project");
    let mut titles: Vec<&str> = Vec::new();
    for a in alerts {
        if !titles.contains(&a.title.as_str()) {
            titles.push(&a.title);
        }
    }
    clean_line(
        &format!("[{project}] {} alerts: {}", alerts.len(), titles.join(", ")),
        MAX_SUBJECT,
    )
}

/// Renders one alert (a list of one) or a digest (several, of one project).
pub fn render(alerts: &[Alert]) -> Result<Rendered, MessageError> {
    let digest = alerts.len() != 1;
    let subject = if digest {
        digest_subject(alerts)
    } else {
        subject(&alerts[0])
    };
    let heading = subject.as_str();
    let text = TextEmail {
        heading,
        alerts,
        digest,
    }
    .render()?;
    let html = HtmlEmail {
        heading,
        alerts,
        digest,
    }
    .render()?;
    Ok(Rendered {
        slack: slack_message(&subject, alerts),
        subject,
        text,
        html,
    })
}

/// Escapes what Slack's mrkdwn treats as control characters (`&`, `<`, `>`: so no `<!channel>`
/// or link can be smuggled in), and puts a zero-width space after every `@` so that an event's
/// text cannot mention `@channel`/`@all` on Mattermost, which reads mentions from plain text.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('@', "@\u{200b}")
}

/// A Slack link `<url|label>`; the URL is escaped too and may not carry a `|`.
fn slack_link(url: &str, label: &str) -> String {
    format!(
        "<{}|{}>",
        url.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('|', "%7C"),
        slack_escape(label)
    )
}

fn level_color(level: &str) -> &'static str {
    match level {
        "fatal" => "#7a0b0b",
        "error" => "#d63b3b",
        "warning" => "#e8a33c",
        "info" => "#3b82d6",
        _ => "#8a8a8a",
    }
}

/// The Slack incoming-webhook message (also what Mattermost accepts): a `text` fallback and one
/// attachment per alert with its fields.
pub fn slack_message(subject: &str, alerts: &[Alert]) -> Value {
    let attachments: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut fields = Vec::new();
            let mut field = |title: &str, value: &str, short: bool| {
                if !value.is_empty() {
                    fields.push(
                        json!({"title": title, "value": slack_escape(value), "short": short}),
                    );
                }
            };
            field("Project", &a.project, true);
            field("Level", &a.level, true);
            field("Environment", &a.environment, true);
            field("Release", &a.release, true);
            field("Events", &a.events_line(), true);
            field("Users", &a.users_line(), true);
            field("First seen", &a.first_seen, true);
            field("Trigger", &a.label, true);
            field("Top tags", &a.tag_lines().join("\n"), false);
            let mut body = Vec::new();
            if !a.location().is_empty() {
                body.push(format!(
                    "`{}`",
                    slack_escape(a.location()).replace('`', "'")
                ));
            }
            if !a.message.is_empty() && a.message != a.title {
                body.push(slack_escape(&a.message));
            }
            let title = if a.short_id.is_empty() {
                a.title.clone()
            } else {
                format!("{} {}", a.short_id, a.title)
            };
            let mut att = Map::new();
            att.insert("fallback".into(), json!(slack_escape(&title)));
            att.insert("color".into(), json!(level_color(&a.level)));
            att.insert("title".into(), json!(slack_escape(&title)));
            if let Some(url) = &a.url {
                att.insert("title_link".into(), json!(url));
            }
            att.insert("text".into(), json!(body.join("\n")));
            att.insert("fields".into(), Value::Array(fields));
            att.insert("footer".into(), json!("Faultline"));
            att.insert("mrkdwn_in".into(), json!(["text"]));
            Value::Object(att)
        })
        .collect();
    let text = match alerts {
        [one] => match &one.url {
            Some(url) => format!("{} — {}", slack_escape(subject), slack_link(url, "open")),
            None => slack_escape(subject),
        },
        _ => slack_escape(subject),
    };
    json!({ "text": text, "attachments": attachments })
}

/// The webhook body of one alert (see the module docs of [`crate::alerts`]).
pub fn webhook_body(payload: &Value, sent_at: &str) -> Value {
    let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "version": 1,
        "trigger": field("trigger"),
        "reason": field("reason"),
        "rule": field("rule"),
        "project": field("project"),
        "issue": field("issue"),
        "event": field("event"),
        "window": field("window"),
        "top_tags": field("top_tags"),
        "sent_at": sent_at,
    })
}

/// The webhook body of a digest: `{"version": 1, "trigger": "digest", "project", "count",
/// "alerts": [one body each, without `version`/`sent_at`], "sent_at"}`.
pub fn webhook_digest_body(payloads: &[&Value], sent_at: &str) -> Value {
    let alerts: Vec<Value> = payloads
        .iter()
        .map(|p| {
            let mut body = webhook_body(p, sent_at);
            if let Some(obj) = body.as_object_mut() {
                obj.remove("version");
                obj.remove("sent_at");
            }
            body
        })
        .collect();
    let project = payloads
        .first()
        .and_then(|p| p.get("project"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "version": 1,
        "trigger": "digest",
        "reason": format!("{} alerts", payloads.len()),
        "project": project,
        "count": payloads.len(),
        "alerts": alerts,
        "sent_at": sent_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Value {
        json!({
            "trigger": "new_issue", "reason": "A new issue",
            "rule": {"id": 1, "name": "Every new issue"},
            "project": {"id": 1, "org": "acme", "slug": "checkout"},
            "issue": {"id": 7, "short_id": "CHECKOUT-7", "title": "TypeError: x is undefined",
                      "culprit": "pay(app/checkout)", "level": "error", "status": "unresolved",
                      "first_seen": "2026-11-25T10:00:00Z", "last_seen": "2026-11-25T10:05:00Z",
                      "events": 12, "users": 3,
                      "url": "https://faultline.example/organizations/acme/issues/7/"},
            "event": {"event_id": "abc", "message": "x is undefined", "environment": "production",
                      "release": "1.2.0", "top_frame": "app/checkout.py in pay at line 42"},
            "window": {"minutes": 60, "events": 10, "users": 3},
            "top_tags": [{"key": "browser", "value": "Safari 17", "percent": 92.0}]
        })
    }

    #[test]
    fn one_alert_carries_the_context() {
        let r = render(&[Alert::from_payload(&payload())]).unwrap();
        assert_eq!(
            r.subject,
            "[acme/checkout] New issue: TypeError: x is undefined"
        );
        for part in [&r.text, &r.html] {
            for want in [
                "acme/checkout",
                "TypeError: x is undefined",
                "pay(app/checkout)",
                "app/checkout.py in pay at line 42",
                "error",
                "production",
                "1.2.0",
                "12 events, 10 in the last 60 minutes",
                "3 users, 3 in the last 60 minutes",
                "2026-11-25T10:00:00Z",
                "92 % Safari 17",
                "https://faultline.example/organizations/acme/issues/7/",
                "Every new issue",
            ] {
                assert!(part.contains(want), "{want:?} missing from:\n{part}");
            }
        }
        assert!(
            r.html
                .contains("href=\"https://faultline.example/organizations/acme/issues/7/\"")
        );
    }

    #[test]
    fn hostile_strings_are_escaped_everywhere() {
        let mut p = payload();
        p["issue"]["title"] = json!("<script>alert(1)</script>\r\nBcc: evil@x.y & \"q\"");
        p["issue"]["culprit"] = json!("<img src=x onerror=alert(1)>");
        p["issue"]["url"] = json!("javascript:alert(1)");
        p["event"]["environment"] = json!("<b>prod</b>");
        p["top_tags"] = json!([{"key": "<k>", "value": "<v>&", "percent": 50}]);
        p["project"]["slug"] = json!("a\nb");
        let r = render(&[Alert::from_payload(&p)]).unwrap();
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
        assert!(r.subject.contains("Bcc: evil@x.y"), "{}", r.subject);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(!r.html.contains("<img"), "{}", r.html);
        assert!(!r.html.contains("<b>prod"), "{}", r.html);
        assert!(!r.html.contains("<k>") && !r.html.contains("<v>"));
        assert!(r.html.contains("&#60;script&#62;"), "{}", r.html);
        assert!(!r.html.contains("javascript:"), "{}", r.html);
        assert!(!r.text.contains("javascript:"), "{}", r.text);
        // Plain text is not HTML: shown as written.
        assert!(r.text.contains("<script>alert(1)</script>"));
        let slack = r.slack.to_string();
        assert!(
            !slack.contains("<script>") && !slack.contains("<img"),
            "{slack}"
        );
        assert!(slack.contains("&lt;script&gt;"), "{slack}");
        assert!(!slack.contains("javascript:"), "{slack}");
    }

    #[test]
    fn slack_escaping_and_links() {
        assert_eq!(slack_escape("a & <b> c"), "a &amp; &lt;b&gt; c");
        assert_eq!(
            slack_escape("<!channel> @all"),
            "&lt;!channel&gt; @\u{200b}all"
        );
        assert_eq!(
            slack_link("https://x.example/?a=1&b=<2>|x", "open <me>"),
            "<https://x.example/?a=1&amp;b=&lt;2&gt;%7Cx|open &lt;me&gt;>"
        );
        let r = render(&[Alert::from_payload(&payload())]).unwrap();
        let text = r.slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("[acme/checkout] New issue: TypeError"),
            "{text}"
        );
        assert!(text.ends_with("|open>"), "{text}");
        let att = &r.slack["attachments"][0];
        assert_eq!(
            att["title_link"],
            "https://faultline.example/organizations/acme/issues/7/"
        );
        assert_eq!(att["title"], "CHECKOUT-7 TypeError: x is undefined");
        assert!(
            att["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["title"] == "Top tags" && f["value"] == "browser: 92 % Safari 17")
        );
    }

    #[test]
    fn missing_and_odd_fields_do_not_fail() {
        for p in [
            json!(null),
            json!({}),
            json!({"issue": 5, "event": null, "window": null, "top_tags": null}),
            json!({"issue": {"title": ["x"], "events": "12"}, "top_tags": [1, null, {}]}),
        ] {
            let a = Alert::from_payload(&p);
            let r = render(std::slice::from_ref(&a)).unwrap();
            assert!(r.subject.contains("(no title)"), "{}", r.subject);
        }
        let a = Alert::from_payload(&json!({"issue": {"events": "12"}}));
        assert_eq!(a.events, Some(12));
        assert_eq!(percent(7.46), "7.5");
        assert_eq!(percent(92.0), "92");
        let long = "x".repeat(5000);
        let a = Alert::from_payload(&json!({"issue": {"title": long}}));
        assert!(a.title.chars().count() <= MAX_FIELD + 1);
    }

    #[test]
    fn digest_lists_every_issue() {
        let alerts: Vec<Alert> = (1..=12)
            .map(|i| {
                let mut p = payload();
                p["issue"]["title"] = json!(format!("Error number {i}"));
                p["issue"]["short_id"] = json!(format!("CHECKOUT-{i}"));
                Alert::from_payload(&p)
            })
            .collect();
        let r = render(&alerts).unwrap();
        assert!(
            r.subject
                .starts_with("[acme/checkout] 12 alerts: Error number 1, Error number 2"),
            "{}",
            r.subject
        );
        assert!(r.subject.chars().count() <= MAX_SUBJECT + 1);
        for i in 1..=12 {
            assert!(r.text.contains(&format!("CHECKOUT-{i} ")), "{}", r.text);
            assert!(r.html.contains(&format!("Error number {i}<")), "{}", r.html);
        }
        assert_eq!(r.slack["attachments"].as_array().unwrap().len(), 12);
    }

    #[test]
    fn webhook_bodies() {
        let p = payload();
        let b = webhook_body(&p, "2026-11-25T10:00:00Z");
        assert_eq!(b["version"], 1);
        assert_eq!(b["trigger"], "new_issue");
        assert_eq!(b["issue"]["short_id"], "CHECKOUT-7");
        assert_eq!(b["top_tags"][0]["value"], "Safari 17");
        assert_eq!(b["sent_at"], "2026-11-25T10:00:00Z");
        let d = webhook_digest_body(&[&p, &p], "t");
        assert_eq!(d["count"], 2);
        assert_eq!(d["trigger"], "digest");
        assert_eq!(d["alerts"][1]["issue"]["id"], 7);
        assert!(d["alerts"][0].get("version").is_none());
    }
}
