-- Every recorded event wrote eight index entries; recording is the hot
-- path, so each index must be one a query needs. Kept:
--   the primary key;
--   usage_events_request_id_key: idempotency (ON CONFLICT on the requestId);
--   usage_events_organization_idx: usageEvents, newest received first, and
--     the receive-time ranges that segments and counters rebuild from; every
--     other filter of usageEvents (model, key, member, occurredAt range) is
--     applied to this scan of one organization's events;
--   usage_events_api_key_idx: deleting a key (an organization's deletion
--     cascades to its keys) finds the key's events by it, instead of
--     scanning every organization's events once per key.
-- Dropped: the per-filter indexes no query needs, each of which cost a
-- write per event.
DROP INDEX usage_events_user_idx;
DROP INDEX usage_events_model_idx;
DROP INDEX usage_events_model_id_idx;
DROP INDEX usage_events_occurred_idx;
