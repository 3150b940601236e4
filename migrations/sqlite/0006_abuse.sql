-- SIP abuse defence and toll-fraud alarms.

-- Sources (an IPv4 address or an IPv6 /64) a SIP node banned: one row per
-- ban. A ban holds while `until` lies ahead and nobody lifted it; past rows
-- make a returning source's next ban longer and are the audit trail.
CREATE TABLE sip_bans (
    id           INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL CHECK (length(source) BETWEEN 3 AND 60),
    reason       TEXT    NOT NULL CHECK (reason IN ('auth_failures', 'scanner', 'enumeration', 'flood')),
    level        BIGINT  NOT NULL CHECK (level >= 1),
    failures     BIGINT  NOT NULL DEFAULT 0,
    -- Whose accounts were guessed at, if anyone's (scanners and floods: nobody's).
    reseller_id  BIGINT  REFERENCES resellers (id) ON DELETE SET NULL,
    customer_id  BIGINT  REFERENCES customers (id) ON DELETE SET NULL,
    node_id      TEXT    NOT NULL,
    banned_at    BIGINT  NOT NULL,
    until        BIGINT  NOT NULL,
    lifted_at    BIGINT,
    lifted_by    TEXT
);
CREATE INDEX sip_bans_until ON sip_bans (until);

-- Addresses that are never banned: the operator's (customer_id NULL: exempt
-- from everything) and customers' office addresses (never banned for what
-- they do to that customer's accounts).
CREATE TABLE sip_allowed_sources (
    id           INTEGER PRIMARY KEY,
    reseller_id  BIGINT  REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id  BIGINT  REFERENCES customers (id) ON DELETE CASCADE,
    block        TEXT    NOT NULL CHECK (length(block) BETWEEN 3 AND 60),
    note         TEXT    NOT NULL DEFAULT '' CHECK (length(note) <= 200),
    created_at   BIGINT  NOT NULL,
    CHECK ((customer_id IS NULL) = (reseller_id IS NULL))
);
CREATE INDEX sip_allowed_sources_customer ON sip_allowed_sources (customer_id);

-- Accounts (a device's SIP user name) protected against a password guess
-- from many sources: while it lasts, the account authenticates only from
-- sources it registered from before.
CREATE TABLE sip_account_protections (
    id                 INTEGER PRIMARY KEY,
    reseller_id        BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id        BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    device_id          BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    sip_user           TEXT    NOT NULL,
    failures           BIGINT  NOT NULL,
    sources            BIGINT  NOT NULL,
    node_id            TEXT    NOT NULL,
    since              BIGINT  NOT NULL,
    until              BIGINT  NOT NULL,
    lifted_at          BIGINT,
    lifted_by          TEXT,
    -- The e-mail to the customer's and the reseller's administrators: claimed
    -- by one control-plane node, then sent.
    notify_claimed_at  BIGINT,
    notified_at        BIGINT
);
CREATE INDEX sip_account_protections_until ON sip_account_protections (until);

-- A reseller's thresholds where they differ from the SIP nodes' defaults.
CREATE TABLE sip_guard_settings (
    reseller_id       BIGINT  PRIMARY KEY REFERENCES resellers (id) ON DELETE CASCADE,
    auth_failures     BIGINT  CHECK (auth_failures IS NULL OR auth_failures BETWEEN 3 AND 100),
    account_failures  BIGINT  CHECK (account_failures IS NULL OR account_failures BETWEEN 5 AND 1000),
    version           BIGINT  NOT NULL DEFAULT 1
);

-- A customer's toll-fraud alarms: each 'off', 'warn' (alert, the call goes
-- on) or 'block' (alert, the call is refused with 403).
CREATE TABLE fraud_alarms (
    customer_id          BIGINT  PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    new_destination      TEXT    NOT NULL DEFAULT 'warn' CHECK (new_destination IN ('off', 'warn', 'block')),
    burst                TEXT    NOT NULL DEFAULT 'warn' CHECK (burst IN ('off', 'warn', 'block')),
    burst_calls          BIGINT  NOT NULL DEFAULT 10 CHECK (burst_calls BETWEEN 2 AND 10000),
    burst_window_s       BIGINT  NOT NULL DEFAULT 120 CHECK (burst_window_s BETWEEN 10 AND 86400),
    after_hours          TEXT    NOT NULL DEFAULT 'off' CHECK (after_hours IN ('off', 'warn', 'block')),
    after_hours_rule_id  BIGINT  REFERENCES business_hours (id) ON DELETE SET NULL,
    version              BIGINT  NOT NULL DEFAULT 1
);

-- What each device has called abroad or at premium rates (a country calling
-- code, or a premium-rate number, as E.164 digits): the first call to a new
-- one raises the alarm. Rows come from calls, or from an administrator who
-- approved a destination before it was called.
CREATE TABLE device_destinations (
    device_id    BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    customer_id  BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    destination  TEXT    NOT NULL CHECK (length(destination) BETWEEN 1 AND 20),
    first_at     BIGINT  NOT NULL,
    approved_by  TEXT,
    PRIMARY KEY (device_id, destination)
);
CREATE INDEX device_destinations_customer ON device_destinations (customer_id);
