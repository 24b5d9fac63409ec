"""Talking to the backend over NATS: connect once with a short timeout, ask, gather.

Every failure becomes a :class:`CtlError` whose message is the one line ``chatctl`` prints;
a refusal by the service (an error reply) is a :class:`RemoteError` carrying its code.

``chatctl`` logs in as the ``operator`` identity (:mod:`chat_common.buspermissions`): it may
ask the services' read endpoints and ``$SRV`` discovery, and drain a gateway; nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from chat_common.buscredentials import public_key, read_seed
from chat_common.buspermissions import inbox_prefix
from chat_common.errors import ChatError
from chat_common.natsio import call

__all__ = ["IDENTITY", "CtlError", "RemoteError", "connected", "gather", "login", "request"]

IDENTITY = "operator"
"""The NATS identity ``chatctl`` uses."""


class CtlError(Exception):
    """Something the operator must be told in one line (``chatctl`` exits 2)."""


class RemoteError(CtlError):
    """The service answered with an error reply (a stable code, e.g. ``NOT_FOUND``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return "timed out"
    return str(exc).strip() or type(exc).__name__


async def _ignore(*_args: object) -> None:
    """Connection callbacks: ``chatctl`` reports failures itself, once."""


def login(seed_file: Path | None, seed: str | None) -> dict[str, str]:
    """``nats.connect`` options for the operator's NKey seed (a file, or the seed itself);
    none: connect without authentication."""
    if seed_file is not None and seed:
        raise CtlError("give the NKey seed or its file, not both")
    try:
        if seed_file is not None:
            return {"nkeys_seed_str": read_seed(seed_file)}
        if seed:
            public_key(seed)
            return {"nkeys_seed_str": seed}
    except OSError as exc:
        raise CtlError(f"cannot read the NKey seed file {seed_file}: {exc.strerror}") from None
    except ValueError:
        raise CtlError("the NKey seed given is not an NKey user seed") from None
    return {}


@asynccontextmanager
async def connected(
    url: str, *, timeout: float, credentials: Mapping[str, str] | None = None
) -> AsyncIterator[Client]:
    """A NATS connection for one command: no reconnects, closed at the end.

    ``credentials`` are :func:`login`'s options; replies come back on the operator's own
    inbox prefix.
    """
    failures: list[Exception] = []

    async def failed(exc: Exception) -> None:
        failures.append(exc)

    try:
        # nats-py retries a failed first connect forever with max_reconnect_attempts=0;
        # 1 means one retry after reconnect_time_wait, then NoServersError.
        nc = await asyncio.wait_for(
            nats.connect(
                servers=[s.strip() for s in url.split(",")],
                name="chatctl",
                connect_timeout=timeout,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.05,
                error_cb=failed,
                disconnected_cb=_ignore,
                closed_cb=_ignore,
                inbox_prefix=inbox_prefix(IDENTITY),
                **(credentials or {}),
            ),
            2 * timeout + 0.5,
        )
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        cause = failures[-1] if failures else exc
        if "authorization violation" in str(cause).lower():
            how = "refused these credentials" if credentials else "requires credentials"
            raise CtlError(
                f"NATS at {url} {how} (authorization violation); chatctl logs in with the "
                "operator's NKey seed: --nkey-seed-file or $CHATCTL_NATS_NKEY_SEED_FILE"
            ) from None
        raise CtlError(f"cannot reach NATS at {url}: {_reason(cause)}") from None
    try:
        yield nc
    finally:
        await nc.close()


async def request(nc: Client, subject: str, payload: bytes, *, timeout: float, what: str) -> bytes:
    """Request/reply (the services' own :func:`chat_common.natsio.call`, so the trace context
    travels along); ``what`` names the responder in error messages (``no gateway …``)."""
    try:
        return await call(nc, subject, payload, timeout=timeout)
    except ChatError as exc:
        cause = exc.__cause__
        if isinstance(cause, nats.errors.NoRespondersError):
            raise CtlError(f"no {what} answers on {subject}") from None
        if isinstance(cause, TimeoutError | nats.errors.TimeoutError):
            if f'violation for publish to "{subject}"' in str(nc.last_error or ""):
                raise CtlError(f"NATS does not let this identity request {subject}") from None
            raise CtlError(f"{what} did not answer on {subject} within {timeout:g}s") from None
        if isinstance(cause, nats.errors.Error):
            raise CtlError(f"request on {subject} failed: {_reason(cause)}") from None
        raise RemoteError(exc.code.value, exc.message) from None
    except nats.errors.Error as exc:
        raise CtlError(f"request on {subject} failed: {_reason(exc)}") from None


async def gather(
    nc: Client, subject: str, *, first_s: float, quiet_s: float = 0.5, max_s: float = 10.0
) -> list[bytes]:
    """Publish ``subject`` with a reply inbox and collect every reply: wait up to
    ``first_s`` for the first, then until ``quiet_s`` pass without one (``max_s`` in all)."""
    replies: list[bytes] = []
    arrived = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        replies.append(msg.data)
        arrived.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    try:
        await nc.publish(subject, b"", reply=inbox)
        while (remaining := deadline - loop.time()) > 0:
            arrived.clear()
            try:
                await asyncio.wait_for(
                    arrived.wait(), min(quiet_s if replies else first_s, remaining)
                )
            except TimeoutError:
                break
    finally:
        await sub.unsubscribe()
    return replies
