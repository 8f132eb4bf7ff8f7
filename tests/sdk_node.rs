//! End to end with the real `@sentry/node` SDK (tests/sdk/node_client.js, pinned in
//! tests/sdk/package.json) against the real `faultline` binary.

mod common;

use common::scenario::{self, Frames, Reported, Sdk};

const SDK: Sdk = Sdk {
    sdk_name: "sentry.javascript.node",
    sdk_version: "11.12.0",
    platform: "node",
    frames: Some(Frames {
        file: "node_client.js",
        reporter: "reportCheckoutFailure",
        outer: "processCheckout",
        cause: "loadPaymentConfig",
        context: true,
    }),
};

fn reported() -> Reported {
    common::require_node_packages(&["@sentry/node"]);
    Reported::run(|dsn| common::run_client("node", &["node_client.js"], dsn))
}

#[test]
fn repeated_error_is_one_issue_counted_twice() {
    scenario::repeated_error_is_one_issue(&reported(), &SDK);
}

#[test]
fn exception_chain_reads_cause_first_with_frames_and_context() {
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
