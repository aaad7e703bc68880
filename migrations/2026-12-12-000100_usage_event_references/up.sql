-- usage_events' references (organization, key, member) checked once per
-- statement instead of once per row.
--
-- A foreign key checks each inserted row on its own: three lookups, each
-- taking a share lock on its parent row, per event. A 1,000-event batch
-- carries one organization, one key and one member, yet paid 3,000 checks,
-- about two thirds of PostgreSQL's time for the insert (41 ms of 1,000
-- rows against 15 ms without), and concurrent recordings of one
-- organization made those share locks shared by several transactions at
-- once, row after row. These triggers keep what the foreign keys
-- guaranteed, with the same locks, once per statement over the distinct
-- values written:
--   * a written event's organization, key and member exist, locked FOR KEY
--     SHARE until commit, so a concurrent deletion of any of them waits
--     for the writer (then cascades to, or is refused by, its events), and
--     a writer racing a committed deletion is refused;
--   * deleting an organization or a key deletes its events (ON DELETE
--     CASCADE before);
--   * deleting a user who has events is refused (accounts are tombstoned,
--     never deleted, by the server);
--   * the three parents' ids may not change while events point at them.
-- Errors keep the foreign keys' SQLSTATE (23503) and constraint names.
-- Deleting parents from a REPEATABLE READ or SERIALIZABLE transaction
-- concurrently with recordings is not guarded as a foreign key's cascade
-- is (the server deletes them in READ COMMITTED, as plain SQL does by
-- default).
ALTER TABLE usage_events
    DROP CONSTRAINT usage_events_organization_id_fkey,
    DROP CONSTRAINT usage_events_api_key_id_fkey,
    DROP CONSTRAINT usage_events_user_id_fkey;

-- One statement for the three checks: a query over the transition table
-- is planned on every call, so one plan instead of six keeps a one-row
-- insert cheap (about 0.1 ms more than the three foreign keys took; a
-- group of a few rows already costs less).
CREATE FUNCTION usage_events_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    WITH wanted AS (
        SELECT array_agg(DISTINCT organization_id) AS organizations,
               array_agg(DISTINCT api_key_id) FILTER (WHERE api_key_id IS NOT NULL) AS keys,
               array_agg(DISTINCT user_id) FILTER (WHERE user_id IS NOT NULL) AS users
        FROM written
    ), locked_organizations AS (
        SELECT count(*) AS n FROM (
            SELECT FROM organizations, wanted WHERE organizations.id = ANY (wanted.organizations)
            FOR KEY SHARE OF organizations
        ) AS locked
    ), locked_keys AS (
        SELECT count(*) AS n FROM (
            SELECT FROM api_keys, wanted WHERE api_keys.id = ANY (wanted.keys)
            FOR KEY SHARE OF api_keys
        ) AS locked
    ), locked_users AS (
        SELECT count(*) AS n FROM (
            SELECT FROM users, wanted WHERE users.id = ANY (wanted.users)
            FOR KEY SHARE OF users
        ) AS locked
    )
    SELECT CASE
        WHEN (SELECT n FROM locked_organizations) < coalesce(cardinality(organizations), 0) THEN 'organization_id'
        WHEN (SELECT n FROM locked_keys) < coalesce(cardinality(keys), 0) THEN 'api_key_id'
        WHEN (SELECT n FROM locked_users) < coalesce(cardinality(users), 0) THEN 'user_id'
    END INTO missing FROM wanted;
    IF missing IS NOT NULL THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('insert or update on table "usage_events" violates foreign key constraint "usage_events_%s_fkey"', missing),
            DETAIL = format('The %s of a written event is not present in the table it refers to.', missing),
            CONSTRAINT = format('usage_events_%s_fkey', missing), TABLE = 'usage_events';
    END IF;
    RETURN NULL;
END
$$;

-- Two triggers: one with transition tables may serve only one event.
CREATE TRIGGER usage_events_references_inserted
    AFTER INSERT ON usage_events REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_check_references();
CREATE TRIGGER usage_events_references_updated
    AFTER UPDATE ON usage_events REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_check_references();

-- An organization's events go with it (usage_events_organization_idx).
CREATE FUNCTION usage_events_follow_organizations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_events WHERE organization_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_events_follow_organizations
    AFTER DELETE ON organizations REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_follow_organizations();

-- A key's events go with it (usage_events_api_key_idx).
CREATE FUNCTION usage_events_follow_api_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_events WHERE api_key_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_events_follow_api_keys
    AFTER DELETE ON api_keys REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_follow_api_keys();

-- A user with events stays (as a tombstone, when the account is deleted).
CREATE FUNCTION usage_events_keep_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM usage_events WHERE user_id IN (SELECT id FROM gone)) THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'update or delete on table "users" violates foreign key constraint "usage_events_user_id_fkey" on table "usage_events"',
            DETAIL = 'A deleted user is still referenced from table "usage_events".',
            CONSTRAINT = 'usage_events_user_id_fkey', TABLE = 'users';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_events_keep_users
    AFTER DELETE ON users REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_keep_users();

-- Ids events point at do not change (ON UPDATE NO ACTION before).
CREATE FUNCTION usage_events_keep_parent_ids() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    column_name text := CASE TG_TABLE_NAME
        WHEN 'organizations' THEN 'organization_id'
        WHEN 'api_keys' THEN 'api_key_id'
        ELSE 'user_id'
    END;
    referenced boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM usage_events WHERE %I = $1)', column_name)
        INTO referenced USING OLD.id;
    IF referenced THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('update on table "%s" changes an id table "usage_events" refers to', TG_TABLE_NAME),
            CONSTRAINT = format('usage_events_%s_fkey', column_name), TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_events_keep_organization_ids
    AFTER UPDATE OF id ON organizations
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION usage_events_keep_parent_ids();
CREATE TRIGGER usage_events_keep_api_key_ids
    AFTER UPDATE OF id ON api_keys
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION usage_events_keep_parent_ids();
CREATE TRIGGER usage_events_keep_user_ids
    AFTER UPDATE OF id ON users
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION usage_events_keep_parent_ids();
