-- Voicemail: each extension's box (where new messages are mailed, its
-- limits) and the messages left in it. The audio of a message lives in the
-- audio store (files under the data directory); `audio` is its key there.
CREATE TABLE voicemail_boxes (
    extension_id   BIGINT  PRIMARY KEY,
    customer_id    BIGINT  NOT NULL,
    email          TEXT    CHECK (email IS NULL OR length(email) <= 254),
    max_message_s  BIGINT  NOT NULL DEFAULT 120 CHECK (max_message_s BETWEEN 10 AND 600),
    max_messages   BIGINT  NOT NULL DEFAULT 100 CHECK (max_messages BETWEEN 1 AND 1000),
    version        BIGINT  NOT NULL DEFAULT 1,
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);

CREATE TABLE voicemail_messages (
    id                 INTEGER PRIMARY KEY,
    reseller_id        BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id        BIGINT  NOT NULL,
    extension_id       BIGINT  NOT NULL,
    caller             TEXT    NOT NULL CHECK (length(caller) <= 128),
    call_id            TEXT    NOT NULL CHECK (length(call_id) <= 256),
    duration_ms        BIGINT  NOT NULL CHECK (duration_ms >= 0),
    audio              TEXT    NOT NULL UNIQUE,
    received_at        BIGINT  NOT NULL,
    heard_at           BIGINT,
    -- The e-mail of a new message: claimed by one control-plane node, then sent.
    notify_claimed_at  BIGINT,
    notified_at        BIGINT,
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX voicemail_messages_box ON voicemail_messages (extension_id, received_at);
CREATE INDEX voicemail_messages_unnotified ON voicemail_messages (notified_at);

-- A forward may lead to the extension's own voicemail box ('voicemail').
CREATE TABLE call_forwards_new (
    extension_id  BIGINT  NOT NULL,
    customer_id   BIGINT  NOT NULL,
    condition     TEXT    NOT NULL CHECK (condition IN ('always', 'busy', 'no_answer', 'unavailable')),
    target        TEXT    NOT NULL CHECK (length(target) BETWEEN 1 AND 32
                                          AND (target = 'voicemail' OR target NOT GLOB '*[^0-9+]*')),
    timeout_s     BIGINT  CHECK (timeout_s IS NULL OR timeout_s BETWEEN 5 AND 300),
    enabled       BIGINT  NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    PRIMARY KEY (extension_id, condition),
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);
INSERT INTO call_forwards_new (extension_id, customer_id, condition, target, timeout_s, enabled)
    SELECT extension_id, customer_id, condition, target, timeout_s, enabled FROM call_forwards;
DROP TABLE call_forwards;
ALTER TABLE call_forwards_new RENAME TO call_forwards;
