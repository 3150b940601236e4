-- Media anchoring: the relay's figures per call, and who may choose
-- whether calls are anchored (NULL: the node's default, or the reseller's).
ALTER TABLE call_records ADD COLUMN media TEXT;
ALTER TABLE resellers ADD COLUMN media_anchor TEXT;
ALTER TABLE customers ADD COLUMN media_anchor TEXT;
