//! End to end with the Rust `sentry` crate (pinned in Cargo.toml's dev-dependencies, blocking
//! `ureq` transport), reporting from this test process to the real `faultline` binary.
//!
//! `sentry::capture_error` sends an error and its `source()` chain as exceptions without stack
//! traces, so there are no frames to check here.

mod common;

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use common::scenario::{self, Reported, Sdk};
use sentry::protocol::{Breadcrumb, Map, User};
use serde_json::{Value, json};

const SDK: Sdk = Sdk {
    sdk_name: "sentry.rust",
    sdk_version: "0.49.5",
    platform: "native",
    frames: None,
};

/// The cause.
#[derive(Debug)]
struct ConfigError {
    setting: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing setting: {}", self.setting)
    }
}

impl Error for ConfigError {}

/// The outer error; its `source()` is the cause.
#[derive(Debug)]
struct CheckoutError {
    source: ConfigError,
}

impl fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("checkout failed")
    }
}

impl Error for CheckoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn load_payment_config(gateway: &'static str) -> Result<String, ConfigError> {
    Err(ConfigError { setting: gateway })
}

fn process_checkout(_order_id: u32) -> Result<String, CheckoutError> {
    load_payment_config("payment_gateway").map_err(|source| CheckoutError { source })
}

fn report_checkout_failure(order_id: u32) -> String {
    let err = process_checkout(order_id).expect_err("process_checkout should fail");
    sentry::capture_error(&err).simple().to_string()
}

fn breadcrumb(category: &str, message: &str, level: sentry::Level) -> Breadcrumb {
    Breadcrumb {
        category: Some(category.into()),
        message: Some(message.into()),
        level,
        ..Default::default()
    }
}

/// Reports the scenario (see `common::scenario`) to `dsn` with its own client and hub.
fn report(dsn: &str) -> Value {
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(
        dsn.parse()
            .expect("the DSN printed by `faultline project create` parses"),
    );
    options.release = Some(scenario::RELEASE.into());
    options.environment = Some(scenario::ENVIRONMENT.into());
    let client = Arc::new(sentry::Client::from_config(sentry::apply_defaults(options)));
    let hub = Arc::new(sentry::Hub::new(
        Some(client.clone()),
        Arc::new(sentry::Scope::default()),
    ));
    let report = sentry::Hub::run(hub, || {
        sentry::configure_scope(|scope| {
            scope.set_user(Some(User {
                id: Some("user-42".into()),
                email: Some("jane@example.com".into()),
                username: Some("jane".into()),
                ..Default::default()
            }));
            scope.set_tag("customer_tier", "pro");
        });
        sentry::add_breadcrumb(breadcrumb("auth", "user logged in", sentry::Level::Info));
        let mut cart = breadcrumb("cart", "added item to cart", sentry::Level::Info);
        cart.data = Map::from_iter([("sku".into(), json!("SKU-1")), ("qty".into(), json!(2))]);
        sentry::add_breadcrumb(cart);
        sentry::add_breadcrumb(breadcrumb(
            "checkout",
            "checkout started",
            sentry::Level::Warning,
        ));

        let mut exception_ids = Vec::new();
        let mut message_ids = Vec::new();
        for order in [991, 992] {
            exception_ids.push(report_checkout_failure(1001));
            let id = sentry::capture_message(&format!("Order {order} stuck"), sentry::Level::Info);
            message_ids.push(id.simple().to_string());
        }
        json!({"exception_ids": exception_ids, "message_ids": message_ids})
    });
    assert!(
        client.close(Some(Duration::from_secs(10))),
        "the sentry client could not flush its events within 10 s"
    );
    report
}

fn reported() -> Reported {
    Reported::run(report)
}

#[test]
fn repeated_error_is_one_issue_counted_twice() {
    scenario::repeated_error_is_one_issue(&reported(), &SDK);
}

#[test]
fn error_chain_reads_cause_first() {
    scenario::exception_chain_and_frames(&reported(), &SDK);
}

#[test]
fn event_shows_user_tags_breadcrumbs_and_sdk() {
    scenario::user_tags_breadcrumbs_and_sdk(&reported(), &SDK);
}

#[test]
fn event_shows_release_and_environment() {
    scenario::release_and_environment(&reported());
}

#[test]
fn issue_tags_count_the_custom_tag() {
    scenario::issue_tag_summary(&reported());
}

#[test]
fn messages_differing_only_in_a_number_are_one_issue() {
    scenario::parameterized_messages_group(&reported());
}
