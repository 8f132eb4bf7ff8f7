-- Source maps and other release artifacts, uploaded with sentry-cli. Kept in the database so that
-- every node of a cluster reads them.
-- Chunks of an upload in progress (sentry-cli's chunk upload), by organization and the SHA-1 of
-- their bytes; an assembled upload no longer needs them, and they expire.
CREATE TABLE artifact_chunks (
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    sha1 TEXT NOT NULL,
    data BLOB NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (org_id, sha1)
);
CREATE INDEX artifact_chunks_expires ON artifact_chunks (expires);
-- One upload: an artifact bundle (debug ids and/or release), a legacy release bundle, or one
-- release file uploaded on its own. Keyed by the SHA-1 of the assembled bytes.
CREATE TABLE artifact_bundles (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    checksum TEXT NOT NULL,
    -- artifact_bundle, release_bundle or release_file.
    kind TEXT NOT NULL,
    -- Release and dist the files belong to ('' when none).
    release TEXT NOT NULL DEFAULT '',
    dist TEXT NOT NULL DEFAULT '',
    date_created REAL NOT NULL
);
CREATE INDEX artifact_bundles_checksum ON artifact_bundles (org_id, checksum);
-- The projects a bundle serves; a bundle without rows here serves every project of its
-- organization (legacy organization-level release files).
CREATE TABLE artifact_bundle_projects (
    bundle_id INTEGER NOT NULL REFERENCES artifact_bundles(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    PRIMARY KEY (bundle_id, project_id)
);
CREATE INDEX artifact_bundle_projects_project ON artifact_bundle_projects (project_id);
-- Every file of every bundle, with what finds it: its debug id, or its release, dist and URL.
CREATE TABLE artifact_files (
    id INTEGER PRIMARY KEY,
    bundle_id INTEGER NOT NULL REFERENCES artifact_bundles(id) ON DELETE CASCADE,
    org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    release TEXT NOT NULL DEFAULT '',
    dist TEXT NOT NULL DEFAULT '',
    -- As uploaded: '~/static/app.min.js' or a full URL.
    url TEXT NOT NULL,
    -- source, minified_source, source_map or indexed_ram_bundle.
    file_type TEXT NOT NULL,
    debug_id TEXT,
    -- The file's Sourcemap header: where its map is, relative to its URL.
    sourcemap TEXT,
    -- JSON object of every header, lowercase names.
    headers TEXT NOT NULL DEFAULT '{}',
    size INTEGER NOT NULL,
    sha1 TEXT NOT NULL,
    data BLOB NOT NULL,
    date_created REAL NOT NULL
);
CREATE INDEX artifact_files_bundle ON artifact_files (bundle_id);
CREATE INDEX artifact_files_debug_id ON artifact_files (org_id, debug_id);
CREATE INDEX artifact_files_release_url ON artifact_files (org_id, release, url);
