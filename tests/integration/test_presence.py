"""Presence as changes: small rooms' events with the list, large rooms' coalesced diffs,
counts, the paged member list, across gateways and resumes (docs/protocol.md 4.12)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import MakeStack
from tests.support.clients import NativeClient, SioClient, unique_room

pytestmark = pytest.mark.integration

LIST_MAX = 3
ENV = {"SESSION_PRESENCE_LIST_MAX": str(LIST_MAX), "GATEWAY_PRESENCE_INTERVAL_MS": "200"}


def _known(events: list[tuple[str, Any]]) -> tuple[set[str], int]:
    """The member set and count a client keeps by applying presence events in order."""
    members: set[str] = set()
    count = 0
    for name, data in events:
        if name in ("user_joined", "user_left"):
            count = data["count"]
            if "users" in data:
                members = set(data["users"])
            elif name == "user_joined":
                members.add(data["email"])
            else:
                members.discard(data["email"])
        elif name == "presence_diff":
            members = (members | set(data["joins"])) - set(data["leaves"])
            count = data["count"]
    return members, count


async def _all_members(client: NativeClient | SioClient, room: str, limit: int) -> list[str]:
    users: list[str] = []
    after: int | None = None
    while True:
        page = await client.call("get_members", {"roomId": room, "limit": limit} |
                                 ({} if after is None else {"after": after}))  # fmt: skip
        assert page["ok"] is True, page
        users += page["users"]
        if page["next"] is None:
            return users
        after = page["next"]


async def test_a_room_past_the_list_size_gets_counts_and_coalesced_diffs(
    make_stack: MakeStack,
) -> None:
    """Across two gateways: while the room is small, user_joined carries the list; past it,
    each gateway sends one presence_diff per interval, and a member that applies the events
    knows exactly who is there. The join ack holds the first page and the count; the rest
    is paged with get_members on either protocol."""
    stack = await make_stack(gateways=2, env=ENV)
    room = unique_room("big")
    urls = stack.gateway_urls
    native = await NativeClient().connect(urls[0])
    sio = await SioClient().connect(urls[1])
    others = [await NativeClient().connect(urls[n % 2]) for n in range(5)]
    try:
        await native.call("join", {"email": "first@example.com", "roomId": room})
        await sio.call("join", {"email": "second@example.com", "roomId": room})
        emails = [f"m{n}@example.com" for n in range(5)]
        for client, email in zip(others, emails, strict=True):
            ack = await client.call("join", {"email": email, "roomId": room})
        assert ack["userCount"] == 7 and len(ack["users"]) == LIST_MAX
        assert ack["users"] == ["first@example.com", "second@example.com", "m0@example.com"]
        assert ack["usersNext"] is not None
        await others[4].call("leave", {"roomId": room})
        everyone = {"first@example.com", "second@example.com", *emails[:4]}
        for watcher in (native, sio):
            try:
                await watcher.wait_for(lambda ev: _known(ev) == (everyone, 6))
            except TimeoutError:
                raise AssertionError(watcher.events) from None
            diffs = watcher.of("presence_diff")
            assert diffs, "a large room's changes came as presence_diff"
            assert len(diffs) < 4, "coalesced: fewer diffs than changes"
            assert all("users" not in d for d in watcher.of("user_joined") if d["count"] > LIST_MAX)
        expected = ["first@example.com", "second@example.com", *emails[:4]]
        assert await _all_members(native, room, 2) == expected
        assert await _all_members(sio, room, 4) == expected
    finally:
        for client in (native, sio, *others):
            await client.close()


async def test_get_members_needs_membership_and_a_valid_page(make_stack: MakeStack) -> None:
    stack = await make_stack(env=ENV)
    room = unique_room()
    client = await NativeClient().connect(stack.client_url)
    try:
        refused = await client.call("get_members", {"roomId": room})
        assert refused["error"]["code"] == "NOT_IN_ROOM"
        await client.call("join", {"email": "a@example.com", "roomId": room})
        for bad in ({"roomId": room, "limit": 0}, {"roomId": room, "after": -1},
                    {"roomId": room, "after": "x"}):  # fmt: skip
            answer = await client.call("get_members", bad)
            assert answer["error"]["code"] == "INVALID_ARGUMENT", bad
        page = await client.call("get_members", {"roomId": room})
        assert (page["users"], page["userCount"], page["next"]) == (["a@example.com"], 1, None)
    finally:
        await client.close()


async def test_a_resumed_member_causes_no_presence_change(make_stack: MakeStack) -> None:
    """A member of a large room drops and resumes on another gateway: the others see no
    leave and no join for it, and the count stays."""
    stack = await make_stack(gateways=2, env=ENV)
    room = unique_room("resume")
    first, second = stack.gateway_urls
    watcher = await NativeClient().connect(first)
    members = [await NativeClient().connect(first) for _ in range(LIST_MAX)]
    roamer = await NativeClient().connect(first)
    try:
        await watcher.call("join", {"email": "w@example.com", "roomId": room})
        for n, member in enumerate(members):
            await member.call("join", {"email": f"m{n}@example.com", "roomId": room})
        joined = await roamer.call("join", {"email": "roam@example.com", "roomId": room})
        await watcher.wait_for(lambda ev: "roam@example.com" in _known(ev)[0])
        assert roamer.ws is not None and roamer.ws.transport is not None
        roamer.ws.transport.abort()
        await roamer.closed.wait()
        back = await NativeClient().connect(second)
        try:
            reply = await back.call(
                "resume", {"sessionId": joined["sessionId"], "resumeToken": joined["resumeToken"]}
            )
            assert reply["recovered"] is True
            late = await NativeClient().connect(second)
            await late.call("join", {"email": "late@example.com", "roomId": room})
            await watcher.wait_for(lambda ev: "late@example.com" in _known(ev)[0])
            await late.close()
            assert _known(watcher.events)[1] == LIST_MAX + 3
            mentions = [d for n, d in watcher.events if n == "presence_diff"
                        and "roam@example.com" in d["leaves"]]  # fmt: skip
            assert mentions == [], "no leave for a resumed member"
            assert "roam@example.com" in await _all_members(back, room, 10)
        finally:
            await back.close()
    finally:
        for client in (watcher, *members):
            await client.close()
