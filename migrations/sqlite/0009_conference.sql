-- Conference rooms: a number of the customer's that phones dial to meet;
-- an optional PIN (digits, shared with the participants, so kept as it
-- is) and the most participants at once.
CREATE TABLE conference_rooms (
    id                INTEGER PRIMARY KEY,
    customer_id       BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    number            TEXT    NOT NULL CHECK (length(number) BETWEEN 1 AND 10 AND number NOT GLOB '*[^0-9]*'),
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    pin               TEXT    CHECK (pin IS NULL OR (length(pin) BETWEEN 4 AND 12 AND pin NOT GLOB '*[^0-9]*')),
    max_participants  BIGINT  NOT NULL DEFAULT 10 CHECK (max_participants BETWEEN 2 AND 50),
    created_at        BIGINT  NOT NULL,
    deleted_at        BIGINT,
    version           BIGINT  NOT NULL DEFAULT 1,
    UNIQUE (id, customer_id)
);
CREATE UNIQUE INDEX conference_rooms_live_number ON conference_rooms (customer_id, number) WHERE deleted_at IS NULL;
