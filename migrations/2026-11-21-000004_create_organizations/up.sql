-- Tenants. Every user owns exactly one personal organization, created at
-- registration (personal_user_id is unique, so never two).
CREATE TABLE organizations (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
    personal_user_id uuid UNIQUE REFERENCES users (id),
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE UNIQUE INDEX organizations_slug_key ON organizations (slug);
CREATE INDEX organizations_created_at_id_idx ON organizations (created_at, id);

-- Who belongs where, with which role. Exactly one OWNER per organization.
CREATE TABLE memberships (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    role text NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    token_limit bigint CHECK (token_limit >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);

CREATE UNIQUE INDEX memberships_one_owner ON memberships (organization_id) WHERE role = 'OWNER';
CREATE INDEX memberships_user_id_idx ON memberships (user_id);

-- Every organization has exactly one subscription row (free when nothing
-- else). Period columns are NULL on plans whose period is the UTC calendar
-- month.
CREATE TABLE subscriptions (
    organization_id uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id uuid NOT NULL REFERENCES plans (id),
    status text NOT NULL DEFAULT 'ACTIVE'
        CHECK (status IN ('TRIALING', 'ACTIVE', 'PAST_DUE', 'UNPAID', 'PAUSED', 'CANCELED', 'INCOMPLETE')),
    current_period_start timestamptz,
    current_period_end timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    stripe_customer_id text UNIQUE,
    stripe_subscription_id text UNIQUE,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK ((current_period_start IS NULL) = (current_period_end IS NULL))
);

CREATE INDEX subscriptions_plan_id_idx ON subscriptions (plan_id);
