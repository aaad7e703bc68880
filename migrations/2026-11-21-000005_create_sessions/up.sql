-- One row per sign-in. The refresh token is derived (HMAC) from the id and
-- `generation`, so nothing replayable is stored; `rotated_at` bounds the
-- grace window in which the previous generation is still answered.
CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    generation bigint NOT NULL DEFAULT 0,
    rotated_at timestamptz,
    user_agent text,
    ip text,
    client_name text,
    created_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id) WHERE revoked_at IS NULL;
