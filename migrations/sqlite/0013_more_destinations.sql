-- A phone number, and a business-hours rule in either state, may also lead
-- to a conference room or straight to an extension's voicemail box. At
-- most one destination column of each is set; the store checks that the
-- room or extension is the customer's.
ALTER TABLE phone_numbers ADD COLUMN dest_conference_room_id BIGINT REFERENCES conference_rooms (id);
ALTER TABLE phone_numbers ADD COLUMN dest_voicemail_id BIGINT REFERENCES extensions (id);
ALTER TABLE business_hours ADD COLUMN open_conference_room_id BIGINT REFERENCES conference_rooms (id);
ALTER TABLE business_hours ADD COLUMN open_voicemail_id BIGINT REFERENCES extensions (id);
ALTER TABLE business_hours ADD COLUMN closed_conference_room_id BIGINT REFERENCES conference_rooms (id);
ALTER TABLE business_hours ADD COLUMN closed_voicemail_id BIGINT REFERENCES extensions (id);
