-- The catalog's version: every instance keeps the model catalog and the
-- routes (with the providers' keys) in memory, and reads this one row
-- along with a statement it runs anyway to know whether its copy is still
-- current. Any change to models, model_routes or providers bumps it, made
-- by the server or by plain SQL; the bump commits with the change, so a
-- reader never sees the new version before the new rows.
CREATE TABLE catalog_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL DEFAULT 0
);
INSERT INTO catalog_version DEFAULT VALUES;

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1;
    RETURN NULL;
END
$$;

-- Deferred to the commit: the version row is then the last lock the
-- transaction takes, so two edits of the catalog can never deadlock on it.
CREATE CONSTRAINT TRIGGER models_bump_catalog_version
    AFTER INSERT OR UPDATE OR DELETE ON models DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE CONSTRAINT TRIGGER model_routes_bump_catalog_version
    AFTER INSERT OR UPDATE OR DELETE ON model_routes DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE CONSTRAINT TRIGGER providers_bump_catalog_version
    AFTER INSERT OR UPDATE OR DELETE ON providers DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER models_truncate_bumps_catalog_version
    AFTER TRUNCATE ON models FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER model_routes_truncate_bumps_catalog_version
    AFTER TRUNCATE ON model_routes FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER providers_truncate_bumps_catalog_version
    AFTER TRUNCATE ON providers FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
