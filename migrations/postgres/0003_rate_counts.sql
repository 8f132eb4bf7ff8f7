-- Events admitted per DSN key and rate-limit window, summed over every node of a cluster.
CREATE TABLE rate_counts (
    key_id BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key_id, window_start)
);
