-- Uploaded avatars live in PostgreSQL so every instance serves them.
CREATE TABLE avatars (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id),
    content_type text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    bytes bytea NOT NULL CHECK (octet_length(bytes) <= 2097152),
    created_at timestamptz NOT NULL
);

CREATE INDEX avatars_user_id_idx ON avatars (user_id);
