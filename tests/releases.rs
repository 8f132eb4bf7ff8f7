//! Releases and deploys as a user of the real `sentry-cli` (npm `@sentry/cli`, pinned in
//! tests/sdk/package.json) observes them: releases created, given commits from a local git
//! repository, finalized and deployed through the CLI; events and sessions of the release
//! giving it event counts, new issues and a crash-free rate in the API.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::ui::{api_get, send_event};
use common::web::WebClient;
use common::{ORG, PROJECT, Server, agent, answer, dsn_parts, wait_until};
use serde_json::json;

const VERSION: &str = "shop@1.2.0+7";

/// The `sentry-cli` launcher npm installs (it runs the platform binary of `@sentry/cli`).
fn sentry_cli() -> PathBuf {
    common::require_node_packages(&["@sentry/cli"]);
    common::sdk_dir()
        .join("node_modules")
        .join(".bin")
        .join("sentry-cli")
}

/// Runs `sentry-cli ARGS` in `cwd` against the server, configured only through the
/// environment as users do, with a home of its own (no `~/.sentryclirc`).
fn cli(server: &Server, home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(sentry_cli())
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("SENTRY_URL", &server.url)
        .env("SENTRY_AUTH_TOKEN", &server.token)
        .env("SENTRY_ORG", ORG)
        .env("SENTRY_PROJECT", PROJECT)
        .env("SENTRY_DISABLE_UPDATE_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run sentry-cli {args:?}: {e}"))
}

/// Runs `sentry-cli ARGS`, which must succeed; returns its stdout and stderr together.
fn cli_ok(server: &Server, home: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = cli(server, home, cwd, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`sentry-cli {}` failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "Jane Doe")
        .env("GIT_AUTHOR_EMAIL", "jane@example.com")
        .env("GIT_COMMITTER_NAME", "Jane Doe")
        .env("GIT_COMMITTER_EMAIL", "jane@example.com")
        .output()
        .unwrap_or_else(|e| panic!("run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git repository with two commits; returns the newest commit's id.
fn repo_with_commits(repo: &Path) -> String {
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("cart.py"), "total = 0\n").unwrap();
    git(repo, &["add", "cart.py"]);
    git(repo, &["commit", "-q", "-m", "Add the cart"]);
    std::fs::write(repo.join("cart.py"), "total = max(0, total)\n").unwrap();
    git(
        repo,
        &["commit", "-q", "-am", "Never show a negative total"],
    );
    git(repo, &["rev-parse", "HEAD"])
}

fn release_path(version: &str) -> String {
    let encoded: String = version
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/api/0/organizations/{ORG}/releases/{encoded}/")
}

/// `POST /api/{project}/envelope/` with the DSN's key, as an SDK posts sessions.
fn post_envelope(server: &Server, body: &[u8]) {
    let (key, project) = dsn_parts(&server.dsn);
    let url = format!("{}/api/{project}/envelope/", server.url);
    let resp = agent()
        .post(&url)
        .header(
            "X-Sentry-Auth",
            &format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=sentry.python/2"),
        )
        .header("Content-Type", "application/x-sentry-envelope")
        .send(body);
    answer(format!("POST {url}"), resp).expect(200);
}

#[test]
fn sentry_cli_creates_commits_finalizes_and_deploys_a_release() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let repo = tempfile::tempdir().unwrap();
    let head = repo_with_commits(repo.path());
    let (h, r) = (home.path(), repo.path());

    let out = cli_ok(&server, h, r, &["releases", "new", VERSION]);
    assert!(out.contains(&format!("Created release {VERSION}")), "{out}");
    let out = cli_ok(
        &server,
        h,
        r,
        &["releases", "set-commits", VERSION, "--local"],
    );
    assert!(out.contains("Success! Set commits"), "{out}");
    let out = cli_ok(&server, h, r, &["releases", "finalize", VERSION]);
    assert!(
        out.contains(&format!("Finalized release {VERSION}")),
        "{out}"
    );
    let out = cli_ok(
        &server,
        h,
        r,
        &[
            "deploys",
            "new",
            "-r",
            VERSION,
            "-e",
            "production",
            "-n",
            "blue",
        ],
    );
    assert!(
        out.contains("Created new deploy blue for 'production'"),
        "{out}"
    );

    let out = cli_ok(&server, h, r, &["deploys", "list", "-r", VERSION]);
    assert!(out.contains("production") && out.contains("blue"), "{out}");
    let out = cli_ok(&server, h, r, &["releases", "list"]);
    assert!(out.contains(VERSION), "{out}");
    assert!(!out.contains("(unreleased)"), "finalized: {out}");
    let out = cli_ok(
        &server,
        h,
        r,
        &["releases", "info", VERSION, "--show-commits"],
    );
    assert!(out.contains(VERSION) && out.contains(&head), "{out}");

    // The API shows the release with its commits and deploy.
    let release = api_get(&server.url, Some(&server.token), &release_path(VERSION))
        .expect(200)
        .clone();
    for key in [
        "version",
        "dateCreated",
        "dateReleased",
        "lastEvent",
        "firstEvent",
        "newGroups",
        "projects",
        "lastCommit",
        "lastDeploy",
        "url",
        "ref",
        "commitCount",
        "deployCount",
        "authors",
        "status",
    ] {
        assert!(
            release.get(key).is_some(),
            "release JSON has {key}: {release}"
        );
    }
    assert_eq!(release["version"], VERSION);
    assert!(release["dateReleased"].is_string(), "{release}");
    assert_eq!(release["status"], "open");
    assert_eq!(release["projects"][0]["slug"], PROJECT);
    assert_eq!(release["commitCount"], 2);
    assert_eq!(release["lastCommit"]["id"], head.as_str());
    assert_eq!(
        release["lastCommit"]["message"].as_str().map(str::trim_end),
        Some("Never show a negative total")
    );
    assert_eq!(
        release["authors"],
        json!([{"name": "Jane Doe", "email": "jane@example.com"}])
    );
    assert_eq!(release["deployCount"], 1);
    assert_eq!(release["lastDeploy"]["environment"], "production");
    assert_eq!(release["lastDeploy"]["name"], "blue");
    let deploys = api_get(
        &server.url,
        Some(&server.token),
        &format!("{}deploys/", release_path(VERSION)),
    )
    .array();
    assert_eq!(deploys.len(), 1);
    assert!(deploys[0]["dateFinished"].is_string());

    // `--auto` needs repository integrations, which Faultline has none of: the CLI says so and
    // falls back to the local repository.
    let out = cli_ok(
        &server,
        h,
        r,
        &["releases", "set-commits", VERSION, "--auto"],
    );
    assert!(
        out.contains("Could not determine any commits to be associated with a repo-based"),
        "{out}"
    );

    // The next release gets only the commits made since the previous release's last one.
    std::fs::write(r.join("cart.py"), "total = max(0, total or 0)\n").unwrap();
    git(r, &["commit", "-q", "-am", "Treat a missing total as zero"]);
    let next_head = git(r, &["rev-parse", "HEAD"]);
    cli_ok(&server, h, r, &["releases", "new", "shop@1.3.0"]);
    cli_ok(
        &server,
        h,
        r,
        &["releases", "set-commits", "shop@1.3.0", "--local"],
    );
    let next = api_get(
        &server.url,
        Some(&server.token),
        &release_path("shop@1.3.0"),
    )
    .expect(200)
    .clone();
    assert_eq!(next["commitCount"], 1, "{next}");
    assert_eq!(next["lastCommit"]["id"], next_head.as_str());

    // Archive hides a release from the list; restore brings it back; delete removes it.
    cli_ok(&server, h, r, &["releases", "new", "shop@0.9"]);
    let out = cli_ok(&server, h, r, &["releases", "archive", "shop@0.9"]);
    assert!(out.contains("Archived release shop@0.9"), "{out}");
    let out = cli_ok(&server, h, r, &["releases", "list"]);
    assert!(!out.contains("shop@0.9"), "{out}");
    cli_ok(&server, h, r, &["releases", "restore", "shop@0.9"]);
    let out = cli_ok(&server, h, r, &["releases", "list"]);
    assert!(out.contains("shop@0.9"), "{out}");
    let out = cli_ok(&server, h, r, &["releases", "delete", "shop@0.9"]);
    assert!(out.contains("Deleted release shop@0.9"), "{out}");
    api_get(&server.url, Some(&server.token), &release_path("shop@0.9")).expect_error(404);
    assert!(
        !cli(&server, h, r, &["releases", "info", "shop@0.9"])
            .status
            .success()
    );

    // Every release route needs a token, and an organization the user belongs to.
    api_get(&server.url, None, &release_path(VERSION)).expect(401);
    api_get(
        &server.url,
        Some(&server.token),
        "/api/0/organizations/elsewhere/releases/",
    )
    .expect_error(404);
}

#[test]
fn events_and_sessions_fill_in_the_release() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let (h, r) = (home.path(), home.path());
    cli_ok(&server, h, r, &["releases", "new", VERSION]);

    // Three events of the release, two issues; one event of another release.
    for message in [
        "Cart total is negative",
        "Cart total is negative",
        "Gateway timeout",
    ] {
        send_event(
            &server.url,
            &server.dsn,
            json!({"message": message, "release": VERSION, "environment": "production"}),
        );
    }
    send_event(
        &server.url,
        &server.dsn,
        json!({"message": "Old bug", "release": "shop@1.1.0"}),
    );
    let path = release_path(VERSION);
    let release = wait_until("the release counts its events", || {
        let a = api_get(&server.url, Some(&server.token), &path);
        let body = a.expect(200);
        if body["eventCount"] == 3 {
            Ok(body.clone())
        } else {
            Err(body.to_string())
        }
    });
    assert_eq!(release["newGroups"], 2);
    assert_eq!(release["projects"][0]["newGroups"], 2);
    assert!(release["firstEvent"].is_string() && release["lastEvent"].is_string());
    let out = cli_ok(&server, h, r, &["releases", "list"]);
    let row = out
        .lines()
        .find(|l| l.contains(VERSION))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells.contains(&"2"), "new issues shown as 2: {row}");
    // The event of the other release made that release, unannounced.
    let old = api_get(
        &server.url,
        Some(&server.token),
        &release_path("shop@1.1.0"),
    )
    .expect(200)
    .clone();
    assert_eq!(
        (old["eventCount"].clone(), old["newGroups"].clone()),
        (json!(1), json!(1))
    );

    // Four sessions from three users, one of which crashed.
    let session = |sid: &str, did: &str, status: &str| {
        let payload = json!({
            "sid": sid, "did": did, "init": true, "started": chrono::Utc::now().to_rfc3339(),
            "status": status, "errors": i32::from(status == "crashed"),
            "attrs": {"release": VERSION, "environment": "production"},
        });
        format!("{{\"type\":\"session\"}}\n{payload}\n")
    };
    let body = format!(
        "{{}}\n{}{}{}{}",
        session("a1a1a1a1a1a14a1a8a1a1a1a1a1a1a1a", "u1", "exited"),
        session("b1b1b1b1b1b14b1b8b1b1b1b1b1b1b1b", "u1", "exited"),
        session("c1c1c1c1c1c14c1c8c1c1c1c1c1c1c1c", "u2", "crashed"),
        session("d1d1d1d1d1d14d1d8d1d1d1d1d1d1d1d", "u3", "exited"),
    );
    post_envelope(&server, body.as_bytes());
    let health = wait_until("the sessions are counted", || {
        let a = api_get(&server.url, Some(&server.token), &path);
        let h = a.expect(200)["projects"][0]["healthData"].clone();
        if h["totalSessions"] == 4 {
            Ok(h)
        } else {
            Err(h.to_string())
        }
    });
    assert_eq!(health["hasHealthData"], true);
    assert_eq!(health["sessionsCrashed"], 1);
    assert_eq!(health["crashFreeSessions"], 75.0);
    assert_eq!(health["totalUsers"], 3);
    let users = health["crashFreeUsers"].as_f64().unwrap();
    assert!((users - 200.0 / 3.0).abs() < 1e-9, "{health}");
    assert_eq!(
        health["adoption"], 100.0,
        "the only release with sessions today"
    );
    // Another environment has none of them.
    let staging = api_get(
        &server.url,
        Some(&server.token),
        &format!("{path}?environment=staging"),
    )
    .expect(200)["projects"][0]["healthData"]
        .clone();
    assert_eq!(staging["hasHealthData"], false);
    // The project's release list agrees.
    let list = api_get(
        &server.url,
        Some(&server.token),
        &format!("/api/0/projects/{ORG}/{PROJECT}/releases/"),
    )
    .array();
    let listed = list
        .iter()
        .find(|r| r["version"] == VERSION)
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(
        listed["projects"][0]["healthData"]["crashFreeSessions"],
        75.0
    );
}

/// The issue page marks deploys on its trend and counts the events since the last deploy;
/// the project's releases page lists the release with its figures; both escape what they
/// show, and neither is shown to someone outside the project.
#[test]
fn deploys_and_releases_show_in_the_web_ui() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let (h, r) = (home.path(), home.path());
    let env = "<b>prod";
    cli_ok(&server, h, r, &["releases", "new", VERSION]);
    let id = send_event(
        &server.url,
        &server.dsn,
        json!({"message": "Cart total is negative", "release": VERSION, "environment": env,
               "timestamp": now() - 60.0}),
    );
    let issue_id = wait_until("the event is digested", || {
        let a = api_get(
            &server.url,
            Some(&server.token),
            &format!("/api/0/projects/{ORG}/{PROJECT}/events/{id}/"),
        );
        match a.status {
            200 => Ok(a.body["groupID"].as_str().unwrap_or_default().to_string()),
            s => Err(format!("{s}")),
        }
    });
    cli_ok(&server, h, r, &["deploys", "new", "-r", VERSION, "-e", env]);
    // Two more events after the deploy (one in another environment, which does not count).
    for e in [env, env, "staging"] {
        send_event(
            &server.url,
            &server.dsn,
            json!({"message": "Cart total is negative", "release": VERSION, "environment": e}),
        );
    }
    let client = WebClient::admin(&server);
    let path = format!("/organizations/{ORG}/issues/{issue_id}/");
    let body = wait_until("the events after the deploy are counted", || {
        let page = client.get(&path);
        let body = page.expect(200).to_string();
        if body.contains("<strong>2</strong> events since the last deploy to") {
            Ok(body)
        } else {
            Err(body)
        }
    });
    assert!(body.contains("&#60;b&#62;prod"), "escaped environment");
    assert!(
        !body.contains("<b>prod"),
        "no markup from an environment name"
    );
    assert!(
        body.contains(r#"<rect class="marker deploy""#)
            && body.contains(&format!(
                "<title>{VERSION} deployed to &#60;b&#62;prod</title>"
            )),
        "the trend marks the deploy"
    );

    // The releases page, linked from the project's settings.
    let settings = client.get(&format!(
        "/organizations/{ORG}/projects/{PROJECT}/settings/"
    ));
    assert!(
        settings
            .expect(200)
            .contains(r#"<a href="../releases/">Releases</a>"#)
    );
    let releases_path = format!("/organizations/{ORG}/projects/{PROJECT}/releases/");
    let page = client.get(&releases_path);
    let body = page.expect(200);
    let row = body
        .split(&format!("<tr data-release=\"{VERSION}\">"))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("the release has a row: {body}"));
    assert!(
        row.contains(r#"<td class="num new-issues">1</td>"#),
        "{row}"
    );
    assert!(row.contains("not finalized"), "{row}");
    assert!(row.contains("1 · last to &#60;b&#62;prod"), "{row}");
    // The project's trend marks the release and its deploy (names escaped).
    let trend = body
        .split(r#"<section class="card" id="trend">"#)
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_else(|| panic!("the page has a trend: {body}"));
    assert!(
        trend.contains(r#"<rect class="marker deploy""#)
            && trend.contains(&format!(
                "<title>{VERSION} deployed to &#60;b&#62;prod</title>"
            )),
        "the project trend marks the deploy: {trend}"
    );
    assert!(
        trend.contains(r#"<rect class="marker release""#)
            && trend.contains(&format!("<title>release {VERSION}</title>")),
        "the project trend marks the release: {trend}"
    );
    // The bars' tooltips ("2026-11-25 — 4 events") add up to the four events the test sent.
    let charted: i64 = trend
        .split(" — ")
        .skip(1)
        .filter_map(|rest| rest.split(" events</title>").next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(charted, 4, "the trend's bars: {trend}");

    // Someone who is no member of the organization sees neither.
    server.cli(
        &["user", "create", "--email", "outsider@example.com"],
        &[("FAULTLINE_PASSWORD", common::PASSWORD)],
    );
    let outsider = WebClient::login(&server, "outsider@example.com", common::PASSWORD);
    assert_eq!(outsider.get(&releases_path).status, 404);
    assert_eq!(outsider.get(&path).status, 404);
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
