-- Billing: seats and numbers are priced per month and prorated by day (see
-- store/src/rating.rs), and statements read call records through covering
-- indexes so that a month of a million calls sums without touching the table.
-- Keep in step with migrations/sqlite/0002_billing.sql.

ALTER TABLE price_plans DROP COLUMN extension_day_micros;
ALTER TABLE price_plans DROP COLUMN number_day_micros;
ALTER TABLE price_plans ADD COLUMN extension_month_micros BIGINT NOT NULL DEFAULT 0 CHECK (extension_month_micros >= 0);
ALTER TABLE price_plans ADD COLUMN number_month_micros BIGINT NOT NULL DEFAULT 0 CHECK (number_month_micros >= 0);

DROP INDEX call_records_customer_time;
DROP INDEX call_records_reseller_time;
CREATE INDEX call_records_customer_time ON call_records (customer_id, invite_at, direction, retail_prefix, billable_ms, retail_micros);
CREATE INDEX call_records_reseller_time ON call_records (reseller_id, invite_at, direction, wholesale_prefix, billable_ms, wholesale_micros);
CREATE INDEX call_records_call_id ON call_records (call_id);
