// The web chat page: the native JSON protocol on /ws of this origin (docs/webpage.md).
// User content is only ever written with textContent.
"use strict";

(() => {
  const ACK_TIMEOUT_MS = 20000; // > the gateway's worst case for one event (protocol.md, 5)
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const PAGE_SIZE = 50;
  const RETRYABLE = new Set(["UNAVAILABLE", "RATE_LIMITED", "INTERNAL"]);
  // Close codes after which reconnecting cannot help (protocol.md, section 6).
  const TERMINAL = {
    1002: "protocol error", 1003: "protocol error", 1007: "protocol error", 1008: "too many frames",
    1009: "message too large", 4001: "token rejected", 4009: "session opened elsewhere",
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const backoff = (n) =>
    Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** n) * (0.5 + Math.random() / 2);

  const chat = {
    email: "", room: "", token: "",
    ws: null, nextId: 1, acks: new Map(), // id -> {resolve, reject, timer}
    session: null,          // {sessionId, resumeToken} from the join ack
    lastSeq: 0,             // last seq of the room's stream (join history, new_message); never from acks
    seqs: new Set(),        // seqs on screen: each message shown once
    oldest: null, atBeginning: false, loadingOlder: false,
    outbox: [],             // [{clientMsgId, text, node}] in send order, until acked
    members: new Set(), memberCount: 0, // presence: the join's first page, then the changes
    ready: false, pumping: false, attempt: 0, stopped: true, timer: null,
  };

  // --- the connection ----------------------------------------------------------------

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws");
    chat.ws = ws;
    ws.onopen = () => start(ws).catch((err) => {
      if (err instanceof Fatal) return stop(err.message);
      if (chat.ws === ws) ws.close(4000, "setup failed"); // reconnect and try again
    });
    ws.onmessage = (ev) => onFrame(ev.data);
    ws.onclose = (ev) => onClose(ws, ev);
  }

  class Fatal extends Error {}

  // After each (re)connect: authenticate, resume the session or join, then resend.
  async function start(ws) {
    if (chat.token) {
      const reply = await call("auth", { token: chat.token });
      if (!reply.ok) throw new Fatal(reply.error.message);
      if (reply.email) chat.email = reply.email;
    }
    let state = "connected";
    if (chat.session) {
      const reply = await call("resume", { ...chat.session, lastSeq: { [chat.room]: chat.lastSeq } });
      if (!reply.ok) throw new Error(reply.error.code);
      state = reply.recovered ? "recovered" : "not-recovered";
    }
    if (state !== "recovered") await join();
    if (chat.ws !== ws) return;
    chat.attempt = 0;
    chat.ready = true;
    setStatus(state, state === "not-recovered" ? "not recovered: rejoined" : state);
    $("whoami").textContent = chat.email;
    updateOlder();
    pump();
  }

  async function join() {
    const reply = await call("join", { email: chat.email, roomId: chat.room });
    if (!reply.ok) {
      if (RETRYABLE.has(reply.error.code)) throw new Error(reply.error.code);
      throw new Fatal(reply.error.message);
    }
    chat.session = { sessionId: reply.sessionId, resumeToken: reply.resumeToken };
    chat.members = new Set(reply.users);
    showMembers(reply.userCount);
    const had = chat.lastSeq;
    reply.history.forEach(addMessage);
    if (reply.history.length) chat.lastSeq = reply.history[reply.history.length - 1].seq;
    if (chat.oldest === null) chat.atBeginning = !reply.history.length || reply.history[0].seq === 1;
    // A rejoin after an unrecovered drop: page back until what we missed is on screen.
    let first = reply.history.length ? reply.history[0].seq : 0;
    while (had > 0 && first > had + 1) {
      const page = await call("get_history", { roomId: chat.room, beforeSeq: first, limit: 200 });
      if (!page.ok || !page.messages.length) break;
      page.messages.forEach(addMessage);
      first = page.messages[0].seq;
    }
  }

  function call(type, data) {
    const ws = chat.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("offline"));
    const id = chat.nextId++;
    ws.send(JSON.stringify({ type, id, data }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        chat.acks.delete(id);
        reject(new Error("ack timeout"));
        ws.close(4000, "ack timeout"); // keeps the session: reconnect, resume, resend
      }, ACK_TIMEOUT_MS);
      chat.acks.set(id, { resolve, reject, timer });
    });
  }

  function onFrame(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    const data = frame.data || {};
    if (frame.type === "ack") {
      const waiter = chat.acks.get(frame.id);
      if (!waiter) return;
      chat.acks.delete(frame.id);
      clearTimeout(waiter.timer);
      waiter.resolve(data);
      return;
    }
    if (data.roomId !== undefined && data.roomId !== chat.room) return;
    if (frame.type === "new_message") {
      chat.lastSeq = Math.max(chat.lastSeq, data.seq); // delivered in seq order, gap-free
      addMessage(data);
    } else if (frame.type === "user_joined" || frame.type === "user_left") {
      // A small room's events carry the whole list; a large room's only the change.
      if (data.users) chat.members = new Set(data.users);
      else if (frame.type === "user_joined") chat.members.add(data.email);
      else chat.members.delete(data.email);
      showMembers(data.count);
    } else if (frame.type === "presence_diff") {
      data.joins.forEach((u) => chat.members.add(u));
      data.leaves.forEach((u) => chat.members.delete(u));
      showMembers(data.count);
    } else if (frame.type === "error") {
      notice(`${data.code}: ${data.message}`);
    }
  }

  function onClose(ws, ev) {
    if (chat.ws !== ws) return;
    chat.ws = null;
    chat.ready = false;
    for (const waiter of chat.acks.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error("disconnected"));
    }
    chat.acks.clear();
    updateOlder();
    if (chat.stopped) return;
    if (TERMINAL[ev.code]) return stop(TERMINAL[ev.code]);
    const wait = backoff(chat.attempt++);
    setStatus("reconnecting", `reconnecting (attempt ${chat.attempt})`);
    chat.timer = setTimeout(connect, wait);
  }

  // Leave for good (the Leave button, or a failure a reconnect cannot fix: back to the form).
  function stop(reason) {
    chat.stopped = true;
    chat.ready = false;
    clearTimeout(chat.timer);
    if (chat.ws) chat.ws.close(1000); // a goodbye: the session ends, others see user_left
    setStatus("stopped", reason ? `disconnected: ${reason}` : "not connected");
    $("login-error").textContent = reason;
    $("login-error").hidden = !reason;
    $("chat").hidden = true;
    $("login").hidden = false;
  }

  // --- sending: a queue that survives reconnects ---------------------------------------

  function send(text) {
    const item = { clientMsgId: crypto.randomUUID(), text, node: messageNode(chat.email, text) };
    item.node.classList.add("mine", "pending");
    item.node.dataset.clientMsgId = item.clientMsgId;
    $("outbox").append(item.node);
    chat.outbox.push(item);
    scrollToEnd();
    pump();
  }

  // One send in flight at a time, in order; a send whose ack is lost is resent with the
  // same clientMsgId after the next resume or join, and the server stores it only once.
  async function pump() {
    if (chat.pumping) return;
    chat.pumping = true;
    try {
      let tries = 0;
      while (chat.ready && chat.outbox.length) {
        const item = chat.outbox[0];
        let reply;
        try {
          reply = await call("send_message",
            { roomId: chat.room, text: item.text, clientMsgId: item.clientMsgId });
        } catch {
          break; // disconnected: start() calls pump again once the session is back
        }
        if (!reply.ok && RETRYABLE.has(reply.error.code)) {
          await delay(reply.error.retryAfterMs || backoff(tries++));
          continue;
        }
        chat.outbox.shift();
        tries = 0;
        if (reply.ok) {
          item.node.remove();
          addMessage(reply.message);
        } else {
          item.node.classList.replace("pending", "failed");
          item.node.title = reply.error.message;
          notice(`not sent: ${reply.error.message}`);
        }
      }
    } finally {
      chat.pumping = false;
    }
  }

  // --- the screen ----------------------------------------------------------------------

  function messageNode(email, text, ts) {
    const node = el("li", "msg");
    node.append(el("span", "who", email));
    const time = el("time", "", ts ? new Date(ts).toLocaleTimeString() : "");
    if (ts) time.dateTime = ts;
    node.append(time, el("p", "text", text));
    return node;
  }

  function addMessage(m) {
    if (chat.seqs.has(m.seq)) return;
    chat.seqs.add(m.seq);
    const pending = m.clientMsgId && chat.outbox.find((i) => i.clientMsgId === m.clientMsgId);
    if (pending) pending.node.hidden = true; // stored; the ack will drop it from the queue
    const node = messageNode(m.email, m.text, m.ts);
    node.dataset.seq = String(m.seq);
    node.dataset.id = m.id;
    if (m.email === chat.email) node.classList.add("mine");
    const list = $("messages");
    const last = list.lastElementChild;
    const after = last && Number(last.dataset.seq) > m.seq
      ? [...list.children].find((n) => Number(n.dataset.seq) > m.seq) : null;
    const pane = $("pane");
    const atEnd = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
    if (after) {
      const height = pane.scrollHeight;
      list.insertBefore(node, after);
      pane.scrollTop += pane.scrollHeight - height; // keep what the reader is looking at
    } else {
      list.append(node);
      if (atEnd) scrollToEnd();
    }
    chat.oldest = chat.oldest === null ? m.seq : Math.min(chat.oldest, m.seq);
    if (m.seq === 1) chat.atBeginning = true;
  }

  function scrollToEnd() {
    $("pane").scrollTop = $("pane").scrollHeight;
  }

  async function loadOlder() {
    if (!chat.ready || chat.loadingOlder || chat.atBeginning || chat.oldest === null) return;
    chat.loadingOlder = true;
    updateOlder();
    try {
      const reply = await call("get_history",
        { roomId: chat.room, beforeSeq: chat.oldest, limit: PAGE_SIZE });
      if (reply.ok) {
        reply.messages.reverse().forEach(addMessage); // newest first: the view stays put
        if (!reply.messages.length) chat.atBeginning = true;
      }
    } catch {
      // offline: the button works again after the reconnect
    } finally {
      chat.loadingOlder = false;
      updateOlder();
    }
  }

  function updateOlder() {
    const button = $("older");
    button.disabled = chat.atBeginning || chat.loadingOlder || !chat.ready;
    button.textContent = chat.atBeginning ? "Beginning of the room" : "Load older messages";
  }

  function showMembers(count) {
    chat.memberCount = count;
    const list = $("users");
    const users = [...chat.members];
    list.replaceChildren(...users.map((u) => el("li", u === chat.email ? "me" : "", u)));
    const more = count - users.length;
    $("member-count").textContent =
      `${count} ${count === 1 ? "member" : "members"}` + (more > 0 ? ` (${more} not listed)` : "");
  }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  // --- wiring --------------------------------------------------------------------------

  function enter(ev) {
    ev.preventDefault();
    chat.email = $("email").value.trim();
    chat.room = $("room").value.trim();
    chat.token = $("token").value.trim();
    if (!chat.token && !chat.email) {
      $("login-error").textContent = "Enter an email (or a token).";
      $("login-error").hidden = false;
      return;
    }
    Object.assign(chat, { session: null, lastSeq: 0, oldest: null, atBeginning: false,
      outbox: [], stopped: false, attempt: 0 });
    chat.seqs.clear();
    $("messages").replaceChildren();
    $("outbox").replaceChildren();
    $("room-title").textContent = `# ${chat.room}`;
    $("login-error").hidden = true;
    notice("");
    $("login").hidden = true;
    $("chat").hidden = false;
    setStatus("connecting", "connecting");
    connect();
    $("text").focus();
  }

  function leave() {
    if (chat.ready) call("leave", { roomId: chat.room }).catch(() => {});
    stop("");
    chat.outbox = [];
  }

  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(location.search);
    $("email").value = params.get("email") || "";
    $("room").value = params.get("room") || $("room").value;
    if (params.has("token")) {
      $("token").value = params.get("token");
      params.delete("token"); // keep the secret out of the address bar and history
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
    }
    $("login").addEventListener("submit", enter);
    $("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("text").value;
      if (!text) return;
      $("text").value = "";
      send(text);
    });
    $("older").addEventListener("click", loadOlder);
    $("pane").addEventListener("scroll", () => { if ($("pane").scrollTop < 30) loadOlder(); });
    $("leave").addEventListener("click", leave);
    // Closing the tab is a goodbye (1000): the others see user_left at once.
    window.addEventListener("pagehide", () => { if (chat.ws) chat.ws.close(1000); });
  });
})();
