-- Two-factor authentication: TOTP (RFC 6238) with recovery codes, and the
-- second step of a sign-in that needs it.

-- The TOTP state lives on the user's row, so that "is a second factor on"
-- (which every staff check asks) needs no extra query, and so that the
-- secret and the flag cannot disagree (the CHECK). Secrets are stored only
-- encrypted (AES-256-GCM under SECRETS_KEY: nonce followed by ciphertext).
-- `totp_last_step` is the last time step a code was accepted for: a code
-- is accepted once, and never for a step at or before that one.
-- The pending secret waits for confirmTotp; enrollTotp replaces it.
ALTER TABLE users
    ADD COLUMN mfa_enabled_at      timestamptz,
    ADD COLUMN totp_secret         bytea,
    ADD COLUMN totp_last_step      bigint,
    ADD COLUMN totp_pending_secret bytea,
    ADD COLUMN totp_pending_at     timestamptz,
    ADD CONSTRAINT users_totp_secret_when_enabled CHECK ((totp_secret IS NULL) = (mfa_enabled_at IS NULL)),
    ADD CONSTRAINT users_totp_pending_complete CHECK ((totp_pending_secret IS NULL) = (totp_pending_at IS NULL));

-- Single-use recovery codes, shown once; only a keyed hash (HMAC-SHA256
-- under a key derived from SECRETS_KEY) is kept.
CREATE TABLE recovery_codes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- A sign-in whose first factor was right and that waits for verifyMfa:
-- the mfaToken is kept only as SHA-256, is bound to the user, expires, and
-- is deleted by the verifyMfa that succeeds.
CREATE TABLE mfa_challenges (
    id         uuid PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- How the first factor was given: password, or an identity provider.
    method     text NOT NULL CHECK (method IN ('password', 'provider')),
    -- The provider's key when method = 'provider'.
    provider   text CHECK ((provider IS NULL) = (method <> 'provider')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_user_idx ON mfa_challenges (user_id);
