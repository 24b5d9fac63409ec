// The Node peer of bench/side_by_side.py: socket.io 4.8 with the Redis adapter and an
// in-memory history, serving the same client contract as our gateway's Socket.IO side for
// the benchmark workloads (docs/protocol.md sections 2 and 4):
//
//   join {email, roomId}              -> {ok, sessionId, resumeToken, roomId, users, history}
//   send_message {roomId, text, clientMsgId?} -> {ok, message}; new_message to the room
//   get_history {roomId, beforeSeq?, limit?}  -> {ok, messages}
//   user_joined {roomId, email, users} to the room on a user's first connection in it
//
// Errors are {ok:false, error:{code, message}}. No connection state recovery: the Redis
// adapter does not implement it, and an in-memory history does not survive a restart.
//
// Durable mode (PG_URL set): every send_message is INSERTed into Postgres with its per-room
// seq, in one SQL statement (node_rooms bumps the room's last_seq, node_messages takes the
// row), before the ack and the broadcast; a Postgres error answers UNAVAILABLE. A pool of
// PG_POOL connections (default 20) runs the statements, so one connection's messages may be
// stored out of the order sent (nothing here serializes them per connection). The tables
// are created at startup; idempotency is the in-memory clientMsgId map, then the unique
// (room_id, client_msg_id) constraint; join and get_history still read the in-memory copy.
// Without PG_URL the server is the in-memory peer.
//
//   node server.mjs PORT        (or PORT=...; REDIS_URL=redis://127.0.0.1:6379/0;
//                                PG_URL=postgresql://...; PG_POOL=20)
//
// GET /healthz answers 200 once Redis (and Postgres) are connected and the port listens.
// SIGTERM closes every client and exits.

import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const port = Number(process.argv[2] ?? process.env.PORT ?? 8090);
const host = process.env.HOST ?? "127.0.0.1";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379/0";
const JOIN_HISTORY_LIMIT = 50;
const MAX_TEXT = 4000;
const KEEP_PER_ROOM = 5000; // messages kept per room (memory stays bounded in long sweeps)
const EMAIL = /^[^@\s]{1,64}@[^@\s]{1,255}$/;
const ROOM = /^[A-Za-z0-9_.:-]{1,64}$/;

const pgUrl = process.env.PG_URL || null;
const pgPoolSize = Number(process.env.PG_POOL ?? 20);

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const SCHEMA = `
CREATE TABLE IF NOT EXISTS node_rooms (
  room_id text PRIMARY KEY,
  last_seq bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS node_messages (
  room_id text NOT NULL,
  seq bigint NOT NULL,
  id text NOT NULL,
  email text NOT NULL,
  body text NOT NULL,
  client_msg_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (room_id, seq),
  UNIQUE (room_id, client_msg_id)
)`;

// One statement, one implicit transaction: the room's row lock orders the seqs, and a
// failed INSERT (a duplicate clientMsgId, say) rolls the seq bump back with it.
const INSERT_MESSAGE = `
WITH room AS (
  INSERT INTO node_rooms AS r (room_id, last_seq) VALUES ($1, 1)
  ON CONFLICT (room_id) DO UPDATE SET last_seq = r.last_seq + 1
  RETURNING last_seq
)
INSERT INTO node_messages (room_id, seq, id, email, body, client_msg_id)
SELECT $1, room.last_seq, $2, $3, $4, $5 FROM room
RETURNING seq, created_at`;

const SELECT_BY_CLIENT_MSG_ID = `
SELECT id, seq, email, body, client_msg_id, created_at FROM node_messages
WHERE room_id = $1 AND client_msg_id = $2`;

let pool = null;
if (pgUrl !== null) {
  const { default: pg } = await import("pg");
  pool = new pg.Pool({ connectionString: pgUrl, max: pgPoolSize, connectionTimeoutMillis: 10000 });
  pool.on("error", (err) => console.error(`postgres pool: ${err.message}`));
  await pool.query(SCHEMA);
}

const httpServer = createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404).end();
});
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 65536,
  adapter: createAdapter(pub, sub),
});

/** roomId -> {seq, messages: Message[], byClientMsgId: Map, pending: Map, users: Map<email, count>} */
const rooms = new Map();

function room(roomId) {
  let r = rooms.get(roomId);
  if (r === undefined) {
    r = { seq: 0, messages: [], byClientMsgId: new Map(), pending: new Map(), users: new Map() };
    rooms.set(roomId, r);
  }
  return r;
}

const fail = (code, message) => ({ ok: false, error: { code, message } });
const invalid = (message) => fail("INVALID_ARGUMENT", message);
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

/** Keep a stored message in memory (history for join and get_history), in seq order. */
function remember(r, message) {
  let i = r.messages.length;
  while (i > 0 && r.messages[i - 1].seq > message.seq) i -= 1; // pool replies may cross
  r.messages.splice(i, 0, message);
  if (message.clientMsgId !== null) r.byClientMsgId.set(message.clientMsgId, message);
  if (r.messages.length > KEEP_PER_ROOM) {
    const old = r.messages.shift();
    if (old.clientMsgId !== null) r.byClientMsgId.delete(old.clientMsgId);
  }
}

/** Durable mode: INSERT the message (one statement), then remember and broadcast it. */
async function store(r, roomId, email, text, key) {
  const id = randomBytes(16).toString("hex");
  let message;
  try {
    const { rows } = await pool.query(INSERT_MESSAGE, [roomId, id, email, text, key]);
    const { seq, created_at: ts } = rows[0];
    message = { id, roomId, seq: Number(seq), email, text, ts: ts.toISOString(), clientMsgId: key };
  } catch (err) {
    if (err.code === "23505" && key !== null) return stored(roomId, key);
    return fail("UNAVAILABLE", `postgres: ${err.message}`);
  }
  remember(r, message);
  io.to(roomId).emit("new_message", message);
  return { ok: true, message };
}

/** The original message of a duplicate clientMsgId that memory no longer holds. */
async function stored(roomId, key) {
  try {
    const { rows } = await pool.query(SELECT_BY_CLIENT_MSG_ID, [roomId, key]);
    if (rows.length === 0) return fail("UNAVAILABLE", "postgres: duplicate key not found");
    const row = rows[0];
    const message = {
      id: row.id,
      roomId,
      seq: Number(row.seq),
      email: row.email,
      text: row.body,
      ts: row.created_at.toISOString(),
      clientMsgId: row.client_msg_id,
    };
    return { ok: true, message };
  } catch (err) {
    return fail("UNAVAILABLE", `postgres: ${err.message}`);
  }
}

io.on("connection", (socket) => {
  const sessionId = randomBytes(16).toString("hex");
  const resumeToken = randomBytes(32).toString("base64url");
  let email = null;
  const joined = new Set();

  const on = (event, handler) =>
    socket.on(event, (data, ack) => {
      const answer = (reply) => {
        if (typeof ack === "function") ack(reply);
        else if (!reply.ok) socket.emit("error", { ...reply.error, event });
      };
      const reply = isObject(data) ? handler(data) : invalid("data must be an object");
      if (reply instanceof Promise) {
        reply.then(answer, (err) => answer(fail("UNAVAILABLE", String(err?.message ?? err))));
      } else answer(reply);
    });

  on("join", ({ email: who, roomId }) => {
    if (typeof who !== "string" || !EMAIL.test(who)) return invalid("invalid email");
    if (typeof roomId !== "string" || !ROOM.test(roomId)) return invalid("invalid roomId");
    if (email !== null && email !== who) return fail("IDENTITY_MISMATCH", "one email per connection");
    email = who;
    const r = room(roomId);
    const first = !joined.has(roomId);
    if (first) {
      joined.add(roomId);
      socket.join(roomId);
    }
    const count = r.users.get(who) ?? 0;
    if (first) r.users.set(who, count + 1);
    const users = [...r.users.keys()];
    const history = r.messages.slice(-JOIN_HISTORY_LIMIT);
    if (first && count === 0) {
      setImmediate(() => io.to(roomId).emit("user_joined", { roomId, email: who, users }));
    }
    return { ok: true, sessionId, resumeToken, roomId, users, history };
  });

  on("send_message", ({ roomId, text, clientMsgId }) => {
    if (!joined.has(roomId)) return fail("NOT_IN_ROOM", "join the room first");
    if (typeof text !== "string" || text.length < 1 || text.length > MAX_TEXT) {
      return invalid(`text must be 1 to ${MAX_TEXT} characters`);
    }
    const key = clientMsgId ?? null;
    if (key !== null && (typeof key !== "string" || key.length < 1 || key.length > 128)) {
      return invalid("clientMsgId must be 1 to 128 characters");
    }
    const r = room(roomId);
    const known = key === null ? undefined : r.byClientMsgId.get(key);
    if (known !== undefined) return { ok: true, message: known };
    if (pool !== null) {
      const inFlight = key === null ? undefined : r.pending.get(key);
      if (inFlight !== undefined) return inFlight; // the same reply as the first send
      const reply = store(r, roomId, email, text, key);
      if (key !== null) {
        r.pending.set(key, reply);
        const done = () => r.pending.delete(key);
        reply.then(done, done);
      }
      return reply;
    }
    const message = {
      id: randomBytes(16).toString("hex"),
      roomId,
      seq: ++r.seq,
      email,
      text,
      ts: new Date().toISOString(),
      clientMsgId: key,
    };
    r.messages.push(message);
    if (key !== null) r.byClientMsgId.set(key, message);
    if (r.messages.length > KEEP_PER_ROOM) {
      const old = r.messages.shift();
      if (old.clientMsgId !== null) r.byClientMsgId.delete(old.clientMsgId);
    }
    io.to(roomId).emit("new_message", message);
    return { ok: true, message };
  });

  on("get_history", ({ roomId, beforeSeq, limit }) => {
    if (!joined.has(roomId)) return fail("NOT_IN_ROOM", "join the room first");
    const n = limit ?? 50;
    if (!Number.isInteger(n) || n < 1 || n > 200) return invalid("limit must be 1 to 200");
    const r = room(roomId);
    const older = beforeSeq == null ? r.messages : r.messages.filter((m) => m.seq < beforeSeq);
    return { ok: true, messages: older.slice(-n) };
  });

  socket.on("disconnect", () => {
    for (const roomId of joined) {
      const r = room(roomId);
      const count = (r.users.get(email) ?? 1) - 1;
      if (count > 0) r.users.set(email, count);
      else {
        r.users.delete(email);
        io.to(roomId).emit("user_left", { roomId, email, users: [...r.users.keys()] });
      }
    }
  });
});

httpServer.listen(port, host, () => console.log(`listening on ${host}:${port}`));

process.on("SIGTERM", () => {
  const closing = () => [pub.quit(), sub.quit(), ...(pool === null ? [] : [pool.end()])];
  io.close(() => Promise.all(closing()).finally(() => process.exit(0)));
  setTimeout(() => process.exit(0), 5000).unref();
});
