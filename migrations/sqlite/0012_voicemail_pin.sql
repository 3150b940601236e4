-- A voicemail box's PIN, for listening to it from any phone (*98): an
-- argon2id hash, never the digits. NULL: no PIN, the box is reached only
-- from its own extension's phones (*97).
ALTER TABLE voicemail_boxes ADD COLUMN pin_hash TEXT;
