//! Axum glue shared by every route group: the error type, the authentication extractors and
//! reading small bodies first.
//!
//! - [`body`]: reading a small request body before its route runs, so refusals keep the
//!   connection open.
//! - [`error`]: [`ApiError`], the one mapping of failures to HTTP answers.
//! - [`extract`]: [`AuthUser`], the user behind an `Authorization: Bearer` token.

pub mod body;
pub mod error;
pub mod extract;

pub use error::ApiError;
pub use extract::AuthUser;
