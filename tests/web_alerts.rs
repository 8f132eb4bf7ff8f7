//! The alerts page end to end, against the real binary over HTTP: an admin creates a webhook
//! rule with the form, sees it in words without its secret, sends a test that reaches a real
//! receiver (or fails visibly when private targets are refused), deletes it; members read but
//! cannot change; strangers log in first.

mod common;
#[path = "common/hooks.rs"]
mod hooks;

use std::time::Duration;

use common::ui::{issue_of, send_event};
use common::web::{WebClient, WebPage};
use common::{ORG, PROJECT, Server, wait_until};
use hooks::Receiver;
use serde_json::{Value, json};

fn alerts_path() -> String {
    format!("/organizations/{ORG}/projects/{PROJECT}/alerts/")
}

fn post_ok(client: &WebClient, path: &str, fields: &[(&str, &str)]) -> WebPage {
    let page = client.post(path, fields);
    assert_eq!(
        page.status, 303,
        "POST {path}: {} {}",
        page.status, page.body
    );
    page
}

/// Sends one error event and waits for its issue; returns the issue id.
fn an_issue(server: &Server, title: &str) -> String {
    let event = json!({
        "level": "error",
        "environment": "production",
        "exception": {"values": [{"type": "CheckoutError", "value": title}]},
    });
    let id = send_event(&server.url, &server.dsn, event);
    issue_of(&server.url, &server.token, ORG, PROJECT, &id)
}

/// The id of the rule named `name` on the alerts page.
fn rule_id(page: &str, name: &str) -> String {
    page.split("data-rule=\"")
        .skip(1)
        .find(|s| {
            let block = s.split("</dl>").next().unwrap_or("");
            block.contains(&format!("<h3>{name}</h3>"))
        })
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no rule {name:?} on the page: {page}"))
        .to_string()
}

/// The notification rows (`<tr class="notification-…">…</tr>`) of the alerts page.
fn notification_rows(page: &str) -> Vec<String> {
    page.split("<tr class=\"notification-")
        .skip(1)
        .map(|s| s.split("</tr>").next().unwrap_or("").to_string())
        .collect()
}

/// Creates a webhook rule through the form; returns its id.
fn create_webhook_rule(admin: &WebClient, name: &str, url: &str, secret: &str) -> String {
    let csrf = admin.get(&alerts_path()).csrf();
    let page = post_ok(
        admin,
        &format!("{}rules", alerts_path()),
        &[
            ("csrf", &csrf),
            ("name", name),
            ("trigger", "frequency"),
            ("threshold", "5"),
            ("window_minutes", "10"),
            ("factor", ""),
            ("level", "error"),
            ("environment", "production"),
            ("release", ""),
            ("tags", "browser: Safari 17\r\n"),
            ("interval_minutes", "30"),
            ("email_to", ""),
            ("webhook_url", url),
            ("webhook_secret", secret),
            ("slack_url", ""),
        ],
    );
    assert!(
        page.location()
            .starts_with(&format!("{}?notice=rule-created", alerts_path())),
        "{}",
        page.location()
    );
    rule_id(admin.get(&alerts_path()).expect(200), name)
}

/// Waits until a notification row to `target` has `status`; returns that row.
fn wait_for_row(client: &WebClient, target: &str, status: &str) -> String {
    wait_until(&format!("a {status} notification to {target}"), || {
        let page = client.get(&alerts_path());
        let body = page.expect(200).to_string();
        notification_rows(&body)
            .into_iter()
            .find(|r| r.contains(target) && r.contains(&format!("data-status=\"{status}\"")))
            .ok_or(body)
    })
}

#[test]
fn an_admin_creates_tests_and_deletes_a_webhook_rule() {
    let server = Server::start_with(&["--allow-private-webhooks"]);
    let hooks = Receiver::start();
    let admin = WebClient::admin(&server);

    // Linked from the project settings; the default rules in words.
    let settings = admin
        .get(&format!(
            "/organizations/{ORG}/projects/{PROJECT}/settings/"
        ))
        .expect(200)
        .to_string();
    assert!(settings.contains("href=\"../alerts/\""), "{settings}");
    let page = admin.get(&alerts_path());
    let body = page.expect(200);
    assert!(
        body.contains("a new issue") && body.contains("a regression"),
        "{body}"
    );
    assert!(body.contains("E-mail: the project&#39;s members"), "{body}");
    assert!(
        body.contains("Create rule") && body.contains("Send a test"),
        "{body}"
    );

    let issue = an_issue(&server, "card declined");

    // A frequency rule without its threshold: 400 with the API's reason.
    let csrf = page.csrf();
    let bad = admin.post(
        &format!("{}rules", alerts_path()),
        &[
            ("csrf", &csrf),
            ("name", "Busy"),
            ("trigger", "frequency"),
            ("threshold", ""),
            ("webhook_url", &hooks.url),
        ],
    );
    let body = bad.expect(400);
    assert!(body.contains("needs a threshold"), "{body}");
    // No action at all.
    let bad = admin.post(
        &format!("{}rules", alerts_path()),
        &[("csrf", &csrf), ("name", "Mute"), ("trigger", "new_issue")],
    );
    assert!(
        bad.expect(400).contains("at least one action"),
        "{}",
        bad.body
    );
    // A forged token.
    admin
        .post(
            &format!("{}rules", alerts_path()),
            &[
                ("csrf", "forged"),
                ("name", "X"),
                ("trigger", "new_issue"),
                ("email_to", "members"),
            ],
        )
        .expect(403);

    // A signed webhook rule, listed in words and without its secret.
    let id = create_webhook_rule(&admin, "Hook it", &hooks.url, "t0p-s3cret");
    let body = admin.get(&alerts_path()).expect(200).to_string();
    for words in [
        "more than 5 events in 10 minutes",
        "level at least error",
        "environment production",
        "tag browser = Safari 17",
        "at most once per issue every 30 minutes",
    ] {
        assert!(body.contains(words), "{words:?} not on the page: {body}");
    }
    assert!(
        body.contains(&format!("Webhook: {} (signed)", hooks.url)),
        "{body}"
    );
    assert!(!body.contains("t0p-s3cret"), "the secret is shown: {body}");
    assert!(!body.contains("Busy") && !body.contains("Mute"), "{body}");

    // "Send a test" reaches the receiver, signed, about the latest issue, and shows as sent.
    let page = post_ok(
        &admin,
        &format!("{}rules/{id}/test", alerts_path()),
        &[("csrf", &csrf)],
    );
    assert!(
        page.location().contains("notice=test-queued"),
        "{}",
        page.location()
    );
    let got = hooks.wait("the test notification", |h| !h.is_empty());
    let hook = &got[0];
    let json: Value = hook.json();
    assert_eq!(json["rule"]["name"], "Hook it");
    assert_eq!(
        json["issue"]["id"].as_i64().map(|i| i.to_string()),
        Some(issue.clone())
    );
    assert!(
        json["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("Test sent from Faultline")),
        "{json:#}"
    );
    assert!(
        hook.header("x-faultline-signature")
            .is_some_and(|s| s.starts_with("sha256=")),
        "{:?}",
        hook.headers
    );
    let row = wait_for_row(&admin, &hooks.url, "sent");
    assert!(row.contains("CheckoutError: card declined"), "{row}");
    assert!(
        row.contains(&format!("href=\"/organizations/{ORG}/issues/{issue}/\"")),
        "{row}"
    );
    assert!(row.contains(">test<"), "{row}");

    // Names are escaped; deleting asks first.
    post_ok(
        &admin,
        &format!("{}rules", alerts_path()),
        &[
            ("csrf", &csrf),
            ("name", "<script>alert(1)</script>"),
            ("trigger", "spike"),
            ("threshold", "20"),
            ("factor", "2.5"),
            ("email_to", "members, ops@example.com"),
        ],
    );
    let body = admin.get(&alerts_path()).expect(200).to_string();
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(
        body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{body}"
    );
    assert!(
        body.contains("a spike: 2.5× the usual rate and at least 20 events"),
        "{body}"
    );
    assert!(
        body.contains("E-mail: the project&#39;s members, ops@example.com"),
        "{body}"
    );
    assert!(
        body.contains("data-confirm=\"Delete the alert rule Hook it?"),
        "{body}"
    );

    // Deleting removes the rule; its notification stays listed.
    post_ok(
        &admin,
        &format!("{}rules/{id}/delete", alerts_path()),
        &[("csrf", &csrf)],
    );
    let body = admin.get(&alerts_path()).expect(200).to_string();
    assert!(!body.contains(&format!("data-rule=\"{id}\"")), "{body}");
    assert!(!body.contains("<h3>Hook it</h3>"), "{body}");
    assert!(
        notification_rows(&body)
            .iter()
            .any(|r| r.contains(&hooks.url)),
        "{body}"
    );
    admin
        .post(
            &format!("{}rules/{id}/test", alerts_path()),
            &[("csrf", &csrf)],
        )
        .expect(404);
}

#[test]
fn a_test_to_a_private_address_fails_with_its_reason() {
    let server = Server::start();
    let hooks = Receiver::start();
    let admin = WebClient::admin(&server);
    an_issue(&server, "private");
    let id = create_webhook_rule(&admin, "Private hook", &hooks.url, "");
    let csrf = admin.get(&alerts_path()).csrf();
    post_ok(
        &admin,
        &format!("{}rules/{id}/test", alerts_path()),
        &[("csrf", &csrf)],
    );
    let row = wait_for_row(&admin, &hooks.url, "failed");
    assert!(row.contains("class=\"alert-error\""), "{row}");
    assert!(
        row.contains("refused") && row.contains("--allow-private-webhooks"),
        "{row}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        hooks.got.lock().unwrap().is_empty(),
        "nothing may reach 127.0.0.1"
    );
}

#[test]
fn without_an_issue_a_test_says_so() {
    let server = Server::start_with(&["--allow-private-webhooks"]);
    let hooks = Receiver::start();
    let admin = WebClient::admin(&server);
    let id = create_webhook_rule(&admin, "Early", &hooks.url, "");
    let csrf = admin.get(&alerts_path()).csrf();
    let page = post_ok(
        &admin,
        &format!("{}rules/{id}/test", alerts_path()),
        &[("csrf", &csrf)],
    );
    assert!(
        page.location().contains("notice=test-no-issue"),
        "{}",
        page.location()
    );
    let body = admin.get(page.location()).expect(200).to_string();
    assert!(body.contains("send it an event first"), "{body}");
}

/// Invites `email` as a member of the project and returns their logged-in client.
fn member(server: &Server, admin: &WebClient, email: &str) -> WebClient {
    let project_id = server.api(&format!("projects/{ORG}/{PROJECT}/"))["id"]
        .as_str()
        .expect("project id")
        .to_string();
    let csrf = admin.get(&format!("/organizations/{ORG}/members/")).csrf();
    let page = admin.post(
        &format!("/organizations/{ORG}/invites"),
        &[
            ("csrf", &csrf),
            ("email", email),
            ("role", "member"),
            ("project_ids", &project_id),
        ],
    );
    let body = page.expect(200);
    let start = body
        .find("id=\"invite-link\">")
        .expect("an invitation link")
        + 17;
    let end = start + body[start..].find("</pre>").expect("end of the link");
    let path = body[start..end]
        .trim()
        .trim_start_matches(&server.url)
        .to_string();
    let invitee = WebClient::new(server);
    let form = invitee.get(&path);
    let password = "a long enough password";
    post_ok(
        &invitee,
        &path,
        &[
            ("csrf", &form.csrf()),
            ("email", email),
            ("password", password),
            ("confirm", password),
        ],
    );
    invitee
}

#[test]
fn members_read_but_cannot_change_and_strangers_log_in() {
    let server = Server::start();
    let admin = WebClient::admin(&server);
    let stranger = WebClient::new(&server);
    let page = stranger.get(&alerts_path());
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(
        page.location().starts_with("/login?next="),
        "{}",
        page.location()
    );
    let page = stranger.post(&format!("{}rules", alerts_path()), &[("csrf", "x")]);
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(page.location().starts_with("/login"), "{}", page.location());

    let bob = member(&server, &admin, "bob@example.com");
    let page = bob.get(&alerts_path());
    let body = page.expect(200).to_string();
    assert!(body.contains("a new issue"), "{body}");
    assert!(
        !body.contains("Create rule") && !body.contains("Send a test"),
        "{body}"
    );
    let id = rule_id(&body, "Notify members of new issues");
    let csrf = page.csrf();
    let create = [
        ("csrf", csrf.as_str()),
        ("name", "Mine"),
        ("trigger", "new_issue"),
        ("email_to", "members"),
    ];
    bob.post(&format!("{}rules", alerts_path()), &create)
        .expect(403);
    bob.post(
        &format!("{}rules/{id}/test", alerts_path()),
        &[("csrf", &csrf)],
    )
    .expect(403);
    bob.post(
        &format!("{}rules/{id}/delete", alerts_path()),
        &[("csrf", &csrf)],
    )
    .expect(403);
    let body = admin.get(&alerts_path()).expect(200).to_string();
    assert!(body.contains(&format!("data-rule=\"{id}\"")), "{body}");
    assert!(!body.contains("<h3>Mine</h3>"), "{body}");
    // Another organization's project is not found.
    admin
        .get("/organizations/nope/projects/none/alerts/")
        .expect(404);
}

#[test]
fn the_alerts_page_works_in_a_browser() {
    let server = Server::start_with(&["--allow-private-webhooks"]);
    let hooks = Receiver::start();
    an_issue(&server, "seen in a browser");
    let shot = common::ui::screenshot_dir().join("project-alerts.png");
    let mut browser = common::ui::Browser::new("project-alerts");
    browser
        .goto(&format!(
            "{}/login?next=/organizations/{ORG}/projects/{PROJECT}/settings/",
            server.url
        ))
        .submit_login(common::EMAIL, common::PASSWORD)
        .snapshot("settings")
        .click("#alerts a[href=\"../alerts/\"]")
        .snapshot("alerts")
        .fill("#new-rule input[name=name]", "Browser hook")
        .fill("#new-rule input[name=threshold]", "3")
        .fill("#new-rule input[name=webhook_url]", &hooks.url)
        .fill("#new-rule input[name=webhook_secret]", "hidden-secret")
        .click("#new-rule [type=submit]")
        .snapshot("created")
        .click(".alert-rule:last-of-type form[action$=\"/test\"] button")
        .snapshot_with_screenshot("tested", &shot);
    let pages = browser.run();
    for name in ["settings", "alerts", "created", "tested"] {
        pages.get(name).assert_no_problems();
    }
    let created = pages.get("created");
    created.assert_text("The alert rule was created.", "the notice after creating");
    created.assert_text("Browser hook", "the new rule is listed");
    created.assert_text("a new issue", "the new issue trigger in words");
    assert!(
        !created.text().contains("hidden-secret"),
        "{}",
        created.describe()
    );
    pages
        .get("tested")
        .assert_text("A test notification was queued", "the notice after a test");
    hooks.wait("the browser's test", |h| !h.is_empty());
}
