"""A connection's life at the gateway, in process: authentication, heartbeat and watchdog,
namespace goodbyes, errors answered, pipelined sends, gaps filled, sessions re-registered
(tests/support/inprocess.py)."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from chat_common.schemas import DrainRequest, TakeRequest, decode, encode
from chat_gateway.auth import JwtVerifier, build_verifier
from chat_gateway.closecodes import (
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSE_PING_TIMEOUT,
    CLOSE_SESSION_ENDED,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNAUTHENTICATED,
)
from chat_gateway.connection.client import Client
from tests.support.inprocess import (
    InProcessChat,
    NativePeer,
    RecordingCarrier,
    SocketIOPeer,
    gateway_settings,
)

SECRET = "s" * 40


def _token(sub: str, *, exp: float | None = None, rooms: list[str] | None = None) -> str:
    claims: dict[str, object] = {
        "sub": sub,
        "iat": int(time.time()),
        "exp": exp or time.time() + 600,
    }
    if rooms is not None:
        claims["rooms"] = rooms
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _verifier(policy: str = "open") -> JwtVerifier:
    return build_verifier(
        algorithms=["HS256"], secret=SECRET, public_key_file=None, audience=None,
        issuer=None, leeway_s=0, room_policy=policy,
    )  # fmt: skip


def _jwt_chat(policy: str = "open") -> InProcessChat:
    settings = gateway_settings(
        auth_mode="jwt", jwt_secret=SECRET, jwt_leeway_s=0, room_policy=policy
    )
    return InProcessChat(settings, verifier=_verifier(policy))


async def _join(peer: NativePeer | SocketIOPeer, email: str, room: str) -> dict[str, object]:
    return await peer.call("join", {"email": email, "roomId": room})


async def test_a_bearer_token_authenticates_a_native_connection_and_a_bad_one_is_closed() -> None:
    """``Authorization: Bearer``: a good token opens the door, a bad one closes with 4001;
    without one, events other than ``auth`` are UNAUTHENTICATED until ``auth`` succeeds."""
    async with _jwt_chat() as chat:
        good = await chat.native(authorization="Bearer " + _token("a@example.com"))
        assert (await _join(good, "a@example.com", "r"))["ok"] is True
        bad = await chat.native(authorization="Bearer nope")
        assert await bad.carrier.closed() == (CLOSE_UNAUTHENTICATED, "unauthenticated")
        later = await chat.native()
        refused = await _join(later, "b@example.com", "r")
        assert refused["error"]["code"] == "UNAUTHENTICATED"
        assert (await later.call("auth", {"token": "nope"}))["error"]["code"] == "UNAUTHENTICATED"
        authed = await later.call("auth", {"token": _token("b@example.com")})
        assert authed == {"ok": True, "email": "b@example.com", "droppedRooms": []}
        other = await later.call("auth", {"token": _token("c@example.com")})
        assert other["error"]["code"] == "IDENTITY_MISMATCH"
        assert (await _join(later, "b@example.com", "r"))["ok"] is True


async def test_a_socketio_connect_with_a_bad_token_is_refused_with_its_code() -> None:
    """CONNECT with a bad token: CONNECT_ERROR carrying ``UNAUTHENTICATED``, then 4001."""
    async with _jwt_chat() as chat:
        peer = await chat.socketio()
        refusal = await peer.connect({"token": "nope"})
        assert refusal == {
            "message": "invalid or expired token",
            "data": {"code": "UNAUTHENTICATED"},
        }
        assert (await peer.carrier.closed())[0] == CLOSE_UNAUTHENTICATED


async def test_the_claim_policy_forbids_rooms_and_a_fresh_token_drops_them() -> None:
    """With ``room_policy=claim`` a join outside the token's rooms is FORBIDDEN, and a fresh
    token that no longer allows a joined room leaves it (``droppedRooms``)."""
    async with _jwt_chat("claim") as chat:
        peer = await chat.native(
            authorization="Bearer " + _token("a@example.com", rooms=["team-*"])
        )
        assert (await _join(peer, "a@example.com", "team-x"))["ok"] is True
        assert (await _join(peer, "a@example.com", "vip"))["error"]["code"] == "FORBIDDEN"
        fresh = await peer.call("auth", {"token": _token("a@example.com", rooms=["other"])})
        assert fresh["droppedRooms"] == ["team-x"]
        history = await peer.call("get_history", {"roomId": "team-x"})
        assert history["error"]["code"] == "NOT_IN_ROOM"


async def test_the_heartbeat_closes_a_peer_that_stops_answering() -> None:
    """Every ping interval each client is pinged; one that has not answered a ping within
    the ping timeout is closed with 4000, one that answers stays."""
    settings = gateway_settings(ping_interval_ms=20, ping_timeout_ms=20)
    async with InProcessChat(settings) as chat:
        chat.run(chat.gateway.keepalive.heartbeat())
        alive = await chat.native()
        silent = await chat.native(carrier=RecordingCarrier(answers_pings=False))
        sio = await chat.socketio()
        await sio.connect()
        assert await silent.carrier.closed() == (CLOSE_PING_TIMEOUT, "ping timeout")
        assert await sio.carrier.closed() == (CLOSE_PING_TIMEOUT, "ping timeout")
        assert alive.carrier.open and alive.carrier.pings >= 1


async def test_the_watchdog_closes_who_does_not_connect_join_or_keep_a_valid_token() -> None:
    """One watchdog pass: no CONNECT in time, no join in time, an expired token: 4002, 4002,
    4003; a connection within all three stays."""
    async with _jwt_chat() as chat:
        late = await chat.socketio()
        idle = await chat.native(authorization="Bearer " + _token("i@example.com"))
        expiring = await chat.native(
            authorization="Bearer " + _token("e@example.com", exp=time.time() + 5)
        )
        await _join(expiring, "e@example.com", "r")
        fine = await chat.native(authorization="Bearer " + _token("f@example.com"))
        await _join(fine, "f@example.com", "r")
        s = chat.settings
        now = asyncio.get_running_loop().time()
        chat.gateway.keepalive.check(now=now + s.connect_timeout_s + 1, wall=time.time())
        assert (await late.carrier.closed()) == (
            CLOSE_HANDSHAKE_TIMEOUT,
            "connect or authenticate first",
        )
        chat.gateway.keepalive.check(now=now + s.join_timeout_s + 1, wall=time.time() + 10)
        assert (await idle.carrier.closed()) == (CLOSE_HANDSHAKE_TIMEOUT, "join a room first")
        assert (await expiring.carrier.closed()) == (CLOSE_TOKEN_EXPIRED, "token expired")
        assert fine.carrier.open


async def test_leaving_the_namespace_ends_the_session_and_a_new_connect_starts_afresh() -> None:
    """``41`` is a goodbye: the room hears ``user_left`` at once; a later ``40`` gets a new
    socket id and the connection can join again."""
    async with InProcessChat() as chat:
        watcher = await chat.native()
        await _join(watcher, "w@example.com", "r")
        peer = await chat.socketio()
        first = await peer.connect()
        await _join(peer, "p@example.com", "r")
        peer.carrier.feed("41")
        assert (await watcher.event("user_left", email="p@example.com"))["count"] == 1
        second = await peer.connect()
        assert second["sid"] != first["sid"]
        assert (await _join(peer, "p@example.com", "r"))["ok"] is True


async def test_an_engineio_close_packet_is_a_goodbye() -> None:
    """The client's ``1``: the connection closes with 1000 and its session ends (its
    rooms hear ``user_left``); an abrupt drop instead keeps it resumable."""
    async with InProcessChat() as chat:
        watcher = await chat.native()
        await _join(watcher, "w@example.com", "r")
        leaving = await chat.socketio()
        await leaving.connect()
        await _join(leaving, "l@example.com", "r")
        leaving.carrier.feed("1")
        assert (await leaving.carrier.closed())[0] == 1000
        assert (await watcher.event("user_left", email="l@example.com"))["count"] == 1


async def test_errors_are_answered_and_the_connection_stays() -> None:
    """Each refusal gets its code (as an ack, or an ``error`` event without one), and the
    connection keeps working."""
    async with InProcessChat(gateway_settings(max_rooms_per_connection=1)) as chat:
        peer = await chat.native()
        assert (await peer.call("dance"))["error"]["code"] == "UNKNOWN_EVENT"
        assert (await peer.call("join", {"roomId": "r"}))["error"]["code"] == "INVALID_ARGUMENT"
        sent = await peer.call("send_message", {"roomId": "r", "text": "x"})
        assert sent["error"]["code"] == "NOT_IN_ROOM"
        assert (await _join(peer, "a@example.com", "r"))["ok"] is True
        assert (await _join(peer, "b@example.com", "r"))["error"]["code"] == "IDENTITY_MISMATCH"
        assert (await _join(peer, "a@example.com", "s"))["error"]["code"] == "INVALID_ARGUMENT"
        too_long = await peer.call("send_message", {"roomId": "r", "text": "x" * 5000})
        assert too_long["error"]["code"] == "INVALID_ARGUMENT"
        peer.send({"type": "leave", "data": {"roomId": "nowhere"}})
        error = await peer.event("error")
        assert (error["code"], error["event"]) == ("NOT_IN_ROOM", "leave")
        peer.send({"type": "join", "id": "x"})
        assert (await peer.event("error"))["code"] == "INVALID_ARGUMENT"
        assert (await peer.call("get_members", {"roomId": "r"}))["users"] == ["a@example.com"]


async def test_a_flood_of_events_is_rate_limited_with_a_retry_time() -> None:
    """Past the connection's burst, events get RATE_LIMITED with ``retryAfterMs``."""
    async with InProcessChat(
        gateway_settings(rate_per_s=1, rate_burst=2, read_rate_per_s=1, read_burst=2)
    ) as chat:
        peer = await chat.native()
        answers = [await peer.call("get_members", {"roomId": "r"}) for _ in range(3)]
        limited = answers[-1]["error"]
        assert limited["code"] == "RATE_LIMITED" and limited["retryAfterMs"] > 0


async def test_pipelined_sends_are_stored_and_acked_in_the_order_sent() -> None:
    """Sends not waiting for each other's acks: acks come back in order, and the room's
    seqs follow the order sent."""
    async with InProcessChat() as chat:
        peer = await chat.native()
        await _join(peer, "a@example.com", "r")
        for n in range(1, 21):
            peer.send({"type": "send_message", "id": n, "data": {"roomId": "r", "text": f"m{n}"}})
        acks = [
            await peer.frame(lambda f, n=n: f.startswith(b'{"type":"ack","id":%d,' % n))
            for n in range(1, 21)
        ]
        texts = [f'"text":"m{n}"'.encode() for n in range(1, 21)]
        assert all(text in ack for text, ack in zip(texts, acks, strict=True))
        history = await peer.call("get_history", {"roomId": "r"})
        assert [m["text"] for m in history["messages"]] == [f"m{n}" for n in range(1, 21)]


async def test_a_lost_publish_is_filled_from_history_in_order() -> None:
    """A room event lost between history's commit and the gateway: the next one reveals the
    gap, the gateway fetches the missing message, and members get both in seq order."""
    async with InProcessChat() as chat:
        reader, writer = await chat.native(), await chat.native()
        await _join(reader, "r@example.com", "gap")
        await _join(writer, "w@example.com", "gap")
        chat.bus.dropping["chat.room.gap.events"] = 1
        await writer.call("send_message", {"roomId": "gap", "text": "lost on the way"})
        await writer.call("send_message", {"roomId": "gap", "text": "after"})
        first, second = await reader.event("new_message"), await reader.event("new_message")
        assert (first["seq"], second["seq"]) == (1, 2)
        assert first["text"] == "lost on the way"


async def test_a_resume_that_cannot_recover_starts_afresh() -> None:
    """A wrong token, a resume after a join, and more missed than the replay bound: not
    recovered (or refused), and the connection carries on with a fresh session."""
    async with InProcessChat(gateway_settings(max_replay=1)) as chat:
        away, sender = await chat.native(), await chat.native()
        joined = await _join(away, "a@example.com", "r")
        await _join(sender, "s@example.com", "r")
        wrong = await (await chat.native()).call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": "x" * 43}
        )
        assert wrong["recovered"] is False
        assert (await sender.call("resume", {"sessionId": joined["sessionId"],
                                             "resumeToken": joined["resumeToken"]}))["error"]["code"] == "INVALID_ARGUMENT"  # fmt: skip
        away.carrier.hang_up(None)
        await away.ended()
        for n in range(3):
            await sender.call("send_message", {"roomId": "r", "text": f"m{n}"})
        back = await chat.native()
        resumed = await back.call(
            "resume", {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}
        )
        assert resumed["recovered"] is False and resumed["sessionId"] != joined["sessionId"]
        assert (await sender.event("user_left", email="a@example.com"))["count"] == 1


async def test_sessions_the_store_lost_are_registered_again_by_the_heartbeat() -> None:
    """The session heartbeat finds the sessions the store does not know (Redis restarted
    empty) and restores them, rooms and positions included, announcing nothing."""
    async with InProcessChat() as chat:
        peer = await chat.native()
        joined = await _join(peer, "a@example.com", "r")
        await chat.services.session_store.forget(joined["sessionId"])
        assert await chat.gateway.keeper.beat(chat.gateway.registry) == 1
        assert await chat.gateway.keeper.beat(chat.gateway.registry) == 0


async def test_a_session_ended_while_its_connection_was_open_is_not_brought_back() -> None:
    """The session service ended the session (it expired while the gateway could not
    heartbeat it; its rooms were told the user left): the heartbeat does not bring it back
    (a late request must not undo an end either) and closes the connection with 4010, so
    the client starts afresh."""
    async with InProcessChat() as chat:
        peer = await chat.native()
        joined = await _join(peer, "a@example.com", "r")
        await chat.services.session_store.end(joined["sessionId"])
        assert await chat.gateway.keeper.beat(chat.gateway.registry) == 0
        assert await peer.carrier.closed() == (CLOSE_SESSION_ENDED, "session ended")
        assert await chat.services.session_store.get(joined["sessionId"]) is None


async def test_the_drain_and_status_endpoints() -> None:
    """``status`` counts clients by protocol; ``drain`` closes them and says how many, and a
    second drain is CONFLICT."""
    async with InProcessChat() as chat:
        await chat.native()
        peer = await chat.socketio()
        await peer.connect()
        status = decode(await chat.gateway.registry.status(b""), dict)
        assert status["clients"] == 2 and status["protocols"] == {"native": 1, "socketio": 1}
        drained = decode(
            await chat.gateway.drain.drain_endpoint(encode(DrainRequest(period_s=0.1))), dict
        )
        assert drained["closed"] == 2
        with pytest.raises(Exception) as second:
            await chat.gateway.drain.drain(period_s=0.1)
        assert getattr(second.value, "code", None).value == "CONFLICT"


async def test_the_user_limit_is_shared_by_a_users_connections() -> None:
    """The per-user bucket lives in the session service: two connections of one user draw
    on it together and are refused once it is empty."""
    async with InProcessChat(
        gateway_settings(user_lease=1), user_rate_per_s=0.001, user_rate_burst=3
    ) as chat:
        one, two = await chat.native(), await chat.native()
        await _join(one, "u@example.com", "r")  # before a join the user is not known yet
        await _join(two, "u@example.com", "r")
        answers = [await peer.call("get_members", {"roomId": "r"}) for peer in (one, two, one, two)]
        assert [a.get("ok", False) for a in answers] == [True, True, True, False]
        assert answers[-1]["error"]["code"] == "RATE_LIMITED"
        take = decode(
            await chat.services.session.take(encode(TakeRequest(email="u@example.com", count=1))),
            dict,
        )
        assert take["granted"] == 0


async def test_a_connection_that_moves_carriers_keeps_its_order() -> None:
    """A carrier handing the connection over (a long-polling upgrade): what the old one
    still held is read first, then the new one's; writes go to the new one at once."""
    async with InProcessChat() as chat:
        old = RecordingCarrier()
        peer = await chat.native(carrier=old)
        assert (await peer.call("get_members", {"roomId": "r"}))["error"]["code"] == "NOT_IN_ROOM"
        new = RecordingCarrier()
        old.feed('{"type":"join","id":1,"data":{"email":"m@example.com","roomId":"r"}}')
        old.move_to(new)
        new.feed('{"type":"get_members","id":2,"data":{"roomId":"r"}}')
        moved = NativePeer(new, peer.task)
        assert await moved.frame(lambda f: f.startswith(b'{"type":"ack","id":1,'))
        assert await moved.frame(lambda f: f.startswith(b'{"type":"ack","id":2,'))
        client = next(iter(chat.gateway.registry))
        assert isinstance(client, Client) and client.carrier is new
