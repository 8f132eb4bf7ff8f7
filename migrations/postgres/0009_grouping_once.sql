-- The grouping components of a fingerprint are stored once, with the fingerprint, instead of
-- with every event (~2 KB each): events name their fingerprint. Events stored before this
-- keep their own copy.
ALTER TABLE group_hashes ADD COLUMN grouping TEXT;
ALTER TABLE events ADD COLUMN hash TEXT;
