CREATE INDEX usage_events_user_idx ON usage_events (organization_id, user_id, created_at DESC, id DESC);
CREATE INDEX usage_events_model_idx ON usage_events (organization_id, model, created_at DESC, id DESC);
CREATE INDEX usage_events_model_id_idx ON usage_events (organization_id, model_id, created_at DESC, id DESC);
CREATE INDEX usage_events_occurred_idx ON usage_events (organization_id, occurred_at);
