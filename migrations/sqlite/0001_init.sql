-- Faultline schema, version 1.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_superuser INTEGER NOT NULL DEFAULT 0,
    date_created REAL NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    date_created REAL NOT NULL
);
CREATE TABLE organizations (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    date_created REAL NOT NULL
);
CREATE TABLE org_members (
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (org_id, user_id)
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    platform TEXT,
    date_created REAL NOT NULL,
    retention_max_events INTEGER,
    retention_days INTEGER,
    next_short_id INTEGER NOT NULL DEFAULT 1,
    UNIQUE (org_id, slug)
);
CREATE TABLE project_keys (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    public_key TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT 'Default',
    is_active INTEGER NOT NULL DEFAULT 1,
    rate_limit_count INTEGER,
    rate_limit_window INTEGER,
    date_created REAL NOT NULL
);
CREATE TABLE issues (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    short_id INTEGER NOT NULL,
    title TEXT NOT NULL,
    culprit TEXT NOT NULL DEFAULT '',
    level TEXT NOT NULL,
    issue_type TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    platform TEXT NOT NULL DEFAULT 'other',
    logger TEXT,
    status TEXT NOT NULL DEFAULT 'unresolved',
    is_regression INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    times_seen INTEGER NOT NULL DEFAULT 0,
    user_count INTEGER NOT NULL DEFAULT 0,
    first_release TEXT,
    last_release TEXT
);
CREATE INDEX issues_project_last_seen ON issues (project_id, last_seen);
CREATE INDEX issues_project_first_seen ON issues (project_id, first_seen);
CREATE TABLE group_hashes (
    project_id INTEGER NOT NULL,
    hash TEXT NOT NULL,
    issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, hash)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    issue_id INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    received REAL NOT NULL,
    release TEXT,
    environment TEXT,
    trace_id TEXT,
    size INTEGER NOT NULL,
    grouping TEXT NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (project_id, event_id)
);
CREATE INDEX events_issue_time ON events (issue_id, timestamp);
CREATE INDEX events_project_time ON events (project_id, timestamp);
CREATE INDEX events_trace ON events (trace_id) WHERE trace_id IS NOT NULL;
CREATE TABLE issue_users (
    issue_id INTEGER NOT NULL,
    user_key TEXT NOT NULL,
    PRIMARY KEY (issue_id, user_key)
) WITHOUT ROWID;
CREATE TABLE issue_hourly (
    issue_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (issue_id, hour)
) WITHOUT ROWID;
CREATE TABLE issue_tags (
    issue_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (issue_id, key, value)
) WITHOUT ROWID;
CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT,
    attachment_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX attachments_event ON attachments (project_id, event_id);
CREATE TABLE user_reports (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    event_id TEXT,
    name TEXT,
    email TEXT,
    comments TEXT NOT NULL,
    date_created REAL NOT NULL
);
CREATE INDEX user_reports_event ON user_reports (project_id, event_id);
CREATE TABLE session_counts (
    project_id INTEGER NOT NULL,
    release TEXT NOT NULL,
    environment TEXT NOT NULL,
    hour INTEGER NOT NULL,
    started INTEGER NOT NULL DEFAULT 0,
    exited INTEGER NOT NULL DEFAULT 0,
    errored INTEGER NOT NULL DEFAULT 0,
    crashed INTEGER NOT NULL DEFAULT 0,
    abnormal INTEGER NOT NULL DEFAULT 0,
    unhandled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, release, environment, hour)
) WITHOUT ROWID;
CREATE TABLE session_users (
    project_id INTEGER NOT NULL,
    release TEXT NOT NULL,
    environment TEXT NOT NULL,
    did TEXT NOT NULL,
    crashed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, release, environment, did)
) WITHOUT ROWID;
CREATE TABLE outcomes (
    project_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    source TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (project_id, hour, source, category, reason)
) WITHOUT ROWID;
CREATE TABLE spool_cursor (
    node_id TEXT PRIMARY KEY,
    segment INTEGER NOT NULL,
    "offset" INTEGER NOT NULL
);
