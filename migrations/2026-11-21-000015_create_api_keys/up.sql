-- API keys: the credentials LLM tools report usage with. Only the SHA-256
-- of the secret is stored; `prefix` (the first 12 characters) lets people
-- recognise a key. A key acts for one organization and is bound to its
-- creator's membership there.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_by uuid NOT NULL REFERENCES users (id),
    name text NOT NULL,
    prefix text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    -- NULL = every enabled model.
    allowed_models text[],
    -- Addresses and CIDR ranges; NULL = any.
    allowed_ips text[],
    token_limit bigint CHECK (token_limit >= 0),
    created_at timestamptz NOT NULL,
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_keys_organization_idx ON api_keys (organization_id, created_at, id);
CREATE INDEX api_keys_creator_idx ON api_keys (created_by, organization_id);
