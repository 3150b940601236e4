-- Tenancy model: operator -> resellers -> customers -> extensions -> devices,
-- plus the tables later features fill in (numbers, trunks, ring groups, call
-- records, price plans, registrations).
--
-- Conventions shared with migrations/postgres (keep the two in step):
--   * times are BIGINT milliseconds since the Unix epoch, UTC (`*_at`);
--   * flags are BIGINT 0/1 with a CHECK (sqlx's Any driver has no SQLite bool);
--   * money is BIGINT micro-units of the plan's currency (1 EUR = 1000000);
--   * durations are BIGINT milliseconds (`*_ms`) or whole seconds (`*_s`);
--   * rows that billing must remember (extensions, ring groups) are soft-deleted
--     with `deleted_at`, and their uniqueness holds among live rows only.

CREATE TABLE operator (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  BIGINT  NOT NULL
);

CREATE TABLE resellers (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    status             TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    time_zone          TEXT    NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    currency           TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    vat_rate_bp        BIGINT  NOT NULL CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    sip_domain_suffix  TEXT    NOT NULL UNIQUE CHECK (sip_domain_suffix = lower(sip_domain_suffix) AND length(sip_domain_suffix) BETWEEN 3 AND 200),
    default_language   TEXT    NOT NULL DEFAULT 'en' CHECK (default_language IN ('en', 'de')),
    wholesale_plan_id  BIGINT  REFERENCES price_plans (id) ON DELETE RESTRICT,
    product_name       TEXT    NOT NULL CHECK (length(product_name) BETWEEN 1 AND 100),
    primary_color      TEXT    NOT NULL DEFAULT '#1d4ed8' CHECK (primary_color GLOB '#[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    accent_color       TEXT    NOT NULL DEFAULT '#0f766e' CHECK (accent_color GLOB '#[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    support_phone      TEXT,
    support_email      TEXT,
    support_url        TEXT,
    login_text         TEXT,
    email_sender_name  TEXT,
    -- Value of the Server/User-Agent header phones see; NULL sends none.
    sip_server_header  TEXT,
    created_at         BIGINT  NOT NULL,
    closed_at          BIGINT,
    version            BIGINT  NOT NULL DEFAULT 1,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);

-- Host names that select a console brand. reseller_id NULL = the operator's console.
CREATE TABLE console_hosts (
    host         TEXT    PRIMARY KEY CHECK (host = lower(host) AND length(host) BETWEEN 1 AND 253),
    reseller_id  BIGINT  REFERENCES resellers (id) ON DELETE CASCADE
);

CREATE TABLE brand_assets (
    reseller_id   BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('logo', 'favicon')),
    content_type  TEXT    NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp', 'image/svg+xml', 'image/x-icon')),
    data          BLOB    NOT NULL CHECK (length(data) BETWEEN 1 AND 1048576),
    sha256        TEXT    NOT NULL CHECK (length(sha256) = 64),
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (reseller_id, kind)
);

-- reseller_id NULL: an operator (wholesale) plan; otherwise a reseller's retail plan.
CREATE TABLE price_plans (
    id                        INTEGER PRIMARY KEY,
    reseller_id               BIGINT  REFERENCES resellers (id) ON DELETE CASCADE,
    tier                      TEXT    NOT NULL CHECK (tier IN ('wholesale', 'retail')),
    name                      TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency                  TEXT    NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    extension_day_micros      BIGINT  NOT NULL DEFAULT 0 CHECK (extension_day_micros >= 0),
    number_day_micros         BIGINT  NOT NULL DEFAULT 0 CHECK (number_day_micros >= 0),
    internal_calls_free       BIGINT  NOT NULL DEFAULT 1 CHECK (internal_calls_free IN (0, 1)),
    created_at                BIGINT  NOT NULL,
    version                   BIGINT  NOT NULL DEFAULT 1,
    CHECK ((tier = 'wholesale') = (reseller_id IS NULL)),
    UNIQUE (id, reseller_id)
);
CREATE UNIQUE INDEX price_plans_name ON price_plans (coalesce(reseller_id, 0), name);

-- Per-minute rates by destination prefix of the E.164 number without '+'
-- ('' is the default rate). Longest prefix wins.
CREATE TABLE rates (
    id                     INTEGER PRIMARY KEY,
    plan_id                BIGINT  NOT NULL REFERENCES price_plans (id) ON DELETE CASCADE,
    prefix                 TEXT    NOT NULL CHECK (length(prefix) <= 15 AND prefix NOT GLOB '*[^0-9]*'),
    description            TEXT    NOT NULL DEFAULT '',
    minute_micros          BIGINT  NOT NULL CHECK (minute_micros >= 0),
    connection_micros      BIGINT  NOT NULL DEFAULT 0 CHECK (connection_micros >= 0),
    first_increment_s      BIGINT  NOT NULL DEFAULT 60 CHECK (first_increment_s BETWEEN 1 AND 3600),
    next_increment_s       BIGINT  NOT NULL DEFAULT 60 CHECK (next_increment_s BETWEEN 1 AND 3600),
    minimum_micros         BIGINT  NOT NULL DEFAULT 0 CHECK (minimum_micros >= 0),
    UNIQUE (plan_id, prefix)
);

CREATE TABLE customers (
    id              INTEGER PRIMARY KEY,
    reseller_id     BIGINT  NOT NULL REFERENCES resellers (id) ON DELETE RESTRICT,
    name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sip_domain      TEXT    NOT NULL UNIQUE CHECK (sip_domain = lower(sip_domain) AND length(sip_domain) BETWEEN 3 AND 253),
    status          TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    country         TEXT    NOT NULL DEFAULT 'DE' CHECK (length(country) = 2 AND country = upper(country)),
    time_zone       TEXT    NOT NULL CHECK (length(time_zone) BETWEEN 1 AND 64),
    language        TEXT    NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'de')),
    retail_plan_id  BIGINT,
    created_at      BIGINT  NOT NULL,
    closed_at       BIGINT,
    version         BIGINT  NOT NULL DEFAULT 1,
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (closed_at IS NULL OR closed_at >= created_at),
    UNIQUE (id, reseller_id),
    FOREIGN KEY (retail_plan_id, reseller_id) REFERENCES price_plans (id, reseller_id) ON DELETE RESTRICT
);
CREATE INDEX customers_reseller ON customers (reseller_id);

CREATE TABLE extensions (
    id            INTEGER PRIMARY KEY,
    customer_id   BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    number        TEXT    NOT NULL CHECK (length(number) BETWEEN 1 AND 10 AND number NOT GLOB '*[^0-9]*'),
    display_name  TEXT    NOT NULL CHECK (length(display_name) <= 100),
    dnd           BIGINT  NOT NULL DEFAULT 0 CHECK (dnd IN (0, 1)),
    created_at    BIGINT  NOT NULL,
    deleted_at    BIGINT,
    version       BIGINT  NOT NULL DEFAULT 1,
    CHECK (deleted_at IS NULL OR deleted_at >= created_at),
    UNIQUE (id, customer_id)
);
CREATE UNIQUE INDEX extensions_live_number ON extensions (customer_id, number) WHERE deleted_at IS NULL;

-- Call forwarding per extension, one row per condition.
CREATE TABLE call_forwards (
    extension_id  BIGINT  NOT NULL,
    customer_id   BIGINT  NOT NULL,
    condition     TEXT    NOT NULL CHECK (condition IN ('always', 'busy', 'no_answer', 'unavailable')),
    target        TEXT    NOT NULL CHECK (length(target) BETWEEN 1 AND 32 AND target NOT GLOB '*[^0-9+]*'),
    timeout_s     BIGINT  CHECK (timeout_s IS NULL OR timeout_s BETWEEN 5 AND 300),
    enabled       BIGINT  NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    PRIMARY KEY (extension_id, condition),
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);

-- Each device has SIP credentials of its own. The digest HA1s are for realm
-- `ha1_realm` (the customer's SIP domain when they were computed); the secret
-- itself is kept only encrypted, so it can be shown for provisioning and the
-- HA1s recomputed when the domain changes.
CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    customer_id   BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    extension_id  BIGINT  NOT NULL,
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    sip_user      TEXT    NOT NULL CHECK (length(sip_user) BETWEEN 1 AND 64 AND sip_user NOT GLOB '*[^A-Za-z0-9._-]*'),
    ha1_realm     TEXT    NOT NULL,
    ha1_md5       TEXT    NOT NULL CHECK (length(ha1_md5) = 32),
    ha1_sha256    TEXT    NOT NULL CHECK (length(ha1_sha256) = 64),
    secret_enc    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    version       BIGINT  NOT NULL DEFAULT 1,
    UNIQUE (customer_id, sip_user),
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE RESTRICT
);
CREATE INDEX devices_extension ON devices (extension_id);

CREATE TABLE ring_groups (
    id                        INTEGER PRIMARY KEY,
    customer_id               BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    number                    TEXT    NOT NULL CHECK (length(number) BETWEEN 1 AND 10 AND number NOT GLOB '*[^0-9]*'),
    name                      TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    strategy                  TEXT    NOT NULL CHECK (strategy IN ('simultaneous', 'sequential')),
    member_timeout_s          BIGINT  NOT NULL DEFAULT 20 CHECK (member_timeout_s BETWEEN 5 AND 300),
    -- Where a call goes when nobody answers: an extension or an external number.
    no_answer_extension_id    BIGINT,
    no_answer_number          TEXT    CHECK (no_answer_number IS NULL OR (length(no_answer_number) BETWEEN 1 AND 32 AND no_answer_number NOT GLOB '*[^0-9+]*')),
    created_at                BIGINT  NOT NULL,
    deleted_at                BIGINT,
    version                   BIGINT  NOT NULL DEFAULT 1,
    CHECK (no_answer_extension_id IS NULL OR no_answer_number IS NULL),
    UNIQUE (id, customer_id),
    FOREIGN KEY (no_answer_extension_id, customer_id) REFERENCES extensions (id, customer_id)
);
CREATE UNIQUE INDEX ring_groups_live_number ON ring_groups (customer_id, number) WHERE deleted_at IS NULL;

CREATE TABLE ring_group_members (
    ring_group_id  BIGINT  NOT NULL,
    customer_id    BIGINT  NOT NULL,
    extension_id   BIGINT  NOT NULL,
    position       BIGINT  NOT NULL CHECK (position >= 0),
    PRIMARY KEY (ring_group_id, extension_id),
    FOREIGN KEY (ring_group_id, customer_id) REFERENCES ring_groups (id, customer_id) ON DELETE CASCADE,
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);

-- Public numbers (DIDs), unique platform-wide. A number belongs to the operator's
-- pool (reseller_id NULL), to a reseller, and optionally to one of its customers,
-- and routes to at most one destination of that same customer.
CREATE TABLE phone_numbers (
    id                    INTEGER PRIMARY KEY,
    e164                  TEXT    NOT NULL UNIQUE CHECK (length(e164) BETWEEN 4 AND 16 AND e164 GLOB '+[1-9]*' AND substr(e164, 2) NOT GLOB '*[^0-9]*'),
    reseller_id           BIGINT  REFERENCES resellers (id) ON DELETE RESTRICT,
    customer_id           BIGINT,
    dest_extension_id     BIGINT,
    dest_ring_group_id    BIGINT,
    created_at            BIGINT  NOT NULL,
    version               BIGINT  NOT NULL DEFAULT 1,
    CHECK (customer_id IS NULL OR reseller_id IS NOT NULL),
    CHECK (dest_extension_id IS NULL OR dest_ring_group_id IS NULL),
    CHECK (customer_id IS NOT NULL OR (dest_extension_id IS NULL AND dest_ring_group_id IS NULL)),
    FOREIGN KEY (customer_id, reseller_id) REFERENCES customers (id, reseller_id) ON DELETE RESTRICT,
    FOREIGN KEY (dest_extension_id, customer_id) REFERENCES extensions (id, customer_id),
    FOREIGN KEY (dest_ring_group_id, customer_id) REFERENCES ring_groups (id, customer_id)
);
CREATE INDEX phone_numbers_customer ON phone_numbers (customer_id);

-- Who held a number when: billing counts number-days from here.
CREATE TABLE number_assignments (
    id           INTEGER PRIMARY KEY,
    number_id    BIGINT  NOT NULL REFERENCES phone_numbers (id) ON DELETE RESTRICT,
    reseller_id  BIGINT  NOT NULL,
    customer_id  BIGINT  NOT NULL,
    assigned_at  BIGINT  NOT NULL,
    released_at  BIGINT,
    CHECK (released_at IS NULL OR released_at >= assigned_at),
    FOREIGN KEY (customer_id, reseller_id) REFERENCES customers (id, reseller_id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX number_assignments_open ON number_assignments (number_id) WHERE released_at IS NULL;
CREATE INDEX number_assignments_customer ON number_assignments (customer_id, assigned_at);

-- Carrier trunks. reseller_id NULL: the operator's trunk, usable by every reseller.
CREATE TABLE trunks (
    id                  INTEGER PRIMARY KEY,
    reseller_id         BIGINT  REFERENCES resellers (id) ON DELETE RESTRICT,
    name                TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    host                TEXT    NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
    port                BIGINT  NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport           TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    auth_mode           TEXT    NOT NULL CHECK (auth_mode IN ('ip', 'register')),
    username            TEXT,
    secret_enc          TEXT,
    realm               TEXT,
    register_expires_s  BIGINT  NOT NULL DEFAULT 600 CHECK (register_expires_s BETWEEN 60 AND 86400),
    -- Source addresses accepted for inbound calls (comma-separated CIDRs).
    inbound_sources     TEXT    NOT NULL DEFAULT '',
    number_format       TEXT    NOT NULL DEFAULT 'e164_plus' CHECK (number_format IN ('e164_plus', 'e164', 'national')),
    max_channels        BIGINT  CHECK (max_channels IS NULL OR max_channels >= 1),
    priority            BIGINT  NOT NULL DEFAULT 100,
    enabled             BIGINT  NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at          BIGINT  NOT NULL,
    version             BIGINT  NOT NULL DEFAULT 1,
    CHECK (auth_mode = 'ip' OR (username IS NOT NULL AND secret_enc IS NOT NULL))
);

-- Which trunks carry which destinations (prefix of the E.164 number without '+').
CREATE TABLE outbound_routes (
    id        INTEGER PRIMARY KEY,
    trunk_id  BIGINT  NOT NULL REFERENCES trunks (id) ON DELETE CASCADE,
    prefix    TEXT    NOT NULL CHECK (length(prefix) <= 15 AND prefix NOT GLOB '*[^0-9]*'),
    priority  BIGINT  NOT NULL DEFAULT 100,
    UNIQUE (trunk_id, prefix)
);

CREATE TABLE logins (
    id                   INTEGER PRIMARY KEY,
    email                TEXT    NOT NULL UNIQUE CHECK (email = lower(email) AND email LIKE '%_@_%' AND length(email) <= 254),
    password_hash        TEXT    NOT NULL,
    role                 TEXT    NOT NULL CHECK (role IN ('operator_admin', 'reseller_admin', 'customer_admin', 'customer_user')),
    reseller_id          BIGINT  REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id          BIGINT,
    extension_id         BIGINT,
    display_name         TEXT    NOT NULL DEFAULT '',
    language             TEXT    CHECK (language IS NULL OR language IN ('en', 'de')),
    totp_secret_enc      TEXT,
    disabled             BIGINT  NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    failed_logins        BIGINT  NOT NULL DEFAULT 0,
    created_at           BIGINT  NOT NULL,
    password_changed_at  BIGINT  NOT NULL,
    last_login_at        BIGINT,
    version              BIGINT  NOT NULL DEFAULT 1,
    CHECK (
        (role = 'operator_admin' AND reseller_id IS NULL AND customer_id IS NULL AND extension_id IS NULL) OR
        (role = 'reseller_admin' AND reseller_id IS NOT NULL AND customer_id IS NULL AND extension_id IS NULL) OR
        (role = 'customer_admin' AND reseller_id IS NOT NULL AND customer_id IS NOT NULL AND extension_id IS NULL) OR
        (role = 'customer_user' AND reseller_id IS NOT NULL AND customer_id IS NOT NULL AND extension_id IS NOT NULL)
    ),
    FOREIGN KEY (customer_id, reseller_id) REFERENCES customers (id, reseller_id) ON DELETE CASCADE,
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);

-- API tokens: only a SHA-256 of the secret part is kept.
CREATE TABLE api_tokens (
    id                   INTEGER PRIMARY KEY,
    public_id            TEXT    NOT NULL UNIQUE,
    secret_sha256        TEXT    NOT NULL CHECK (length(secret_sha256) = 64),
    name                 TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    level                TEXT    NOT NULL CHECK (level IN ('operator', 'reseller', 'customer')),
    reseller_id          BIGINT  REFERENCES resellers (id) ON DELETE CASCADE,
    customer_id          BIGINT,
    read_only            BIGINT  NOT NULL DEFAULT 0 CHECK (read_only IN (0, 1)),
    created_by_login_id  BIGINT  REFERENCES logins (id) ON DELETE SET NULL,
    created_at           BIGINT  NOT NULL,
    expires_at           BIGINT,
    revoked_at           BIGINT,
    last_used_at         BIGINT,
    CHECK (
        (level = 'operator' AND reseller_id IS NULL AND customer_id IS NULL) OR
        (level = 'reseller' AND reseller_id IS NOT NULL AND customer_id IS NULL) OR
        (level = 'customer' AND reseller_id IS NOT NULL AND customer_id IS NOT NULL)
    ),
    FOREIGN KEY (customer_id, reseller_id) REFERENCES customers (id, reseller_id) ON DELETE CASCADE
);

-- Who changed what and when. No foreign keys: the log outlives what it describes.
-- reseller_id/customer_id say in whose scope the entry is visible.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              BIGINT  NOT NULL,
    actor           TEXT    NOT NULL,
    actor_login_id  BIGINT,
    actor_token_id  BIGINT,
    reseller_id     BIGINT,
    customer_id     BIGINT,
    action          TEXT    NOT NULL,
    object_type     TEXT    NOT NULL,
    object_id       BIGINT,
    details         TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_scope ON audit_log (reseller_id, customer_id, at);

-- SIP registrations, written behind the in-memory location service so they
-- survive a restart. node_id is the proxy node holding the phone's flow.
CREATE TABLE registrations (
    id            INTEGER PRIMARY KEY,
    customer_id   BIGINT  NOT NULL,
    extension_id  BIGINT  NOT NULL,
    device_id     BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    binding_key   TEXT    NOT NULL,
    contact       TEXT    NOT NULL,
    instance_id   TEXT,
    reg_id        BIGINT,
    transport     TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp', 'tls', 'ws', 'wss')),
    source        TEXT    NOT NULL,
    local         TEXT    NOT NULL,
    node_id       TEXT    NOT NULL,
    path          TEXT,
    call_id       TEXT    NOT NULL,
    cseq          BIGINT  NOT NULL,
    q_milli       BIGINT  NOT NULL DEFAULT 1000 CHECK (q_milli BETWEEN 0 AND 1000),
    user_agent    TEXT,
    expires_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (device_id, binding_key),
    FOREIGN KEY (extension_id, customer_id) REFERENCES extensions (id, customer_id) ON DELETE CASCADE
);
CREATE INDEX registrations_expiry ON registrations (expires_at);

-- One row per call leg. record_uid is chosen by the proxy node before the
-- record is spooled, so a retried batch can never insert a record twice.
CREATE TABLE call_records (
    id                    INTEGER PRIMARY KEY,
    record_uid            TEXT    NOT NULL UNIQUE,
    call_id               TEXT    NOT NULL,
    leg                   BIGINT  NOT NULL DEFAULT 0,
    reseller_id           BIGINT  NOT NULL,
    customer_id           BIGINT  NOT NULL,
    direction             TEXT    NOT NULL CHECK (direction IN ('internal', 'outbound', 'inbound')),
    caller                TEXT    NOT NULL,
    callee                TEXT    NOT NULL,
    caller_extension_id   BIGINT,
    callee_extension_id   BIGINT,
    caller_device_id      BIGINT,
    callee_device_id      BIGINT,
    destination           TEXT,
    trunk_id              BIGINT,
    invite_at             BIGINT  NOT NULL,
    answer_at             BIGINT,
    end_at                BIGINT  NOT NULL,
    billable_ms           BIGINT  NOT NULL CHECK (billable_ms >= 0),
    disposition           TEXT    NOT NULL CHECK (disposition IN ('answered', 'busy', 'no_answer', 'cancelled', 'failed')),
    sip_status            BIGINT  CHECK (sip_status IS NULL OR sip_status BETWEEN 100 AND 699),
    hangup_side           TEXT    CHECK (hangup_side IS NULL OR hangup_side IN ('caller', 'callee', 'system')),
    end_reason            TEXT,
    recovered             BIGINT  NOT NULL DEFAULT 0 CHECK (recovered IN (0, 1)),
    node_id               TEXT    NOT NULL,
    currency              TEXT,
    wholesale_plan_id     BIGINT,
    wholesale_prefix      TEXT,
    wholesale_micros      BIGINT,
    retail_plan_id        BIGINT,
    retail_prefix         TEXT,
    retail_micros         BIGINT,
    rated_at              BIGINT,
    CHECK (end_at >= invite_at),
    CHECK (answer_at IS NULL OR (answer_at >= invite_at AND answer_at <= end_at)),
    CHECK (answer_at IS NOT NULL OR billable_ms = 0),
    FOREIGN KEY (customer_id, reseller_id) REFERENCES customers (id, reseller_id) ON DELETE RESTRICT
);
CREATE INDEX call_records_customer_time ON call_records (customer_id, invite_at);
CREATE INDEX call_records_reseller_time ON call_records (reseller_id, invite_at);
