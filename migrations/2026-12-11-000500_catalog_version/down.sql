DROP TRIGGER providers_truncate_bumps_catalog_version ON providers;
DROP TRIGGER model_routes_truncate_bumps_catalog_version ON model_routes;
DROP TRIGGER models_truncate_bumps_catalog_version ON models;
DROP TRIGGER providers_bump_catalog_version ON providers;
DROP TRIGGER model_routes_bump_catalog_version ON model_routes;
DROP TRIGGER models_bump_catalog_version ON models;
DROP FUNCTION bump_catalog_version();
DROP TABLE catalog_version;
