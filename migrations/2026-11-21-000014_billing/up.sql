-- Stripe events already handled: Stripe delivers at least once, so a
-- repeated id is acknowledged without being applied again.
CREATE TABLE stripe_events (
    id text PRIMARY KEY,
    event_type text NOT NULL,
    organization_id uuid REFERENCES organizations (id) ON DELETE SET NULL,
    received_at timestamptz NOT NULL
);

CREATE INDEX stripe_events_received_at_idx ON stripe_events (received_at);

-- Grace bookkeeping. A payment failure starts a grace period whose end is
-- fixed when it starts (so changing BILLING_GRACE_DAYS later does not move
-- deadlines already announced). `lapses_at` is the moment a paid plan stops
-- counting: the grace end while payments fail, the period end of a
-- cancellation, whichever comes first. The background job records the
-- moment it has announced in `lapse_noticed_for`, so each moment is
-- announced exactly once.
ALTER TABLE subscriptions
    ADD COLUMN delinquent_since timestamptz,
    ADD COLUMN grace_ends_at timestamptz,
    ADD COLUMN lapse_noticed_for timestamptz,
    ADD COLUMN lapses_at timestamptz GENERATED ALWAYS AS (
        LEAST(
            CASE WHEN status IN ('PAST_DUE', 'UNPAID') THEN grace_ends_at END,
            CASE WHEN cancel_at_period_end THEN current_period_end END
        )
    ) STORED;

CREATE INDEX subscriptions_lapses_at_idx ON subscriptions (lapses_at) WHERE lapses_at IS NOT NULL;
