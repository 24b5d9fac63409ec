// Adapted copies of the engine.io-protocol test-suite cases that need the suite's raw
// Engine.IO echo server (a "4hello" message echoed back). Our server is a Socket.IO server
// (here at the suite's path, GATEWAY_SOCKETIO_PATH=/engine.io/), so each copy keeps the
// original's steps and title, sends a Socket.IO packet
// inside the Engine.IO message ("40", CONNECT) and expects our answer to it ("40{...}");
// binary packets, which we do not serve, expect the documented refusal (docs/protocol.md 2.6,
// 2.9). Run from the suite's test-suite/ folder (it provides node-imports.js) by
// scripts/official_suites.py, against a gateway on port 3000 serving that path.

const isNodejs = typeof window === "undefined";

if (isNodejs) {
  await import("./node-imports.js");
}

const { expect } = chai;

const URL = "http://localhost:3000";
const WS_URL = URL.replace("http", "ws");
const PATH = "/engine.io/";

function waitFor(socket, eventType) {
  return new Promise((resolve) => {
    socket.addEventListener(eventType, (event) => resolve(event), { once: true });
  });
}

// The next message that is not `skip` (the probe's answer may still be on its way).
function messageOtherThan(socket, skip) {
  return new Promise((resolve) => {
    const handler = (event) => {
      if (event.data !== skip) {
        socket.removeEventListener("message", handler);
        resolve(event.data);
      }
    };
    socket.addEventListener("message", handler);
  });
}

async function initLongPollingSession() {
  const response = await fetch(`${URL}${PATH}?EIO=4&transport=polling`);
  const content = await response.text();
  return JSON.parse(content.substring(1)).sid;
}

async function post(sid, body) {
  const response = await fetch(`${URL}${PATH}?EIO=4&transport=polling&sid=${sid}`, {
    method: "post",
    body,
  });
  expect(response.status).to.eql(200);
  expect(await response.text()).to.eql("ok");
}

// Polls until `count` packets (pings left out) have arrived.
async function pollPackets(sid, count) {
  const packets = [];
  while (packets.length < count) {
    const response = await fetch(`${URL}${PATH}?EIO=4&transport=polling&sid=${sid}`);
    expect(response.status).to.eql(200);
    packets.push(...(await response.text()).split("\x1e").filter((p) => p !== "2"));
  }
  return packets;
}

describe("Engine.IO protocol (adapted to a Socket.IO server)", () => {
  describe("message", () => {
    describe("HTTP long-polling", () => {
      it("sends and receives a payload containing one plain text packet", async () => {
        const sid = await initLongPollingSession();
        await post(sid, "40");
        const [connected] = await pollPackets(sid, 1);
        expect(connected).to.startsWith("40{");
      });

      it("sends and receives a payload containing several plain text packets", async () => {
        const sid = await initLongPollingSession();
        await post(sid, '40\x1e421["get_history",{"roomId":"suite-a"}]\x1e422["get_history",{"roomId":"suite-b"}]');
        const packets = await pollPackets(sid, 3);
        expect(packets[0]).to.startsWith("40{");
        expect(packets[1]).to.startsWith("431[");
        expect(packets[2]).to.startsWith("432[");
      });

      it("sends and receives a payload containing plain text and binary packets (binary closes the session)", async () => {
        const sid = await initLongPollingSession();
        await post(sid, "40\x1ebAQIDBA==");
        const pollResponse = await fetch(`${URL}${PATH}?EIO=4&transport=polling&sid=${sid}`);
        expect(pollResponse.status).to.eql(400);
      });
    });

    describe("WebSocket", () => {
      it("sends and receives a plain text packet", async () => {
        const socket = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket`);
        await waitFor(socket, "open");
        await waitFor(socket, "message"); // handshake
        socket.send("40");
        const { data } = await waitFor(socket, "message");
        expect(data).to.startsWith("40{");
        socket.close();
      });

      it("sends and receives a binary packet (an unannounced binary frame closes with 1002)", async () => {
        const socket = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket`);
        socket.binaryType = "arraybuffer";
        await waitFor(socket, "message"); // handshake
        socket.send(Uint8Array.from([1, 2, 3, 4]));
        const { code } = await waitFor(socket, "close");
        expect(code).to.eql(1002);
      });
    });
  });

  describe("upgrade", () => {
    it("successfully upgrades from HTTP long-polling to WebSocket", async () => {
      const sid = await initLongPollingSession();
      const socket = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
      await waitFor(socket, "open");
      socket.send("2probe");
      const probeResponse = await waitFor(socket, "message");
      expect(probeResponse.data).to.eql("3probe");
      const pollResponse = await fetch(`${URL}${PATH}?EIO=4&transport=polling&sid=${sid}`);
      expect(pollResponse.status).to.eql(200);
      expect(await pollResponse.text()).to.eql("6");
      socket.send("5");
      socket.send("40");
      const { data } = await waitFor(socket, "message");
      expect(data).to.startsWith("40{");
      socket.close();
    });

    it("ignores HTTP requests with same sid after upgrade", async () => {
      const sid = await initLongPollingSession();
      const socket = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
      await waitFor(socket, "open");
      socket.send("2probe");
      socket.send("5");
      const pollResponse = await fetch(`${URL}${PATH}?EIO=4&transport=polling&sid=${sid}`);
      expect(pollResponse.status).to.eql(400);
      socket.send("40");
      const data = await messageOtherThan(socket, "3probe");
      expect(data).to.startsWith("40{");
      socket.close();
    });

    it("ignores WebSocket connection with same sid after upgrade", async () => {
      const sid = await initLongPollingSession();
      const socket = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
      await waitFor(socket, "open");
      socket.send("2probe");
      socket.send("5");
      const socket2 = new WebSocket(`${WS_URL}${PATH}?EIO=4&transport=websocket&sid=${sid}`);
      await waitFor(socket2, "close");
      socket.send("40");
      const data = await messageOtherThan(socket, "3probe");
      expect(data).to.startsWith("40{");
      socket.close();
    });
  });
});
