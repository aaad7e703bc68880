ALTER TABLE subscriptions DROP COLUMN usage_segment_floor;
