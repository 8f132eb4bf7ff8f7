//! Browser security reports (CSP, Expect-CT, HPKP) turned into Sentry events.
//!
//! Browsers post these to `/api/{project}/security/` in their own formats: a CSP report
//! `{"csp-report": {…kebab-case…}}`, a Reporting API list `[{"type": "csp-violation", "body":
//! {…camelCase…}}]` (`application/reports+json`), `{"expect-ct-report": {…}}`, or an HPKP report
//! (top-level `hostname`, `known-pins`). [`security_report_to_event`] makes an event of `type`
//! `csp` / `expectct` / `hpkp` with the report under `csp` / `expectct` / `hpkp` (snake_case
//! keys), a message in Sentry's wording, a culprit, the page as `request.url`, and tags.
//! The result still goes through [`normalize`](super::normalize::normalize) like any event.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

/// What the security endpoint knows besides the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityParams {
    /// `sentry_release` from the query string.
    pub release: Option<String>,
    /// `sentry_environment` from the query string.
    pub environment: Option<String>,
    /// The request's `User-Agent` (the reporting browser).
    pub user_agent: Option<String>,
}

/// Why a body is not a security report we understand.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The body is not JSON.
    #[error("security report is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but neither CSP, Expect-CT nor HPKP (nor a report list holding a CSP violation).
    #[error("body is not a CSP, Expect-CT or HPKP report")]
    UnknownReport,
}

/// Turns a browser security report into an (unnormalized) event.
pub fn security_report_to_event(
    body: &[u8],
    params: &SecurityParams,
) -> Result<Value, SecurityError> {
    let report: Value = serde_json::from_slice(body)?;
    let mut report_user_agent = None;
    let mut event = match report {
        Value::Object(mut obj) => {
            if let Some(Value::Object(csp)) = obj.remove("csp-report") {
                csp_event(snake_keys(csp))
            } else if let Some(Value::Object(ct)) = obj.remove("expect-ct-report") {
                expect_ct_event(snake_keys(ct))
            } else if obj.contains_key("known-pins") && obj.contains_key("hostname") {
                hpkp_event(snake_keys(obj))
            } else if is_csp_violation(&obj) {
                // A single Reporting API report, not in a list.
                report_user_agent = obj
                    .get("user_agent")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                csp_event(reporting_api_body(obj.remove("body")))
            } else {
                return Err(SecurityError::UnknownReport);
            }
        }
        Value::Array(reports) => {
            let mut report = reports
                .into_iter()
                .filter_map(|r| match r {
                    Value::Object(o) if is_csp_violation(&o) => Some(o),
                    _ => None,
                })
                .next()
                .ok_or(SecurityError::UnknownReport)?;
            report_user_agent = report
                .get("user_agent")
                .and_then(Value::as_str)
                .map(str::to_owned);
            csp_event(reporting_api_body(report.remove("body")))
        }
        _ => return Err(SecurityError::UnknownReport),
    };

    let obj = event.as_object_mut().ok_or(SecurityError::UnknownReport)?;
    obj.insert("logger".into(), Value::String("csp".into()));
    obj.insert("level".into(), Value::String("error".into()));
    if let Some(release) = &params.release {
        obj.insert("release".into(), Value::String(release.clone()));
    }
    if let Some(environment) = &params.environment {
        obj.insert("environment".into(), Value::String(environment.clone()));
    }
    if let Some(ua) = params.user_agent.clone().or(report_user_agent) {
        let request = obj.entry("request").or_insert_with(|| json!({}));
        if let Some(request) = request.as_object_mut() {
            let headers = request.entry("headers").or_insert_with(|| json!([]));
            if let Some(headers) = headers.as_array_mut() {
                headers.insert(0, json!(["User-Agent", ua]));
            }
        }
    }
    Ok(event)
}

fn is_csp_violation(report: &Map<String, Value>) -> bool {
    matches!(
        report.get("type").and_then(Value::as_str),
        Some("csp-violation" | "csp")
    ) && report.get("body").is_some_and(Value::is_object)
}

/// `document-uri` → `document_uri` for every key.
fn snake_keys(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(k, v)| (k.replace('-', "_").to_ascii_lowercase(), v))
        .collect()
}

/// A Reporting API `csp-violation` body with the classic report's key names.
fn reporting_api_body(body: Option<Value>) -> Map<String, Value> {
    let Some(Value::Object(body)) = body else {
        return Map::new();
    };
    let mut out = Map::new();
    for (key, value) in body {
        let key = match key.as_str() {
            "documentURL" => "document_uri".to_owned(),
            "blockedURL" => "blocked_uri".to_owned(),
            "effectiveDirective" => "effective_directive".to_owned(),
            "originalPolicy" => "original_policy".to_owned(),
            "sourceFile" => "source_file".to_owned(),
            "lineNumber" => "line_number".to_owned(),
            "columnNumber" => "column_number".to_owned(),
            "sample" => "script_sample".to_owned(),
            "statusCode" => "status_code".to_owned(),
            other => camel_to_snake(other),
        };
        out.insert(key, value);
    }
    if !out.contains_key("violated_directive")
        && let Some(d) = out.get("effective_directive").cloned()
    {
        out.insert("violated_directive".into(), d);
    }
    out
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn str_of<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The directive a CSP report is about: `effective_directive`, else the first word of
/// `violated_directive`, lowercased.
pub fn csp_directive(csp: &Value) -> Option<String> {
    let effective = csp
        .get("effective_directive")
        .and_then(Value::as_str)
        .map(str::trim);
    let violated = csp
        .get("violated_directive")
        .and_then(Value::as_str)
        .and_then(|v| v.split_whitespace().next());
    effective
        .filter(|d| !d.is_empty())
        .or(violated)
        .map(str::to_ascii_lowercase)
}

/// What a blocked URI stands for in titles and grouping: `'inline'`-like keywords as
/// `inline` / `eval` / `'self'`, web URLs as `host[:port]`, other URLs as `scheme:`.
pub fn blocked_origin(blocked_uri: &str) -> Cow<'_, str> {
    let uri = blocked_uri.trim();
    match uri.trim_matches('\'').to_ascii_lowercase().as_str() {
        "" | "inline" | "unsafe-inline" => return Cow::Borrowed("inline"),
        "eval" | "unsafe-eval" | "wasm-eval" | "unsafe-wasm-eval" => return Cow::Borrowed("eval"),
        "self" => return Cow::Borrowed("'self'"),
        _ => {}
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Cow::Owned(format!("{}:", uri.to_ascii_lowercase()));
    };
    let scheme = scheme.to_ascii_lowercase();
    let Some(rest) = rest
        .strip_prefix("//")
        .filter(|_| matches!(scheme.as_str(), "http" | "https" | "ws" | "wss"))
    else {
        return Cow::Owned(format!("{scheme}:"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => ":80",
        _ => ":443",
    };
    let host = host_port.strip_suffix(default_port).unwrap_or(&host_port);
    if host.is_empty() {
        Cow::Owned(format!("{scheme}:"))
    } else {
        Cow::Owned(host.to_owned())
    }
}

/// The kind of resource a directive governs: `script-src-elem` → `script`, `img-src` → `image`.
fn directive_kind(directive: &str) -> &str {
    match directive {
        "img-src" => "image",
        d if d.starts_with("script-src") => "script",
        d if d.starts_with("style-src") => "style",
        d => d.strip_suffix("-src").unwrap_or(d),
    }
}

/// Sentry-style message for a CSP violation: `Blocked 'script' from 'evil.example.com'`,
/// `Blocked 'inline' script`, `Blocked 'eval' script`.
pub fn csp_message(directive: &str, blocked_uri: &str) -> String {
    let kind = directive_kind(directive);
    match blocked_origin(blocked_uri).as_ref() {
        "inline" => format!("Blocked 'inline' {kind}"),
        "eval" => format!("Blocked 'eval' {kind}"),
        origin => format!("Blocked '{kind}' from '{origin}'"),
    }
}

fn csp_event(csp: Map<String, Value>) -> Value {
    let csp = Value::Object(csp);
    let directive = csp_directive(&csp).unwrap_or_default();
    let blocked = csp
        .get("blocked_uri")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    let message = csp_message(&directive, &blocked);
    let mut event = json!({
        "type": "csp",
        "logentry": {"formatted": message},
        "culprit": directive,
        "tags": [["effective-directive", directive], ["blocked-uri", if blocked.is_empty() { "self" } else { blocked.as_str() }]],
    });
    if let Some(map) = csp.as_object() {
        let mut request = Map::new();
        if let Some(url) = str_of(map, "document_uri") {
            request.insert("url".into(), Value::String(url.to_owned()));
        }
        if let Some(referrer) = str_of(map, "referrer") {
            request.insert("headers".into(), json!([["Referer", referrer]]));
        }
        if !request.is_empty() {
            event["request"] = Value::Object(request);
        }
    }
    event["csp"] = csp;
    event
}

fn host_event(ty: &str, report: Map<String, Value>, message: String) -> Value {
    let hostname = str_of(&report, "hostname").unwrap_or("").to_owned();
    let mut tags = vec![json!(["hostname", hostname])];
    if let Some(port) = report
        .get("port")
        .filter(|p| p.is_number() || p.is_string())
    {
        let port = match port {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        tags.push(json!(["port", port]));
    }
    if let Some(Value::Bool(b)) = report.get("include_subdomains") {
        tags.push(json!(["include-subdomains", b.to_string()]));
    }
    let mut event = json!({
        "type": ty,
        "logentry": {"formatted": message},
        "culprit": hostname,
        "tags": tags,
    });
    event[ty] = Value::Object(report);
    event
}

fn expect_ct_event(report: Map<String, Value>) -> Value {
    let hostname = str_of(&report, "hostname").unwrap_or("").to_owned();
    host_event(
        "expectct",
        report,
        format!("Expect-CT failed for '{hostname}'"),
    )
}

fn hpkp_event(report: Map<String, Value>) -> Value {
    let hostname = str_of(&report, "hostname").unwrap_or("").to_owned();
    host_event(
        "hpkp",
        report,
        format!("Public key pinning validation failed for '{hostname}'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SecurityParams {
        SecurityParams {
            release: Some("web@1.2".into()),
            environment: Some("prod eu".into()),
            user_agent: Some("Mozilla/5.0 Chrome/131.0.0.0".into()),
        }
    }

    #[test]
    fn classic_csp_report() {
        let body = br#"{"csp-report": {
            "document-uri": "https://shop.example.com/cart?x=1",
            "referrer": "https://shop.example.com/",
            "violated-directive": "script-src-elem 'self'",
            "effective-directive": "script-src-elem",
            "original-policy": "default-src 'self'; report-uri /csp",
            "blocked-uri": "https://evil.example.com:443/x.js",
            "line-number": 12,
            "disposition": "enforce",
            "status-code": 200
        }}"#;
        let event = security_report_to_event(body, &params()).unwrap();
        assert_eq!(event["type"], "csp");
        assert_eq!(event["logger"], "csp");
        assert_eq!(event["level"], "error");
        assert_eq!(
            event["logentry"]["formatted"],
            "Blocked 'script' from 'evil.example.com'"
        );
        assert_eq!(event["culprit"], "script-src-elem");
        assert_eq!(
            event["csp"]["document_uri"],
            "https://shop.example.com/cart?x=1"
        );
        assert_eq!(event["csp"]["line_number"], 12);
        assert_eq!(event["request"]["url"], "https://shop.example.com/cart?x=1");
        assert_eq!(
            event["request"]["headers"][0],
            json!(["User-Agent", "Mozilla/5.0 Chrome/131.0.0.0"])
        );
        assert_eq!(
            event["request"]["headers"][1],
            json!(["Referer", "https://shop.example.com/"])
        );
        assert_eq!(
            event["tags"],
            json!([
                ["effective-directive", "script-src-elem"],
                ["blocked-uri", "https://evil.example.com:443/x.js"]
            ])
        );
        assert_eq!(event["release"], "web@1.2");
        assert_eq!(event["environment"], "prod eu");
    }

    #[test]
    fn inline_and_eval_wording() {
        let body = br#"{"csp-report": {"violated-directive": "style-src 'self'", "blocked-uri": "inline"}}"#;
        let event = security_report_to_event(body, &SecurityParams::default()).unwrap();
        assert_eq!(event["logentry"]["formatted"], "Blocked 'inline' style");
        assert_eq!(event["culprit"], "style-src");
        assert_eq!(csp_message("script-src", "eval"), "Blocked 'eval' script");
        assert_eq!(
            csp_message("img-src", "data:image/png;base64,xx"),
            "Blocked 'image' from 'data:'"
        );
        assert_eq!(
            csp_message("connect-src", "'self'"),
            "Blocked 'connect' from ''self''"
        );
        assert_eq!(
            csp_message("frame-ancestors", "http://a.example:8080/"),
            "Blocked 'frame-ancestors' from 'a.example:8080'"
        );
    }

    #[test]
    fn reporting_api_list() {
        let body = br#"[
            {"type": "deprecation", "body": {}},
            {"type": "csp-violation", "url": "https://shop.example.com/", "user_agent": "UA/1",
             "body": {"documentURL": "https://shop.example.com/", "blockedURL": "https://cdn.evil.example/a.js",
                      "effectiveDirective": "script-src-elem", "originalPolicy": "script-src 'self'",
                      "sample": "", "disposition": "enforce", "statusCode": 200, "lineNumber": 3}}
        ]"#;
        let event = security_report_to_event(body, &SecurityParams::default()).unwrap();
        assert_eq!(event["csp"]["blocked_uri"], "https://cdn.evil.example/a.js");
        assert_eq!(event["csp"]["violated_directive"], "script-src-elem");
        assert_eq!(event["csp"]["script_sample"], "");
        assert_eq!(
            event["logentry"]["formatted"],
            "Blocked 'script' from 'cdn.evil.example'"
        );
        assert_eq!(
            event["request"]["headers"][0],
            json!(["User-Agent", "UA/1"])
        );

        let none = br#"[{"type": "deprecation", "body": {}}]"#;
        assert!(matches!(
            security_report_to_event(none, &SecurityParams::default()),
            Err(SecurityError::UnknownReport)
        ));
    }

    #[test]
    fn expect_ct_and_hpkp() {
        let ct = br#"{"expect-ct-report": {"date-time": "2026-11-24T06:43:48Z", "hostname": "www.example.com",
                      "port": 443, "effective-expiration-date": "2026-12-24T06:43:48Z", "scts": []}}"#;
        let event = security_report_to_event(ct, &SecurityParams::default()).unwrap();
        assert_eq!(event["type"], "expectct");
        assert_eq!(
            event["expectct"]["effective_expiration_date"],
            "2026-12-24T06:43:48Z"
        );
        assert_eq!(
            event["logentry"]["formatted"],
            "Expect-CT failed for 'www.example.com'"
        );
        assert_eq!(
            event["tags"],
            json!([["hostname", "www.example.com"], ["port", "443"]])
        );

        let hpkp = br#"{"hostname": "www.example.com", "port": 443, "include-subdomains": false,
                        "known-pins": ["pin-sha256=\"x\""]}"#;
        let event = security_report_to_event(hpkp, &SecurityParams::default()).unwrap();
        assert_eq!(event["type"], "hpkp");
        assert_eq!(event["hpkp"]["known_pins"][0], "pin-sha256=\"x\"");
        assert_eq!(event["culprit"], "www.example.com");
        assert_eq!(
            event["logentry"]["formatted"],
            "Public key pinning validation failed for 'www.example.com'"
        );
    }

    #[test]
    fn rejects_other_bodies() {
        let p = SecurityParams::default();
        assert!(matches!(
            security_report_to_event(b"not json", &p),
            Err(SecurityError::Json(_))
        ));
        assert!(matches!(
            security_report_to_event(b"{}", &p),
            Err(SecurityError::UnknownReport)
        ));
        assert!(matches!(
            security_report_to_event(b"42", &p),
            Err(SecurityError::UnknownReport)
        ));
        assert!(matches!(
            security_report_to_event(br#"{"csp-report": "x"}"#, &p),
            Err(SecurityError::UnknownReport)
        ));
    }

    #[test]
    fn blocked_origins() {
        assert_eq!(blocked_origin(""), "inline");
        assert_eq!(blocked_origin("'unsafe-eval'"), "eval");
        assert_eq!(blocked_origin("self"), "'self'");
        assert_eq!(blocked_origin("blob"), "blob:");
        assert_eq!(
            blocked_origin("chrome-extension://abc/x.js"),
            "chrome-extension:"
        );
        assert_eq!(
            blocked_origin("https://user:pw@EVIL.example.com/x"),
            "evil.example.com"
        );
        assert_eq!(blocked_origin("http://é.example:80"), "é.example");
    }
}
