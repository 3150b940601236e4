-- Audio a customer uploads, converted to 8 kHz mono WAV and kept in the
-- audio store under these keys: an extension's voicemail greeting (in place
-- of the default one) and the customer's music on hold (in place of the
-- platform's tune). NULL: the default.
ALTER TABLE voicemail_boxes ADD COLUMN greeting_audio TEXT;
ALTER TABLE customers ADD COLUMN music_audio TEXT;
