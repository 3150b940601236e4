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

-- Business hours of a customer: when its calls go to the open destination
-- and when to the closed one (weekly intervals and holidays, as JSON, in the
-- customer's time zone). Destinations are the customer's own.
CREATE TABLE business_hours (
    id                   INTEGER PRIMARY KEY,
    customer_id          BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    name                 TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    weekly               TEXT    NOT NULL DEFAULT '[]',
    holidays             TEXT    NOT NULL DEFAULT '[]',
    open_extension_id    BIGINT,
    open_ring_group_id   BIGINT,
    closed_extension_id  BIGINT,
    closed_ring_group_id BIGINT,
    created_at           BIGINT  NOT NULL,
    deleted_at           BIGINT,
    version              BIGINT  NOT NULL DEFAULT 1,
    CHECK (open_extension_id IS NULL OR open_ring_group_id IS NULL),
    CHECK (closed_extension_id IS NULL OR closed_ring_group_id IS NULL),
    FOREIGN KEY (open_extension_id, customer_id) REFERENCES extensions (id, customer_id),
    FOREIGN KEY (open_ring_group_id, customer_id) REFERENCES ring_groups (id, customer_id),
    FOREIGN KEY (closed_extension_id, customer_id) REFERENCES extensions (id, customer_id),
    FOREIGN KEY (closed_ring_group_id, customer_id) REFERENCES ring_groups (id, customer_id)
);
CREATE INDEX business_hours_customer ON business_hours (customer_id);

-- A phone number may also route to a business-hours rule of its customer.
ALTER TABLE phone_numbers ADD COLUMN dest_business_hours_id BIGINT REFERENCES business_hours (id);

-- Fraud and cost limits of a reseller or of a customer (one row each, none:
-- no limits and international/premium off).
CREATE TABLE call_limits (
    id                       INTEGER PRIMARY KEY,
    reseller_id              BIGINT  UNIQUE REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id              BIGINT  UNIQUE REFERENCES customers (id) ON DELETE CASCADE,
    max_concurrent_outbound  BIGINT  CHECK (max_concurrent_outbound IS NULL OR max_concurrent_outbound >= 0),
    max_attempts_per_minute  BIGINT  CHECK (max_attempts_per_minute IS NULL OR max_attempts_per_minute >= 0),
    max_spend_per_day_micros BIGINT  CHECK (max_spend_per_day_micros IS NULL OR max_spend_per_day_micros >= 0),
    allow_international      BIGINT  NOT NULL DEFAULT 0 CHECK (allow_international IN (0, 1)),
    allow_premium            BIGINT  NOT NULL DEFAULT 0 CHECK (allow_premium IN (0, 1)),
    version                  BIGINT  NOT NULL DEFAULT 1,
    CHECK ((reseller_id IS NULL) <> (customer_id IS NULL))
);
