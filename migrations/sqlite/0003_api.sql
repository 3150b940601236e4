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
