DROP TRIGGER usage_events_keep_user_ids ON users;
DROP TRIGGER usage_events_keep_api_key_ids ON api_keys;
DROP TRIGGER usage_events_keep_organization_ids ON organizations;
DROP FUNCTION usage_events_keep_parent_ids();
DROP TRIGGER usage_events_keep_users ON users;
DROP FUNCTION usage_events_keep_users();
DROP TRIGGER usage_events_follow_api_keys ON api_keys;
DROP FUNCTION usage_events_follow_api_keys();
DROP TRIGGER usage_events_follow_organizations ON organizations;
DROP FUNCTION usage_events_follow_organizations();
DROP TRIGGER usage_events_references_updated ON usage_events;
DROP TRIGGER usage_events_references_inserted ON usage_events;
DROP FUNCTION usage_events_check_references();

ALTER TABLE usage_events
    ADD CONSTRAINT usage_events_organization_id_fkey
        FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
    ADD CONSTRAINT usage_events_api_key_id_fkey
        FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE CASCADE,
    ADD CONSTRAINT usage_events_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id);
