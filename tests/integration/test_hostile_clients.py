"""Hostile clients: claims across resume, identity swaps, edge values for every field.

Each test is something an attacker tried against the running system; each must end in a
documented error code and change nothing it should not.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import psutil
import pytest

from chat_devstack.stack import Stack
from tests.conftest import MakeStack
from tests.integration.test_security import JWT_ENV, token
from tests.support.clients import NativeClient, SioClient, unique_room
from tests.support.logs import stack_errors
from tests.support.rawws import RawWs, frame

pytestmark = pytest.mark.integration


def _resume_of(joined: dict[str, str]) -> dict[str, str]:
    return {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}


def _room() -> str:
    return "sec-" + unique_room()


async def test_native_resume_drops_rooms_the_new_token_does_not_allow(
    make_stack: MakeStack,
) -> None:
    """A session joined to two rooms is resumed with a token that allows only one: the
    other is left (its members see user_left), reported as dropped, and stays closed."""
    stack = await make_stack(env=JWT_ENV)
    url = stack.client_url
    kept, lost = _room(), _room()
    watcher = await SioClient(auth={"token": token(sub="bob@example.com")}).connect(url)
    first = await NativeClient().connect(url)
    second = await NativeClient().connect(url)
    try:
        assert (await watcher.call("join", {"email": "bob@example.com", "roomId": lost}))["ok"]
        assert (await first.call("auth", {"token": token(rooms=[kept, lost])}))["ok"]
        joined = None
        for room in (kept, lost):
            joined = await first.call("join", {"email": "ann@example.com", "roomId": room})
            assert joined["ok"], joined
        assert first.ws is not None and joined is not None
        first.ws.transport.abort()  # a drop: the session stays resumable
        assert (await second.call("auth", {"token": token(rooms=[kept])}))["ok"]
        resumed = await second.call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}
        )
        assert resumed["ok"] and resumed["recovered"], resumed
        assert (resumed["rooms"], resumed["droppedRooms"]) == ([kept], [lost])
        await watcher.wait_for(
            lambda ev: any(
                n == "user_left" and d["roomId"] == lost and d["email"] == "ann@example.com"
                for n, d in ev
            )
        )
        sent = await second.call("send_message", {"roomId": lost, "text": "still here?"})
        assert sent["error"]["code"] == "NOT_IN_ROOM"
        again = await second.call("join", {"email": "ann@example.com", "roomId": lost})
        assert again["error"]["code"] == "FORBIDDEN"
        assert (await watcher.call("send_message", {"roomId": lost, "text": "private"}))["ok"]
        assert (await second.call("send_message", {"roomId": kept, "text": "barrier"}))["ok"]
        await second.wait_messages(kept, 1)
        assert [m for m in second.of("new_message") if m["roomId"] == lost] == []
    finally:
        await watcher.close()
        await second.close()


async def test_socketio_recovery_drops_rooms_the_new_token_does_not_allow(
    make_stack: MakeStack,
) -> None:
    """The same through Socket.IO connection state recovery: the CONNECT reply keeps the
    pid (recovered), names the dropped room, and an error event says FORBIDDEN for it."""
    stack = await make_stack(env=JWT_ENV)
    url, path = stack.client_url, "/socket.io/?EIO=4&transport=websocket"
    kept, lost = _room(), _room()
    first = await RawWs.connect(url, path)
    await first.recv_text()
    first.send_text("40" + json.dumps({"token": token(rooms=[kept, lost])}))
    pid = json.loads((await first.recv_text())[2:])["pid"]
    for ack, room in enumerate((kept, lost)):
        first.send_text(f'42{ack}["join",{{"email":"ann@example.com","roomId":"{room}"}}]')
        while not (await first.recv_text()).startswith(f"43{ack}"):
            pass
    first.abort()
    second = await RawWs.connect(url, path)
    try:
        await second.recv_text()
        second.send_text("40" + json.dumps({"token": token(rooms=[kept]), "pid": pid}))
        reply = json.loads((await second.recv_text())[2:])
        assert reply["pid"] == pid and reply["droppedRooms"] == [lost], reply
        error = await second.recv_text()
        assert error.startswith('42["error"'), error
        assert json.loads(error[2:])[1] == {
            "code": "FORBIDDEN",
            "message": "the token does not allow this room",
            "event": "resume",
            "roomId": lost,
        }
        second.send_text(f'429["send_message",{{"roomId":"{lost}","text":"x"}}]')
        while not (answer := await second.recv_text()).startswith("439"):
            pass
        assert json.loads(answer[3:])[0]["error"]["code"] == "NOT_IN_ROOM"
    finally:
        await second.close()


async def test_a_refused_reauth_changes_nothing(make_stack: MakeStack) -> None:
    """Authenticated as ann (a token about to expire) and joined, the connection sends
    another user's token: IDENTITY_MISMATCH, and the connection is still ann's: it keeps
    sending as ann and is closed with 4003 when ann's token expires."""
    stack = await make_stack(env={**JWT_ENV, "GATEWAY_JWT_LEEWAY_S": "0"})
    room = _room()
    client = await NativeClient().connect(stack.client_url)
    try:
        assert (await client.call("auth", {"token": token(exp=int(time.time()) + 4)}))["ok"]
        assert (await client.call("join", {"email": "ann@example.com", "roomId": room}))["ok"]
        swap = await client.call("auth", {"token": token(sub="eve@example.com")})
        assert swap["error"]["code"] == "IDENTITY_MISMATCH"
        sent = await client.call("send_message", {"roomId": room, "text": "who am I"})
        assert sent["message"]["email"] == "ann@example.com"
        await asyncio.wait_for(client.closed.wait(), 15)
        assert client.close_code == 4003
    finally:
        await client.close()


async def test_edge_values_get_invalid_argument_and_log_no_error(make_stack: MakeStack) -> None:
    """Numbers beyond a bigint, NUL and other control characters, in every field that
    takes them: INVALID_ARGUMENT, the session is unharmed, no service logs an error."""
    stack = await make_stack()
    room = unique_room()
    client = await NativeClient().connect(stack.client_url)
    other = await NativeClient().connect(stack.client_url)
    try:
        joined = await client.call("join", {"email": "ann@example.com", "roomId": room})
        assert joined["ok"]
        refusals = [
            await client.call("get_history", {"roomId": room, "beforeSeq": 2**63}),
            await client.call("get_history", {"roomId": room, "beforeSeq": 10**30}),
            await client.call("send_message", {"roomId": room, "text": "a\x00b"}),
            await client.call("send_message", {"roomId": room, "text": "\x1b[2J"}),
            await client.call("send_message", {"roomId": room, "text": "t", "clientMsgId": "\x00"}),
            await other.call("join", {"email": "a\x00@example.com", "roomId": room}),
            await other.call("resume", {**_resume_of(joined), "lastSeq": {room: 10**30}}),
        ]
        assert [r["error"]["code"] for r in refusals] == ["INVALID_ARGUMENT"] * len(refusals)
        sent = await client.call("send_message", {"roomId": room, "text": "tab\tand\nnewline"})
        assert sent["ok"] and sent["message"]["text"] == "tab\tand\nnewline"
    finally:
        await client.close()
        await other.close()
    assert stack_errors(stack.services) == {}


FLOOD_S = float(os.environ.get("HOSTILE_FLOOD_S", "10"))
"""How long each unauthenticated flood lasts (docs/security.md quotes a 60 s run)."""
FLOODERS = int(os.environ.get("HOSTILE_FLOODERS", "20"))
"""Concurrent flooding connections (the per-address cap is 256)."""
RECONNECT_S = 3.0


def _unauthenticated_flood(kind: str) -> tuple[str, bytes]:
    """(path, bytes) of one connection's flood of one frame type, with no credentials."""
    sio = "/socket.io/?EIO=4&transport=websocket"
    event = json.dumps({"type": "send_message", "id": 1, "data": {"roomId": "r", "text": "x"}})
    return {
        "ws-pings": ("/ws", frame(0x9, b"x" * 125, masked=False) * 2_000),
        "events": ("/ws", frame(0x1, event.encode(), masked=False) * 2_000),
        "large-text": ("/ws", frame(0x1, b"[" * 60_000, masked=False) * 4),
        "eio-pings": (sio, frame(0x1, b"2", masked=False) * 40_000),
        "namespaces": (sio, frame(0x1, b"40/admin,", masked=False) * 20_000),
    }[kind]


@pytest.mark.parametrize("kind", ["ws-pings", "events", "large-text", "eio-pings", "namespaces"])
async def test_unauthenticated_floods_keep_gateway_memory_bounded(
    make_stack: MakeStack, kind: str
) -> None:
    """Twenty connections with no credentials flood one frame type for as long as the
    gateway reads, never read themselves, and are replaced by fresh ones every three
    seconds: the gateway's memory stays within a bound, and a legitimate client still
    connects and chats."""
    limits = {"GATEWAY_READ_RATE_PER_S": "50", "GATEWAY_READ_BURST": "100",
              "GATEWAY_RATE_PER_S": "20", "GATEWAY_RATE_BURST": "40"}  # fmt: skip
    stack = await make_stack(env={**JWT_ENV, **limits})
    url = stack.client_url
    process = psutil.Process(stack.of_kind("gateway")[0].pid)
    baseline = peak = process.memory_info().rss
    path, flood = _unauthenticated_flood(kind)
    stop = asyncio.Event()
    connections = 0

    async def flooder() -> None:
        nonlocal connections
        while not stop.is_set():
            ws = await RawWs.connect(url, path, rcvbuf=4096)
            connections += 1
            ws.go_silent()
            # Keep flooding for as long as the gateway takes it (TCP tells), up to 3 s; the
            # gateway closes it meanwhile (the connect deadline, a cut, a protocol error),
            # and a fresh connection takes its place.
            until = time.monotonic() + RECONNECT_S
            while not stop.is_set() and (left := until - time.monotonic()) > 0:
                ws.send_bytes(flood)
                if not await ws.drain(timeout=left):
                    break
            await asyncio.sleep(max(0.0, until - time.monotonic()))  # the 3 s cadence itself
            ws.abort()

    tasks = [asyncio.ensure_future(flooder()) for _ in range(FLOODERS)]
    deadline = time.monotonic() + FLOOD_S
    try:
        while time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.2)  # sampling the gateway's memory, not waiting for it
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    growth_mib = (peak - baseline) / 2**20
    print(f"{kind}: {connections} connections in {FLOOD_S:.0f} s, RSS "
          f"{baseline / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB (+{growth_mib:.1f})")  # fmt: skip
    assert growth_mib < 24, growth_mib
    calm = await SioClient(auth={"token": token()}).connect(url)
    try:
        assert (await calm.call("join", {"email": "ann@example.com", "roomId": _room()}))["ok"]
    finally:
        await calm.close()


# -- membership, read state and the inbox (docs/protocol.md 4.13) ----------------------------

Peer = NativeClient | SioClient
PROTOCOLS = ["native", "socketio"]


async def _peer(protocol: str, url: str, **sio: object) -> Peer:
    if protocol == "native":
        return await NativeClient().connect(url)
    return await SioClient(**sio).connect(url)  # type: ignore[arg-type]


def _code(reply: object) -> str | None:
    """The error code of an ack (``None`` when it is a success)."""
    assert isinstance(reply, dict), reply
    if reply.get("ok") is True:
        return None
    return str(reply["error"]["code"])


def _assert_logs_clean(stack: Stack) -> None:
    """No error and no traceback in any service's log (gateways, sessions, histories)."""
    assert stack_errors(stack.services) == {}


HOSTILE_ROOMS = [
    "", "a.b", "*", ">", "a.*", "a.>", "$SYS", "x" * 65, "é", "room\u202e", "a\x00b", "a\nb",
    "a b", "\t", 7, None, [], {},
]  # fmt: skip
"""Room ids that are not room ids (4.2): every one ``INVALID_ARGUMENT``."""
BAD_SEQS = [-1, -(2**63), 2**63, 2**64, 10**30, 1.0, 1.5, -0.5, "1", "", None, True, [1], {}]
"""Seqs that are not integers from 0 to 2^63 - 1 (strictly typed, 4.1)."""


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_bad_marks_are_refused_and_move_nothing(make_stack: MakeStack, protocol: str) -> None:
    """mark_read on a foreign room or one never seen (NOT_MEMBER), beyond the head, with
    negative, huge, fractional or mistyped seqs, hostile room ids and missing fields: each
    answered with its documented code, and none of them moves a watermark (the user's
    other device sees no read_state, the inbox shows the same unread counts); then a good
    mark works, and no service logs an error."""
    stack = await make_stack()
    url = stack.client_url
    mine, theirs, never = unique_room("mine"), unique_room("theirs"), unique_room("never")
    ann = await _peer(protocol, url)
    device = await NativeClient().connect(url)
    bob = await NativeClient().connect(url)
    try:
        assert _code(await ann.call("mark_read", {"roomId": mine, "seq": 0})) == "INVALID_ARGUMENT"
        for peer, email, room in ((ann, "ann@example.com", mine),
                                  (device, "ann@example.com", mine),
                                  (bob, "bob@example.com", mine),
                                  (bob, "bob@example.com", theirs)):  # fmt: skip
            assert _code(await peer.call("join", {"email": email, "roomId": room})) is None
        for room, count in ((mine, 3), (theirs, 2)):
            for i in range(count):
                sent = await bob.call("send_message", {"roomId": room, "text": f"m{i}"})
                assert sent["ok"], sent
        cases: list[tuple[object, str]] = [
            ({"roomId": theirs, "seq": 1}, "NOT_MEMBER"),
            ({"roomId": theirs, "seq": 0}, "NOT_MEMBER"),
            ({"roomId": never, "seq": 0}, "NOT_MEMBER"),
            ({"roomId": mine, "seq": 4}, "INVALID_ARGUMENT"),
            ({"roomId": mine, "seq": 2**63 - 1}, "INVALID_ARGUMENT"),
            *(({"roomId": mine, "seq": s}, "INVALID_ARGUMENT") for s in BAD_SEQS),
            *(({"roomId": r, "seq": 1}, "INVALID_ARGUMENT") for r in HOSTILE_ROOMS),
            ({"roomId": mine}, "INVALID_ARGUMENT"),
            ({"seq": 1}, "INVALID_ARGUMENT"),
            ({}, "INVALID_ARGUMENT"),
            ([mine, 1], "INVALID_ARGUMENT"),
            ("mark", "INVALID_ARGUMENT"),
            (17, "INVALID_ARGUMENT"),
        ]
        answers = [(data, _code(r := await ann.call("mark_read", data)), r) for data, _ in cases]
        assert [a[1] for a in answers] == [code for _, code in cases], answers[:3]
        missing = await ann.call("mark_read", None)  # no argument at all
        assert _code(missing) == "INVALID_ARGUMENT"

        inbox = await ann.call("get_rooms", {"follow": False})
        assert [(r["roomId"], r["readSeq"], r["unread"]) for r in inbox["rooms"]] == [(mine, 0, 3)]
        assert inbox["total"] == 1, "a mark on a room never seen made no membership"
        theirs_state = (await bob.call("get_rooms", {"follow": False}))["rooms"]
        assert sorted((r["roomId"], r["readSeq"]) for r in theirs_state) == sorted(
            [(mine, 3), (theirs, 2)]
        )
        good = await ann.call("mark_read", {"roomId": mine, "seq": 2})
        assert (good["readSeq"], good["lastSeq"], good["unread"]) == (2, 3, 1)
        await device.wait_for(lambda ev: any(n == "read_state" for n, _ in ev))
        (state,) = device.of("read_state")  # the first one is the good mark's
        assert (state["roomId"], state["readSeq"], state["unread"]) == (mine, 2, 1)
        assert ann.is_connected()
    finally:
        for peer in (ann, device, bob):
            await peer.close()
    _assert_logs_clean(stack)


BAD_CURSORS = [
    "", "nonsense", ":", ":1", "1:", "x:-1", "x:1.5", "x:1e3", "x:0x10", "x:99999999999",
    "x:\u0661", "x" * 200, "\x00:1", "a\x00b:1", "é:1", "\u202e:1", "' OR 1=1 --:1", "%s:%d",
    "*:1", ">:1", "../../x:1", "null",
]  # fmt: skip
"""Inbox cursors that are not ones (``get_rooms`` ``after``): ``cursor expired``."""
BAD_LIMITS = [0, -1, 201, 2**31, 2**63, 10**30, 1.5, 50.0, "10", True, [], {}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_inbox_cursors_refuse_garbage_and_never_leak_another_users_rooms(
    make_stack: MakeStack, protocol: str
) -> None:
    """get_rooms with another user's cursor, tampered and random cursors, and limits out
    of range or mistyped: INVALID_ARGUMENT, and no answer ever lists a room of another
    user or counts them; the user's own listing still pages through exactly their rooms,
    and no service logs an error."""
    stack = await make_stack()
    url = stack.client_url
    ann_rooms = [unique_room("ann") for _ in range(3)]
    eve_rooms = [unique_room("eve") for _ in range(2)]
    ann = await NativeClient().connect(url)
    eve = await _peer(protocol, url)
    try:
        for room in ann_rooms:
            assert (
                _code(await ann.call("join", {"email": "ann@example.com", "roomId": room})) is None
            )
        for room in eve_rooms:
            assert (
                _code(await eve.call("join", {"email": "eve@example.com", "roomId": room})) is None
            )
        stolen = await ann.call("get_rooms", {"limit": 1})
        assert stolen["next"] is not None and stolen["total"] == 3
        listing = stolen["next"].rpartition(":")[0]
        theirs = [stolen["next"], f"{listing}:0", f"{listing}:2", f"{listing}:999999999"]
        own = await eve.call("get_rooms", {"limit": 1, "follow": False})
        own_listing = own["next"].rpartition(":")[0]
        tampered = [f"{own_listing}:-1", f"{own_listing}:1:1", f"{own_listing}x:1",
                    f"{own_listing.upper()}:1", f" {own_listing}:1"]  # fmt: skip
        refusals = []
        for cursor in [*theirs, *tampered, *BAD_CURSORS]:
            reply = await eve.call("get_rooms", {"after": cursor, "limit": 200})
            refusals.append((cursor, _code(reply), reply.get("error", {}).get("message")))
        expired = [(c, "INVALID_ARGUMENT", "cursor expired: list again") for c, _, _ in refusals]
        assert refusals == expired, [r for r in refusals if r not in expired]
        schema = [
            *({"after": a} for a in (5, 1.5, True, [], {}, "x" * 201)),
            *({"limit": n} for n in BAD_LIMITS),
            *({"follow": f} for f in ("yes", 1, 0, [], {})),
            *({"email": e} for e in ("", "nobody", "a@b@c", "\x00@x.org", 5)),
        ]
        answers = [(data, _code(await eve.call("get_rooms", data))) for data in schema]
        assert [code for _, code in answers] == ["INVALID_ARGUMENT"] * len(schema), answers
        for data in ({"limit": 200}, {"limit": 1, "after": None}, {"limit": None}):
            assert _code(await eve.call("get_rooms", data)) is None, data

        # Beyond the end of one's own listing: an empty last page, still only one's own.
        past = await eve.call("get_rooms", {"after": f"{own_listing}:999999999"})
        assert (past["rooms"], past["next"], past["total"]) == ([], None, 2)
        pages, after = [], None
        while True:
            page = await eve.call("get_rooms", {"limit": 1, "after": after, "follow": False})
            assert page["ok"] and page["total"] == 2, page
            pages += [r["roomId"] for r in page["rooms"]]
            if (after := page["next"]) is None:
                break
        assert sorted(pages) == sorted(eve_rooms)
        leaked = [d for _, d in eve.events if any(r in json.dumps(d) for r in ann_rooms)]
        assert leaked == []
        assert [r["roomId"] for r in (await ann.call("get_rooms", {}))["rooms"]] != []
    finally:
        await ann.close()
        await eve.close()
    _assert_logs_clean(stack)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_spoofed_emails_in_get_rooms_are_refused_in_development_mode(
    make_stack: MakeStack, protocol: str
) -> None:
    """Development mode: after a join as ann, get_rooms naming bob is IDENTITY_MISMATCH (bob's
    rooms are not listed); a connection that named bob first cannot join as ann; a
    connection that has said nothing cannot mark, unsubscribe or list."""
    stack = await make_stack()
    url = stack.client_url
    room, bobs = unique_room(), unique_room("bob")
    bob = await NativeClient().connect(url)
    ann = await _peer(protocol, url)
    named = await _peer(protocol, url)
    anonymous = await _peer(protocol, url)
    try:
        assert _code(await bob.call("join", {"email": "bob@example.com", "roomId": bobs})) is None
        assert _code(await ann.call("join", {"email": "ann@example.com", "roomId": room})) is None
        spoof = await ann.call("get_rooms", {"email": "bob@example.com"})
        assert _code(spoof) == "IDENTITY_MISMATCH" and "rooms" not in spoof
        again = await ann.call("get_rooms", {"email": "ann@example.com", "follow": False})
        assert [r["roomId"] for r in again["rooms"]] == [room]
        first = await named.call("get_rooms", {"email": "bob@example.com", "follow": False})
        assert [r["roomId"] for r in first["rooms"]] == [bobs]  # development mode: no proof
        swap = await named.call("join", {"email": "ann@example.com", "roomId": room})
        assert _code(swap) == "IDENTITY_MISMATCH"
        for event, data in (("mark_read", {"roomId": room, "seq": 0}),
                            ("unsubscribe", {"roomId": room}),
                            ("get_rooms", {}), ("get_rooms", {"after": "x:1"})):  # fmt: skip
            assert _code(await anonymous.call(event, data)) == "INVALID_ARGUMENT", event
        members = await ann.call("get_members", {"roomId": room})
        assert members["users"] == ["ann@example.com"]
    finally:
        for peer in (bob, ann, named, anonymous):
            await peer.close()
    _assert_logs_clean(stack)


async def test_spoofed_emails_in_get_rooms_are_refused_with_tokens(make_stack: MakeStack) -> None:
    """JWT mode: get_rooms with an email other than the token's is IDENTITY_MISMATCH on
    both protocols, before and after a join; with the token's own email it lists; without
    a token every new event is UNAUTHENTICATED."""
    stack = await make_stack(env=JWT_ENV)
    url = stack.client_url
    room = _room()
    sio = await SioClient(auth={"token": token()}).connect(url)
    native = await NativeClient().connect(url)
    anonymous = await NativeClient().connect(url)
    try:
        assert (await native.call("auth", {"token": token()}))["ok"]
        for peer in (sio, native):
            spoof = await peer.call("get_rooms", {"email": "eve@example.com"})
            assert _code(spoof) == "IDENTITY_MISMATCH"
        assert _code(await sio.call("join", {"email": "ann@example.com", "roomId": room})) is None
        for peer in (sio, native):
            spoof = await peer.call("get_rooms", {"email": "eve@example.com", "limit": 1})
            assert _code(spoof) == "IDENTITY_MISMATCH"
            own = await peer.call("get_rooms", {"email": "ann@example.com", "follow": False})
            assert [r["roomId"] for r in own["rooms"]] == [room]
        for event, data in (("mark_read", {"roomId": room, "seq": 0}),
                            ("get_rooms", {"email": "ann@example.com"}),
                            ("unsubscribe", {"roomId": room})):  # fmt: skip
            assert _code(await anonymous.call(event, data)) == "UNAUTHENTICATED", event
    finally:
        for peer in (sio, native, anonymous):
            await peer.close()
    _assert_logs_clean(stack)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unsubscribing_rooms_one_is_not_a_member_of_changes_nothing(
    make_stack: MakeStack, protocol: str
) -> None:
    """unsubscribe of another user's room, of a room never seen, twice, and with hostile
    room ids: removed false or INVALID_ARGUMENT; the other user stays a member and keeps
    receiving the room, nobody gets a membership event, and no service logs an error."""
    stack = await make_stack()
    url = stack.client_url
    mine, theirs, never = unique_room("mine"), unique_room("theirs"), unique_room("never")
    ann = await _peer(protocol, url)
    bob = await NativeClient().connect(url)
    try:
        assert _code(await ann.call("join", {"email": "ann@example.com", "roomId": mine})) is None
        assert _code(await bob.call("join", {"email": "bob@example.com", "roomId": theirs})) is None
        for room in (theirs, never):
            gone = await ann.call("unsubscribe", {"roomId": room})
            assert (gone["ok"], gone["roomId"], gone["removed"]) == (True, room, False)
        bad = [{"roomId": r} for r in HOSTILE_ROOMS] + [{}, [theirs], theirs, None]
        codes = [_code(await ann.call("unsubscribe", data)) for data in bad]
        assert codes == ["INVALID_ARGUMENT"] * len(bad)
        assert (await ann.call("unsubscribe", {"roomId": mine}))["removed"] is True
        assert (await ann.call("unsubscribe", {"roomId": mine}))["removed"] is False
        assert (await bob.call("send_message", {"roomId": theirs, "text": "still mine"}))["ok"]
        await bob.wait_messages(theirs, 1)
        rooms = await bob.call("get_rooms", {"follow": False})
        assert [r["roomId"] for r in rooms["rooms"]] == [theirs]
        assert bob.of("membership") == []
        assert (await ann.call("get_rooms", {"follow": False}))["total"] == 0
    finally:
        await ann.close()
        await bob.close()
    _assert_logs_clean(stack)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_hostile_changes_are_refused_and_change_nothing(
    make_stack: MakeStack, protocol: str
) -> None:
    """Edits, deletes and reactions of someone else's message, of no message, of a change,
    with mistyped or hostile fields, oversized texts and emojis, in rooms not joined: each
    answered with its documented code, none stored (the room's events are as before), no
    service logs an error, and the connection stays up for a good change."""
    stack = await make_stack()
    room, other = unique_room("mine"), unique_room("other")
    ann = await _peer(protocol, stack.client_url)
    bob = await NativeClient().connect(stack.client_url)
    try:
        # Bob joins first: he owns the room, Ann is a member (who may not delete his message).
        assert _code(await bob.call("join", {"email": "bob@example.com", "roomId": room})) is None
        assert _code(await ann.call("join", {"email": "ann@example.com", "roomId": room})) is None
        assert (await bob.call("send_message", {"roomId": room, "text": "bob's"}))["ok"]
        assert (await bob.call("react", {"roomId": room, "seq": 1, "emoji": "👍"}))["ok"]
        cases: list[tuple[str, object, str]] = [
            ("edit_message", {"roomId": room, "seq": 1, "text": "mine now"}, "FORBIDDEN"),
            ("delete_message", {"roomId": room, "seq": 1}, "FORBIDDEN"),
            ("edit_message", {"roomId": room, "seq": 2, "text": "x"}, "NOT_FOUND"),
            ("react", {"roomId": room, "seq": 2, "emoji": "👍"}, "NOT_FOUND"),
            ("react", {"roomId": room, "seq": 99, "emoji": "👍"}, "NOT_FOUND"),
            ("unreact", {"roomId": room, "seq": 1, "emoji": "👍"}, "CONFLICT"),
            ("react", {"roomId": other, "seq": 1, "emoji": "👍"}, "NOT_IN_ROOM"),
            ("edit_message", {"roomId": room, "seq": 1, "text": "x" * 4001}, "INVALID_ARGUMENT"),
            ("edit_message", {"roomId": room, "seq": 1, "text": "a\x00b"}, "INVALID_ARGUMENT"),
            ("edit_message", {"roomId": room, "seq": 1}, "INVALID_ARGUMENT"),
            ("react", {"roomId": room, "seq": 1, "emoji": ""}, "INVALID_ARGUMENT"),
            ("react", {"roomId": room, "seq": 1, "emoji": "👍" * 33}, "INVALID_ARGUMENT"),
            ("react", {"roomId": room, "seq": 1, "emoji": "<b> </b>"}, "INVALID_ARGUMENT"),
            ("react", {"roomId": room, "seq": 1, "emoji": "\x1b[2J"}, "INVALID_ARGUMENT"),
            ("react", {"roomId": room, "seq": 1, "emoji": ["👍"]}, "INVALID_ARGUMENT"),
            ("delete_message", {"roomId": room, "seq": "1"}, "INVALID_ARGUMENT"),
            (
                "delete_message",
                {"roomId": room, "seq": 1, "clientMsgId": "\x00"},
                "INVALID_ARGUMENT",
            ),
            *(
                ("react", {"roomId": room, "seq": s, "emoji": "👍"}, "INVALID_ARGUMENT")
                for s in BAD_SEQS
            ),
            *(
                ("react", {"roomId": r, "seq": 1, "emoji": "👍"}, "INVALID_ARGUMENT")
                for r in HOSTILE_ROOMS
            ),
            ("react", None, "INVALID_ARGUMENT"),
            ("edit_message", "edit", "INVALID_ARGUMENT"),
        ]
        answers = [_code(await ann.call(event, data)) for event, data, _ in cases]
        assert answers == [code for *_, code in cases]
        events = await bob.call("get_history", {"roomId": room, "afterSeq": 0})
        assert [e.get("kind") for e in events["messages"]] == [None, "react"]
        good = await ann.call("react", {"roomId": room, "seq": 1, "emoji": "👍"})
        assert good["ok"] and good["message"]["seq"] == 3, good
    finally:
        await ann.close()
        await bob.close()
    _assert_logs_clean(stack)
