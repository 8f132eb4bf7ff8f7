//! Faultline: a self-hosted error monitoring server that speaks Sentry's protocols.
//!
//! # The path of an event
//!
//! 1. [`ingest`] — the HTTP endpoints SDKs post to (`/api/{project}/envelope/`, `store/`,
//!    `security/`). They authenticate the DSN key, decompress the body within limits, split the
//!    [`envelope`] and check it, then hand the raw envelope to the spool.
//! 2. [`spool`] — a durable append-only log on local disk. Writes are group-committed: one
//!    `fdatasync` covers every request of a batch, and a request is answered 200 only after its
//!    bytes are on disk. On start, whatever was not yet digested is replayed.
//! 3. [`digest`] — a worker reads the spool in batches: normalize → fingerprint → group → store,
//!    and records how far it got in the same transaction as the data it stored. JavaScript
//!    frames are first resolved with uploaded source maps ([`symbolicate`]), so grouping sees
//!    the original code.
//! 4. [`store`] — the one storage interface ([`store::Store`]), written once in SQL that both
//!    engines run: SQLite (the embedded default) and PostgreSQL (several nodes on one database).
//!    Storing a batch also keeps each release it names up to date (one upsert per project and
//!    release), and a newer release finishes issues resolved "in the next release".
//! 5. [`api`] — Sentry's web API (`/api/0/…`) over the stored issues, events and releases
//!    (what `sentry-cli releases` and `deploys` call).
//!
//! [`server`] wires these together; [`cli`] holds the subcommands; [`config`] every setting.

pub mod alerts;
pub mod api;
pub mod cli;
pub mod config;
pub mod digest;
pub mod envelope;
pub mod http;
pub mod ingest;
pub mod server;
pub mod spool;
pub mod store;
pub mod symbolicate;
pub mod web;
