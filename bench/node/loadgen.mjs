// The fan-out load generator of bench/fanout.py (`--generator official`), built on the
// OFFICIAL Node client, socket.io-client, with its default options except
// `transports: ["websocket"]`: neither system serves HTTP long-polling (our gateway is
// WebSocket only, docs/protocol.md section 1; bench/node/server.mjs sets
// `transports: ["websocket"]`), so the default polling-first handshake cannot connect.
//
//   node loadgen.mjs '{"url": "http://127.0.0.1:8080/", "clients": 200, "roomSize": 20,
//                      "roomPrefix": "bench-1-", "rate": 5, "seconds": 15}'
//   node loadgen.mjs --url http://127.0.0.1:8080/ --clients 200 --rate 5 ...
//
// Parameters (defaults): url, clients (200), roomSize (20), roomPrefix ("bench-<ms>-"),
// rate (msgs/s per client, 5), seconds (15), textSize (64 bytes), drain (5 s), auth (none:
// the CONNECT carries no auth object, as a default client's does), control (false),
// joinTimeout (60 s: every client must have joined by then, else one {"error"} line, exit 1).
//
// Each client i connects with io(url), joins room `${roomPrefix}${i % rooms}` (rooms =
// ceil(clients / roomSize)) with emit("join", {email, roomId}, ack); once every client has
// joined, each sends `send_message {roomId, text, clientMsgId}` with an ack callback at `rate`
// msgs/s for `seconds`. A text starts with its send time (bench/loadgen.py's timed_text:
// seconds since the epoch, %020.6f) padded to textSize, so each member that receives it
// on `new_message` computes the end-to-end latency. After the last send it waits up to
// `drain` seconds for the missing deliveries and acks; what has not arrived by then counts
// as not delivered.
//
// stdout: ONE JSON line at the end: sent, acked, errors {code: n}, received (distinct
// deliveries: a (member, seq) pair counts once; repeats are `duplicates`), expected (each
// send x its room's members, the sender included), p50_ms / p99_ms over every delivery,
// senders_out_of_order (senders whose acked seqs do not rise in the order they sent them),
// disconnects, the step's elapsed_s, this process's own cpu_s over it and loop_delay_p99_ms
// (how late its event loop ran timers: a saturated generator sends late and reads late).
// stderr: progress once a second. With control: true, a line "READY <clients>" on stderr once
// every client has joined; the sends start when stdin brings a line "go", and after the
// result the clients stay connected until stdin brings "quit" or ends (so the caller can
// measure the system's CPU over exactly the step, without the connects and disconnects).

import { createRequire } from "node:module";
import { performance, monitorEventLoopDelay } from "node:perf_hooks";
import readline from "node:readline";
import { io } from "socket.io-client";

const CLIENT_VERSION = createRequire(import.meta.url)("socket.io-client/package.json").version;

const DEFAULTS = {
  url: "http://127.0.0.1:8080/",
  clients: 200,
  roomSize: 20,
  roomPrefix: `bench-${Date.now() % 1e8}-`,
  rate: 5,
  seconds: 15,
  textSize: 64,
  drain: 5,
  auth: null,
  control: false,
  joinTimeout: 60,
};

function parseArgs(argv) {
  if (argv.length === 1 && argv[0].trim().startsWith("{")) return { ...DEFAULTS, ...JSON.parse(argv[0]) };
  const params = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in DEFAULTS) || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    const value = argv[i + 1];
    params[key] = typeof DEFAULTS[key] === "number" ? Number(value)
      : key === "auth" ? JSON.parse(value)
      : key === "control" ? value === "true"
      : value;
  }
  return params;
}

const p = parseArgs(process.argv.slice(2));
const log = (text) => process.stderr.write(`${text}\n`);
const nowS = () => (performance.timeOrigin + performance.now()) / 1000;
const sentAt = (text) => Number(text.slice(0, 20));
const timedText = () => {
  const stamp = nowS().toFixed(6).padStart(20, "0");
  return stamp + "x".repeat(Math.max(0, p.textSize - stamp.length));
};

const rooms = Math.ceil(p.clients / p.roomSize);
const roomOf = (i) => `${p.roomPrefix}${i % rooms}`;
const members = new Map(); // roomId -> member count
for (let i = 0; i < p.clients; i += 1) members.set(roomOf(i), (members.get(roomOf(i)) ?? 0) + 1);

const stdinLines = p.control ? readline.createInterface({ input: process.stdin }) : null;
const stdinClosed = stdinLines === null ? null : new Promise((resolve) => stdinLines.on("close", resolve));
const nextLine = (wanted) =>
  new Promise((resolve) => {
    const onLine = (line) => {
      if (line.trim() === wanted) {
        stdinLines.off("line", onLine);
        resolve();
      }
    };
    stdinLines.on("line", onLine);
    stdinClosed.then(resolve);
  });

/** One official client: its latencies, the distinct seqs it received, the seqs of its acks. */
class Member {
  constructor(i) {
    this.i = i;
    this.roomId = roomOf(i);
    this.email = `o${i}@bench.io`;
    this.seen = new Set();
    this.duplicates = 0;
    this.sent = 0;
    this.ackSeqs = []; // send index -> acked seq (undefined: no ok ack)
    this.acked = 0;
    this.disconnects = 0;
    this.socket = io(p.url, {
      transports: ["websocket"],
      ...(p.auth === null ? {} : { auth: p.auth }),
    });
    this.socket.on("new_message", (message) => this.onMessage(message));
    this.socket.on("disconnect", () => {
      if (stepping) this.disconnects += 1;
    });
  }

  join() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client ${this.i}: join timed out`)), p.joinTimeout * 1000);
      this.socket.once("connect_error", (err) => log(`client ${this.i}: connect_error ${err.message} (retrying)`));
      this.socket.emit("join", { email: this.email, roomId: this.roomId }, (reply) => {
        clearTimeout(timer);
        if (reply?.ok) resolve();
        else reject(new Error(`client ${this.i}: join failed ${JSON.stringify(reply).slice(0, 200)}`));
      });
    });
  }

  onMessage(message) {
    const at = nowS();
    if (message?.roomId !== this.roomId) return;
    if (this.seen.has(message.seq)) {
      this.duplicates += 1;
      return;
    }
    this.seen.add(message.seq);
    latencies.push(at - sentAt(message.text));
    received += 1;
  }

  send() {
    const k = this.sent;
    this.sent += 1;
    const payload = { roomId: this.roomId, text: timedText(), clientMsgId: `${this.email}-${k}` };
    this.socket.emit("send_message", payload, (reply) => {
      answered += 1;
      if (reply?.ok && reply.message !== null && typeof reply.message === "object") {
        this.acked += 1;
        this.ackSeqs[k] = Number(reply.message.seq);
      } else {
        const code = String(reply?.error?.code ?? "no_reply");
        errors[code] = (errors[code] ?? 0) + 1;
      }
    });
  }

  /** Send `total` messages at `rate`, starting at `start` (ms, performance clock). */
  async sendAll(start, total) {
    const interval = 1000 / p.rate;
    while (this.sent < total) {
      const delay = start + this.sent * interval - performance.now();
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      this.send();
    }
  }

  inSendOrder() {
    let last = -Infinity;
    for (const seq of this.ackSeqs) {
      if (seq === undefined) continue;
      if (!(seq > last)) return false;
      last = seq;
    }
    return true;
  }
}

const latencies = [];
const errors = {};
let received = 0;
let answered = 0;
let stepping = false;

function percentile(sorted, q) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const clients = Array.from({ length: p.clients }, (_, i) => new Member(i));
try {
  await Promise.all(clients.map((c) => c.join()));
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: String(err.message ?? err) })}\n`);
  process.exit(1);
}
if (p.control) {
  log(`READY ${p.clients}`);
  await nextLine("go");
}

const LOOP_SAMPLE_MS = 10;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
loopDelay.enable();
const cpuBefore = process.cpuUsage();
const began = performance.now();
stepping = true;
let last = 0;
const ticker = setInterval(() => {
  log(`  ${((performance.now() - began) / 1000).toFixed(0).padStart(4)}/${p.seconds} s: ${String(received - last).padStart(7)} deliveries in the last second (official client)`);
  last = received;
}, 1000);

const total = Math.max(1, Math.round(p.rate * p.seconds));
const interval = 1000 / p.rate;
await Promise.all(clients.map((c, i) => c.sendAll(began + ((i % 100) / 100) * interval, total)));
const sent = clients.reduce((n, c) => n + c.sent, 0);
const expected = clients.reduce((n, c) => n + c.sent * members.get(c.roomId), 0);
const deadline = performance.now() + p.drain * 1000;
while ((received < expected || answered < sent) && performance.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const elapsed = (performance.now() - began) / 1000;
const cpu = process.cpuUsage(cpuBefore);
stepping = false;
clearInterval(ticker);
loopDelay.disable();

const sorted = Float64Array.from(latencies).sort();
const ms = (x) => (x === null ? null : Math.round(x * 1e4) / 10);
const result = {
  generator: `socket.io-client ${CLIENT_VERSION}`,
  clients: p.clients,
  rooms,
  room_size: p.roomSize,
  rate: p.rate,
  seconds: p.seconds,
  sent,
  acked: clients.reduce((n, c) => n + c.acked, 0),
  errors,
  unanswered: sent - answered,
  received,
  expected,
  duplicates: clients.reduce((n, c) => n + c.duplicates, 0),
  p50_ms: ms(percentile(sorted, 0.5)),
  p99_ms: ms(percentile(sorted, 0.99)),
  max_ms: ms(sorted.length ? sorted[sorted.length - 1] : null),
  senders: p.clients,
  senders_out_of_order: clients.filter((c) => !c.inSendOrder()).length,
  disconnects: clients.reduce((n, c) => n + c.disconnects, 0),
  elapsed_s: Math.round(elapsed * 100) / 100,
  cpu_s: Math.round((cpu.user + cpu.system) / 1e3) / 1e3,
  // p99 of how late the event loop ran a 10 ms timer (the 10 ms taken off): the generator's lag
  loop_delay_p99_ms: Math.round(Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_SAMPLE_MS) * 100) / 100,
};
process.stdout.write(`${JSON.stringify(result)}\n`);

if (p.control) await Promise.race([nextLine("quit"), new Promise((resolve) => setTimeout(resolve, 60_000))]);
for (const c of clients) c.socket.disconnect();
process.exit(0);
