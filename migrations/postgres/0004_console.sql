-- The console: a reseller admin's session may act as one of its customers
-- (impersonation, audit-logged); password resets by e-mail; the last TOTP
-- time step used by each login, so that a code cannot be used twice.
ALTER TABLE sessions ADD COLUMN acting_customer_id BIGINT REFERENCES customers (id) ON DELETE CASCADE;

ALTER TABLE logins ADD COLUMN totp_last_step BIGINT;

-- Only a SHA-256 of the token mailed is kept; a reset is used once.
CREATE TABLE password_resets (
    token_sha256  TEXT    PRIMARY KEY CHECK (length(token_sha256) = 64),
    login_id      BIGINT  NOT NULL REFERENCES logins (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    used_at       BIGINT
);
CREATE INDEX password_resets_login ON password_resets (login_id);
CREATE INDEX password_resets_expiry ON password_resets (expires_at);
