-- What an organization can buy. Limits are NULL when unlimited.
CREATE TABLE plans (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    name text NOT NULL,
    description text,
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    currency text NOT NULL DEFAULT 'usd',
    billing_interval text NOT NULL DEFAULT 'MONTH' CHECK (billing_interval IN ('MONTH', 'YEAR')),
    monthly_token_limit bigint CHECK (monthly_token_limit >= 0),
    daily_request_limit integer CHECK (daily_request_limit >= 0),
    requests_per_minute integer CHECK (requests_per_minute >= 0),
    max_members integer CHECK (max_members >= 1),
    max_api_keys integer CHECK (max_api_keys >= 0),
    features text[] NOT NULL DEFAULT '{}',
    public boolean NOT NULL DEFAULT true,
    stripe_price_id text UNIQUE,
    sort_order integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (key, name, description, price_cents, monthly_token_limit, daily_request_limit,
                   requests_per_minute, max_members, max_api_keys, features, sort_order)
VALUES
    ('free', 'Free', 'For trying things out and personal projects.', 0,
     1000000, 1000, 60, 3, 3,
     ARRAY['1M tokens per month', '1,000 requests per day', 'Up to 3 members', 'Community support'], 0),
    ('pro', 'Pro', 'For small teams shipping AI features.', 2000,
     20000000, 20000, 600, 20, 50,
     ARRAY['20M tokens per month', '20,000 requests per day', 'Up to 20 members', 'Per-member budgets', 'Email support'], 1),
    ('enterprise', 'Enterprise', 'For organizations with heavy usage and compliance needs.', 50000,
     500000000, NULL, 6000, NULL, NULL,
     ARRAY['500M tokens per month', 'Unlimited requests per day', 'Unlimited members and keys', 'Audit log export', 'Priority support'], 2);
