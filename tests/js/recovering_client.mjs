// The official socket.io-client (>= 4.6, connection state recovery) driven by a test.
// Usage: node recovering_client.mjs URL ROOM EMAIL [websocket|default]
// ("websocket": transports: ["websocket"]; "default": the client's own default options,
// which start with HTTP long-polling)
// Prints one JSON object per line (connect / joined / message / sent / presence / error);
// reads commands from stdin: "send <text>", "react <seq> <emoji>" and "quit".
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, room, email, transports = "websocket"] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const socket = io(url, {
  ...(transports === "websocket" ? { transports: ["websocket"] } : {}),
  reconnectionDelay: 200,
  reconnectionDelayMax: 1000,
});

let joined = false;
socket.on("connect", async () => {
  print({ event: "connect", recovered: socket.recovered, id: socket.id,
          transport: socket.io.engine.transport.name });
  if (!joined) {
    const reply = await socket.emitWithAck("join", { email, roomId: room });
    joined = reply.ok;
    print({ event: "joined", reply });
  }
});
socket.on("new_message", (message, offset) => print({ event: "message", message, offset }));
socket.on("message_changed", (change, offset) => print({ event: "change", change, offset }));
socket.on("user_joined", (e) => print({ event: "user_joined", data: e }));
socket.on("user_left", (e) => print({ event: "user_left", data: e }));
socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
socket.on("connect_error", (err) => print({ event: "connect_error", message: String(err) }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  if (line === "quit") {
    socket.disconnect();
    process.exit(0);
  }
  if (line.startsWith("send ")) {
    const text = line.slice(5);
    const reply = await socket.timeout(10000).emitWithAck("send_message", { roomId: room, text, clientMsgId: `js-${text}` });
    print({ event: "sent", reply });
  }
  if (line.startsWith("react ")) {
    const [, seq, emoji] = line.split(" ");
    const reply = await socket.timeout(10000).emitWithAck("react", { roomId: room, seq: Number(seq), emoji, clientMsgId: `js-react-${seq}` });
    print({ event: "reacted", reply });
  }
});
