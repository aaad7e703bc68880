-- Staff search: case-insensitive substring search (ILIKE '%text%') over
-- users' email and name and organizations' name and slug. A B-tree cannot
-- serve a leading wildcard; trigram GIN indexes can. pg_trgm ships with
-- PostgreSQL (contrib) and is a trusted extension, so the database owner
-- may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Only live accounts are listed, so tombstones stay out of the index.
CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX users_name_trgm_idx ON users USING gin (name gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX organizations_name_trgm_idx ON organizations USING gin (name gin_trgm_ops);
CREATE INDEX organizations_slug_trgm_idx ON organizations USING gin (slug gin_trgm_ops);

-- The staff audit log filtered by action, newest first.
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC, id DESC);
