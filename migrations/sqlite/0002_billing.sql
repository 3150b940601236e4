-- Billing: seats and numbers are priced per month and prorated by day (see
-- store/src/rating.rs), and statements read call records through covering
-- indexes so that a month of a million calls sums without touching the table.
-- Keep in step with migrations/postgres/0002_billing.sql.

ALTER TABLE price_plans DROP COLUMN extension_day_micros;
ALTER TABLE price_plans DROP COLUMN number_day_micros;
ALTER TABLE price_plans ADD COLUMN extension_month_micros BIGINT NOT NULL DEFAULT 0 CHECK (extension_month_micros >= 0);
ALTER TABLE price_plans ADD COLUMN number_month_micros BIGINT NOT NULL DEFAULT 0 CHECK (number_month_micros >= 0);

DROP INDEX call_records_customer_time;
DROP INDEX call_records_reseller_time;
CREATE INDEX call_records_customer_time ON call_records (customer_id, invite_at, direction, retail_prefix, billable_ms, retail_micros);
CREATE INDEX call_records_reseller_time ON call_records (reseller_id, invite_at, direction, wholesale_prefix, billable_ms, wholesale_micros);
CREATE INDEX call_records_call_id ON call_records (call_id);

-- Answered calls summed per customer, 15-minute UTC interval of the INVITE,
-- direction and the rates that priced them, kept in step with call_records as
-- records are written and re-rated. Month boundaries fall on 15-minute marks
-- in every time zone, so a month's statement sums a few thousand rows here
-- instead of grouping a million records. '-' stands for "no rate applied".
CREATE TABLE call_usage (
    reseller_id        BIGINT  NOT NULL,
    customer_id        BIGINT  NOT NULL,
    bucket             BIGINT  NOT NULL,
    direction          TEXT    NOT NULL,
    wholesale_prefix   TEXT    NOT NULL,
    retail_prefix      TEXT    NOT NULL,
    calls              BIGINT  NOT NULL,
    billable_ms        BIGINT  NOT NULL,
    wholesale_micros   BIGINT  NOT NULL,
    retail_micros      BIGINT  NOT NULL,
    wholesale_unrated  BIGINT  NOT NULL,
    retail_unrated     BIGINT  NOT NULL,
    PRIMARY KEY (customer_id, bucket, direction, wholesale_prefix, retail_prefix)
);
CREATE INDEX call_usage_reseller ON call_usage (reseller_id, bucket);
