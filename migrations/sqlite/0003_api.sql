-- REST API: Idempotency-Key records, so that a client retrying a create after
-- a lost response gets the first answer instead of a second object. A key is
-- the caller's (its credential) and expires after a day.
-- Keep in step with migrations/postgres/0003_api.sql.

CREATE TABLE idempotency_keys (
    id             INTEGER PRIMARY KEY,
    credential     TEXT    NOT NULL,
    idem_key       TEXT    NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 255),
    request_sha256 TEXT    NOT NULL CHECK (length(request_sha256) = 64),
    -- 0 while the first request is still running.
    status         BIGINT  NOT NULL,
    headers        TEXT    NOT NULL DEFAULT '{}',
    body           TEXT    NOT NULL DEFAULT '',
    created_at     BIGINT  NOT NULL,
    UNIQUE (credential, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The token a token was made with: revoking a token revokes what it made, and
-- a token never outlives the one that made it.
ALTER TABLE api_tokens ADD COLUMN parent_token_id BIGINT REFERENCES api_tokens (id) ON DELETE SET NULL;
CREATE INDEX api_tokens_parent ON api_tokens (parent_token_id);

-- Webhooks of a reseller (customer_id NULL: all its customers) or of one
-- customer. The signing secret is kept encrypted (it signs every delivery).
CREATE TABLE webhooks (
    id           INTEGER PRIMARY KEY,
    reseller_id  BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id  BIGINT  REFERENCES customers (id) ON DELETE CASCADE,
    url          TEXT    NOT NULL CHECK (length(url) BETWEEN 9 AND 2000),
    -- Comma-separated event types: call_ended, statement_ready.
    events       TEXT    NOT NULL,
    secret_enc   TEXT    NOT NULL,
    active       BIGINT  NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at   BIGINT  NOT NULL,
    version      BIGINT  NOT NULL DEFAULT 1
);
CREATE INDEX webhooks_reseller ON webhooks (reseller_id, customer_id);

-- One row per event and webhook: the delivery log and the retry queue. The
-- unique key makes enqueueing the same event twice harmless.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    webhook_id       BIGINT  NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type       TEXT    NOT NULL,
    event_key        TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT  NOT NULL,
    last_attempt_at  BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT,
    -- Which claim (one node's batch) holds the delivery now: only that claim
    -- may record how it went.
    claim_token      TEXT,
    created_at       BIGINT  NOT NULL,
    UNIQUE (webhook_id, event_type, event_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- Console sessions: only a SHA-256 of the session id is kept. A session ends
-- when idle for too long, at its absolute expiry, or at logout.
CREATE TABLE sessions (
    id_sha256     TEXT    PRIMARY KEY CHECK (length(id_sha256) = 64),
    login_id      BIGINT  NOT NULL REFERENCES logins (id) ON DELETE CASCADE,
    csrf_token    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX sessions_login ON sessions (login_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX sessions_seen ON sessions (last_seen_at);
