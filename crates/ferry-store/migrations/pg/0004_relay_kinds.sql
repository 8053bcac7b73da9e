-- ferry schema v4: relay items that are text messages, and items that carry the rest of a
-- direct transfer the recipient began (from a byte offset of the whole file).
-- Never edit a released migration.
ALTER TABLE relay_items ADD COLUMN kind TEXT NOT NULL DEFAULT 'file';
ALTER TABLE relay_items ADD COLUMN continues TEXT;
