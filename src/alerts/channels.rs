//! The channels: e-mail over SMTP (lettre), signed webhooks and Slack-compatible incoming
//! webhooks. Each send answers `Ok`, or a [`SendError`] that says whether trying again can help.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::header::{HeaderName as MailHeaderName, HeaderValue as MailHeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::Sha256;

use super::message::Rendered;
use super::net::{self, HttpError};
use crate::config::{AlertArgs, SmtpTls};

/// The error of every e-mail action while no SMTP server is configured.
pub const EMAIL_NOT_CONFIGURED: &str = "e-mail is not configured (FAULTLINE_SMTP_HOST)";
/// The webhook signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Faultline-Signature";
/// The webhook event header; `alert` for alerts.
pub const EVENT_HEADER: &str = "X-Faultline-Event";

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (timeouts, 5xx, 408/429, a busy mail server).
    #[error("{0}")]
    Retry(String),
    /// Trying again will not help (bad configuration or address, refused target, 4xx).
    #[error("{0}")]
    Permanent(String),
}

impl From<HttpError> for SendError {
    fn from(e: HttpError) -> Self {
        if e.is_permanent() {
            SendError::Permanent(e.to_string())
        } else {
            SendError::Retry(e.to_string())
        }
    }
}

/// The SMTP server alert e-mail goes through.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password; `None` = no authentication.
    pub credentials: Option<(String, String)>,
    /// `Faultline <faultline@errors.example.com>` or a bare address.
    pub from: String,
    /// Timeout of each SMTP command (the whole send is capped by the delivery loop).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// The SMTP settings of `faultline serve`; `None` without `--smtp-host`.
    pub fn from_args(args: &AlertArgs, public_url: &str) -> Option<SmtpConfig> {
        let host = args.smtp_host.as_deref()?.trim();
        if host.is_empty() {
            return None;
        }
        let from = args.smtp_from.clone().unwrap_or_else(|| {
            let domain = url::Url::parse(public_url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string());
            format!("faultline@{domain}")
        });
        Some(SmtpConfig {
            host: host.to_string(),
            port: args.smtp_port.unwrap_or(args.smtp_tls.default_port()),
            tls: args.smtp_tls,
            credentials: args
                .smtp_user
                .clone()
                .map(|u| (u, args.smtp_password.clone().unwrap_or_default())),
            from,
            timeout: Duration::from_secs(15),
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let tls_params = || {
            TlsParameters::new(self.host.clone()).map_err(|e| {
                SendError::Permanent(format!("cannot set up TLS for {}: {e}", self.host))
            })
        };
        let tls = match self.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// Sends the rendered alert as a multipart (plain text + HTML) e-mail to `to`.
pub async fn send_email(
    smtp: Option<&SmtpConfig>,
    to: &[String],
    rendered: &Rendered,
) -> Result<(), SendError> {
    let smtp = smtp.ok_or_else(|| SendError::Permanent(EMAIL_NOT_CONFIGURED.into()))?;
    if to.is_empty() {
        return Err(SendError::Permanent("the e-mail has no recipient".into()));
    }
    let from: Mailbox = smtp.from.parse().map_err(|e| {
        SendError::Permanent(format!(
            "invalid sender {:?} (FAULTLINE_SMTP_FROM): {e}",
            smtp.from
        ))
    })?;
    // RFC 3834: an automatic message, so that vacation responders do not answer it.
    let auto = MailHeaderValue::new(
        MailHeaderName::new_from_ascii_str("Auto-Submitted"),
        "auto-generated".to_string(),
    );
    let mut builder = Message::builder()
        .from(from)
        .subject(rendered.subject.clone())
        .raw_header(auto);
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient {address:?}: {e}")))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|e| SendError::Permanent(format!("cannot build the e-mail: {e}")))?;
    let transport = smtp.transport()?;
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = format!("SMTP {}:{}: {}", smtp.host, smtp.port, error_chain(&e));
            if e.is_permanent() {
                Err(SendError::Permanent(text))
            } else {
                Err(SendError::Retry(text))
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs a webhook body: JSON, signed when the action has a secret.
pub async fn send_webhook(
    url: &str,
    secret: Option<&str>,
    body: &Value,
    allow_private: bool,
    timeout: Duration,
) -> Result<(), SendError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| SendError::Permanent(format!("cannot encode the body: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static("x-faultline-event"),
        HeaderValue::from_static("alert"),
    );
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let sig = signature(secret.as_bytes(), &bytes);
        let value = HeaderValue::from_str(&sig)
            .map_err(|e| SendError::Permanent(format!("cannot sign: {e}")))?;
        headers.insert(HeaderName::from_static("x-faultline-signature"), value);
    }
    net::post(url, headers, bytes, allow_private, timeout).await?;
    Ok(())
}

/// POSTs a Slack-compatible message to an incoming-webhook URL.
pub async fn send_slack(
    url: &str,
    message: &Value,
    allow_private: bool,
    timeout: Duration,
) -> Result<(), SendError> {
    let bytes = serde_json::to_vec(message)
        .map_err(|e| SendError::Permanent(format!("cannot encode the message: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    net::post(url, headers, bytes, allow_private, timeout).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answers() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 4231, test case 6: a key longer than the block size.
        assert_eq!(
            signature(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature(b"", b""),
            "sha256=b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }

    #[tokio::test]
    async fn email_without_smtp_fails_permanently() {
        let r = super::super::message::render(&[super::super::message::Alert::from_payload(
            &serde_json::json!({}),
        )])
        .unwrap();
        assert_eq!(
            send_email(None, &["a@b.c".into()], &r).await,
            Err(SendError::Permanent(EMAIL_NOT_CONFIGURED.into()))
        );
    }

    #[test]
    fn smtp_defaults() {
        let mut args = AlertArgs::default();
        assert!(SmtpConfig::from_args(&args, "https://errors.example.com").is_none());
        args.smtp_host = Some("mail.example.com".into());
        let c = SmtpConfig::from_args(&args, "https://errors.example.com:8443/x").unwrap();
        assert_eq!(c.port, 587);
        assert_eq!(c.tls, SmtpTls::Starttls);
        assert_eq!(c.from, "faultline@errors.example.com");
        assert!(c.credentials.is_none());
        args.smtp_tls = SmtpTls::Tls;
        assert_eq!(SmtpConfig::from_args(&args, "x").unwrap().port, 465);
        assert_eq!(
            SmtpConfig::from_args(&args, "x").unwrap().from,
            "faultline@localhost"
        );
        args.smtp_tls = SmtpTls::None;
        args.smtp_port = Some(2525);
        args.smtp_user = Some("u".into());
        let c = SmtpConfig::from_args(&args, "x").unwrap();
        assert_eq!(c.port, 2525);
        assert_eq!(c.credentials, Some(("u".into(), String::new())));
    }
}
