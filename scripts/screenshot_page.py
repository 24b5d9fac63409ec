"""Save a screenshot of the web chat page with two users chatting (docs/chat-page.png).

    .venv/bin/python scripts/screenshot_page.py [--out docs/chat-page.png]

Starts a throw-away local stack (its own NATS, Redis and Postgres in a temporary directory,
development mode), makes Ann a member of two more rooms, opens the page twice in Debian's
Chromium (``make browser-deps``), has Ann and Bob exchange a few messages in ``lobby`` while
Cat writes in ``design``, and photographs Ann's tab (two unread in ``design``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import websockets
from playwright.async_api import Page, async_playwright, expect

from chat_devstack.ports import free_port
from chat_devstack.stack import Stack, StackConfig

CHROMIUM = os.environ.get("CHAT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CONVERSATION = [
    ("ann", "Morning! The chat page is served by the gateway now."),
    ("bob", "Nice. What happens when the gateway restarts?"),
    ("ann", "It shows reconnecting, resumes the session and resends anything queued."),
    ("bob", "And <b>markup</b> stays plain text."),
]


async def _native(url: str, email: str, room: str, texts: tuple[str, ...] = ()) -> None:
    """Join ``room`` as ``email`` on a native connection and send ``texts``, each acked."""
    events = [("join", {"email": email, "roomId": room})]
    events += [("send_message", {"roomId": room, "text": text}) for text in texts]
    async with websockets.connect(url.replace("http://", "ws://") + "/ws") as ws:
        for n, (event, data) in enumerate(events, start=1):
            await ws.send(json.dumps({"type": event, "id": n, "data": data}))
            while json.loads(await ws.recv()).get("id") != n:
                pass


async def _enter(page: Page, url: str, email: str) -> None:
    await page.goto(f"{url}/?room=lobby")
    await page.fill("#email", email)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")


async def shoot(out: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        config = StackConfig(
            data_dir=Path(data),
            gateway_port=port,
            extra_env={
                "GATEWAY_AUTH_MODE": "dev",
                "GATEWAY_ALLOWED_ORIGINS": json.dumps([url]),
            },
        )
        async with Stack(config), async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for room in ("design", "random"):
                await _native(url, "ann@example.com", room)
            pages = {}
            for name in ("ann", "bob"):
                context = await browser.new_context(viewport={"width": 1000, "height": 520})
                pages[name] = await context.new_page()
                await _enter(pages[name], url, f"{name}@example.com")
            for count, (name, text) in enumerate(CONVERSATION, start=1):
                await pages[name].fill("#text", text)
                await pages[name].press("#text", "Enter")
                await expect(pages["ann"].locator("#messages li")).to_have_count(count)
            await _native(url, "cat@example.com", "design", ("Mockups are up", "Comments welcome"))
            badge = pages["ann"].locator('#room-list li[data-room-id="design"] .badge')
            await expect(badge).to_have_text("2")
            await pages["ann"].screenshot(path=str(out))
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/chat-page.png"))
    asyncio.run(shoot(parser.parse_args().out))


if __name__ == "__main__":
    main()
