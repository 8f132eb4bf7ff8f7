//! Digest: turn spooled envelopes into stored, grouped events.
//!
//! - [`normalize`]: make an SDK's event canonical (ids, timestamps, levels, trimming, user agent).
//! - [`useragent`]: browser / OS / device from a `User-Agent` header.
//! - [`parameterize`]: strip the variable parts (numbers, ids, dates…) from messages.
//! - [`grouping`]: the fingerprint of an event, and which components made it.
//! - [`title`]: title, culprit and metadata shown for an issue.
//! - [`tags`]: the tags an event is counted under (its own plus derived ones).
//! - [`security`]: CSP / Expect-CT / HPKP reports turned into events.
//! - [`process`]: one spool record → the events, sessions, attachments… it holds.
//! - [`worker`]: the loop that reads the spool in batches and stores them.

pub mod dictionary;
pub mod grouping;
pub mod normalize;
pub mod parameterize;
pub mod process;
pub mod security;
pub mod tags;
pub mod title;
pub mod useragent;
pub mod worker;
