-- Call recording, off until a customer's administrator turns it on for an
-- extension or a phone number (the parties hear an announcement first: in
-- Germany recording needs their consent). A customer keeps its recordings
-- for a retention it sets; the audio lives in the audio store under
-- `audio`. A recording belongs to its call record (`record_uid`) and is
-- written with it, in the same transaction.
ALTER TABLE extensions ADD COLUMN record_calls BIGINT NOT NULL DEFAULT 0 CHECK (record_calls IN (0, 1));
ALTER TABLE phone_numbers ADD COLUMN record_calls BIGINT NOT NULL DEFAULT 0 CHECK (record_calls IN (0, 1));
ALTER TABLE customers ADD COLUMN recording_retention_days BIGINT NOT NULL DEFAULT 90
    CHECK (recording_retention_days BETWEEN 1 AND 3650);

CREATE TABLE call_recordings (
    id                   INTEGER PRIMARY KEY,
    record_uid           TEXT    NOT NULL UNIQUE,
    call_id              TEXT    NOT NULL CHECK (length(call_id) <= 256),
    reseller_id          BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id          BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    caller               TEXT    NOT NULL,
    callee               TEXT    NOT NULL,
    caller_extension_id  BIGINT,
    callee_extension_id  BIGINT,
    started_at           BIGINT  NOT NULL,
    duration_ms          BIGINT  NOT NULL CHECK (duration_ms >= 0),
    audio                TEXT    NOT NULL UNIQUE
);
CREATE INDEX call_recordings_customer ON call_recordings (customer_id, started_at);
CREATE INDEX call_recordings_started ON call_recordings (started_at);
