"""The web chat page in a real browser against a real stack: chatting both ways, presence,
typing, escaping, scroll-back, gateway restarts with the pages resuming and nothing lost, and the
room list with its unread badges.

Every wait is on a condition in the page (Playwright's ``expect``), never a sleep.
(``scripts/screenshot_page.py`` drives the page the same way for docs/chat-page.png.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, expect

from chat_devstack.services import ServiceProcess
from tests.browser.conftest import PageStack
from tests.support.clients import NativeClient, unique_room

pytestmark = pytest.mark.integration

WAIT_MS = 30_000
RESUME_ENV = {"GATEWAY_SESSION_HEARTBEAT_S": "0.5"}
SECRET = "browser-test-secret-" * 3
JWT_ENV = {"GATEWAY_AUTH_MODE": "jwt", "GATEWAY_JWT_SECRET": SECRET}


class ChatPage:
    """One browser tab with the chat page, and what a test reads from it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.csp_violations: list[str] = []
        page.on("console", self._on_console)
        self.status = page.locator("#status")
        self.users = page.locator("#users li")
        self.texts = page.locator("#messages li .text")
        self.outbox = page.locator("#outbox li:not([hidden])")
        self.room_names = page.locator("#room-list .name")

    def room(self, room: str) -> Locator:
        """The room's entry in the room list."""
        return self.page.locator(f'#room-list li[data-room-id="{room}"]')

    def badge(self, room: str) -> Locator:
        """The room's unread badge (hidden when nothing is unread)."""
        return self.room(room).locator(".badge")

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)

    async def enter(self, base_url: str, email: str, room: str) -> ChatPage:
        response = await self.page.goto(f"{base_url.rstrip('/')}/?room={room}")
        assert response is not None and response.status == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        await self.page.fill("#email", email)
        await self.page.click("#login button[type=submit]")
        await expect(self.status).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
        await expect(self.page.locator("#login")).to_be_hidden()
        return self

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    async def seqs(self) -> list[int]:
        values = await self.page.locator("#messages li").evaluate_all(
            "nodes => nodes.map(n => Number(n.dataset.seq))"
        )
        return [int(v) for v in values]

    async def expect_texts(self, texts: list[str]) -> None:
        await expect(self.texts).to_have_text(texts, timeout=WAIT_MS)

    async def expect_state(self, state: str) -> None:
        await expect(self.status).to_have_attribute("data-state", state, timeout=WAIT_MS)


@pytest.fixture
async def tabs(browser: Browser) -> AsyncIterator[list[ChatPage]]:
    """Two tabs in separate browser contexts (two users); closed at the end."""
    contexts = [await browser.new_context(viewport={"width": 900, "height": 560}) for _ in "ab"]
    try:
        pages = [ChatPage(await c.new_page()) for c in contexts]
        yield pages
        assert [p.csp_violations for p in pages] == [[], []], "the page broke its own CSP"
    finally:
        for context in contexts:
            await context.close()


async def test_two_pages_chat_both_ways_and_see_presence(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """Ann sees Bob join, they exchange messages both ways in the same seq order, and Ann
    sees Bob leave."""
    stack = await page_stack()
    url, room = stack.client_url, unique_room("page")
    ann, bob = tabs
    await ann.enter(url, "ann@example.com", room)
    await expect(ann.users).to_have_text(["ann@example.com"])
    await bob.enter(url, "bob@example.com", room)
    await expect(ann.users).to_have_text(["ann@example.com", "bob@example.com"], timeout=WAIT_MS)
    await expect(bob.users).to_have_text(["ann@example.com", "bob@example.com"])
    await expect(ann.page.locator("#member-count")).to_have_text("2 members")

    conversation = [
        (ann, "Hi Bob, the web page is up."),
        (bob, "Nice! Does it survive a gateway restart?"),
        (ann, "It resumes the session and resends what was queued."),
        (bob, "Markup stays text: <b>bold</b> & ünïcödé"),
    ]
    for i, (who, text) in enumerate(conversation):
        await who.say(text)
        expected = [t for _, t in conversation[: i + 1]]
        await ann.expect_texts(expected)
        await bob.expect_texts(expected)
    assert await ann.seqs() == await bob.seqs() == [1, 2, 3, 4]
    await expect(ann.page.locator("#messages li.mine")).to_have_count(2)

    await bob.page.click("#leave")
    await expect(ann.users).to_have_text(["ann@example.com"], timeout=WAIT_MS)


async def test_typing_shows_on_the_other_page_and_clears(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """While Ann types, Bob's page says so; it clears when she sends, and when she empties
    the input; Ann's own page never shows herself."""
    stack = await page_stack()
    url, room = stack.client_url, unique_room("page")
    ann, bob = tabs
    await ann.enter(url, "ann@example.com", room)
    await bob.enter(url, "bob@example.com", room)
    await expect(ann.users).to_have_count(2, timeout=WAIT_MS)
    typing = bob.page.locator("#typing")
    await ann.page.type("#text", "hel")
    await expect(typing).to_have_text("ann@example.com is typing…", timeout=WAIT_MS)
    await ann.page.press("#text", "Enter")
    await bob.expect_texts(["hel"])
    await expect(typing).to_have_text("", timeout=WAIT_MS)
    await ann.page.type("#text", "x")
    await expect(typing).to_have_text("ann@example.com is typing…", timeout=WAIT_MS)
    await ann.page.press("#text", "Backspace")
    await expect(typing).to_have_text("", timeout=WAIT_MS)
    await expect(ann.page.locator("#typing")).to_have_text("")


async def test_user_content_is_shown_as_text_never_markup(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """Markup in a message and in an email is displayed literally: no element is created
    from it and no script from it runs."""
    stack = await page_stack()
    url, room = stack.client_url, unique_room("xss")
    ann, bob = tabs
    evil_email = "<img/src=x/onerror=window.pwned=1>@example.com"
    await ann.enter(url, "ann@example.com", room)
    await bob.enter(url, evil_email, room)
    payload = '<script>window.pwned=2</script><img src=x onerror="window.pwned=3">'
    await bob.say(payload)
    await ann.expect_texts([payload])
    await expect(ann.users).to_have_text(["ann@example.com", evil_email], timeout=WAIT_MS)
    await expect(ann.page.locator("#messages .who")).to_have_text([evil_email])
    for page in (ann.page, bob.page):
        assert await page.locator("#messages img, #messages script, #users img").count() == 0
        assert await page.evaluate("window.pwned") is None


async def test_jwt_mode_token_from_the_page_url(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """In JWT mode a ?token= in the URL authenticates the page (the email comes from the
    token), the token leaves the address bar, and a bad token returns to the form."""
    stack = await page_stack(env=JWT_ENV)
    url, room = stack.client_url.rstrip("/"), unique_room("jwt")
    now = int(time.time())
    claims = {"sub": "tok@example.com", "iat": now, "exp": now + 300}
    good = jwt.encode(claims, SECRET, algorithm="HS256")
    ann, bob = tabs
    await ann.page.goto(f"{url}/?room={room}&token={good}")
    assert "token" not in ann.page.url
    await ann.page.click("#login button[type=submit]")
    await ann.expect_state("connected")
    await expect(ann.page.locator("#whoami")).to_have_text("tok@example.com")
    await ann.say("signed in with a token")
    await ann.expect_texts(["signed in with a token"])
    await expect(ann.page.locator("#messages .who")).to_have_text(["tok@example.com"])

    await bob.page.goto(f"{url}/?room={room}&token=not-a-jwt")
    await bob.page.click("#login button[type=submit]")
    await bob.expect_state("stopped")
    await expect(bob.page.locator("#login-error")).to_be_visible()
    await expect(ann.users).to_have_text(["tok@example.com"])


async def test_scroll_back_pages_through_the_whole_history(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """A room with 120 messages opens with the last 50; paging back shows every message
    once, in seq order, and then says it reached the beginning."""
    stack = await page_stack()
    url, room = stack.client_url, unique_room("hist")
    writer = await NativeClient().connect(url)
    try:
        assert (await writer.call("join", {"email": "old@example.com", "roomId": room}))["ok"]
        for i in range(1, 121):
            reply = await writer.call("send_message", {"roomId": room, "text": f"m{i}"})
            assert reply["ok"]
    finally:
        await writer.close()
    ann = tabs[0]
    await ann.enter(url, "ann@example.com", room)
    await expect(ann.texts).to_have_count(50)
    assert await ann.seqs() == list(range(71, 121))
    older = ann.page.locator("#older")
    await older.click()
    await expect(ann.texts).to_have_count(100, timeout=WAIT_MS)
    await older.click()
    await expect(ann.texts).to_have_count(120, timeout=WAIT_MS)
    await expect(older).to_have_text("Beginning of the room")
    await expect(older).to_be_disabled()
    assert await ann.seqs() == list(range(1, 121))
    await ann.expect_texts([f"m{i}" for i in range(1, 121)])


async def _stop(gateway: ServiceProcess, how: str) -> None:
    if how == "SIGKILL":
        await gateway.kill()
    else:
        assert gateway.pid is not None
        os.kill(gateway.pid, signal.SIGTERM)
        assert await gateway.wait() == 0


async def _stored_texts(url: str, room: str) -> list[str]:
    """The room's messages as history stores them, read by a fresh client."""
    reader = await NativeClient().connect(url)
    try:
        reply = await reader.call("join", {"email": "audit@example.com", "roomId": room})
        assert reply["ok"]
        return [m["text"] for m in reply["history"]]
    finally:
        await reader.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_pages_recover_after_a_gateway_restart_and_lose_nothing(
    page_stack: PageStack, tabs: list[ChatPage], how: str
) -> None:
    """The gateway is terminated (or killed) and restarted on the same address: both pages
    show reconnecting, then recovered, and the messages typed during the outage are
    delivered once to both pages and stored once."""
    stack = await page_stack(env=RESUME_ENV)
    url, room = stack.client_url, unique_room("restart")
    ann, bob = tabs
    await ann.enter(url, "ann@example.com", room)
    await bob.enter(url, "bob@example.com", room)
    await ann.say("before 1")
    await bob.expect_texts(["before 1"])
    await bob.say("before 2")
    await ann.expect_texts(["before 1", "before 2"])
    await bob.expect_texts(["before 1", "before 2"])

    gateway = stack.of_kind("gateway")[0]
    await _stop(gateway, how)
    await ann.expect_state("reconnecting")
    await bob.expect_state("reconnecting")
    await ann.say("during 1")
    await bob.say("during 2")
    await ann.say("during 3")
    await expect(ann.outbox).to_have_count(2)
    await expect(bob.outbox).to_have_count(1)

    await gateway.start()
    await gateway.wait_ready(timeout=30)
    await ann.expect_state("recovered")
    await bob.expect_state("recovered")
    # Each page sends its own queue in order; the two queues may interleave either way.
    for page in (ann, bob):
        await expect(page.outbox).to_have_count(0, timeout=WAIT_MS)
        await expect(page.texts).to_have_count(5, timeout=WAIT_MS)
        texts = await page.texts.all_text_contents()
        assert texts[:2] == ["before 1", "before 2"]
        assert sorted(texts[2:]) == ["during 1", "during 2", "during 3"]
        assert texts.index("during 1") < texts.index("during 3")
        assert await page.seqs() == [1, 2, 3, 4, 5]
    assert await ann.texts.all_text_contents() == await bob.texts.all_text_contents()
    stored = await _stored_texts(url, room)
    assert stored == await ann.texts.all_text_contents()
    await expect(ann.users).to_have_text(["ann@example.com", "bob@example.com"])

    await ann.say("after")
    await bob.expect_texts([*stored, "after"])


async def test_page_not_recovered_rejoins_resyncs_and_sends_its_queue(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """Ann's gateway stays down past the resume window: her page shows not recovered,
    rejoins, shows what Bob wrote meanwhile, and delivers her queued message once."""
    window = {"SESSION_RESUME_WINDOW_S": "1", "SESSION_HEARTBEAT_TTL_S": "2"}
    stack = await page_stack(gateways=2, env={**RESUME_ENV, **window})
    first, second = stack.gateway_urls
    room = unique_room("lost")
    ann, bob = tabs
    await ann.enter(first, "ann@example.com", room)
    await bob.enter(second, "bob@example.com", room)
    await expect(ann.users).to_have_text(["ann@example.com", "bob@example.com"], timeout=WAIT_MS)

    gateway = stack.of_kind("gateway")[0]
    await _stop(gateway, "SIGTERM")
    await ann.expect_state("reconnecting")
    await expect(bob.users).to_have_text(["bob@example.com"], timeout=WAIT_MS)  # reaped
    await bob.say("where did ann go?")
    await ann.say("queued while away")
    await expect(ann.outbox).to_have_count(1)

    await gateway.start()
    await gateway.wait_ready(timeout=30)
    await ann.expect_state("not-recovered")
    await expect(bob.users).to_have_text(["bob@example.com", "ann@example.com"], timeout=WAIT_MS)
    expected = ["where did ann go?", "queued while away"]
    await ann.expect_texts(expected)
    await bob.expect_texts(expected)
    assert await _stored_texts(second, room) == expected


async def test_unread_badges_follow_the_user_on_both_pages(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """Ann has two pages open on the lobby: Bob's message in another room of hers raises
    its badge on both; a message in the lobby, which both show, leaves no badge; showing
    the other room on one page marks it read, which clears the badge on both."""
    stack = await page_stack()
    url, lobby, side = stack.client_url, unique_room("lobby"), unique_room("side")
    ann = "ann@example.com"
    phone, bob = NativeClient(), NativeClient()
    await phone.connect(url)
    await bob.connect(url)
    try:
        # Ann became a member of the side room on another device; membership is durable.
        assert (await phone.call("join", {"email": ann, "roomId": side}))["ok"]
        await phone.close()
        for page in tabs:
            await page.enter(url, ann, lobby)
            await expect(page.room_names).to_have_text([f"# {lobby}", f"# {side}"])
            await expect(page.badge(side)).to_be_hidden()

        assert (await bob.call("join", {"email": "bob@example.com", "roomId": side}))["ok"]
        assert (await bob.call("send_message", {"roomId": side, "text": "psst"}))["ok"]
        for page in tabs:
            await expect(page.badge(side)).to_have_text("1", timeout=WAIT_MS)
            await expect(page.room_names).to_have_text([f"# {side}", f"# {lobby}"])
        assert (await bob.call("join", {"email": "bob@example.com", "roomId": lobby}))["ok"]
        assert (await bob.call("send_message", {"roomId": lobby, "text": "hi all"}))["ok"]
        for page in tabs:
            await page.expect_texts(["hi all"])
            await expect(page.badge(lobby)).to_be_hidden(timeout=WAIT_MS)

        first, second = tabs
        await first.room(side).locator("button").click()
        await expect(first.page.locator("#room-title")).to_have_text(f"# {side}")
        await first.expect_texts(["psst"])
        await expect(first.users).to_have_text(["bob@example.com", ann], timeout=WAIT_MS)
        for page in tabs:
            await expect(page.badge(side)).to_be_hidden(timeout=WAIT_MS)
        await expect(second.page.locator("#room-title")).to_have_text(f"# {lobby}")

        # A message to the room shown is marked read as it arrives (as the server keeps it).
        assert (await bob.call("send_message", {"roomId": side, "text": "still there?"}))["ok"]
        await first.expect_texts(["psst", "still there?"])
        await _wait_unread(url, ann, side, 0)
        await expect(second.badge(side)).to_be_hidden(timeout=WAIT_MS)
        await first.room(lobby).locator("button").click()
        await first.expect_texts(["hi all"])
    finally:
        await asyncio.gather(phone.close(), bob.close())


async def _wait_unread(url: str, email: str, room: str, unread: int) -> None:
    """Wait until the user's inbox, as another device of theirs sees it, has ``unread`` in
    ``room``: listed so, or told so by a later ``read_state``."""
    reader = await NativeClient().connect(url)
    try:
        # Naming the user attaches the connection to their stream before the listing.
        listed = await reader.call("get_rooms", {"email": email, "follow": False})
        assert listed["ok"], listed
        if {r["roomId"]: r["unread"] for r in listed["rooms"]}.get(room) == unread:
            return
        await reader.wait_for(
            lambda events: any(
                name == "read_state" and data["roomId"] == room and data["unread"] == unread
                for name, data in events
            ),
            WAIT_MS / 1000,
        )
    finally:
        await reader.close()


async def test_the_room_list_pages_and_follows_membership(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """52 rooms list as a page of 50 and one more; a room with a new message moves to the
    top with its badge; a room joined on another device appears at the top, a room
    unsubscribed there disappears."""
    stack = await page_stack()
    url, ann = stack.client_url, "ann@example.com"
    rooms = [unique_room("many") for _ in range(52)]
    phone, bob = NativeClient(), NativeClient()
    await phone.connect(url)
    await bob.connect(url)
    try:
        for room in rooms:
            assert (await phone.call("join", {"email": ann, "roomId": room}))["ok"]
        page = tabs[0]
        await page.enter(url, ann, rooms[-1])
        await expect(page.room_names).to_have_count(50)
        more = page.page.locator("#more-rooms")
        await more.click()
        await expect(page.room_names).to_have_count(52, timeout=WAIT_MS)
        await expect(more).to_be_hidden()
        assert sorted(await page.room_names.all_text_contents()) == sorted(
            f"# {room}" for room in rooms
        )

        assert (await bob.call("join", {"email": "bob@example.com", "roomId": rooms[5]}))["ok"]
        assert (await bob.call("send_message", {"roomId": rooms[5], "text": "up"}))["ok"]
        await expect(page.room_names.first).to_have_text(f"# {rooms[5]}", timeout=WAIT_MS)
        await expect(page.badge(rooms[5])).to_have_text("1")

        extra = unique_room("many")
        assert (await phone.call("join", {"email": ann, "roomId": extra}))["ok"]
        await expect(page.room_names.first).to_have_text(f"# {extra}", timeout=WAIT_MS)
        assert (await phone.call("unsubscribe", {"roomId": rooms[0]}))["removed"]
        await expect(page.room(rooms[0])).to_have_count(0, timeout=WAIT_MS)
        await expect(page.room_names).to_have_count(52)
    finally:
        await asyncio.gather(phone.close(), bob.close())


async def test_edits_deletes_and_reactions_show_on_every_page(
    page_stack: PageStack, tabs: list[ChatPage]
) -> None:
    """Ann edits and deletes her messages from one page and Bob reacts from his client: the
    other page shows each change live (the new text and "(edited)", the reaction counts
    with Ann's own marked, "message deleted"), and a page opened afterwards shows the same
    room from get_history."""
    stack = await page_stack()
    url, lobby, ann = stack.client_url, unique_room("lobby"), "ann@example.com"
    first, second = tabs
    for page in tabs:
        await page.enter(url, ann, lobby)
    await first.say("helo")
    await first.say("oops")
    for page in tabs:
        await page.expect_texts(["helo", "oops"])
    bob = await NativeClient().connect(url)
    try:
        assert (await bob.call("join", {"email": "bob@example.com", "roomId": lobby}))["ok"]
        assert (await bob.call("react", {"roomId": lobby, "seq": 1, "emoji": "🎉"}))["ok"]
        first.page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("hello")))
        await first.page.locator('#messages li[data-seq="1"] .act', has_text="edit").click()
        first.page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await first.page.locator('#messages li[data-seq="2"] .act', has_text="delete").click()
        await second.page.locator('#messages li[data-seq="1"] .reaction', has_text="🎉 1").click()
        for page in tabs:
            one, two = (page.page.locator(f'#messages li[data-seq="{n}"]') for n in (1, 2))
            await expect(one.locator(".text")).to_have_text("hello", timeout=WAIT_MS)
            await expect(one.locator(".edited")).to_be_visible()
            await expect(one.locator(".reaction.me")).to_have_text("🎉 2", timeout=WAIT_MS)
            await expect(two.locator(".text")).to_have_text("message deleted", timeout=WAIT_MS)
        events = await bob.call("get_history", {"roomId": lobby, "afterSeq": 0})
        kinds = sorted(str(e.get("kind")) for e in events["messages"])
        assert kinds == ["None", "None", "delete", "edit", "react", "react"]
    finally:
        await bob.close()
