-- Events admitted per DSN key and rate-limit window, summed over every node of a cluster.
CREATE TABLE rate_counts (
    key_id INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key_id, window_start)
);
