//! The alert rules API (`/api/0/projects/{org}/{project}/alert-rules/`) end to end, against the
//! real binary: the two default rules of a new project, the exact JSON shape in and out, webhook
//! secrets never answered, validation, and who may read and change rules.

mod common;

use std::collections::BTreeSet;

use common::web::WebClient;
use common::{Answer, ORG, PROJECT, Server, agent, answer};
use serde_json::{Value, json};

const RULES: &str = "/api/0/projects/acme/checkout/alert-rules/";
const SECRET: &str = "an-unguessable-signing-secret";

/// `METHOD path` with an optional Bearer token and JSON body.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let url = format!("{}{path}", server.url);
    let what = match body {
        Some(b) => format!("{method} {path} {b}"),
        None => format!("{method} {path}"),
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let agent = agent();
    let resp = match method {
        "GET" | "DELETE" => {
            let mut req = if method == "GET" {
                agent.get(&url)
            } else {
                agent.delete(&url)
            };
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        "POST" | "PUT" => {
            let mut req = if method == "POST" {
                agent.post(&url)
            } else {
                agent.put(&url)
            };
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            match body {
                Some(b) => req.send_json(b),
                None => req.send_empty(),
            }
        }
        other => panic!("unsupported method {other}"),
    };
    answer(what, resp)
}

fn rule_path(id: &str) -> String {
    format!("{RULES}{id}/")
}

/// The keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

const RULE_KEYS: [&str; 11] = [
    "id",
    "name",
    "trigger",
    "threshold",
    "window_minutes",
    "factor",
    "filters",
    "interval_minutes",
    "actions",
    "dateCreated",
    "dateUpdated",
];

fn rule_keys() -> BTreeSet<&'static str> {
    RULE_KEYS.into_iter().collect()
}

/// Checks the parts of a rule that are the server's: id, dates.
fn check_server_fields(rule: &Value) {
    assert_eq!(keys(rule), rule_keys(), "{rule:#}");
    let id = rule["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id is a string: {rule}"));
    assert!(id.parse::<i64>().is_ok(), "{id}");
    for key in ["dateCreated", "dateUpdated"] {
        let date = rule[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: {rule}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(date).is_ok() && date.ends_with('Z'),
            "{key} is ISO 8601 in UTC: {date}"
        );
    }
}

/// The rule minus id and dates.
fn content(rule: &Value) -> Value {
    let mut r = rule.clone();
    let obj = r.as_object_mut().expect("object");
    for key in ["id", "dateCreated", "dateUpdated"] {
        obj.remove(key);
    }
    r
}

fn spike_rule() -> Value {
    json!({
        "name": "Checkout is on fire",
        "trigger": "spike",
        "threshold": 50,
        "window_minutes": 15,
        "factor": 4.5,
        "filters": {
            "level": "error",
            "environment": "production",
            "release": "shop@1.4.2",
            "tags": {"browser": "Firefox", "region": "eu"},
        },
        "interval_minutes": 30,
        "actions": [
            {"type": "email", "to": ["members", "oncall@example.com"]},
            {"type": "webhook", "url": "https://hooks.example.com/faultline", "secret": SECRET},
            {"type": "slack", "url": "https://hooks.slack.com/services/T0/B0/XYZ"},
        ],
    })
}

#[test]
fn a_new_project_has_two_default_rules() {
    let server = Server::start();
    let rules = call(&server, "GET", RULES, Some(&server.token), None).array();
    assert_eq!(rules.len(), 2, "{rules:#?}");
    for r in &rules {
        check_server_fields(r);
    }
    let members = json!([{"type": "email", "to": ["members"]}]);
    assert_eq!(
        rules.iter().map(content).collect::<Vec<_>>(),
        vec![
            json!({"name": "Notify members of new issues", "trigger": "new_issue",
                "threshold": null, "window_minutes": null, "factor": null, "filters": {},
                "interval_minutes": 60, "actions": members}),
            json!({"name": "Notify members of regressions", "trigger": "regression",
                "threshold": null, "window_minutes": null, "factor": null, "filters": {},
                "interval_minutes": 60, "actions": members}),
        ]
    );
    // A project created later gets them too.
    server.cli(
        &[
            "project",
            "create",
            "acme/billing",
            "--public-url",
            &server.url,
        ],
        &[],
    );
    let rules = call(
        &server,
        "GET",
        "/api/0/projects/acme/billing/alert-rules/",
        Some(&server.token),
        None,
    )
    .array();
    let triggers: Vec<&str> = rules
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["new_issue", "regression"]);
}

#[test]
fn rules_round_trip_with_secrets_masked() {
    let server = Server::start();
    let token = Some(server.token.as_str());
    let created = call(&server, "POST", RULES, token, Some(&spike_rule()));
    let rule = created.expect(201).clone();
    check_server_fields(&rule);
    let mut want = spike_rule();
    want["actions"][1]["secret"] = json!("********");
    assert_eq!(content(&rule), want, "the rule as answered");
    assert_eq!(rule["dateCreated"], rule["dateUpdated"]);
    let id = rule["id"].as_str().unwrap().to_string();

    let read = call(&server, "GET", &rule_path(&id), token, None);
    assert_eq!(read.expect(200), &rule, "GET answers what POST did");
    let listed = call(&server, "GET", RULES, token, None).array();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], rule, "listed by id, the new rule last");

    // Defaults are applied and unknown fields ignored.
    let minimal = call(
        &server,
        "POST",
        RULES,
        token,
        Some(&json!({
            "name": "Busy", "trigger": "frequency", "threshold": 100, "colour": "red",
            "filters": {"level": "warning", "mood": "grumpy"},
            "actions": [{"type": "webhook", "url": "http://10.0.0.5:8080/hook", "retries": 9}],
        })),
    );
    let minimal = minimal.expect(201).clone();
    assert_eq!(
        content(&minimal),
        json!({"name": "Busy", "trigger": "frequency", "threshold": 100, "window_minutes": 60,
            "factor": null, "filters": {"level": "warning"}, "interval_minutes": 60,
            "actions": [{"type": "webhook", "url": "http://10.0.0.5:8080/hook", "secret": null}]})
    );

    // PUT replaces the rule; "********" keeps the stored secret of the webhook with that URL.
    let mut changed = rule.clone();
    changed["name"] = json!("Checkout is really on fire");
    changed["interval_minutes"] = json!(0);
    changed["filters"] = json!({"level": "fatal"});
    let put = call(&server, "PUT", &rule_path(&id), token, Some(&changed));
    let updated = put.expect(200).clone();
    check_server_fields(&updated);
    let mut want = content(&changed);
    want["filters"] = json!({"level": "fatal"});
    assert_eq!(content(&updated), want);
    assert_eq!(updated["id"], rule["id"]);
    assert_eq!(
        updated["dateCreated"], rule["dateCreated"],
        "creation date kept"
    );
    assert!(
        updated["dateUpdated"].as_str() >= rule["dateUpdated"].as_str(),
        "{updated:#}"
    );
    assert_eq!(
        updated["actions"][1]["secret"], "********",
        "secret still set"
    );

    // The mask with another URL has no stored secret to keep: 400, nothing changed.
    let mut moved = changed.clone();
    moved["actions"][1]["url"] = json!("https://elsewhere.example.com/hook");
    call(&server, "PUT", &rule_path(&id), token, Some(&moved)).expect_error(400);
    assert_eq!(
        call(&server, "GET", &rule_path(&id), token, None).expect(200),
        &updated
    );
    // A new secret replaces it; null removes it.
    moved["actions"][1]["secret"] = json!("another secret");
    let put = call(&server, "PUT", &rule_path(&id), token, Some(&moved));
    assert_eq!(put.expect(200)["actions"][1]["secret"], "********");
    moved["actions"][1]["secret"] = Value::Null;
    let put = call(&server, "PUT", &rule_path(&id), token, Some(&moved));
    assert_eq!(put.expect(200)["actions"][1]["secret"], Value::Null);
    moved["actions"][1]["secret"] = json!("********");
    call(&server, "PUT", &rule_path(&id), token, Some(&moved)).expect_error(400);
    // A trigger without counts drops threshold, window and factor.
    let mut plain = moved.clone();
    plain["trigger"] = json!("unignored");
    plain["actions"][1]["secret"] = Value::Null;
    let put = call(&server, "PUT", &rule_path(&id), token, Some(&plain));
    let body = put.expect(200);
    assert_eq!(
        (&body["threshold"], &body["window_minutes"], &body["factor"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );

    // The secret itself was never answered.
    for path in [RULES.to_string(), rule_path(&id)] {
        let a = call(&server, "GET", &path, token, None);
        assert!(!a.body.to_string().contains(SECRET), "{}", a.body);
    }

    // DELETE: 204, then gone.
    let deleted = call(&server, "DELETE", &rule_path(&id), token, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    call(&server, "GET", &rule_path(&id), token, None).expect_error(404);
    call(&server, "DELETE", &rule_path(&id), token, None).expect_error(404);
    call(&server, "PUT", &rule_path(&id), token, Some(&spike_rule())).expect_error(404);
    call(&server, "GET", &rule_path("nonsense"), token, None).expect_error(404);
    let left: Vec<String> = call(&server, "GET", RULES, token, None)
        .array()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        left,
        [
            "Notify members of new issues",
            "Notify members of regressions",
            "Busy"
        ]
    );
    // Another project's rule is not found through this project.
    server.cli(
        &[
            "project",
            "create",
            "acme/billing",
            "--public-url",
            &server.url,
        ],
        &[],
    );
    let minimal_id = minimal["id"].as_str().unwrap();
    call(
        &server,
        "GET",
        &format!("/api/0/projects/acme/billing/alert-rules/{minimal_id}/"),
        token,
        None,
    )
    .expect_error(404);
    call(
        &server,
        "DELETE",
        &format!("/api/0/projects/acme/billing/alert-rules/{minimal_id}/"),
        token,
        None,
    )
    .expect_error(404);
}

#[test]
fn invalid_rules_are_refused_with_a_detail() {
    let server = Server::start();
    let token = Some(server.token.as_str());
    let base = json!({"name": "n", "trigger": "users", "threshold": 3,
        "actions": [{"type": "email", "to": ["members"]}]});
    call(&server, "POST", RULES, token, Some(&base)).expect(201);
    let with = |changes: Value| {
        let mut b = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"name": ""})), "name"),
        (with(json!({"name": "x".repeat(201)})), "name"),
        (with(json!({"name": 7})), "name"),
        (with(json!({"trigger": "sometimes"})), "trigger"),
        (with(json!({"trigger": null})), "trigger"),
        (with(json!({"threshold": 0})), "threshold"),
        (with(json!({"threshold": null})), "threshold"),
        (with(json!({"threshold": "10"})), "threshold"),
        (
            with(json!({"trigger": "frequency", "threshold": 1.5})),
            "threshold",
        ),
        (with(json!({"trigger": "spike", "factor": 0.5})), "factor"),
        (with(json!({"window_minutes": 0})), "window_minutes"),
        (with(json!({"window_minutes": 10_081})), "window_minutes"),
        (with(json!({"interval_minutes": -1})), "interval_minutes"),
        (
            with(json!({"interval_minutes": 43_201})),
            "interval_minutes",
        ),
        (with(json!({"filters": []})), "filters"),
        (
            with(json!({"filters": {"level": "critical"}})),
            "filters.level",
        ),
        (with(json!({"filters": {"tags": ["a"]}})), "filters.tags"),
        (with(json!({"filters": {"tags": {"a": 1}}})), "filters.tags"),
        (
            with(json!({"filters": {"environment": 5}})),
            "filters.environment",
        ),
        (with(json!({"actions": []})), "actions"),
        (with(json!({"actions": null})), "actions"),
        (
            with(json!({"actions": vec![json!({"type": "email", "to": ["members"]}); 11]})),
            "actions",
        ),
        (with(json!({"actions": [{"type": "pager"}]})), "type"),
        (with(json!({"actions": ["email"]})), "actions[0]"),
        (
            with(json!({"actions": [{"type": "email", "to": []}]})),
            "to",
        ),
        (
            with(json!({"actions": [{"type": "email", "to": "members"}]})),
            "to",
        ),
        (
            with(json!({"actions": [{"type": "email", "to": ["not an address"]}]})),
            "not an address",
        ),
        (
            with(json!({"actions": [{"type": "webhook", "url": "ftp://example.com/x"}]})),
            "url",
        ),
        (
            with(json!({"actions": [{"type": "slack", "url": "javascript:alert(1)"}]})),
            "url",
        ),
        (with(json!({"actions": [{"type": "slack"}]})), "url"),
        (
            with(json!({"actions": [{"type": "webhook", "url": "https://"}]})),
            "url",
        ),
        (
            with(
                json!({"actions": [{"type": "webhook", "url": "https://h.example/",
                "secret": "s".repeat(201)}]}),
            ),
            "secret",
        ),
        (
            with(
                json!({"actions": [{"type": "webhook", "url": "https://h.example/",
                "secret": 12}]}),
            ),
            "secret",
        ),
        (
            with(
                json!({"actions": [{"type": "webhook", "url": "https://h.example/",
                "secret": "********"}]}),
            ),
            "secret",
        ),
        (json!([base.clone()]), "object"),
    ];
    for (body, word) in &cases {
        let a = call(&server, "POST", RULES, token, Some(body));
        a.expect_error(400);
        let detail = a.body["detail"].as_str().unwrap();
        assert!(
            detail.contains(word),
            "POST {body}: the detail should name {word:?}: {detail}"
        );
    }
    // Not JSON at all.
    let resp = agent()
        .post(&format!("{}{RULES}", server.url))
        .header("Authorization", &format!("Bearer {}", server.token))
        .header("Content-Type", "application/json")
        .send("{\"name\": ");
    answer("POST not JSON".into(), resp).expect_error(400);
    // The same checks on PUT; nothing was stored.
    let rules = call(&server, "GET", RULES, token, None).array();
    assert_eq!(rules.len(), 3, "only the defaults and the valid rule");
    let id = rules[2]["id"].as_str().unwrap();
    for (body, _) in &cases[..5] {
        call(&server, "PUT", &rule_path(id), token, Some(body)).expect_error(400);
    }
    assert_eq!(
        call(&server, "GET", &rule_path(id), token, None).expect(200),
        &rules[2]
    );
}

/// Invites `email` into the organization `acme` with `role` (to the test project), accepts the
/// invitation with a new account, and returns an API token of theirs.
fn invited(server: &Server, admin: &WebClient, email: &str, role: &str) -> String {
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
            ("role", role),
            ("project_ids", &project_id),
        ],
    );
    let body = page.expect(200);
    let start = body
        .find("id=\"invite-link\">")
        .unwrap_or_else(|| panic!("no invitation link: {body}"))
        + "id=\"invite-link\">".len();
    let end = start + body[start..].find("</pre>").expect("end of the link");
    let path = body[start..end]
        .trim()
        .trim_start_matches(&server.url)
        .to_string();
    let invitee = WebClient::new(server);
    let form = invitee.get(&path);
    let password = "a long enough password";
    let page = invitee.post(
        &path,
        &[
            ("csrf", &form.csrf()),
            ("email", email),
            ("password", password),
            ("confirm", password),
        ],
    );
    assert_eq!(page.status, 303, "accepting the invitation: {}", page.body);
    server.cli(&["token", "create", "--email", email], &[])
}

#[test]
fn who_may_read_and_change_rules() {
    let server = Server::start();
    let rules = call(&server, "GET", RULES, Some(&server.token), None).array();
    let id = rules[0]["id"].as_str().unwrap().to_string();
    let one = rule_path(&id);
    let body = json!({"name": "n", "trigger": "new_issue",
        "actions": [{"type": "email", "to": ["members"]}]});

    // Without a token, or with a wrong one: 401.
    for t in [None, Some("not-a-token-0123456789abcdef")] {
        call(&server, "GET", RULES, t, None).expect_error(401);
        call(&server, "POST", RULES, t, Some(&body)).expect_error(401);
        call(&server, "GET", &one, t, None).expect_error(401);
        call(&server, "PUT", &one, t, Some(&body)).expect_error(401);
        call(&server, "DELETE", &one, t, None).expect_error(401);
    }

    // A user who cannot see the project: 404 for everything, as if it did not exist.
    server.cli(
        &["user", "create", "--email", "stranger@example.com"],
        &[("FAULTLINE_PASSWORD", "a stranger's password")],
    );
    let stranger = server.cli(&["token", "create", "--email", "stranger@example.com"], &[]);
    let t = Some(stranger.as_str());
    call(&server, "GET", RULES, t, None).expect_error(404);
    call(&server, "POST", RULES, t, Some(&body)).expect_error(404);
    call(&server, "GET", &one, t, None).expect_error(404);
    call(&server, "PUT", &one, t, Some(&body)).expect_error(404);
    call(&server, "DELETE", &one, t, None).expect_error(404);

    // A member of the organization added to the project reads, but may not change: 403.
    let admin = WebClient::admin(&server);
    let member = invited(&server, &admin, "member@example.com", "member");
    let t = Some(member.as_str());
    assert_eq!(call(&server, "GET", RULES, t, None).array(), rules);
    assert_eq!(call(&server, "GET", &one, t, None).expect(200), &rules[0]);
    call(&server, "POST", RULES, t, Some(&body)).expect_error(403);
    call(&server, "PUT", &one, t, Some(&body)).expect_error(403);
    call(&server, "DELETE", &one, t, None).expect_error(403);
    assert_eq!(
        call(&server, "GET", RULES, Some(&server.token), None).array(),
        rules,
        "nothing changed"
    );

    // An admin of the organization changes rules.
    let org_admin = invited(&server, &admin, "admin@example.com", "admin");
    let t = Some(org_admin.as_str());
    let created = call(&server, "POST", RULES, t, Some(&body));
    let new_id = created.expect(201)["id"].as_str().unwrap().to_string();
    call(&server, "PUT", &one, t, Some(&body)).expect(200);
    let deleted = call(&server, "DELETE", &rule_path(&new_id), t, None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
}
