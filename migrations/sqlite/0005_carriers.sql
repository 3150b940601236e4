-- Calls to and from the public network.
-- A trunk's country: what its "national" number format is national to.
ALTER TABLE trunks ADD COLUMN country TEXT NOT NULL DEFAULT 'DE' CHECK (length(country) = 2);

-- Calls a carrier delivered for a number no customer holds: answered 404,
-- and kept here for the operator (they have no customer to be a call record of).
CREATE TABLE unrouted_calls (
    id          INTEGER PRIMARY KEY,
    trunk_id    BIGINT,
    call_id     TEXT    NOT NULL,
    caller      TEXT    NOT NULL,
    called      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    sip_status  BIGINT  NOT NULL,
    node_id     TEXT    NOT NULL,
    at          BIGINT  NOT NULL
);
CREATE INDEX unrouted_calls_at ON unrouted_calls (at);
