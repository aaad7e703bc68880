-- Login attempts per normalized email, whether or not an account has it
-- (so a lockout does not reveal which emails are registered). An attempt
-- is reserved here before a password is checked; a successful login
-- deletes the row. Times come from the application clock, never SQL now().
CREATE TABLE login_attempts (
    email text PRIMARY KEY,
    attempts int NOT NULL,
    window_started_at timestamptz NOT NULL,
    locked_until timestamptz,
    updated_at timestamptz NOT NULL
);
