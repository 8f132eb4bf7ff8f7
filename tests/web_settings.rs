//! The settings pages end to end, against the real binary over HTTP: projects, DSN keys and
//! their snippets, rate limits, API tokens, passwords, members, invitations by link, what a
//! member may see and change, CSRF and login.

mod common;

use common::web::{WebClient, WebPage};
use common::{Server, agent, answer};
use serde_json::{Value, json};

/// The text between `start` and the next `end` after it.
fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let at = body
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not on the page: {body}"))
        + start.len();
    let len = body[at..]
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} not after {start:?}: {body}"));
    &body[at..at + len]
}

/// Every value of `attr="…"` on a page, in order.
fn attrs(body: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    body.split(needle.as_str())
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The DSNs shown on a project settings page, in order.
fn dsns(page: &str) -> Vec<String> {
    page.split("class=\"settings-dsn\">")
        .skip(1)
        .filter_map(|s| s.split("</pre>").next())
        .map(str::to_string)
        .collect()
}

/// Posts one event with a DSN; returns the HTTP status.
fn send_event(server: &Server, dsn: &str) -> u16 {
    let (key, project) = common::dsn_parts(dsn);
    let payload = json!({"message": "from the settings test"}).to_string();
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{payload}");
    let req = agent()
        .post(&format!("{}/api/{project}/envelope/", server.url))
        .header(
            "X-Sentry-Auth",
            &format!("Sentry sentry_key={key}, sentry_version=7"),
        );
    answer(format!("envelope with {dsn}"), req.send(body.as_bytes())).status
}

/// `GET /api/0/{path}` with a token; returns status and JSON (or null).
fn api_with(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let req = agent()
        .get(&format!("{}/api/0/{path}", server.url))
        .header("Authorization", &format!("Bearer {token}"));
    let a = answer(format!("GET /api/0/{path}"), req.call());
    (a.status, a.body)
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

/// Creates `org/project` through the settings page; returns its settings path.
fn create_project(admin: &WebClient, org: &str, project: &str) -> String {
    let csrf = admin.get("/settings/").csrf();
    let page = post_ok(
        admin,
        "/settings/projects",
        &[("csrf", &csrf), ("org", org), ("project", project)],
    );
    let path = format!("/organizations/{org}/projects/{project}/settings/");
    assert!(page.location().starts_with(&path), "{}", page.location());
    path
}

fn project_id(server: &Server, org: &str, project: &str) -> String {
    server.api(&format!("projects/{org}/{project}/"))["id"]
        .as_str()
        .expect("project id")
        .to_string()
}

#[test]
fn a_superuser_manages_projects_keys_rate_limits_and_tokens() {
    let server = Server::start();
    let admin = WebClient::admin(&server);

    let account = admin.get("/settings/");
    let body = account.expect(200);
    assert!(body.contains("Create a project"), "{body}");
    assert!(body.contains(common::EMAIL), "the users list: {body}");
    assert!(body.contains("/organizations/acme/projects/checkout/settings/"));

    // A project made in the UI, with its DSN and the four snippets.
    let settings = create_project(&admin, "shop", "web");
    let page = admin.get(&settings);
    let body = page.expect(200).to_string();
    let first = dsns(&body);
    assert_eq!(first.len(), 1, "{body}");
    let dsn = first[0].clone();
    let host = server.url.trim_start_matches("http://");
    assert!(
        dsn.starts_with("http://") && dsn.contains(&format!("@{host}/")),
        "{dsn}"
    );
    for snippet in [
        "@sentry/browser",
        "Sentry.init({",
        &format!("dsn: \"{dsn}\""),
        "require(\"@sentry/node\")",
        &format!("sentry_sdk.init(dsn=\"{dsn}\")"),
        &format!("sentry::init((\"{dsn}\", sentry::ClientOptions {{"),
        "release: sentry::release_name!(),",
        "..Default::default()",
    ] {
        assert!(body.contains(snippet), "no {snippet:?} on {body}");
    }
    assert_eq!(body.matches("<pre class=\"snippet\"").count(), 4);
    assert_eq!(send_event(&server, &dsn), 200);

    // A second key, then revoked: its DSN is refused.
    let csrf = page.csrf();
    post_ok(
        &admin,
        &format!("{settings}keys"),
        &[("csrf", &csrf), ("label", "second")],
    );
    let body = admin.get(&settings).expect(200).to_string();
    let keys = attrs(&body, "data-key");
    let all = dsns(&body);
    assert_eq!((keys.len(), all.len()), (2, 2), "{body}");
    let (second_id, second_dsn) = keys
        .iter()
        .zip(&all)
        .find(|(_, d)| **d != dsn)
        .map(|(k, d)| (k.clone(), d.clone()))
        .expect("the new key");
    assert!(body.contains("second"));
    assert_eq!(send_event(&server, &second_dsn), 200);
    assert!(body.contains("data-confirm=\"Revoke the key"), "{body}");
    post_ok(
        &admin,
        &format!("{settings}keys/{second_id}/delete"),
        &[("csrf", &csrf)],
    );
    let status = send_event(&server, &second_dsn);
    assert!(
        status == 401 || status == 403,
        "a revoked DSN answered {status}"
    );
    let body = admin.get(&settings).expect(200).to_string();
    assert_eq!(dsns(&body), vec![dsn.clone()]);
    let first_id = attrs(&body, "data-key")[0].clone();

    // A per-key rate limit.
    post_ok(
        &admin,
        &format!("{settings}keys/{first_id}"),
        &[
            ("csrf", &csrf),
            ("active", "on"),
            ("rate_limit_count", "1"),
            ("rate_limit_window", "3600"),
        ],
    );
    let body = admin.get(&settings).expect(200).to_string();
    assert!(body.contains("1 events per 3600 s"), "{body}");
    let keys = server.api("projects/shop/web/keys/");
    assert_eq!(keys[0]["rateLimit"], json!({"count": 1, "window": 3600}));
    assert_eq!(keys[0]["isActive"], json!(true));
    let statuses: Vec<u16> = (0..3).map(|_| send_event(&server, &dsn)).collect();
    assert!(statuses.contains(&429), "{statuses:?}");

    // Disabled (the checkbox unticked), then enabled without a limit.
    post_ok(
        &admin,
        &format!("{settings}keys/{first_id}"),
        &[("csrf", &csrf), ("rate_limit_count", "")],
    );
    assert_eq!(send_event(&server, &dsn), 403);
    let body = admin.get(&settings).expect(200).to_string();
    assert!(body.contains("inactive"), "{body}");
    assert!(body.contains("No active DSN key"), "{body}");
    post_ok(
        &admin,
        &format!("{settings}keys/{first_id}"),
        &[("csrf", &csrf), ("active", "on"), ("rate_limit_count", "")],
    );
    assert_eq!(send_event(&server, &dsn), 200);
    let keys = server.api("projects/shop/web/keys/");
    assert_eq!(keys[0]["rateLimit"], Value::Null);

    // Bad numbers are refused.
    let page = admin.post(
        &format!("{settings}keys/{first_id}"),
        &[("csrf", &csrf), ("active", "on"), ("rate_limit_count", "x")],
    );
    page.expect(400);

    // Retention: set, then back to the server default.
    post_ok(
        &admin,
        &format!("{settings}retention"),
        &[
            ("csrf", &csrf),
            ("retention_days", "30"),
            ("retention_max_events", "1000"),
        ],
    );
    let p = server.api("projects/shop/web/");
    assert_eq!(
        (&p["retentionDays"], &p["retentionMaxEvents"]),
        (&json!(30), &json!(1000))
    );
    post_ok(
        &admin,
        &format!("{settings}retention"),
        &[
            ("csrf", &csrf),
            ("retention_days", ""),
            ("retention_max_events", ""),
        ],
    );
    let p = server.api("projects/shop/web/");
    assert_eq!(
        (&p["retentionDays"], &p["retentionMaxEvents"]),
        (&Value::Null, &Value::Null)
    );

    // An existing project cannot be created twice.
    let page = admin.post(
        "/settings/projects",
        &[("csrf", &csrf), ("org", "shop"), ("project", "web")],
    );
    page.expect(400);
    let page = admin.post(
        "/settings/projects",
        &[("csrf", &csrf), ("org", "Shop"), ("project", "x")],
    );
    page.expect(400);

    // An API token made in the UI, shown once, used, revoked.
    let page = admin.post("/settings/tokens", &[("csrf", &csrf), ("name", "ci <b>")]);
    let body = page.expect(200);
    assert!(body.contains("will not be shown again"), "{body}");
    assert!(!body.contains("ci <b>"), "names are escaped: {body}");
    let token = between(body, "id=\"new-token\">", "</pre>").to_string();
    assert!(token.starts_with("sntryu_"), "{token}");
    // (There is no `/api/0/projects/` list in the API: the organization's list it is.)
    let (status, projects) = api_with(&server, &token, "organizations/shop/projects/");
    assert_eq!(status, 200, "{projects}");
    assert!(
        projects
            .as_array()
            .expect("projects")
            .iter()
            .any(|p| p["slug"] == "web"),
        "{projects}"
    );
    let body = admin.get("/settings/").expect(200).to_string();
    assert!(!body.contains(&token), "a token is shown once only");
    let token_id = between(&body, "data-token=\"", "\"").to_string();
    post_ok(
        &admin,
        &format!("/settings/tokens/{token_id}/delete"),
        &[("csrf", &csrf)],
    );
    assert_eq!(
        api_with(&server, &token, "organizations/shop/projects/").0,
        401
    );
    assert_eq!(api_with(&server, &token, "").0, 401);
    // The CLI's token still works.
    assert_eq!(
        api_with(&server, &server.token, "organizations/shop/projects/").0,
        200
    );

    // Password change: checked, then the new one logs in.
    let new = "a much better password";
    let page = admin.post(
        "/settings/password",
        &[
            ("csrf", &csrf),
            ("current", "wrong"),
            ("new", new),
            ("confirm", new),
        ],
    );
    page.expect(400);
    let page = admin.post(
        "/settings/password",
        &[
            ("csrf", &csrf),
            ("current", common::PASSWORD),
            ("new", new),
            ("confirm", "something else"),
        ],
    );
    page.expect(400);
    let page = admin.post(
        "/settings/password",
        &[
            ("csrf", &csrf),
            ("current", common::PASSWORD),
            ("new", "short"),
            ("confirm", "short"),
        ],
    );
    page.expect(400);
    post_ok(
        &admin,
        "/settings/password",
        &[
            ("csrf", &csrf),
            ("current", common::PASSWORD),
            ("new", new),
            ("confirm", new),
        ],
    );
    let other = WebClient::new(&server);
    assert_eq!(other.try_login(common::EMAIL, common::PASSWORD).status, 401);
    WebClient::login(&server, common::EMAIL, new);
}

#[test]
fn an_invited_member_sees_only_their_projects_until_made_admin() {
    let server = Server::start();
    let admin = WebClient::admin(&server);
    let web = create_project(&admin, "shop", "web");
    let api = create_project(&admin, "shop", "api");
    let web_id = project_id(&server, "shop", "web");

    // The superuser who created the organization owns it.
    let members = admin.get("/organizations/shop/members/");
    let body = members.expect(200).to_string();
    assert!(
        body.contains(common::EMAIL) && body.contains("owner"),
        "{body}"
    );
    let csrf = members.csrf();

    // An invitation by link to one project.
    let page = admin.post(
        "/organizations/shop/invites",
        &[
            ("csrf", &csrf),
            ("email", "Bob@Example.com"),
            ("role", "member"),
            ("project_ids", &web_id),
        ],
    );
    let body = page.expect(200);
    let link = between(body, "id=\"invite-link\">", "</pre>").to_string();
    let prefix = format!("{}/invite/", server.url);
    assert!(link.starts_with(&prefix), "{link}");
    let invite_path = link.trim_start_matches(&server.url).to_string();
    let token = invite_path.trim_start_matches("/invite/");
    assert_eq!(token.len(), 64, "{token}");
    let body = admin
        .get("/organizations/shop/members/")
        .expect(200)
        .to_string();
    assert!(body.contains("bob@example.com"), "pending: {body}");

    // The invitee opens it logged out and creates an account.
    let bob = WebClient::new(&server);
    let page = bob.get(&invite_path);
    let body = page.expect(200);
    assert!(
        body.contains("shop") && body.contains(common::EMAIL),
        "{body}"
    );
    assert!(body.contains("value=\"bob@example.com\""), "{body}");
    assert!(
        body.contains(&format!("href=\"/login?next={invite_path}\"")),
        "{body}"
    );
    let page = bob.post(
        &invite_path,
        &[
            ("csrf", &page.csrf()),
            ("email", "bob@example.com"),
            ("password", "bobs password"),
            ("confirm", "bobs passwort"),
        ],
    );
    assert!(page.expect(400).contains("differ"));
    let page = bob.post(
        &invite_path,
        &[
            ("csrf", "forged"),
            ("email", "bob@example.com"),
            ("password", "bobs password"),
            ("confirm", "bobs password"),
        ],
    );
    page.expect(403);
    let page = bob.post(
        &invite_path,
        &[
            ("csrf", &page.csrf()),
            ("email", "bob@example.com"),
            ("password", "bobs password"),
            ("confirm", "bobs password"),
        ],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), "/");
    let body = bob.get("/settings/").expect(200).to_string();
    assert!(body.contains("bob@example.com"), "logged in: {body}");
    assert!(!body.contains("Create a project"), "{body}");
    assert!(!body.contains("/organizations/shop/members/"), "{body}");

    // Bob sees the project he was invited to, read-only, and nothing else of the organization.
    let page = bob.get(&web);
    let body = page.expect(200).to_string();
    assert_eq!(dsns(&body).len(), 1, "{body}");
    assert!(body.contains("sentry_sdk.init(dsn="), "{body}");
    assert!(!body.contains("Create key"), "{body}");
    assert!(!body.contains("/keys\""), "{body}");
    bob.get(&api).expect(404);
    bob.get("/organizations/shop/members/").expect(404);
    bob.get("/organizations/acme/projects/checkout/settings/")
        .expect(404);
    let bob_csrf = page.csrf();
    bob.post(
        &format!("{web}keys"),
        &[("csrf", &bob_csrf), ("label", "mine")],
    )
    .expect(403);
    bob.post(
        &format!("{web}retention"),
        &[("csrf", &bob_csrf), ("retention_days", "1")],
    )
    .expect(403);
    bob.post(
        &format!("{api}keys"),
        &[("csrf", &bob_csrf), ("label", "mine")],
    )
    .expect(404);
    bob.post(
        "/organizations/shop/invites",
        &[("csrf", &bob_csrf), ("role", "admin")],
    )
    .expect(404);
    assert_eq!(
        server
            .api("projects/shop/web/keys/")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The link works once; an existing address cannot sign up again.
    let eve = WebClient::new(&server);
    assert!(
        eve.get(&invite_path)
            .expect(400)
            .contains("already been used")
    );
    let page = admin.post(
        "/organizations/shop/invites",
        &[("csrf", &csrf), ("role", "member")],
    );
    let second = between(page.expect(200), "id=\"invite-link\">", "</pre>")
        .trim_start_matches(&server.url)
        .to_string();
    let page = eve.get(&second);
    let page = eve.post(
        &second,
        &[
            ("csrf", &page.csrf()),
            ("email", "bob@example.com"),
            ("password", "eves password"),
            ("confirm", "eves password"),
        ],
    );
    assert!(page.expect(400).contains("already exists"), "{}", page.body);
    WebClient::login(&server, "bob@example.com", "bobs password");

    // A revoked invitation's link no longer works.
    let body = admin
        .get("/organizations/shop/members/")
        .expect(200)
        .to_string();
    let invite_id = between(&body, "data-invite=\"", "\"").to_string();
    post_ok(
        &admin,
        &format!("/organizations/shop/invites/{invite_id}/delete"),
        &[("csrf", &csrf)],
    );
    eve.get(&second).expect(404);

    // The org admin adds Bob to the other project, removes him again, then makes him admin.
    let body = admin
        .get("/organizations/shop/members/")
        .expect(200)
        .to_string();
    let ids = attrs(&body, "data-member");
    let bob_id = ids
        .iter()
        .find(|id| {
            between(&body, &format!("data-member=\"{id}\">"), "</td>").contains("bob@example.com")
        })
        .expect("bob on the members page")
        .clone();
    let admin_id = ids.iter().find(|id| **id != bob_id).expect("admin").clone();
    post_ok(
        &admin,
        &format!("{api}members"),
        &[("csrf", &csrf), ("user_id", &bob_id), ("action", "add")],
    );
    bob.get(&api).expect(200);
    post_ok(
        &admin,
        &format!("{api}members"),
        &[("csrf", &csrf), ("user_id", &bob_id), ("action", "remove")],
    );
    bob.get(&api).expect(404);
    post_ok(
        &admin,
        &format!("/organizations/shop/members/{bob_id}/role"),
        &[("csrf", &csrf), ("role", "admin")],
    );
    bob.get(&api).expect(200);
    let body = bob.get(&web).expect(200).to_string();
    assert!(
        body.contains("Create key"),
        "an admin may change it: {body}"
    );
    bob.get("/organizations/shop/members/").expect(200);
    let body = bob.get("/settings/").expect(200).to_string();
    assert!(body.contains(&format!("href=\"{api}\"")), "{body}");
    assert!(body.contains(&format!("href=\"{web}\"")), "{body}");
    assert!(body.contains("/organizations/shop/members/"), "{body}");
    // An admin cannot make himself owner, nor touch the owner.
    bob.post(
        &format!("/organizations/shop/members/{bob_id}/role"),
        &[("csrf", &bob_csrf), ("role", "owner")],
    )
    .expect(403);
    bob.post(
        &format!("/organizations/shop/members/{admin_id}/delete"),
        &[("csrf", &bob_csrf)],
    )
    .expect(403);

    // Nobody removes or demotes the last owner.
    admin
        .post(
            &format!("/organizations/shop/members/{admin_id}/delete"),
            &[("csrf", &csrf)],
        )
        .expect(400);
    admin
        .post(
            &format!("/organizations/shop/members/{admin_id}/role"),
            &[("csrf", &csrf), ("role", "member")],
        )
        .expect(400);

    // Removing a member takes their access away.
    post_ok(
        &admin,
        &format!("/organizations/shop/members/{bob_id}/delete"),
        &[("csrf", &csrf)],
    );
    bob.get(&web).expect(404);
}

#[test]
fn a_logged_in_user_joins_with_one_button() {
    let server = Server::start();
    let admin = WebClient::admin(&server);
    let api = create_project(&admin, "shop", "api");
    let web = create_project(&admin, "shop", "web");
    let api_id = project_id(&server, "shop", "api");
    server.cli(
        &["user", "create", "--email", "carol@example.com"],
        &[("FAULTLINE_PASSWORD", "carols password")],
    );
    let carol = WebClient::login(&server, "carol@example.com", "carols password");
    carol.get(&api).expect(404);

    let csrf = admin.get("/organizations/shop/members/").csrf();
    let page = admin.post(
        "/organizations/shop/invites",
        &[
            ("csrf", &csrf),
            ("role", "member"),
            ("project_ids", &api_id),
        ],
    );
    let path = between(page.expect(200), "id=\"invite-link\">", "</pre>")
        .trim_start_matches(&server.url)
        .to_string();
    let page = carol.get(&path);
    let body = page.expect(200);
    assert!(
        body.contains("Join shop") && body.contains("carol@example.com"),
        "{body}"
    );
    assert!(!body.contains("name=\"password\""), "{body}");
    carol.post(&path, &[]).expect(403);
    let page = carol.post(&path, &[("csrf", &page.csrf())]);
    assert_eq!((page.status, page.location()), (303, "/"), "{}", page.body);
    carol.get(&api).expect(200);
    carol.get(&web).expect(404);
    carol.get(&path).expect(400);
}

#[test]
fn forms_need_the_csrf_token_and_pages_need_a_login() {
    let server = Server::start();
    let admin = WebClient::admin(&server);
    let settings = "/organizations/acme/projects/checkout/settings/";
    admin.get(settings).expect(200);
    admin.post("/settings/tokens", &[("name", "x")]).expect(403);
    admin
        .post("/settings/tokens", &[("name", "x"), ("csrf", "forged")])
        .expect(403);
    admin
        .post(&format!("{settings}keys"), &[("label", "x")])
        .expect(403);
    admin
        .post("/settings/projects", &[("org", "shop"), ("project", "web")])
        .expect(403);
    admin
        .post("/organizations/acme/invites", &[("role", "member")])
        .expect(403);
    assert_eq!(
        server
            .api("projects/acme/checkout/keys/")
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A non-superuser cannot create projects.
    server.cli(
        &["user", "create", "--email", "dan@example.com"],
        &[("FAULTLINE_PASSWORD", "dans password")],
    );
    let dan = WebClient::login(&server, "dan@example.com", "dans password");
    let csrf = dan.get("/settings/").csrf();
    dan.post(
        "/settings/projects",
        &[("csrf", &csrf), ("org", "dan"), ("project", "x")],
    )
    .expect(403);
    dan.get(settings).expect(404);

    // Logged out, every settings page sends to the login, except an invitation.
    let csrf = admin.get("/organizations/acme/members/").csrf();
    let page = admin.post(
        "/organizations/acme/invites",
        &[("csrf", &csrf), ("role", "member")],
    );
    let invite = between(page.expect(200), "id=\"invite-link\">", "</pre>")
        .trim_start_matches(&server.url)
        .to_string();
    let anon = WebClient::new(&server);
    for path in ["/settings/", settings, "/organizations/acme/members/"] {
        let page = anon.get(path);
        assert_eq!(page.status, 303, "GET {path}: {}", page.body);
        assert!(
            page.location().starts_with("/login?next="),
            "GET {path} went to {}",
            page.location()
        );
    }
    for path in [
        "/settings/tokens".to_string(),
        "/settings/password".to_string(),
        "/settings/projects".to_string(),
        format!("{settings}keys"),
        format!("{settings}retention"),
        "/organizations/acme/invites".to_string(),
    ] {
        let page = anon.post(&path, &[("csrf", "x")]);
        assert_eq!(page.status, 303, "POST {path}: {}", page.body);
        assert!(page.location().starts_with("/login"), "{}", page.location());
    }
    let page = anon.get(&invite);
    assert!(page.expect(200).contains("Create account and join"));
    anon.get(&format!("/invite/{}", "0".repeat(64))).expect(404);
    anon.get("/invite/nonsense").expect(404);
    // Joining without an account or a password goes to the login.
    let page = anon.post(&invite, &[("csrf", &page.csrf())]);
    assert_eq!(page.status, 303);
    assert!(page.location().starts_with("/login?next=/invite/"));
}
