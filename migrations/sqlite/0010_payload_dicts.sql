-- Per-project zstd dictionaries for stored events. A payload compressed with one names it in
-- its zstd frame header (the dictionary ID), so events need no column of their own, and a
-- dictionary is kept as long as the database: old events may still use it.
CREATE TABLE payload_dicts (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    data BLOB NOT NULL,
    date_created REAL NOT NULL
);
CREATE INDEX payload_dicts_project ON payload_dicts (project_id, date_created);
