-- Compression at the edge, per app (issue 17). Never edit an applied
-- migration: add a new one.
--
-- compression_enabled: 1 on, 0 off, NULL the node's default.
-- compression_min_bytes: the app's threshold, NULL the node's default.
ALTER TABLE apps ADD COLUMN compression_enabled INTEGER;
ALTER TABLE apps ADD COLUMN compression_min_bytes INTEGER;
