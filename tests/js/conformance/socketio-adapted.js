// Adapted copies of the socket.io-protocol test-suite cases that need the suite's own test
// server (an "auth" echo after CONNECT, a "/custom" namespace, "message-back" echoes).
// Each keeps the original's steps and title and swaps the echo for our events (docs/protocol.md
// 2.10). Run from the suite's test-suite/ folder (it provides node-imports.js) by
// scripts/official_suites.py, against a gateway on port 3000.

const isNodejs = typeof window === "undefined";

if (isNodejs) {
  await import("./node-imports.js");
}

const { expect } = chai;

const URL = "http://localhost:3000";
const WS_URL = URL.replace("http", "ws");

function waitFor(socket, eventType) {
  return new Promise((resolve) => {
    socket.addEventListener(eventType, (event) => resolve(event), { once: true });
  });
}

// The next message starting with `prefix` (presence events and pings before it are skipped).
function waitForPrefix(socket, prefix) {
  return new Promise((resolve) => {
    const handler = (event) => {
      if (typeof event.data === "string" && event.data.startsWith(prefix)) {
        socket.removeEventListener("message", handler);
        resolve(event.data);
      }
    };
    socket.addEventListener("message", handler);
  });
}

function uniqueRoom() {
  return `suite-${Math.random().toString(16).slice(2, 10)}`;
}

// As the suite's initSocketIOConnection, without the "auth" echo our server does not send.
async function initSocketIOConnection() {
  const socket = new WebSocket(`${WS_URL}/socket.io/?EIO=4&transport=websocket`);
  socket.binaryType = "arraybuffer";
  await waitFor(socket, "message"); // Engine.IO handshake
  socket.send("40");
  await waitFor(socket, "message"); // Socket.IO handshake
  return socket;
}

async function joinRoom(socket, roomId) {
  socket.send(`4299["join",{"roomId":"${roomId}","email":"suite@example.com"}]`);
  const ack = await waitForPrefix(socket, "4399[");
  expect(JSON.parse(ack.substring(4))[0].ok).to.eql(true);
}

describe("Socket.IO protocol (adapted to our events)", () => {
  describe("connect", () => {
    it("should allow connection to the main namespace (the reply carries pid; no auth echo)", async () => {
      const socket = new WebSocket(`${WS_URL}/socket.io/?EIO=4&transport=websocket`);
      await waitFor(socket, "message");
      socket.send("40");
      const { data } = await waitFor(socket, "message");
      expect(data).to.startsWith("40");
      const handshake = JSON.parse(data.substring(2));
      expect(handshake).to.have.all.keys("sid", "pid");
      expect(handshake.sid).to.be.a("string");
      socket.close();
    });

    it("should allow connection to the main namespace with a payload (no auth echo)", async () => {
      const socket = new WebSocket(`${WS_URL}/socket.io/?EIO=4&transport=websocket`);
      await waitFor(socket, "message");
      socket.send('40{"token":"123"}');
      const { data } = await waitFor(socket, "message");
      expect(data).to.startsWith("40");
      expect(JSON.parse(data.substring(2)).sid).to.be.a("string");
      socket.close();
    });

    it("should allow connection to a custom namespace (our one namespace, / written out)", async () => {
      const socket = new WebSocket(`${WS_URL}/socket.io/?EIO=4&transport=websocket`);
      await waitFor(socket, "message");
      socket.send("40/,");
      const { data } = await waitFor(socket, "message");
      expect(data).to.startsWith("40{");
      expect(JSON.parse(data.substring(2)).sid).to.be.a("string");
      socket.close();
    });

    it("should allow connection to a custom namespace with a payload (/ written out)", async () => {
      const socket = new WebSocket(`${WS_URL}/socket.io/?EIO=4&transport=websocket`);
      await waitFor(socket, "message");
      socket.send('40/,{"token":"abc"}');
      const { data } = await waitFor(socket, "message");
      expect(data).to.startsWith("40{");
      expect(JSON.parse(data.substring(2)).sid).to.be.a("string");
      socket.close();
    });
  });

  describe("disconnect", () => {
    it("should disconnect from the main namespace", async () => {
      const socket = await initSocketIOConnection();
      socket.send("41");
      const { data } = await waitFor(socket, "message");
      expect(data).to.eql("2");
      socket.close();
    });

    it("should connect then disconnect from a custom namespace (refused, then the main one still answers)", async () => {
      const socket = await initSocketIOConnection();
      await waitFor(socket, "message"); // ping
      socket.send("3");
      socket.send("40/custom,");
      const { data: refused } = await waitFor(socket, "message");
      expect(refused).to.eql('44/custom,{"message":"Invalid namespace"}');
      socket.send("41/custom,");
      socket.send(`427["get_history",{"roomId":"${uniqueRoom()}"}]`);
      const answer = await waitForPrefix(socket, "43");
      expect(answer).to.startsWith("437[");
      socket.close();
    });
  });

  describe("message", () => {
    it("should send a plain-text packet (send_message, then new_message to the room)", async () => {
      const socket = await initSocketIOConnection();
      const room = uniqueRoom();
      await joinRoom(socket, room);
      socket.send(`42["send_message",{"roomId":"${room}","text":"1 2 {3: [true]}"}]`);
      const event = await waitForPrefix(socket, '42["new_message"');
      const [, message] = JSON.parse(event.substring(2));
      expect(message.roomId).to.eql(room);
      expect(message.text).to.eql("1 2 {3: [true]}");
      socket.close();
    });

    it("should send a packet with binary attachments (an error event; the connection stays)", async () => {
      const socket = await initSocketIOConnection();
      socket.send('452-["send_message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      socket.send(Uint8Array.from([1, 2, 3]));
      socket.send(Uint8Array.from([4, 5, 6]));
      const event = await waitForPrefix(socket, '42["error"');
      const [, error] = JSON.parse(event.substring(2));
      expect(error.code).to.eql("INVALID_ARGUMENT");
      expect(error.event).to.eql("send_message");
      socket.send(`428["get_history",{"roomId":"${uniqueRoom()}"}]`);
      expect(await waitForPrefix(socket, "43")).to.startsWith("438[");
      socket.close();
    });

    it("should send a plain-text packet with an ack (get_history)", async () => {
      const socket = await initSocketIOConnection();
      const room = uniqueRoom();
      await joinRoom(socket, room);
      socket.send(`42456["get_history",{"roomId":"${room}"}]`);
      const ack = await waitForPrefix(socket, "43456[");
      expect(JSON.parse(ack.substring(5))[0].ok).to.eql(true);
      socket.close();
    });

    it("should send a packet with binary attachments and an ack (an error ack)", async () => {
      const socket = await initSocketIOConnection();
      socket.send('452-789["send_message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      socket.send(Uint8Array.from([1, 2, 3]));
      socket.send(Uint8Array.from([4, 5, 6]));
      const ack = await waitForPrefix(socket, "43789[");
      const [answer] = JSON.parse(ack.substring(5));
      expect(answer.ok).to.eql(false);
      expect(answer.error.code).to.eql("INVALID_ARGUMENT");
      socket.close();
    });
  });
});
