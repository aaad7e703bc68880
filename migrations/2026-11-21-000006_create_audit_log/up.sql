-- Who did what, when, from where. organization_id is NULL for platform
-- events (logins, staff actions).
CREATE TABLE audit_log (
    id uuid PRIMARY KEY,
    organization_id uuid,
    actor_id uuid REFERENCES users (id),
    action text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type text,
    target_id text,
    ip text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL
);

CREATE INDEX audit_log_organization_idx ON audit_log (organization_id, created_at DESC, id DESC);
CREATE INDEX audit_log_created_at_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, created_at DESC);
