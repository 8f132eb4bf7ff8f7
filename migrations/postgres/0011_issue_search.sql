-- The user fields issues are searched by (`user.email:a@b`), apart from the tag counters: no
-- breakdown shows them, so digestion records a value once per issue and leaves it, instead of
-- updating a counter for every event.
CREATE TABLE issue_search (
    issue_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (issue_id, key, value)
);
INSERT INTO issue_search (issue_id, key, value)
    SELECT issue_id, key, value FROM issue_tags
    WHERE key IN ('user.id', 'user.email', 'user.username', 'user.ip');
DELETE FROM issue_tags WHERE key IN ('user.id', 'user.email', 'user.username', 'user.ip');
DELETE FROM issue_tag_keys WHERE key IN ('user.id', 'user.email', 'user.username', 'user.ip');
