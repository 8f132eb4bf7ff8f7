-- Per issue and tag key: events that had the key and distinct values seen, kept by digestion,
-- so that tag breakdowns of issues with many events read a few rows, not every value.
CREATE TABLE issue_tag_keys (
    issue_id BIGINT NOT NULL,
    key TEXT NOT NULL,
    total BIGINT NOT NULL,
    values_seen BIGINT NOT NULL,
    PRIMARY KEY (issue_id, key)
);
INSERT INTO issue_tag_keys (issue_id, key, total, values_seen)
    SELECT issue_id, key, sum(count), count(*) FROM issue_tags GROUP BY issue_id, key;
