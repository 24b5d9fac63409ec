-- Changes to messages as room events: an edit, a delete or a reaction is stored as the room's
-- next seq, in the same table and append path as messages (chat_common.changes), and applied
-- to the message it targets. See docs/architecture.md, "Messages that change".
--
-- On a big table: the ADD COLUMNs change the catalogue only (constant defaults, no rewrite);
-- the CHECK is NOT VALID (new rows only; old rows are all plain messages); the partial index
-- scans the table once under a SHARE lock (appends wait for it; docs/operations.md says how to
-- build it beforehand with CONCURRENTLY, and it is then taken as it is).

-- What a row is: 'message', or a change with the seq of the message it targets.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'message';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS target_seq bigint;
ALTER TABLE messages ADD CONSTRAINT messages_kind
    CHECK (kind IN ('message', 'edit', 'delete', 'react', 'unreact')
           AND (kind = 'message') = (target_seq IS NULL)) NOT VALID;

-- A message as it is now: its last edit's text and time, and when it was deleted (its body,
-- and its edits' bodies, are then erased).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_body text;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at timestamptz;

-- A message's changes (erasing a deleted message's edits; chatctl's history of a message).
CREATE INDEX IF NOT EXISTS messages_changes ON messages (room_id, target_seq)
    WHERE target_seq IS NOT NULL;

-- Who reacted to which message with what (one row per user and emoji), and each emoji's
-- count with the seq of the reaction that made it appear (the order emojis are listed in).
CREATE TABLE reactions (
    room_id     text   NOT NULL,
    target_seq  bigint NOT NULL,
    emoji       text   NOT NULL,
    user_id     text   NOT NULL,
    PRIMARY KEY (room_id, target_seq, emoji, user_id)
);
CREATE TABLE reaction_counts (
    room_id     text    NOT NULL,
    target_seq  bigint  NOT NULL,
    emoji       text    NOT NULL,
    count       integer NOT NULL CHECK (count > 0),
    first_seq   bigint  NOT NULL,
    PRIMARY KEY (room_id, target_seq, emoji)
);
