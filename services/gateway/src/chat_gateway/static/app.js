// The web chat page: the native JSON protocol on /ws of this origin (docs/webpage.md).
// User content is only ever written with textContent.
// One room is shown at a time; the sidebar lists the user's rooms (get_rooms) with their
// unread counts, kept live by inbox_update, read_state and membership (protocol.md, 4.13).
"use strict";

(() => {
  const ACK_TIMEOUT_MS = 20000; // > the gateway's worst case for one event (protocol.md, 5)
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const PAGE_SIZE = 50;
  const ROOMS_PAGE = 50;
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
    email: "", token: "",
    ws: null, nextId: 1, acks: new Map(), // id -> {resolve, reject, timer}
    session: null,          // {sessionId, resumeToken} from the join ack
    joined: new Map(),      // rooms of this connection -> last seq of their stream (join
                            // history, new_message), for resume; never from acks
    room: "",               // the room shown, and its messages:
    seqs: new Set(),        // seqs on screen: each message shown once
    shown: new Map(),       // seq -> the message as it is now (edits, deletes, reactions)
    newest: 0, oldest: null, atBeginning: false, loadingOlder: false,
    outbox: [],             // [{roomId, clientMsgId, text, node}] in send order, until acked
    members: new Set(), memberCount: 0, // presence: the join's first page, then the changes
    rooms: new Map(),       // the sidebar: roomId -> {lastSeq, readSeq, node}
    roomsNext: null, listing: 0, // the listing's next page, and which listing it is
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

  // After each (re)connect: authenticate, resume the session or join, then list the rooms
  // (which follows the inbox on this connection) and resend.
  async function start(ws) {
    if (chat.token) {
      const reply = await call("auth", { token: chat.token });
      if (!reply.ok) throw new Fatal(reply.error.message);
      if (reply.email) chat.email = reply.email;
    }
    let state = "connected";
    if (chat.session) {
      const reply = await call("resume", { ...chat.session, lastSeq: Object.fromEntries(chat.joined) });
      if (!reply.ok) throw new Error(reply.error.code);
      state = reply.recovered ? "recovered" : "not-recovered";
      if (reply.recovered) reply.droppedRooms.forEach((roomId) => chat.joined.delete(roomId));
    }
    if (state !== "recovered") await rejoin();
    if (chat.ws !== ws) return;
    chat.attempt = 0;
    chat.ready = true;
    setStatus(state, state === "not-recovered" ? "not recovered: rejoined" : state);
    $("whoami").textContent = chat.email;
    updateOlder();
    listRooms(null);
    markRead();
    pump();
  }

  // Join the shown room (and, after an unrecovered drop, the others this page had joined).
  async function rejoin() {
    const had = chat.joined.get(chat.room) || 0;
    const others = [...chat.joined.keys()].filter((roomId) => roomId !== chat.room);
    chat.joined.clear();
    await showJoined(await join(chat.room), had);
    for (const roomId of others) {
      await join(roomId).catch((err) => { if (!(err instanceof Fatal)) throw err; });
    }
  }

  async function join(roomId) {
    const reply = await call("join", { email: chat.email, roomId });
    if (!reply.ok) {
      if (RETRYABLE.has(reply.error.code)) throw new Error(reply.error.code);
      throw new Fatal(reply.error.message);
    }
    chat.session = { sessionId: reply.sessionId, resumeToken: reply.resumeToken };
    const last = reply.history.length ? reply.history[reply.history.length - 1].seq : 0;
    chat.joined.set(roomId, Math.max(chat.joined.get(roomId) || 0, last));
    return reply;
  }

  // The shown room's join ack on screen. `had`: the last seq shown before an unrecovered
  // drop; the page reads back until what was missed is on screen.
  async function showJoined(reply, had) {
    chat.members = new Set(reply.users);
    showMembers(reply.userCount);
    reply.history.forEach(addMessage);
    if (chat.oldest === null) chat.atBeginning = !reply.history.length || reply.history[0].seq === 1;
    let first = reply.history.length ? reply.history[0].seq : 0;
    while (had > 0 && first > had + 1) {
      const page = await call("get_history", { roomId: reply.roomId, beforeSeq: first, limit: 200 });
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
    switch (frame.type) { // the user's events: about any of their rooms
      case "inbox_update": return showRoom(data, true);
      case "read_state": return showRoom(data, false);
      case "membership": return data.member ? showRoom(data, true) : dropRoom(data.roomId);
      case "error": return notice(`${data.code}: ${data.message}`);
    }
    const seqd = frame.type === "new_message" || frame.type === "message_changed";
    if (seqd && chat.joined.has(data.roomId)) {
      // Delivered in seq order, gap-free, for every room of this connection.
      chat.joined.set(data.roomId, Math.max(chat.joined.get(data.roomId), data.seq));
    }
    if (data.roomId !== chat.room) return; // the rooms not shown: only their position
    if (frame.type === "new_message") {
      addMessage(data);
      markRead();
    } else if (frame.type === "message_changed") {
      applyChange(data);
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
    } else if (frame.type === "typing") {
      showTyping(data);
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

  // --- typing (protocol 4.15): who types in the room shown; this user's typing, renewed
  // every 3 s while the input changes, stopped after 4 s without a change or when emptied;
  // a sent message clears it at the server, so nothing is said then.

  const TYPING_RENEW_MS = 3000, TYPING_IDLE_MS = 4000;
  const typing = { sentAt: 0, idle: null };

  function showTyping({ users, count }) {
    const more = count - users.length;
    let text = "";
    if (count === 1 && users.length) text = `${users[0]} is typing…`;
    else if (count > 0 && users.length) {
      text = `${users.join(", ")}${more > 0 ? ` and ${more} more` : ""} are typing…`;
    } else if (count > 0) text = `${count} people are typing…`;
    $("typing").textContent = text;
  }

  function signalTyping(on) {
    const ws = chat.ws;
    if (!chat.ready || !chat.room || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "typing", data: { roomId: chat.room, typing: on } }));
  }

  function typed() {
    clearTimeout(typing.idle);
    if (!$("text").value) return stopTyping(true);
    if (Date.now() - typing.sentAt >= TYPING_RENEW_MS) {
      typing.sentAt = Date.now();
      signalTyping(true);
    }
    typing.idle = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
  }

  function stopTyping(tell) {
    clearTimeout(typing.idle);
    if (typing.sentAt && tell) signalTyping(false);
    typing.sentAt = 0;
  }

  // --- sending: a queue that survives reconnects ---------------------------------------

  function send(text) {
    const item = { roomId: chat.room, clientMsgId: crypto.randomUUID(), text,
      node: messageNode(chat.email, text) };
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
            { roomId: item.roomId, text: item.text, clientMsgId: item.clientMsgId });
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
          if (item.roomId === chat.room) addMessage(reply.message);
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

  // A change to a message shown (protocol.md, 4.14): the same rules get_history applies.
  function applyChange(c) {
    const m = chat.shown.get(c.target);
    if (!m) return; // not on screen: a later get_history shows it as it is
    if (c.kind === "edit") {
      m.text = c.text;
      m.editedAt = c.ts;
    } else if (c.kind === "delete") {
      Object.assign(m, { text: "", deleted: true, reactions: [], editedAt: undefined });
    } else {
      const up = c.kind === "react" ? 1 : -1;
      let r = m.reactions.find((x) => x.emoji === c.emoji);
      if (!r) m.reactions.push(r = { emoji: c.emoji, count: 0 });
      r.count += up;
      if (c.email === chat.email) r.me = up > 0;
      m.reactions = m.reactions.filter((x) => x.count > 0);
    }
    renderState(m);
  }

  function renderState(m) {
    const node = m.node;
    node.classList.toggle("deleted", Boolean(m.deleted));
    node.querySelector(".text").textContent = m.deleted ? "message deleted" : m.text;
    node.querySelector(".edited").hidden = !m.editedAt || m.deleted;
    const bar = node.querySelector(".reactions");
    bar.replaceChildren();
    if (m.deleted) return;
    for (const r of m.reactions) {
      const pill = el("button", r.me ? "reaction me" : "reaction", `${r.emoji} ${r.count}`);
      pill.type = "button";
      pill.onclick = () => change(r.me ? "unreact" : "react", m.seq, { emoji: r.emoji });
      bar.append(pill);
    }
    if (!m.reactions.some((r) => r.emoji === "👍")) {
      const add = el("button", "reaction add", "+👍");
      add.type = "button";
      add.title = "react";
      add.onclick = () => change("react", m.seq, { emoji: "👍" });
      bar.append(add);
    }
    if (m.email === chat.email) {
      const edit = el("button", "act", "edit");
      edit.type = "button";
      edit.onclick = () => {
        const text = prompt("Edit your message", m.text);
        if (text && text !== m.text) change("edit_message", m.seq, { text });
      };
      const del = el("button", "act", "delete");
      del.type = "button";
      del.onclick = () => { if (confirm("Delete this message?")) change("delete_message", m.seq, {}); };
      bar.append(edit, del);
    }
  }

  // An edit, delete or reaction: its own clientMsgId, resent as it is on a retryable error.
  async function change(type, seq, fields) {
    const data = { roomId: chat.room, seq, clientMsgId: crypto.randomUUID(), ...fields };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const reply = await call(type, data);
        if (reply.ok) return;
        if (!RETRYABLE.has(reply.error.code)) return notice(`${reply.error.code}: ${reply.error.message}`);
      } catch { /* the connection went: resend once it is back */ }
      await delay(backoff(attempt));
    }
    notice(`${type} failed: try again`);
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
    const edited = el("span", "edited", "(edited)");
    node.querySelector("time").after(edited);
    node.append(el("div", "reactions"));
    const state = { seq: m.seq, email: m.email, text: m.text, editedAt: m.editedAt,
      deleted: m.deleted, reactions: (m.reactions || []).map((r) => ({ ...r })), node };
    chat.shown.set(m.seq, state);
    renderState(state);
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
    chat.newest = Math.max(chat.newest, m.seq);
    if (m.seq === 1) chat.atBeginning = true;
  }

  function scrollToEnd() {
    $("pane").scrollTop = $("pane").scrollHeight;
  }

  async function loadOlder() {
    if (!chat.ready || chat.loadingOlder || chat.atBeginning || chat.oldest === null) return;
    const roomId = chat.room;
    chat.loadingOlder = true;
    updateOlder();
    try {
      const reply = await call("get_history", { roomId, beforeSeq: chat.oldest, limit: PAGE_SIZE });
      if (reply.ok && roomId === chat.room) {
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

  // Show another room: an empty view until its join ack comes.
  function clearView(roomId) {
    stopTyping(true); // in the room being left behind
    $("typing").textContent = "";
    Object.assign(chat, { room: roomId, newest: 0, oldest: null, atBeginning: false });
    chat.seqs.clear();
    chat.shown.clear();
    chat.members.clear();
    $("messages").replaceChildren();
    $("outbox").replaceChildren(...chat.outbox.filter((i) => i.roomId === roomId).map((i) => i.node));
    $("users").replaceChildren();
    $("member-count").textContent = "";
    $("room-title").textContent = `# ${roomId}`;
    for (const [id, room] of chat.rooms) room.node.classList.toggle("current", id === roomId);
    notice("");
    updateOlder();
  }

  // A click in the sidebar. Joining a room this connection is already in is allowed and
  // announces nothing (protocol.md, 4.4): it brings the room's members and last messages.
  async function openRoom(roomId) {
    if (!chat.ready || roomId === chat.room) return;
    clearView(roomId);
    try {
      const reply = await join(roomId);
      if (roomId !== chat.room) return; // another room was clicked meanwhile
      await showJoined(reply, 0);
      markRead();
    } catch (err) {
      if (roomId === chat.room) notice(`cannot open ${roomId}: ${err.message}`);
    }
  }

  // The shown room is read up to its newest message on screen, while the tab is visible.
  function markRead() {
    const room = chat.rooms.get(chat.room);
    if (!chat.ready || document.visibilityState !== "visible" || !chat.newest) return;
    if (room && room.readSeq >= chat.newest) return;
    call("mark_read", { roomId: chat.room, seq: chat.newest })
      .then((reply) => { if (reply.ok) showRoom(reply, false); })
      .catch(() => {}); // offline: start() marks again after the reconnect
  }

  // --- the sidebar: the user's rooms, most recently active first ----------------------

  // A page of get_rooms; the first (after: null) starts a new listing and makes this
  // connection follow the inbox (inbox_update). Events that come before the ack are kept.
  async function listRooms(after) {
    if (after === null) {
      chat.listing++;
      chat.rooms.clear();
      $("room-list").replaceChildren();
    }
    const listing = chat.listing;
    $("more-rooms").disabled = true;
    let reply;
    try {
      reply = await call("get_rooms", after === null ? { limit: ROOMS_PAGE } : { after, limit: ROOMS_PAGE });
    } catch {
      return; // offline: start() lists again after the reconnect
    }
    if (listing !== chat.listing) return;
    if (!reply.ok) {
      if (after !== null) return listRooms(null); // e.g. the cursor expired: list again
      return notice(`cannot list rooms: ${reply.error.message}`);
    }
    reply.rooms.forEach((room) => showRoom(room, false));
    chat.roomsNext = reply.next;
    $("more-rooms").hidden = reply.next === null;
    $("more-rooms").disabled = false;
  }

  // A room's state from get_rooms, inbox_update, read_state, membership or a mark_read
  // ack. They may arrive in any order: lastSeq and readSeq only grow, unread is the
  // difference. `top`: move the room to the top (new activity); a new room otherwise goes last.
  function showRoom(data, top) {
    let room = chat.rooms.get(data.roomId);
    if (!room) {
      room = { lastSeq: 0, readSeq: 0, node: roomNode(data.roomId) };
      chat.rooms.set(data.roomId, room);
      $("room-list").append(room.node);
    }
    if (top) $("room-list").prepend(room.node);
    room.lastSeq = Math.max(room.lastSeq, data.lastSeq || 0);
    room.readSeq = Math.max(room.readSeq, data.readSeq || 0);
    const unread = Math.max(0, room.lastSeq - room.readSeq);
    const badge = room.node.querySelector(".badge");
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
  }

  function roomNode(roomId) {
    const button = el("button", "room");
    button.type = "button";
    button.append(el("span", "name", `# ${roomId}`), el("span", "badge"));
    button.addEventListener("click", () => openRoom(roomId));
    const node = el("li");
    node.dataset.roomId = roomId;
    node.classList.toggle("current", roomId === chat.room);
    node.append(button);
    return node;
  }

  // membership {member: false}: the user unsubscribed (on any device); the gateway has
  // taken this connection out of the room too.
  function dropRoom(roomId) {
    chat.rooms.get(roomId)?.node.remove();
    chat.rooms.delete(roomId);
    chat.joined.delete(roomId);
    if (roomId === chat.room) notice(`You are no longer a member of ${roomId}.`);
  }

  // --- wiring --------------------------------------------------------------------------

  function enter(ev) {
    ev.preventDefault();
    chat.email = $("email").value.trim();
    const room = $("room").value.trim();
    chat.token = $("token").value.trim();
    if (!chat.token && !chat.email) {
      $("login-error").textContent = "Enter an email (or a token).";
      $("login-error").hidden = false;
      return;
    }
    Object.assign(chat, { session: null, outbox: [], stopped: false, attempt: 0, roomsNext: null });
    chat.joined.clear();
    chat.rooms.clear();
    $("room-list").replaceChildren();
    $("more-rooms").hidden = true;
    clearView(room);
    $("login-error").hidden = true;
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
      stopTyping(false); // the message clears this user's typing at the server
      send(text);
    });
    $("text").addEventListener("input", typed);
    $("older").addEventListener("click", loadOlder);
    $("pane").addEventListener("scroll", () => { if ($("pane").scrollTop < 30) loadOlder(); });
    $("leave").addEventListener("click", leave);
    $("more-rooms").addEventListener("click", () => { if (chat.roomsNext) listRooms(chat.roomsNext); });
    document.addEventListener("visibilitychange", markRead);
    // Closing the tab is a goodbye (1000): the others see user_left at once.
    window.addEventListener("pagehide", () => { if (chat.ws) chat.ws.close(1000); });
  });
})();
