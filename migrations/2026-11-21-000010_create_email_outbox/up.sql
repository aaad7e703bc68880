-- Transactional emails. A row is written in the same transaction as the
-- change that causes it (registration, password reset, invitation), so an
-- email exists exactly when that change commits; a background worker
-- (platform::mail) delivers it over SMTP and retries with backoff.
CREATE TABLE email_outbox (
    id uuid PRIMARY KEY,
    to_address text NOT NULL,
    subject text NOT NULL,
    text_body text NOT NULL,
    html_body text NOT NULL,
    -- What the email is for ('verify_email', 'reset_password', ...), for
    -- support and metrics; delivery does not depend on it.
    kind text NOT NULL,
    status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    -- Delivery attempts started so far; counted when a worker claims the row,
    -- so a worker that dies mid-send still uses one up.
    attempts int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the row is next due; also the lease of a worker that claimed it.
    next_attempt_at timestamptz NOT NULL,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz
);

-- The worker's claim: due PENDING rows, oldest first. Partial, so the
-- history of sent and failed mail does not slow it down.
CREATE INDEX email_outbox_pending_next_attempt_idx ON email_outbox (next_attempt_at) WHERE status = 'PENDING';
