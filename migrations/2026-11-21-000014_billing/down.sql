DROP INDEX subscriptions_lapses_at_idx;
ALTER TABLE subscriptions
    DROP COLUMN lapses_at,
    DROP COLUMN lapse_noticed_for,
    DROP COLUMN grace_ends_at,
    DROP COLUMN delinquent_since;
DROP TABLE stripe_events;
