-- The model catalog that prices usage. Prices are integer micro-USD per
-- million tokens ($2.50 / 1M tokens = 2500000), so a cost is
-- tokens * price / 1e6 micro-USD with one rounding at the end.
-- cached_input_micro_usd_per_mtok NULL means "same as input".
CREATE TABLE models (
    id text PRIMARY KEY CHECK (id <> '' AND id = lower(id)),
    aliases text[] NOT NULL DEFAULT '{}',
    provider text NOT NULL,
    display_name text NOT NULL,
    context_window integer CHECK (context_window > 0),
    input_micro_usd_per_mtok bigint NOT NULL CHECK (input_micro_usd_per_mtok >= 0),
    cached_input_micro_usd_per_mtok bigint CHECK (cached_input_micro_usd_per_mtok >= 0),
    output_micro_usd_per_mtok bigint NOT NULL CHECK (output_micro_usd_per_mtok >= 0),
    enabled boolean NOT NULL DEFAULT true,
    sort_order integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Alias lookups (`name = ANY(aliases)`).
CREATE INDEX models_aliases_idx ON models USING gin (aliases);

-- List prices per million tokens as published by each provider (standard
-- tier, short-context rates).
INSERT INTO models (id, aliases, provider, display_name, context_window,
                    input_micro_usd_per_mtok, cached_input_micro_usd_per_mtok, output_micro_usd_per_mtok, sort_order)
VALUES
    ('gpt-5',             '{}', 'openai', 'GPT-5',              400000,  1250000,  125000, 10000000, 10),
    ('gpt-5-mini',        '{}', 'openai', 'GPT-5 mini',         400000,   250000,   25000,  2000000, 11),
    ('gpt-5-nano',        '{}', 'openai', 'GPT-5 nano',         400000,    50000,    5000,   400000, 12),
    ('gpt-4.1',           '{}', 'openai', 'GPT-4.1',           1047576,  2000000,  500000,  8000000, 13),
    ('gpt-4.1-mini',      '{}', 'openai', 'GPT-4.1 mini',      1047576,   400000,  100000,  1600000, 14),
    ('gpt-4o',            '{}', 'openai', 'GPT-4o',             128000,  2500000, 1250000, 10000000, 15),
    ('gpt-4o-mini',       '{}', 'openai', 'GPT-4o mini',        128000,   150000,   75000,   600000, 16),
    ('o3',                '{}', 'openai', 'o3',                 200000,  2000000,  500000,  8000000, 17),
    ('o4-mini',           '{}', 'openai', 'o4-mini',            200000,  1100000,  275000,  4400000, 18),
    ('claude-opus-4-1',   '{}', 'anthropic', 'Claude Opus 4.1',   200000, 15000000, 1500000, 75000000, 20),
    ('claude-sonnet-4-5', '{}', 'anthropic', 'Claude Sonnet 4.5', 200000,  3000000,  300000, 15000000, 21),
    ('claude-sonnet-4',   '{}', 'anthropic', 'Claude Sonnet 4',   200000,  3000000,  300000, 15000000, 22),
    ('claude-haiku-4-5',  '{}', 'anthropic', 'Claude Haiku 4.5',  200000,  1000000,  100000,  5000000, 23),
    ('claude-3-5-haiku',  '{}', 'anthropic', 'Claude Haiku 3.5',  200000,   800000,   80000,  4000000, 24),
    ('gemini-2.5-pro',    '{}', 'google', 'Gemini 2.5 Pro',    1048576,  1250000,  312500, 10000000, 30),
    ('gemini-2.5-flash',  '{}', 'google', 'Gemini 2.5 Flash',  1048576,   300000,   75000,  2500000, 31),
    ('gemini-2.0-flash',  '{}', 'google', 'Gemini 2.0 Flash',  1048576,   100000,   25000,   400000, 32),
    ('deepseek-chat',     '{deepseek-v3}', 'deepseek', 'DeepSeek-V3',  128000,  270000,   70000,  1100000, 40),
    ('deepseek-reasoner', '{deepseek-r1}', 'deepseek', 'DeepSeek-R1',  128000,  550000,  140000,  2190000, 41),
    ('llama-3.3-70b',     '{llama-3.3-70b-versatile,meta-llama/llama-3.3-70b-instruct}', 'meta', 'Llama 3.3 70B', 128000, 590000, NULL, 790000, 50),
    ('mistral-large',     '{mistral-large-latest}', 'mistral', 'Mistral Large', 128000, 2000000, NULL, 6000000, 51);
