//! End to end with the real sentry-python SDK (tests/sdk/python_client.py, pinned in
//! tests/sdk/requirements.txt) against the real `faultline` binary.

mod common;

use common::scenario::{self, Frames, Reported, Sdk};

const SDK: Sdk = Sdk {
    sdk_name: "sentry.python",
    sdk_version: "2.75.0",
    platform: "python",
    frames: Some(Frames {
        file: "python_client.py",
        reporter: "report_checkout_failure",
        outer: "process_checkout",
        cause: "load_payment_config",
        context: true,
    }),
};

fn reported() -> Reported {
    common::require_python_sdk();
    Reported::run(|dsn| common::run_client(&common::python(), &["python_client.py"], dsn))
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
