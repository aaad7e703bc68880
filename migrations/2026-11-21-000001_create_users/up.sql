-- People who sign in. Emails are stored normalized (trimmed, lowercased in
-- Rust) so uniqueness is a plain index. Deleted accounts stay as tombstones
-- (deleted_at set, personal data cleared) so history that points at them
-- still resolves; the partial index frees their email for a new sign-up.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    password_hash text,
    avatar_url text,
    role text NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'SUPPORT', 'ADMIN')),
    email_verified_at timestamptz,
    suspended_at timestamptz,
    suspension_reason text,
    preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_login_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE UNIQUE INDEX users_email_key ON users (email) WHERE deleted_at IS NULL;
-- Keyset pagination of the staff user list.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
