-- The LLM gateway: upstream providers, where each model is routed, and the
-- tokens held by calls in flight.

-- An upstream LLM service. Its API key is stored only encrypted
-- (AES-256-GCM under SECRETS_KEY: nonce followed by ciphertext), with the
-- last four characters kept apart as a hint.
CREATE TABLE providers (
    key                text PRIMARY KEY CHECK (key ~ '^[a-z0-9-]{2,40}$'),
    name               text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('OPENAI', 'ANTHROPIC', 'OPENAI_COMPATIBLE')),
    base_url           text NOT NULL,
    api_key_ciphertext bytea,
    api_key_hint       text,
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- A model's routes, tried in `position` order.
CREATE TABLE model_routes (
    model_id       text NOT NULL REFERENCES models (id) ON DELETE CASCADE ON UPDATE CASCADE,
    position       integer NOT NULL CHECK (position >= 0),
    provider_key   text NOT NULL REFERENCES providers (key) ON DELETE CASCADE ON UPDATE CASCADE,
    upstream_model text NOT NULL CHECK (length(upstream_model) BETWEEN 1 AND 200),
    PRIMARY KEY (model_id, position)
);
CREATE INDEX model_routes_provider_idx ON model_routes (provider_key);

ALTER TABLE models ADD COLUMN max_output_tokens integer CHECK (max_output_tokens > 0);
UPDATE models SET max_output_tokens = CASE
    WHEN id IN ('gpt-5', 'gpt-5-mini', 'gpt-5-nano') THEN 128000
    WHEN id IN ('gpt-4.1', 'gpt-4.1-mini') THEN 32768
    WHEN id IN ('gpt-4o', 'gpt-4o-mini') THEN 16384
    WHEN id IN ('o3', 'o4-mini') THEN 100000
    WHEN id = 'claude-opus-4-1' THEN 32000
    WHEN id IN ('claude-sonnet-4-5', 'claude-sonnet-4', 'claude-haiku-4-5') THEN 64000
    WHEN id = 'claude-3-5-haiku' THEN 8192
    WHEN id IN ('gemini-2.5-pro', 'gemini-2.5-flash') THEN 65536
    WHEN id = 'gemini-2.0-flash' THEN 8192
    WHEN id IN ('deepseek-chat', 'deepseek-reasoner') THEN 8192
    ELSE NULL
END;

-- Where an event came from: reported by a client, or carried by the
-- gateway (then `provider` says who served it, and `estimated` whether the
-- gateway counted the tokens itself).
ALTER TABLE usage_events
    ADD COLUMN source    text NOT NULL DEFAULT 'REPORTED' CHECK (source IN ('REPORTED', 'PROXY')),
    ADD COLUMN estimated boolean NOT NULL DEFAULT false,
    ADD COLUMN provider  text;

-- Tokens held by gateway calls in flight: taken before the call (prompt
-- estimate + output limit), deleted in the transaction that records the
-- call. A reservation whose instance died is settled by a job once it
-- expires, as an estimated event of its prompt.
CREATE TABLE usage_reservations (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- The member the call counts against (the key's creator). No foreign
    -- key: a reservation outlives nothing it must be settled against.
    user_id         uuid NOT NULL,
    api_key_id      uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    model           text NOT NULL,
    provider        text,
    request_id      text NOT NULL,
    prompt_tokens   integer NOT NULL CHECK (prompt_tokens >= 0),
    tokens          bigint NOT NULL CHECK (tokens >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX usage_reservations_organization_idx ON usage_reservations (organization_id);
CREATE INDEX usage_reservations_expires_idx ON usage_reservations (expires_at);
