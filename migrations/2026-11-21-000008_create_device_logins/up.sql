-- RFC 8628-style device sign-in. The device code is a secret (stored as
-- SHA-256); the user code is short and typed by a person.
CREATE TABLE device_logins (
    id uuid PRIMARY KEY,
    device_code_hash bytea NOT NULL UNIQUE,
    user_code text NOT NULL,
    client_name text,
    client_ip text,
    user_agent text,
    status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'APPROVED', 'DENIED', 'CONSUMED')),
    user_id uuid REFERENCES users (id),
    interval_secs integer NOT NULL,
    last_polled_at timestamptz,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    decided_at timestamptz
);

-- A user code is unique among requests still waiting for a person.
CREATE UNIQUE INDEX device_logins_pending_user_code_key ON device_logins (user_code) WHERE status = 'PENDING';
