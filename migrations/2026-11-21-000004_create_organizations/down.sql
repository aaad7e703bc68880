DROP TABLE subscriptions;
DROP TABLE memberships;
DROP TABLE organizations;
