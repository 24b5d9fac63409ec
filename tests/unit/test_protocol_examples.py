"""docs/protocol.md's wire examples are what the gateway really sends.

Each example block marked ``<!-- wire: <name> -->`` is a transcript of one client's
connection (``→`` what the client sends, ``←`` what it gets, ``(server closes: ...)``). A
scene below plays it in process (tests/support/inprocess.py: the real gateway and
handlers): it sends the ``→`` lines (with the values of its own run: pids, tokens), makes the
other clients of the example do what the example says they did, and records the frames
the gateway writes. Both transcripts are then compared after one normalisation: each
distinct random value (message and session ids, socket ids, resume tokens) becomes a
numbered placeholder in order of first appearance, so that equal values must stay equal
and different ones different; timestamps all become one placeholder. Every marked example has a scene, and every
scene an example, so the docs cannot drift from the code again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from chat_gateway.auth import build_verifier
from tests.support.inprocess import InProcessChat, NativePeer, SocketIOPeer, gateway_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_BLOCK = re.compile(r"<!-- wire: ([\w-]+) -->\n```[^\n]*\n(.*?)```", re.S)
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_RANDOM = [
    ("id", re.compile(r"\b[0-9a-f]{32}\b")),
    ("token", re.compile(r"(?<![\w-])[A-Za-z0-9_-]{43}(?![\w-])")),
    ("sid", re.compile(r"\b[0-9a-f]{16}\b")),
]
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def examples() -> dict[str, list[str]]:
    """Every marked example: its ``→``/``←`` lines and its server closes, comments cut."""
    found: dict[str, list[str]] = {}
    for match in _BLOCK.finditer(DOC.read_text()):
        lines = []
        for raw in match.group(2).splitlines():
            line = re.sub(r"\s{2,}\(.*\)$", "", raw.rstrip())
            if (line.startswith(("→ ", "← ")) and not line.startswith("→ (")) or line.startswith(
                "(server closes:"
            ):
                lines.append(line)
        found[match.group(1)] = lines
    return found


def normalise(lines: list[str]) -> list[str]:
    """Each distinct random value as a numbered placeholder, by first appearance."""
    names: dict[str, str] = {}
    out = []
    for line in lines:
        line = _TS.sub("<ts>", line)  # two messages may share a millisecond, or not
        for kind, pattern in _RANDOM:

            def name(m: re.Match[str], kind: str = kind) -> str:
                if m.group(0) not in names:
                    names[m.group(0)] = (
                        f"<{kind}-{sum(k.startswith(f'<{kind}-') for k in names.values()) + 1}>"
                    )
                return names[m.group(0)]

            line = pattern.sub(name, line)
        out.append(line)
    return out


class Transcript:
    """One client's side of a scene, as the docs write it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def send(self, peer: SocketIOPeer | NativePeer, text: str, *, shown: bool = True) -> None:
        peer.carrier.feed(text)
        if shown:
            self.lines.append(f"→ {text}")

    async def receive(self, peer: SocketIOPeer | NativePeer, count: int = 1) -> None:
        """The next ``count`` frames, in the order written."""
        for _ in range(count):
            frame = await peer.frame(lambda _f: True, "the next frame")
            self.lines.append(f"← {frame.decode()}")

    async def receive_where(self, peer: SocketIOPeer | NativePeer, prefix: str) -> None:
        """The first frame starting with ``prefix`` (others stay unread)."""
        frame = await peer.frame(lambda f: f.startswith(prefix.encode()), prefix)
        self.lines.append(f"← {frame.decode()}")

    async def closed(self, peer: SocketIOPeer | NativePeer) -> None:
        code, reason = await peer.carrier.closed()
        self.lines.append(f'(server closes: {code} "{reason}")')


Scene = Callable[[Transcript], Awaitable[None]]
SCENES: dict[str, Scene] = {}


def scene(name: str) -> Callable[[Scene], Scene]:
    def register(fn: Scene) -> Scene:
        SCENES[name] = fn
        return fn

    return register


def _join(email: str, room: str, ack: int | None = 0) -> str:
    return f"42{'' if ack is None else ack}" + json.dumps(
        ["join", {"email": email, "roomId": room}], separators=(",", ":")
    )


async def _native(chat: InProcessChat, email: str, room: str) -> NativePeer:
    peer = await chat.native()
    assert (await peer.call("join", {"email": email, "roomId": room}))["ok"] is True
    return peer


async def _carol_said_hi(chat: InProcessChat) -> None:
    """Carol joined ``lobby``, left one message and left."""
    carol = await _native(chat, CAROL, "lobby")
    await carol.call("send_message", {"roomId": "lobby", "text": "hi"})
    await carol.call("leave", {"roomId": "lobby"})


async def _connected(chat: InProcessChat, t: Transcript, auth: str = "40") -> SocketIOPeer:
    peer = await chat.socketio()
    t.send(peer, auth, shown=False)
    await peer.frame(lambda f: f.startswith(b"40"), "CONNECT reply")
    return peer


# -- Socket.IO, section 2 ---------------------------------------------------------------------


@scene("eio-open")
async def _eio_open(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        t.lines.append(f"← {peer.handshake_frame.decode()}")


@scene("connect-reply")
async def _connect_reply(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        t.send(peer, "40")
        await t.receive(peer)


@scene("connect-reply-token")
async def _connect_reply_token(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        t.send(peer, '40{"token":"opaque"}')
        await t.receive(peer)


@scene("connect-reply-no-recovery")
async def _connect_reply_no_recovery(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        t.send(peer, '40{"recovery":false}')
        await t.receive(peer)


@scene("connect-error-unauthenticated")
async def _connect_error(t: Transcript) -> None:
    secret = "s" * 40
    verifier = build_verifier(algorithms=["HS256"], secret=secret, public_key_file=None, audience=None, issuer=None, leeway_s=0, room_policy="open")  # fmt: skip
    async with InProcessChat(
        gateway_settings(auth_mode="jwt", jwt_secret=secret), verifier=verifier
    ) as chat:
        peer = await chat.socketio()
        t.send(peer, '40{"token":"not-a-valid-jwt"}')
        await t.receive(peer)
        await t.closed(peer)


@scene("connect-error-namespace")
async def _connect_error_namespace(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        t.send(peer, "40/admin,")
        await t.receive(peer)


@scene("join-ack")
async def _join_ack(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _native(chat, BOB, "lobby")
        alice = await _connected(chat, t)
        t.send(alice, _join(ALICE, "lobby"))
        await t.receive_where(alice, "430")


async def _alice_says_hello(
    chat: InProcessChat, t: Transcript, auth: str, rooms: list[str]
) -> None:
    await _carol_said_hi(chat)
    alice = await _connected(chat, t, auth)
    for n, room in enumerate(rooms):
        t.send(alice, _join(ALICE, room, n), shown=False)
        await alice.frame(lambda f, n=n: f.startswith(b"43%d" % n), "join ack")
    t.send(alice, _join_send("lobby", "hello", "c-1", 9), shown=False)
    await t.receive_where(alice, '42["new_message"')


def _join_send(room: str, text: str, cid: str, ack: int) -> str:
    data = {"roomId": room, "text": text, "clientMsgId": cid}
    return f"42{ack}" + json.dumps(["send_message", data], separators=(",", ":"))


@scene("new-message-offset")
async def _new_message_offset(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _alice_says_hello(chat, t, "40", ["lobby"])


@scene("new-message-no-recovery")
async def _new_message_no_recovery(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _alice_says_hello(chat, t, '40{"recovery":false}', ["lobby"])


@scene("new-message-offset-two-rooms")
async def _new_message_two_rooms(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _alice_says_hello(chat, t, "40", ["dev", "lobby"])


@scene("eio-ping")
async def _eio_ping(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await _connected(chat, t)
        for client in chat.gateway.registry:  # the heartbeat's turn
            client.ping()
        await t.receive(peer)
        t.send(peer, "3")


@scene("namespace-reconnect")
async def _namespace_reconnect(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await _connected(chat, t)
        t.send(peer, "41")
        for client in chat.gateway.registry:
            client.ping()
        await t.receive(peer)
        t.send(peer, "40")
        await t.receive(peer)
        t.lines[-1] = re.sub(r'"(sid|pid)":"[^"]+"', r'"\1":"…"', t.lines[-1])


@scene("eio-close")
async def _eio_close(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await _connected(chat, t)
        t.send(peer, "1")
        await t.closed(peer)


@scene("binary-event-refused")
async def _binary_event(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await _connected(chat, t)
        t.send(peer, '451-0["send_message",{"_placeholder":true,"num":0}]')
        await t.receive(peer)
        peer.carrier.feed(b"\x01\x02")
        assert (await peer.call("get_members", {"roomId": "x"}))["ok"] is False  # still up


@scene("socketio-exchange")
async def _socketio_exchange(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _carol_said_hi(chat)
        bob = await _native(chat, BOB, "lobby")
        t.lines.append("→ GET /socket.io/?EIO=4&transport=websocket")
        alice = await chat.socketio()
        t.lines.append(f"← {alice.handshake_frame.decode()}")
        t.send(alice, "40")
        await t.receive(alice)
        t.send(alice, _join(ALICE, "lobby"))
        await t.receive(alice, 2)
        t.send(alice, _join_send("lobby", "hello", "c-1", 1))
        await t.receive(alice, 2)
        for client in chat.gateway.registry:
            if client.protocol == "socketio":
                client.ping()
        await t.receive(alice)
        t.send(alice, "3")
        await bob.call("leave", {"roomId": "lobby"})
        await t.receive(alice)
        t.send(alice, "41")


# -- native, sections 3 and 4 -------------------------------------------------------------------


@scene("native-exchange")
async def _native_exchange(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _carol_said_hi(chat)
        t.lines.append("→ GET /ws")
        bob = await chat.native()
        t.send(bob, '{"type":"join","id":1,"data":{"email":"bob@example.com","roomId":"lobby"}}')
        await t.receive(bob, 2)
        alice = await _native(chat, ALICE, "lobby")
        await t.receive(bob)
        await alice.call("send_message", {"roomId": "lobby", "text": "hello", "clientMsgId": "c-1"})
        await t.receive(bob)
        t.send(
            bob, '{"type":"get_history","id":2,"data":{"roomId":"lobby","beforeSeq":2,"limit":10}}'
        )
        await t.receive(bob)
        t.send(bob, '{"type":"nudge","data":{"roomId":"lobby"}}')
        await t.receive(bob)
        t.send(bob, '{"type":"send_message","id":3,"data":{"roomId":"general","text":"hi all"}}')
        await t.receive(bob)
        t.send(bob, '{"type":"leave","id":4,"data":{"roomId":"lobby"}}')
        await t.receive(bob)


@scene("changes")
async def _changes(t: Transcript) -> None:
    async with InProcessChat() as chat:
        carol = await _native(chat, CAROL, "lobby")
        await carol.call("send_message", {"roomId": "lobby", "text": "hi"})
        t.send(carol, '{"type":"edit_message","id":4,"data":{"roomId":"lobby","seq":1,'
                      '"text":"hi all","clientMsgId":"e-1"}}')  # fmt: skip
        await t.receive_where(carol, '{"type":"ack","id":4,')
        t.send(carol, '{"type":"react","id":5,"data":{"roomId":"lobby","seq":1,"emoji":"👍"}}')
        await t.receive_where(carol, '{"type":"ack","id":5,')
        await t.receive_where(carol, '{"type":"message_changed","data":{"id":')
        t.send(carol, '{"type":"get_history","id":6,"data":{"roomId":"lobby"}}')
        await t.receive_where(carol, '{"type":"ack","id":6,')


@scene("error-event")
async def _error_event(t: Transcript) -> None:
    async with InProcessChat() as chat:
        sio = await _connected(chat, t)
        t.send(sio, '42["send_message",{"roomId":"lobby","text":"x"}]', shown=False)
        await t.receive(sio)
        native = await chat.native()
        t.send(native, '{"type":"send_message","data":{"roomId":"lobby","text":"x"}}', shown=False)
        await t.receive(native)


@scene("presence-diff")
async def _presence_diff(t: Transcript) -> None:
    """A room past the list limit (here 3, so that a test can fill it); the diff's count
    is the room's size, whatever it is, so it is the one value compared as a placeholder.
    The three changes land within one interval (half a second: plenty on a busy machine)."""
    settings = gateway_settings(presence_interval_ms=500)
    async with InProcessChat(settings, presence_list_max=3) as chat:
        alice = await _connected(chat, t)
        t.send(alice, _join(ALICE, "lobby"), shown=False)
        await alice.frame(lambda f: f.startswith(b"430"), "join ack")
        bob = await _native(chat, BOB, "lobby")
        await _native(chat, CAROL, "lobby")
        await alice.event("user_joined", email=CAROL)
        await _native(chat, "dan@example.com", "lobby")
        await _native(chat, "eve@example.com", "lobby")
        await bob.call("leave", {"roomId": "lobby"})
        await t.receive_where(alice, '42["presence_diff"')
        t.lines[-1] = re.sub(r'"count":\d+', '"count":<n>', t.lines[-1])


@scene("typing")
async def _typing(t: Transcript) -> None:
    """4.14: each change goes out on its own (a short interval here, so that no two share
    a frame); Bob's message clears him."""
    async with InProcessChat(gateway_settings(typing_interval_ms=20)) as chat:
        alice = await _connected(chat, t)
        t.send(alice, _join(ALICE, "lobby"), shown=False)
        await alice.frame(lambda f: f.startswith(b"430"), "join ack")
        bob = await _native(chat, BOB, "lobby")
        carol = await _native(chat, CAROL, "lobby")
        await alice.event("user_joined", email=CAROL)
        t.send(alice, '42["typing",{"roomId":"lobby","typing":true}]')
        await bob.event("typing", users=[ALICE])
        await bob.call("typing", {"roomId": "lobby", "typing": True})
        await t.receive_where(alice, '42["typing"')
        await carol.call("typing", {"roomId": "lobby", "typing": True})
        await t.receive_where(alice, '42["typing"')
        await bob.call("send_message", {"roomId": "lobby", "text": "done"})
        await t.receive_where(alice, '42["typing"')


# -- resuming, section 8 ----------------------------------------------------------------------


@scene("sio-recovered")
async def _sio_recovered(t: Transcript) -> None:
    async with InProcessChat() as chat:
        await _carol_said_hi(chat)
        bob = await _native(chat, BOB, "lobby")
        alice = await chat.socketio()
        alice.carrier.feed("40")
        reply = json.loads((await alice.frame(lambda f: f.startswith(b"40")))[2:])
        for room in ("dev", "lobby"):
            await alice.call("join", {"email": ALICE, "roomId": room})
        await alice.call("send_message", {"roomId": "lobby", "text": "hello", "clientMsgId": "c-1"})
        alice.carrier.hang_up(None)
        await alice.ended()
        for n, text in ((1, "are you there?"), (2, "ping")):
            await bob.call(
                "send_message", {"roomId": "lobby", "text": text, "clientMsgId": f"b-{n}"}
            )
        t.lines.append("→ GET /socket.io/?EIO=4&transport=websocket")
        back = await chat.socketio()
        t.lines.append(f"← {back.handshake_frame.decode()}")
        auth = {"pid": reply["pid"], "offset": "dev:0,lobby:2"}
        t.send(back, "40" + json.dumps(auth, separators=(",", ":")))
        await t.receive(back, 3)


@scene("sio-not-recovered")
async def _sio_not_recovered(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await chat.socketio()
        gone = "5d41402abc4b2a76b9719d911017c592.ffCjgApH3fkNlj8SNmRYvOCCZiZ3l3WH0xuts1khh_A"
        t.send(
            peer, "40" + json.dumps({"pid": gone, "offset": "dev:0,lobby:2"}, separators=(",", ":"))
        )
        await t.receive(peer)
        t.send(peer, _join(ALICE, "lobby"))


async def _bob_away(chat: InProcessChat) -> dict[str, object]:
    """Bob joined ``lobby`` (seqs 1 and 2 in it), dropped, and missed seqs 3 and 4."""
    await _carol_said_hi(chat)
    bob = await chat.native()
    joined = await bob.call("join", {"email": BOB, "roomId": "lobby"})
    alice = await _native(chat, ALICE, "lobby")
    await alice.call("send_message", {"roomId": "lobby", "text": "hello", "clientMsgId": "c-1"})
    await bob.event("new_message", seq=2)
    bob.carrier.hang_up(None)
    await bob.ended()
    carol = await _native(chat, CAROL, "lobby")
    await carol.call(
        "send_message", {"roomId": "lobby", "text": "welcome back", "clientMsgId": "k-7"}
    )
    await alice.call("send_message", {"roomId": "lobby", "text": "bob?", "clientMsgId": "c-2"})
    return joined


def _resume(frame_id: int, joined: dict[str, object], last_seq: dict[str, int] | None) -> str:
    data: dict[str, object] = {
        "sessionId": joined["sessionId"],
        "resumeToken": joined["resumeToken"],
    }
    if last_seq is not None:
        data["lastSeq"] = last_seq
    return json.dumps({"type": "resume", "id": frame_id, "data": data}, separators=(",", ":"))


@scene("native-resume-recovered")
async def _native_resume(t: Transcript) -> None:
    async with InProcessChat() as chat:
        joined = await _bob_away(chat)
        t.lines.append("→ GET /ws")
        back = await chat.native()
        t.send(back, _resume(1, joined, {"lobby": 2}))
        await t.receive(back, 3)


@scene("native-resume-not-recovered")
async def _native_resume_late(t: Transcript) -> None:
    async with InProcessChat() as chat:
        gone = {
            "sessionId": "7b8b965ad4bca0e41ab51de7b31363a1",
            "resumeToken": "9JmSpr-GUkERsHmFxH5_gMc8gHqWJgwtSj4KOYthKSk",
        }
        peer = await chat.native()
        t.send(peer, _resume(1, gone, {"lobby": 2}))
        await t.receive(peer)


@scene("native-resume-after-join")
async def _native_resume_after_join(t: Transcript) -> None:
    async with InProcessChat() as chat:
        peer = await _native(chat, BOB, "lobby")
        other = {
            "sessionId": "7b8b965ad4bca0e41ab51de7b31363a1",
            "resumeToken": "9JmSpr-GUkERsHmFxH5_gMc8gHqWJgwtSj4KOYthKSk",
        }
        t.send(peer, _resume(2, other, None))
        await t.receive_where(peer, '{"type":"ack","id":2')


def test_every_marked_example_has_a_scene_and_every_scene_an_example() -> None:
    """The docs' markers and the scenes below name the same examples."""
    assert sorted(examples()) == sorted(SCENES)


@pytest.mark.parametrize("name", sorted(SCENES))
async def test_the_example_is_what_the_gateway_sends(name: str) -> None:
    """Played in process, the example's transcript comes out as the docs show it."""
    t = Transcript()
    await SCENES[name](t)
    expected = examples()[name]
    if name == "presence-diff":
        expected = [re.sub(r'"count":\d+', '"count":<n>', line) for line in expected]
    assert normalise(t.lines) == normalise(expected)
