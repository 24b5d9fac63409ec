-- Rooms hold the last assigned sequence number; messages are keyed by (room, seq).
CREATE TABLE rooms (
    room_id   text   PRIMARY KEY,
    last_seq  bigint NOT NULL CHECK (last_seq >= 0)
);

CREATE TABLE messages (
    room_id          text        NOT NULL,
    seq              bigint      NOT NULL,
    id               text        NOT NULL,
    email            text        NOT NULL,
    body             text        NOT NULL,
    client_msg_id    text        NOT NULL,
    client_supplied  boolean     NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (room_id, seq),
    CONSTRAINT messages_idempotency UNIQUE (room_id, client_msg_id)
);
