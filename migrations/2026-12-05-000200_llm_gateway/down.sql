DROP TABLE usage_reservations;
ALTER TABLE usage_events DROP COLUMN provider, DROP COLUMN estimated, DROP COLUMN source;
ALTER TABLE models DROP COLUMN max_output_tokens;
DROP TABLE model_routes;
DROP TABLE providers;
