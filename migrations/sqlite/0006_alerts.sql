-- Alerting: rules per project, when each rule last fired for each issue, and the outbox of
-- notifications to deliver (claimed by one node at a time, so each is sent once per cluster).
-- Events keep their user key, so that a window's distinct users can be counted.
ALTER TABLE events ADD COLUMN user_key TEXT;
CREATE TABLE alert_rules (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- new_issue, regression, frequency, users, spike or unignored.
    trigger_type TEXT NOT NULL,
    threshold INTEGER,
    window_minutes INTEGER,
    -- spike: how many times the usual rate.
    factor REAL,
    -- JSON: {"level", "environment", "release", "tags"}.
    filters TEXT NOT NULL DEFAULT '{}',
    interval_minutes INTEGER NOT NULL DEFAULT 60,
    -- JSON: [{"type": "email" | "webhook" | "slack", …}].
    actions TEXT NOT NULL DEFAULT '[]',
    date_created REAL NOT NULL,
    date_updated REAL NOT NULL
);
CREATE INDEX alert_rules_project ON alert_rules (project_id, id);
CREATE TABLE alert_fired (
    rule_id INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    last_fired REAL NOT NULL,
    PRIMARY KEY (rule_id, issue_id)
);
CREATE INDEX alert_fired_issue ON alert_fired (issue_id);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    rule_id INTEGER REFERENCES alert_rules(id) ON DELETE SET NULL,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    issue_id INTEGER,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- pending, sent or failed.
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    claimed_by TEXT,
    claimed_until REAL,
    date_created REAL NOT NULL,
    date_sent REAL
);
CREATE INDEX notifications_due ON notifications (status, next_attempt);
CREATE INDEX notifications_project ON notifications (project_id, id);
CREATE INDEX notifications_rule ON notifications (rule_id) WHERE rule_id IS NOT NULL;
-- Every existing project gets the rules a new project is created with.
INSERT INTO alert_rules (project_id, name, trigger_type, filters, interval_minutes, actions,
        date_created, date_updated)
    SELECT id, 'Notify members of new issues', 'new_issue', '{}', 60,
        '[{"type":"email","to":["members"]}]',
        (julianday('now') - 2440587.5) * 86400.0, (julianday('now') - 2440587.5) * 86400.0
    FROM projects ORDER BY id;
INSERT INTO alert_rules (project_id, name, trigger_type, filters, interval_minutes, actions,
        date_created, date_updated)
    SELECT id, 'Notify members of regressions', 'regression', '{}', 60,
        '[{"type":"email","to":["members"]}]',
        (julianday('now') - 2440587.5) * 86400.0, (julianday('now') - 2440587.5) * 86400.0
    FROM projects ORDER BY id;
