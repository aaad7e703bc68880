-- Sign-in with identity providers (GitHub, Google, OpenID Connect issuers).

-- An account at a provider linked to a user. A provider's subject (its
-- stable user id) belongs to one user at most, and a user links at most one
-- account per provider. No provider token is kept: sign-in needs only who
-- the person is, once.
CREATE TABLE identities (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The provider's key: github, google, or a configured OIDC name.
    provider     text NOT NULL,
    subject      text NOT NULL,
    -- The address the provider last reported, verified or not.
    email        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT identities_provider_subject_key UNIQUE (provider, subject),
    CONSTRAINT identities_user_provider_key UNIQUE (user_id, provider)
);

-- A sign-in waiting for the provider to send the browser back: the state
-- is kept only as SHA-256, the PKCE verifier only encrypted (SECRETS_KEY).
-- The callback deletes the row whatever happens (single use); an expired
-- row still names where to send the browser with ?error=expired, and is
-- swept a day later.
CREATE TABLE oauth_flows (
    id             uuid PRIMARY KEY,
    state_hash     bytea NOT NULL UNIQUE,
    provider       text NOT NULL,
    redirect_uri   text NOT NULL,
    nonce          text NOT NULL,
    pkce_verifier  bytea NOT NULL,
    -- Set when a signed-in user links another provider.
    link_user_id   uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oauth_flows_expires_idx ON oauth_flows (expires_at);

-- The one-time code the callback hands the web app, traded by
-- completeOAuthLogin for a session: SHA-256 only, 60 seconds, single use.
CREATE TABLE oauth_login_codes (
    code_hash  bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX oauth_login_codes_user_idx ON oauth_login_codes (user_id);
