DROP INDEX IF EXISTS audit_log_action_idx;
DROP INDEX IF EXISTS organizations_slug_trgm_idx;
DROP INDEX IF EXISTS organizations_name_trgm_idx;
DROP INDEX IF EXISTS users_name_trgm_idx;
DROP INDEX IF EXISTS users_email_trgm_idx;
DROP EXTENSION IF EXISTS pg_trgm;
