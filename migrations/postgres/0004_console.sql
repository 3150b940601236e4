-- The console: a reseller admin's session may act as one of its customers
-- (impersonation, audit-logged); a second factor (TOTP) for admins, with the
-- last time step used by each login so that a code cannot be used twice;
-- password resets by e-mail.
ALTER TABLE sessions ADD COLUMN acting_customer_id BIGINT REFERENCES customers (id) ON DELETE CASCADE;

-- A session of a login with a second factor waits for its code before it
-- counts; wrong codes are counted and end it.
ALTER TABLE sessions ADD COLUMN mfa_pending BIGINT NOT NULL DEFAULT 0 CHECK (mfa_pending IN (0, 1));
ALTER TABLE sessions ADD COLUMN mfa_attempts BIGINT NOT NULL DEFAULT 0;

ALTER TABLE logins ADD COLUMN totp_last_step BIGINT;
-- Wrong second-factor codes in a row, and until when codes are refused after
-- too many: guessing is bounded per login, across sessions and nodes.
ALTER TABLE logins ADD COLUMN totp_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE logins ADD COLUMN totp_locked_until BIGINT;

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
