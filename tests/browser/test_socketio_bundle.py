"""The official socket.io-client browser bundle, with its default options, in Chromium, on a
page served from another origin that the gateway allows: it connects over long-polling
(cross-origin, so through CORS), chats, and recovers its session after a gateway restart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from chat_devstack.ports import free_port
from tests.conftest import MakeStack
from tests.support.clients import SioClient, unique_room

pytestmark = pytest.mark.integration

BUNDLE = (
    Path(__file__).resolve().parents[1] / "js/node_modules/socket.io-client/dist/socket.io.min.js"
)
WAIT_MS = 30_000
PAGE = """<!doctype html>
<meta charset="utf-8">
<script src="/socket.io.min.js"></script>
<ul id="log"></ul>
<script>
  const params = new URLSearchParams(location.search);
  const socket = io(params.get("gateway"), { reconnectionDelay: 200, reconnectionDelayMax: 1000 });
  const log = (kind, text) => {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    li.textContent = text;
    document.getElementById("log").append(li);
  };
  let joined = false;
  socket.on("connect", async () => {
    log("connect", JSON.stringify({ recovered: socket.recovered,
                                    transport: socket.io.engine.transport.name }));
    if (!joined) {
      const reply = await socket.emitWithAck("join", { email: "page@example.com",
                                                       roomId: params.get("room") });
      joined = reply.ok;
      log("joined", String(reply.ok));
      const sent = await socket.emitWithAck("send_message", { roomId: params.get("room"),
                                                              text: "from the page" });
      log("sent", String(sent.ok));
    }
  });
  socket.on("new_message", (message) => log("message", message.text));
  socket.on("connect_error", (err) => log("connect_error", String(err)));
</script>
"""


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    """A web server on another port (so another origin) serving the page and the bundle."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def bundle(_: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE)

    app.router.add_get("/", page)
    app.router.add_get("/socket.io.min.js", bundle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_browser_bundle_with_defaults_chats_and_recovers(
    make_stack: MakeStack, browser: Browser, page_origin: str
) -> None:
    env = {
        "GATEWAY_ALLOWED_ORIGINS": json.dumps([page_origin]),
        "GATEWAY_SESSION_HEARTBEAT_S": "0.5",
    }
    stack = await make_stack(env=env)
    room = unique_room("bundle")
    other = await SioClient().connect(stack.client_url)
    context = await browser.new_context()
    try:
        await other.call("join", {"email": "py@example.com", "roomId": room})
        page = await context.new_page()
        await page.goto(f"{page_origin}/?gateway={stack.client_url}&room={room}")
        sent = page.locator('#log li[data-kind="sent"]')
        await expect(sent).to_have_text(["true"], timeout=WAIT_MS)
        first = json.loads(await page.locator('#log li[data-kind="connect"]').first.inner_text())
        assert first["recovered"] is False  # on polling, or already upgraded
        assert first["transport"] in ("polling", "websocket")
        (message,) = await other.wait_messages(room, 1)
        assert message["text"] == "from the page"
        await other.call("send_message", {"roomId": room, "text": "to the page"})
        messages = page.locator('#log li[data-kind="message"]')
        await expect(messages).to_have_text(["from the page", "to the page"], timeout=WAIT_MS)

        assert await page.locator('#log li[data-kind="connect_error"]').count() == 0
        gateway = stack.of_kind("gateway")[0]
        await gateway.kill()
        await gateway.start()
        await gateway.wait_ready(timeout=30)
        connects = page.locator('#log li[data-kind="connect"]')
        await expect(connects).to_have_count(2, timeout=WAIT_MS)
        again = json.loads(await connects.nth(1).inner_text())
        assert again["recovered"] is True
        other = await SioClient().connect(stack.client_url)
        await other.call("join", {"email": "py2@example.com", "roomId": room})
        await other.call("send_message", {"roomId": room, "text": "after the restart"})
        await expect(messages).to_have_text(
            ["from the page", "to the page", "after the restart"], timeout=WAIT_MS
        )
        assert await page.locator('#log li[data-kind="joined"]').count() == 1
    finally:
        await context.close()
        await other.close()
