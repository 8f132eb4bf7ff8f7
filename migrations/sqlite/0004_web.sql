-- The web UI: browser sessions, login throttling, per-project membership, invitations, issue
-- assignment, resolve-in-next-release, ignore thresholds and each issue's history.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    date_created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires);
CREATE TABLE login_failures (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);
CREATE INDEX login_failures_at ON login_failures (at);
-- Members of an organization with the role `member` see only the projects they are added to.
CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);
CREATE TABLE invites (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    -- A JSON array of project ids.
    project_ids TEXT NOT NULL DEFAULT '[]',
    email TEXT,
    created_by INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    date_created REAL NOT NULL,
    expires REAL NOT NULL,
    accepted_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    date_accepted REAL
);
CREATE INDEX invites_org ON invites (org_id, date_created);
ALTER TABLE issues ADD COLUMN assignee_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
ALTER TABLE issues ADD COLUMN resolved_in_release TEXT;
ALTER TABLE issues ADD COLUMN ignore_until REAL;
ALTER TABLE issues ADD COLUMN ignore_until_events INTEGER;
ALTER TABLE issues ADD COLUMN ignore_until_users INTEGER;
CREATE INDEX issues_assignee ON issues (assignee_id) WHERE assignee_id IS NOT NULL;
CREATE TABLE activity (
    id INTEGER PRIMARY KEY,
    issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT 'null',
    date_created REAL NOT NULL
);
CREATE INDEX activity_issue ON activity (issue_id, id);
