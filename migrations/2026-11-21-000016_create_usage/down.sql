DROP TABLE usage_daily;
DROP TABLE usage_thresholds;
ALTER TABLE organizations DROP COLUMN usage_reset_at;
DROP TABLE usage_counters;
DROP TABLE usage_events;
