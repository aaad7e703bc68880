-- Reported LLM calls: billing truth. Rows are never updated; they go only
-- with their organization. Cost is priced when recorded and kept.
CREATE TABLE usage_events (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    api_key_id uuid REFERENCES api_keys (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id),
    -- The model name as reported, and the catalog id it resolved to (NULL
    -- when it matched nothing and was recorded at cost 0).
    model text NOT NULL,
    model_id text,
    prompt_tokens integer NOT NULL CHECK (prompt_tokens >= 0),
    cached_tokens integer NOT NULL CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens),
    completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
    total_tokens integer NOT NULL CHECK (total_tokens = prompt_tokens + completion_tokens),
    cost_micro_usd bigint NOT NULL CHECK (cost_micro_usd >= 0),
    priced boolean NOT NULL,
    request_id text,
    metadata jsonb,
    occurred_at timestamptz NOT NULL,
    -- Receive time: what counters and "newest first" go by.
    created_at timestamptz NOT NULL
);

-- Idempotency: one event per requestId per organization.
CREATE UNIQUE INDEX usage_events_request_id_key ON usage_events (organization_id, request_id)
    WHERE request_id IS NOT NULL;
-- usageEvents: newest received first, with each filter.
CREATE INDEX usage_events_organization_idx ON usage_events (organization_id, created_at DESC, id DESC);
CREATE INDEX usage_events_api_key_idx ON usage_events (api_key_id, created_at DESC, id DESC);
CREATE INDEX usage_events_user_idx ON usage_events (organization_id, user_id, created_at DESC, id DESC);
CREATE INDEX usage_events_model_idx ON usage_events (organization_id, model, created_at DESC, id DESC);
CREATE INDEX usage_events_model_id_idx ON usage_events (organization_id, model_id, created_at DESC, id DESC);
CREATE INDEX usage_events_occurred_idx ON usage_events (organization_id, occurred_at);

-- Running totals that quotas read, one row per (organization, subject,
-- segment). A segment starts at the period's (or UTC day's) start, the
-- calendar month's, or the last resetUsage, whichever is latest; a total is
-- the sum of the subject's rows from its window's start on (see
-- src/usage/windows.rs), so a new period or a reset starts from zero
-- without deleting or zeroing anything. Every recording transaction locks
-- the ORGANIZATION row first, then the others: one lock order, no deadlocks.
CREATE TABLE usage_counters (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subject_kind text NOT NULL CHECK (subject_kind IN ('ORGANIZATION', 'API_KEY', 'MEMBER', 'DAY')),
    -- The organization (ORGANIZATION, DAY), the key or the member's user id.
    subject_id uuid NOT NULL,
    window_start timestamptz NOT NULL,
    tokens bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    requests bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (organization_id, subject_kind, subject_id, window_start)
);

-- When the organization's counters were last restarted by resetUsage.
ALTER TABLE organizations ADD COLUMN usage_reset_at timestamptz;

-- Thresholds (50, 80, 100 percent) already announced, once per window.
CREATE TABLE usage_thresholds (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    threshold smallint NOT NULL CHECK (threshold IN (50, 80, 100)),
    crossed_at timestamptz NOT NULL,
    PRIMARY KEY (organization_id, window_start, threshold)
);

-- The rollup that usage(from, to, groupBy) reads: sums per organization,
-- UTC day of occurredAt, catalog model (the reported name when unpriced),
-- key and user. "None" is the nil uuid, so the key can be a primary key.
CREATE TABLE usage_daily (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day date NOT NULL,
    model text NOT NULL,
    api_key_id uuid NOT NULL,
    user_id uuid NOT NULL,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    cached_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    total_tokens bigint NOT NULL DEFAULT 0,
    requests bigint NOT NULL DEFAULT 0,
    cost_micro_usd bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, day, model, api_key_id, user_id)
);

CREATE INDEX usage_daily_day_idx ON usage_daily (day);
