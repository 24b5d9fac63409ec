"""Fixtures for the browser tests: one headless Chromium for the session (Debian's package,
``make browser-deps`` installs it; Playwright's own browser downloads are not used), and
private stacks whose gateway origin the page may connect from."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from playwright.async_api import Browser, async_playwright

from chat_devstack.errors import DevstackError
from chat_devstack.ports import free_port
from chat_devstack.stack import Stack
from tests.conftest import MakeStack

CHROMIUM = os.environ.get("CHAT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)

PageStack = Callable[..., Awaitable[Stack]]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser-deps` (or set CHAT_CHROMIUM)")
    async with async_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
def page_stack(make_stack: MakeStack) -> PageStack:
    """``make_stack`` on a port picked up front, so the page's origin can be allowed.

    Gateways take that port and the next free ones above it; the origins of a few ports
    above it are allowed too, for stacks of more than one gateway."""

    async def make(*, gateways: int = 1, env: dict[str, str] | None = None) -> Stack:
        for attempt in range(3):
            port = free_port()
            origins = [f"http://127.0.0.1:{p}" for p in range(port, port + 4 * gateways)]
            try:
                return await make_stack(
                    gateways=gateways,
                    gateway_port=port,
                    env={"GATEWAY_ALLOWED_ORIGINS": json.dumps(origins), **(env or {})},
                )
            except DevstackError as exc:
                # The port was free when picked, but another process may bind it first.
                if attempt == 2 or "in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    return make
