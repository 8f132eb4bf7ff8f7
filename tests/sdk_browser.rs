//! End to end with the real `@sentry/browser` SDK in headless Chromium (tests/sdk/browser_client.mjs
//! serving tests/sdk/browser/, pinned in tests/sdk/package.json) against the real `faultline`
//! binary. The page is served from another port than Faultline's, so ingestion is cross-origin
//! (CORS), as on a real site.

mod common;

use common::scenario::{self, Frames, Reported, Sdk, entry};

const SDK: Sdk = Sdk {
    sdk_name: "sentry.javascript.browser",
    sdk_version: "11.12.0",
    platform: "javascript",
    frames: Some(Frames {
        file: "/app.js",
        reporter: "reportCheckoutFailure",
        outer: "processCheckout",
        cause: "loadPaymentConfig",
        // Browsers send no source; resolving it is source maps' job, not tested here.
        context: false,
    }),
};

fn reported() -> Reported {
    common::require_node_packages(&["@sentry/browser", "playwright-core", "esbuild"]);
    common::require_chromium();
    Reported::run(|dsn| common::run_client("node", &["browser_client.mjs"], dsn))
}

#[test]
fn repeated_error_is_one_issue_counted_twice() {
    scenario::repeated_error_is_one_issue(&reported(), &SDK);
}

#[test]
fn exception_chain_reads_cause_first_with_frames() {
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

/// The browser and its version come from the page's User-Agent; the request entry shows the page.
#[test]
fn browser_and_request_come_from_the_page() {
    let r = reported();
    let event = r.latest_exception_event();
    let browser = &event["contexts"]["browser"];
    let name = browser["name"].as_str().unwrap_or_default();
    assert!(
        name.to_lowercase().contains("chrom"),
        "contexts.browser.name should be Chrome-like (User-Agent {}): {:#}",
        r.client["user_agent"],
        event["contexts"]
    );
    assert!(
        browser["version"].as_str().is_some_and(|v| !v.is_empty()),
        "contexts.browser.version should be set (User-Agent {}): {:#}",
        r.client["user_agent"],
        event["contexts"]
    );

    let request = entry(&event, "request");
    assert!(
        request["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "request url should be the page's: {request:#}"
    );
    let user_agent = request["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("request headers should be [[name, value]] pairs: {request:#}"))
        .iter()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("user-agent"))
        })
        .map(|h| h[1].clone());
    assert_eq!(
        user_agent.as_ref(),
        Some(&r.client["user_agent"]),
        "request headers should carry the browser's User-Agent: {request:#}"
    );
}

/// The browser SDK sends `sdk.settings.infer_ip: "auto"`: the user's IP is the client's address.
#[test]
fn user_ip_address_is_inferred_from_the_connection() {
    let r = reported();
    let event = r.latest_exception_event();
    assert_eq!(
        event["user"]["ip_address"], "127.0.0.1",
        "user.ip_address should be inferred: {:#}",
        event["user"]
    );
}

/// The browser SDK starts a session per page load for its release: the release gets its health
/// figures from it. The page's errors are handled (`captureException`), so nothing crashed and
/// the release is 100 % crash-free.
#[test]
fn the_page_session_gives_the_release_its_health() {
    let r = reported();
    let path = format!(
        "/api/0/organizations/{}/releases/{}/",
        common::ORG,
        scenario::RELEASE
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        let (status, body) = r.server.get(&path);
        if status == 200 {
            let release: serde_json::Value = serde_json::from_str(&body).unwrap();
            let health = release["projects"][0]["healthData"].clone();
            if health["hasHealthData"] == true {
                break health;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session health for the release: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(health["totalSessions"].as_i64() >= Some(1), "{health:#}");
    assert_eq!(health["sessionsCrashed"], 0, "{health:#}");
    assert_eq!(health["crashFreeSessions"], 100.0, "{health:#}");
    assert_eq!(health["crashFreeUsers"], 100.0, "{health:#}");
}
