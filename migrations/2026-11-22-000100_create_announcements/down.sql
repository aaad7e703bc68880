DROP TABLE announcements;
DROP FUNCTION announcements_wake();
