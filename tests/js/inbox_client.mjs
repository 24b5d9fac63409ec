// The official socket.io-client with its default options, driven line by line by a test
// (tests/integration/test_js_inbox.py).
// Usage: node inbox_client.mjs URL
// Nothing is configured: the client starts on HTTP long-polling and upgrades to WebSocket
// by itself, as an application that calls io(url) does.
// Prints one JSON object per line:
//   {"kind":"open","transport":...}            the Engine.IO connection is open
//   {"kind":"connect","transport":...}         the namespace is connected
//   {"kind":"upgrade","transport":...}         the Engine.IO transport was upgraded
//   {"kind":"event","event":...,"args":[...]}  any server event (socket.onAny)
//   {"kind":"ack","id":N,"reply":...}          the ack of command N
//   {"kind":"disconnect","reason":...} / {"kind":"connect_error","message":...}
// Reads commands from stdin, one JSON object per line:
//   {"id":N,"event":"mark_read","data":{...}}  emit with an ack (10 s timeout)
//   {"quit":true}                              disconnect and exit
import { io } from "socket.io-client";
import readline from "node:readline";

const [url] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const socket = io(url);

socket.io.on("open", () => {
  const engine = socket.io.engine;
  print({ kind: "open", transport: engine.transport.name });
  engine.on("upgrade", (transport) => print({ kind: "upgrade", transport: transport.name }));
});
socket.on("connect", () => print({ kind: "connect", transport: socket.io.engine.transport.name }));
socket.onAny((event, ...args) => print({ kind: "event", event, args }));
socket.on("disconnect", (reason) => print({ kind: "disconnect", reason }));
socket.on("connect_error", (err) => print({ kind: "connect_error", message: String(err) }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.quit) {
    socket.disconnect();
    process.exit(0);
  }
  try {
    const reply = await socket.timeout(10000).emitWithAck(command.event, command.data);
    print({ kind: "ack", id: command.id, reply });
  } catch (err) {
    print({ kind: "ack", id: command.id, timeout: String(err) });
  }
});
