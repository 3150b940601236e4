-- Auto attendant menus: a customer's greeting that asks the caller to key
-- an option (0-9, *, #), each option leading to a destination like a
-- number's; "timeout" is where a caller who keys nothing valid goes.
-- Numbers, business-hours rules and other menus may lead to a menu.
CREATE TABLE ivr_menus (
    id                INTEGER PRIMARY KEY,
    customer_id       BIGINT  NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    name              TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    greeting_audio    TEXT,
    timeout_s         BIGINT  NOT NULL DEFAULT 5 CHECK (timeout_s BETWEEN 1 AND 30),
    tries             BIGINT  NOT NULL DEFAULT 3 CHECK (tries BETWEEN 1 AND 5),
    direct_dial       BIGINT  NOT NULL DEFAULT 0 CHECK (direct_dial IN (0, 1)),
    created_at        BIGINT  NOT NULL,
    deleted_at        BIGINT,
    version           BIGINT  NOT NULL DEFAULT 1,
    UNIQUE (id, customer_id)
);
CREATE INDEX ivr_menus_customer ON ivr_menus (customer_id) WHERE deleted_at IS NULL;
CREATE TABLE ivr_menu_options (
    menu_id            BIGINT NOT NULL REFERENCES ivr_menus (id) ON DELETE CASCADE,
    key                TEXT   NOT NULL CHECK (key IN ('0','1','2','3','4','5','6','7','8','9','*','#','timeout')),
    extension_id       BIGINT REFERENCES extensions (id),
    ring_group_id      BIGINT REFERENCES ring_groups (id),
    conference_room_id BIGINT REFERENCES conference_rooms (id),
    voicemail_id       BIGINT REFERENCES extensions (id),
    ivr_menu_id        BIGINT REFERENCES ivr_menus (id),
    PRIMARY KEY (menu_id, key)
);
ALTER TABLE phone_numbers ADD COLUMN dest_ivr_menu_id BIGINT REFERENCES ivr_menus (id);
ALTER TABLE business_hours ADD COLUMN open_ivr_menu_id BIGINT REFERENCES ivr_menus (id);
ALTER TABLE business_hours ADD COLUMN closed_ivr_menu_id BIGINT REFERENCES ivr_menus (id);
