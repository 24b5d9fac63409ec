-- Durable chat state, beside the messages: who is a member of which room with one read
-- watermark each, each room's last activity, who sent a message, each user's event stream,
-- and the inbox's paging snapshots. See docs/architecture.md, "Durable chat state".

-- When the room's last message was stored (NULL: none yet); moved by every append.
ALTER TABLE rooms ADD COLUMN last_at timestamptz;
UPDATE rooms r SET last_at = m.last_at
FROM (SELECT room_id, max(created_at) AS last_at FROM messages GROUP BY room_id) m
WHERE m.room_id = r.room_id;

-- The sender's user id (NULL: stored before user ids, or by a gateway without them).
ALTER TABLE messages ADD COLUMN sender text;

-- One row per (user, room) membership; read_seq is the last seq the user has read.
CREATE TABLE members (
    user_id    text        NOT NULL,
    room_id    text        NOT NULL,
    email      text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('owner', 'member')),
    read_seq   bigint      NOT NULL CHECK (read_seq >= 0),
    joined_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX members_by_room ON members (room_id, user_id);

-- Each user's stream: its head, and its last events (older ones are pruned).
CREATE TABLE user_streams (
    user_id   text   PRIMARY KEY,
    last_seq  bigint NOT NULL CHECK (last_seq >= 0)
);
CREATE TABLE user_events (
    user_id     text        NOT NULL,
    seq         bigint      NOT NULL,
    event       text        NOT NULL,
    data        text        NOT NULL,  -- the JSON exactly as published
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, seq)
);

-- The room order of an inbox listing's first page, so that its next pages follow it.
CREATE TABLE inbox_listings (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL,
    rooms       text[]      NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX inbox_listings_by_age ON inbox_listings (created_at);
