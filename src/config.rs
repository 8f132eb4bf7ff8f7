//! Configuration: every setting, with its flag, its environment variable and its default.
//!
//! Everything derives from `--data-dir`: the SQLite database and the spool live inside it, so
//! `faultline serve` with no options works. Config is passed through state, never a global.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Faultline: self-hosted error monitoring for Sentry SDKs.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory holding the database and the spool.
    #[arg(
        long,
        env = "FAULTLINE_DATA_DIR",
        default_value = "./faultline-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Storage: `sqlite://PATH`; unset = `sqlite://<data-dir>/faultline.db`.
    #[arg(long, env = "FAULTLINE_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Public base URL used in DSNs and links; default `http://<listen address>`.
    #[arg(long, env = "FAULTLINE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Log filter (`info`, `faultline=debug`, …).
    #[arg(long, env = "FAULTLINE_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        env = "FAULTLINE_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
}

impl GlobalArgs {
    /// The database URL, defaulting to the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("faultline.db").display()),
        }
    }

    /// The public URL, defaulting to one derived from `listen`.
    pub fn public_url(&self, listen: &str) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{listen}"),
        }
    }
}

// Parsed once at start-up: the size of the `serve` variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Copy an installation's database from SQLite to PostgreSQL (resumable).
    Migrate(MigrateArgs),
}

/// Options of `faultline migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The SQLite database to copy: `sqlite:///path/to/faultline.db`.
    #[arg(long)]
    pub from: String,
    /// The PostgreSQL database to copy into: `postgres://user@host/db`.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password comes from FAULTLINE_PASSWORD or a prompt.
    Create {
        #[arg(long)]
        email: String,
        /// Give the user access to everything.
        #[arg(long)]
        superuser: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create ORG/PROJECT (and the organization if needed); prints the DSN.
    Create {
        /// `org-slug/project-slug`
        slug: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; prints the token.
    Create {
        #[arg(long)]
        email: String,
    },
}

/// Options of `faultline serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FAULTLINE_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Trust `X-Forwarded-For` / `X-Real-IP` from these proxy addresses (comma-separated IPs).
    #[arg(long, env = "FAULTLINE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Default retention: events older than this many days are evicted (0 = keep forever).
    #[arg(long, env = "FAULTLINE_RETENTION_DAYS", default_value_t = 90)]
    pub retention_days: i64,
    /// Default retention: most events kept per project, oldest evicted first (0 = no cap).
    #[arg(long, env = "FAULTLINE_RETENTION_MAX_EVENTS", default_value_t = 0)]
    pub retention_max_events: i64,
    /// Seconds between retention sweeps.
    #[arg(long, env = "FAULTLINE_RETENTION_INTERVAL", default_value_t = 300)]
    pub retention_interval: u64,
    /// Memory for parsed source maps kept per node, in MiB.
    #[arg(long, env = "FAULTLINE_SOURCEMAP_CACHE_MB", default_value_t = 64)]
    pub sourcemap_cache_mb: u64,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

impl Default for ServeArgs {
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Defaults::parse_from(["serve"]).serve
    }
}

impl ServeArgs {
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listen.parse()?)
    }
}

/// Every size, count and rate limit, with defaults modelled on Sentry's.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest request body accepted on the wire, compressed (bytes).
    #[arg(long, env = "FAULTLINE_MAX_REQUEST_SIZE", default_value_t = 20 * MIB)]
    pub max_request_size: usize,
    /// Largest envelope after decompression (bytes).
    #[arg(long, env = "FAULTLINE_MAX_ENVELOPE_SIZE", default_value_t = 100 * MIB)]
    pub max_envelope_size: usize,
    /// Largest decompressed/compressed ratio accepted once the body exceeds 1 MiB.
    #[arg(long, env = "FAULTLINE_MAX_COMPRESSION_RATIO", default_value_t = 100)]
    pub max_compression_ratio: usize,
    /// Largest event payload (bytes).
    #[arg(long, env = "FAULTLINE_MAX_EVENT_SIZE", default_value_t = MIB)]
    pub max_event_size: usize,
    /// Largest attachment (bytes).
    #[arg(long, env = "FAULTLINE_MAX_ATTACHMENT_SIZE", default_value_t = 20 * MIB)]
    pub max_attachment_size: usize,
    /// Most items in one envelope.
    #[arg(long, env = "FAULTLINE_MAX_ENVELOPE_ITEMS", default_value_t = 1000)]
    pub max_envelope_items: usize,
    /// Deepest JSON nesting accepted in an event.
    #[arg(long, env = "FAULTLINE_MAX_JSON_DEPTH", default_value_t = 128)]
    pub max_json_depth: usize,
    /// Ingest requests handled at once; more are answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "FAULTLINE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    /// Spooled bytes waiting for digestion above which ingestion answers 503.
    #[arg(long, env = "FAULTLINE_MAX_SPOOL_BACKLOG", default_value_t = 1024 * MIB as u64)]
    pub max_spool_backlog: u64,
}

impl Default for Limits {
    fn default() -> Self {
        ServeArgs::default().limits
    }
}

pub const MIB: usize = 1024 * 1024;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network); port 25 by default.
    None,
    /// Plain connection upgraded with STARTTLS (required); port 587 by default.
    Starttls,
    /// TLS from the first byte (SMTPS); port 465 by default.
    Tls,
}

impl SmtpTls {
    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// Alert delivery: the SMTP server for e-mail, and where webhooks may go.
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// SMTP server for alert e-mail; unset = e-mail alerts fail with "e-mail is not configured".
    #[arg(long, env = "FAULTLINE_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port; default 587 (starttls), 465 (tls) or 25 (none).
    #[arg(long, env = "FAULTLINE_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// How the SMTP connection is secured.
    #[arg(long, env = "FAULTLINE_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    /// SMTP user name (with `--smtp-password`); unset = no authentication.
    #[arg(long, env = "FAULTLINE_SMTP_USER")]
    pub smtp_user: Option<String>,
    /// SMTP password.
    #[arg(long, env = "FAULTLINE_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// Sender of alert e-mail; default `faultline@<host of the public URL>`.
    #[arg(long, env = "FAULTLINE_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Let webhooks and Slack URLs reach loopback, private and link-local addresses
    /// (environment: `1`/`true`/`yes`/`on`, or `0`/`false`/`no`/`off`).
    #[arg(
        long,
        env = "FAULTLINE_ALLOW_PRIVATE_WEBHOOKS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_private_webhooks: bool,
    /// First delay before retrying a failed alert delivery (seconds); doubles with each
    /// attempt, at most 1 h apart.
    #[arg(
        long,
        env = "FAULTLINE_ALERT_RETRY_BASE_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u16).range(1..=3600)
    )]
    pub alert_retry_base_seconds: u16,
}

impl Default for AlertArgs {
    fn default() -> Self {
        ServeArgs::default().alerts
    }
}
