-- Calls to and from the public network.
-- A trunk's country: what its "national" number format is national to.
ALTER TABLE trunks ADD COLUMN country TEXT NOT NULL DEFAULT 'DE' CHECK (length(country) = 2);
-- A registering trunk's registration as the SIP side last saw it (written by
-- the proxy, never by the API): 'registered' or 'failed', the carrier's last
-- status code, until when it holds, and when it was last tried.
ALTER TABLE trunks ADD COLUMN registration_state TEXT CHECK (registration_state IS NULL OR registration_state IN ('registered', 'failed'));
ALTER TABLE trunks ADD COLUMN registration_status BIGINT;
ALTER TABLE trunks ADD COLUMN registered_until BIGINT;
ALTER TABLE trunks ADD COLUMN registration_at BIGINT;

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
