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
//   node server.mjs PORT        (or PORT=...; REDIS_URL=redis://127.0.0.1:6379/0)
//
// GET /healthz answers 200 once Redis is connected and the port listens. SIGTERM closes
// every client and exits.

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

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

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

/** roomId -> {seq, messages: Message[], byClientMsgId: Map, users: Map<email, count>} */
const rooms = new Map();

function room(roomId) {
  let r = rooms.get(roomId);
  if (r === undefined) {
    r = { seq: 0, messages: [], byClientMsgId: new Map(), users: new Map() };
    rooms.set(roomId, r);
  }
  return r;
}

const fail = (code, message) => ({ ok: false, error: { code, message } });
const invalid = (message) => fail("INVALID_ARGUMENT", message);
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

io.on("connection", (socket) => {
  const sessionId = randomBytes(16).toString("hex");
  const resumeToken = randomBytes(32).toString("base64url");
  let email = null;
  const joined = new Set();

  const on = (event, handler) =>
    socket.on(event, (data, ack) => {
      const reply = isObject(data) ? handler(data) : invalid("data must be an object");
      if (typeof ack === "function") ack(reply);
      else if (!reply.ok) socket.emit("error", { ...reply.error, event });
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
  io.close(() => Promise.all([pub.quit(), sub.quit()]).finally(() => process.exit(0)));
  setTimeout(() => process.exit(0), 5000).unref();
});
