-- Releases (per organization, linked to the projects that use them), their commits and
-- deploys. Events and sessions create releases as they are stored; sentry-cli creates them too.
CREATE TABLE releases (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    ref TEXT,
    url TEXT,
    date_created REAL NOT NULL,
    date_started REAL,
    date_released REAL,
    -- open or archived.
    status TEXT NOT NULL DEFAULT 'open',
    UNIQUE (org_id, version)
);
-- A release in a project, with what its events did there.
CREATE TABLE release_projects (
    release_id INTEGER NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    first_event REAL,
    last_event REAL,
    event_count INTEGER NOT NULL DEFAULT 0,
    -- Issues first seen in this release.
    new_groups INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (release_id, project_id)
);
CREATE INDEX release_projects_project ON release_projects (project_id, release_id);
CREATE TABLE release_commits (
    id INTEGER PRIMARY KEY,
    release_id INTEGER NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    commit_id TEXT NOT NULL,
    repository TEXT,
    author_name TEXT,
    author_email TEXT,
    message TEXT,
    timestamp REAL,
    UNIQUE (release_id, commit_id)
);
CREATE TABLE deploys (
    id INTEGER PRIMARY KEY,
    release_id INTEGER NOT NULL REFERENCES releases(id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    name TEXT,
    url TEXT,
    date_started REAL,
    date_finished REAL NOT NULL
);
CREATE INDEX deploys_release ON deploys (release_id, date_finished);
-- Issues waiting for the next release of their project to be resolved for good.
CREATE INDEX issues_next_release ON issues (project_id) WHERE resolved_in_release IS NOT NULL;
-- Releases events and sessions stored before this migration named.
INSERT INTO releases (org_id, version, date_created)
SELECT p.org_id, e.release, MIN(e.received) FROM events e JOIN projects p ON p.id = e.project_id
WHERE e.release IS NOT NULL AND e.release <> '' GROUP BY p.org_id, e.release;
INSERT INTO releases (org_id, version, date_created)
SELECT p.org_id, s.release, MIN(s.hour) FROM session_counts s
JOIN projects p ON p.id = s.project_id WHERE s.release <> '' GROUP BY p.org_id, s.release
ON CONFLICT (org_id, version) DO NOTHING;
INSERT INTO release_projects (release_id, project_id, first_event, last_event, event_count)
SELECT r.id, e.project_id, MIN(e.timestamp), MAX(e.timestamp), COUNT(*) FROM events e
JOIN projects p ON p.id = e.project_id JOIN releases r ON r.org_id = p.org_id AND r.version = e.release
GROUP BY r.id, e.project_id;
INSERT INTO release_projects (release_id, project_id)
SELECT DISTINCT r.id, s.project_id FROM session_counts s JOIN projects p ON p.id = s.project_id
JOIN releases r ON r.org_id = p.org_id AND r.version = s.release WHERE 1 = 1
ON CONFLICT (release_id, project_id) DO NOTHING;
UPDATE release_projects SET new_groups = (SELECT COUNT(*) FROM issues i JOIN releases r
    ON r.version = i.first_release WHERE r.id = release_projects.release_id
    AND i.project_id = release_projects.project_id);
