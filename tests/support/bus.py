"""Connecting to a test NATS as one of the system's identities, and watching its refusals.

Every test NATS runs with authorization (``chat_devstack.nats_server``), so a test that talks
to the bus itself logs in as the identity whose permissions it needs (the operator for
discovery and status, a service's identity to play that service), never as a superuser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from chat_common.buspermissions import inbox_prefix

__all__ = ["Refusals", "connect_as", "subject_matches"]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


class Refusals:
    """The errors NATS reported to one connection (``error_cb``): permission violations
    arrive asynchronously, after the publish or subscribe that caused them."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._changed = asyncio.Event()

    async def record(self, exc: Exception) -> None:
        """The ``error_cb`` to give ``nats.connect``."""
        self.errors.append(str(exc))
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 5.0) -> str:
        """The first error containing ``text`` (case-insensitive), waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for error in self.errors:
                    if text.lower() in error.lower():
                        return error
                self._changed.clear()
                await self._changed.wait()


async def connect_as(
    url: str,
    seed_files: Mapping[str, Path],
    identity: str,
    *,
    refusals: Refusals | None = None,
    **options: Any,
) -> Client:
    """A connection logged in as ``identity`` (its seed file from ``seed_files``), with its
    own inbox prefix as the services use; ``refusals`` collects what NATS refuses."""

    async def ignore(_exc: Exception) -> None:
        pass

    return await nats.connect(
        url,
        nkeys_seed=str(seed_files[identity]),
        inbox_prefix=inbox_prefix(identity),
        error_cb=refusals.record if refusals else ignore,
        **options,
    )
