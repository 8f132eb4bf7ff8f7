//! A cookie-keeping HTTP client for the web UI: logs in through the real login form and posts
//! forms with their CSRF token, as a browser without JavaScript would.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::Server;

/// A page as the client received it (redirects are not followed).
pub struct WebPage {
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl WebPage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// Asserts the status and returns the body.
    pub fn expect(&self, status: u16) -> &str {
        assert_eq!(
            self.status, status,
            "{} answered {} (expected {status}): {}",
            self.what, self.status, self.body
        );
        &self.body
    }

    /// The value of the first `name="csrf"` hidden field on the page.
    pub fn csrf(&self) -> String {
        hidden_field(&self.body, "csrf")
            .unwrap_or_else(|| panic!("{} has no csrf field: {}", self.what, self.body))
    }
}

/// The `value` of the first `<input … name="NAME" … value="…">` on a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.split("value=\"").nth(1)?;
    Some(v[..v.find('"')?].to_string())
}

/// A browser-like client: keeps cookies, sends forms, never follows redirects by itself.
pub struct WebClient {
    pub base: String,
    agent: ureq::Agent,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl WebClient {
    pub fn new(server: &Server) -> WebClient {
        WebClient {
            base: server.url.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Logs in through `/login` with the given credentials; panics unless it succeeds.
    pub fn login(server: &Server, email: &str, password: &str) -> WebClient {
        let client = WebClient::new(server);
        let page = client.try_login(email, password);
        assert_eq!(
            page.status, 303,
            "logging in as {email} should redirect: {} {}",
            page.status, page.body
        );
        client
    }

    /// Logs in as the test server's superuser.
    pub fn admin(server: &Server) -> WebClient {
        WebClient::login(server, super::EMAIL, super::PASSWORD)
    }

    /// Posts the login form; returns the answer (303 on success).
    pub fn try_login(&self, email: &str, password: &str) -> WebPage {
        let form = self.get("/login");
        let csrf = form.csrf();
        self.post(
            "/login",
            &[("email", email), ("password", password), ("csrf", &csrf)],
        )
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn read(
        &self,
        what: String,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> WebPage {
        let mut resp = resp.unwrap_or_else(|e| panic!("{what}: {e}"));
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    let mut jar = self.cookies.lock().unwrap();
                    let expired = v.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
                    if expired {
                        jar.remove(name.trim());
                    } else {
                        jar.insert(name.trim().to_string(), value.trim().to_string());
                    }
                }
            }
        }
        WebPage {
            what,
            status: resp.status().as_u16(),
            headers,
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str) -> WebPage {
        let req = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("Cookie", &self.cookie_header());
        self.read(format!("GET {path}"), req.call())
    }

    /// Posts an `application/x-www-form-urlencoded` form.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> WebPage {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded");
        self.read(format!("POST {path}"), req.send(body.as_bytes()))
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
