-- A clientMsgId names a message of one sender in one room: the key becomes (room_id, sender,
-- client_msg_id). Before, it was (room_id, client_msg_id), so two users whose clients number
-- their messages alike collided, and the second was answered with the first one's message.
-- Every row stays as it was (same id, seq, text); rows without a sender get one.
--
-- Cost on a big table, and how to prepare this online beforehand so that the table is locked
-- for milliseconds only: docs/operations.md, "Migration 0003: idempotency per sender". Steps
-- prepared that way are recognized here and not done twice.

-- Messages without a sender (stored before 0002, or from a gateway without user ids): their
-- email stands in, which is their user id in development mode, as history does for such
-- appends from now on. (With JWTs the user id is the token's sub, so such a message's key is
-- then under its email: only a retry of it sent before the upgrade and resent after could
-- tell, and it would be stored as a new message.) Skipped when a validated
-- CHECK (sender IS NOT NULL) proves that no row lacks one.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'messages'::regclass AND conname = 'messages_has_sender'
          AND convalidated
    ) THEN
        UPDATE messages SET sender = email WHERE sender IS NULL;
    END IF;
END $$;

-- Takes the table's ACCESS EXCLUSIVE lock (held until COMMIT) and scans it, unless that CHECK
-- proves it without a scan. (The CHECK is not named messages_sender_not_null: Postgres 18
-- gives that name to the NOT NULL itself.)
ALTER TABLE messages ALTER COLUMN sender SET NOT NULL;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_has_sender;

-- The new key cannot fail on existing rows: (room_id, client_msg_id) was unique already.
-- client_msg_id comes before sender in the index: the same uniqueness, and the previous
-- version's append, which looks a message up by (room_id, client_msg_id), still finds it
-- with an index probe while both versions run during a rolling upgrade (an index on
-- (room_id, sender, ...) would make it scan the room's entries). The constraint keeps its
-- name. An index built beforehand (messages_idempotency_0003, see docs/operations.md) is
-- taken as it is; anything else of that name (a build that failed half-way) is dropped.
ALTER TABLE messages DROP CONSTRAINT messages_idempotency;
DO $$
DECLARE
    prepared regclass := to_regclass('messages_idempotency_0003');
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i
        WHERE i.indexrelid = prepared
          AND i.indrelid = 'messages'::regclass AND i.indisunique AND i.indisvalid
          AND pg_get_indexdef(i.indexrelid) LIKE '% USING btree (room_id, client_msg_id, sender)'
    ) THEN
        ALTER TABLE messages ADD CONSTRAINT messages_idempotency
            UNIQUE USING INDEX messages_idempotency_0003;
        RETURN;
    END IF;
    IF prepared IS NOT NULL THEN
        DROP INDEX messages_idempotency_0003;
    END IF;
    ALTER TABLE messages ADD CONSTRAINT messages_idempotency
        UNIQUE (room_id, client_msg_id, sender);
END $$;
