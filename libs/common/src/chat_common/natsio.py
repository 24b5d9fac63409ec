"""NATS plumbing: connecting for the long run, calling endpoints, serving endpoints.

* :func:`connect` keeps trying until NATS answers (or shutdown starts) and configures
  unlimited reconnects, so an outage of any length never kills a service. It logs in as the
  service's own identity (:func:`nats_login`: an NKey seed from settings; replies come back
  on the identity's own inbox prefix), or, with no credentials configured, connects without
  authentication (a warning says so), which only a NATS without authorization accepts.
* :func:`call` sends a request and turns every failure into a :class:`ChatError`
  (``UNAVAILABLE`` for no responders and timeouts; the responder's code otherwise).
* :func:`serve` exposes handlers as ``nats.micro`` endpoints in a queue group, each request
  handled in its own tracked task behind an error boundary: a handler's exception becomes a
  stable error code in the reply, never a ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats
import nats.errors
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request
from nats.micro.service import EndpointConfig, EndpointStats, Service
from opentelemetry.context import Context
from opentelemetry.trace import Link, StatusCode
from opentelemetry.util.types import AttributeValue

from chat_common.backoff import Backoff
from chat_common.boundary import guarded
from chat_common.buscredentials import public_key, read_seed
from chat_common.buspermissions import inbox_prefix
from chat_common.errors import ChatError, ErrorCode, Unavailable
from chat_common.metrics import NATS_REQUEST_SECONDS
from chat_common.natsclient import CoalescingClient
from chat_common.settings import ServiceSettings
from chat_common.supervisor import InFlight
from chat_common.tracing import (
    SpanKind,
    extract_context,
    inject_headers,
    messaging_attributes,
    tracer,
)

__all__ = [
    "Handler",
    "NatsLogin",
    "Publish",
    "Publisher",
    "call",
    "connect",
    "nats_login",
    "publish",
    "serve",
    "traced_publish",
]

_log = logging.getLogger("chat.nats")
_tracer = tracer("chat.nats")

Handler = Callable[[bytes], Awaitable[bytes]]
"""An endpoint handler: request body in, reply body out; raises ChatError to refuse."""
Publish = Callable[[str, bytes], Awaitable[None]]
"""Publish ``payload`` on ``subject`` (``nc.publish``, or a test double of the same shape)."""


class Publisher(Protocol):
    """What :func:`publish` needs of a bus connection: a NATS client has it, and so has the
    in-memory bus of the in-process test harness."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class NatsLogin:
    """How a service authenticates: ``nats.connect`` options (never shown: they may hold the
    seed) and the identity's public key (``None``: no credentials, anonymous)."""

    options: Mapping[str, str] = field(repr=False)
    public_key: str | None


def nats_login(settings: ServiceSettings) -> NatsLogin:
    """The service's NATS credentials from ``settings``, checked now so a bad one stops the
    start; ``ValueError`` (whose message never quotes a seed) when unusable.

    A seed file is read once, here: every reconnect of this process logs in with the seed it
    started with. (Given the path, nats-py would sign with whatever the file holds at each
    reconnect but still present the public key of the first, so a file replaced under a
    running service would lock it out.) A rotated seed takes effect at the next start.
    """
    path, seed = settings.nats_nkey_seed_file, settings.nats_nkey_seed
    if path is not None and seed is not None:
        raise ValueError("set the NKey seed or the seed file, not both")
    if path is not None:
        try:
            from_file = read_seed(path)
        except OSError as exc:
            raise ValueError(f"cannot read the NKey seed file {path}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"{path} holds no NKey user seed") from None
        return NatsLogin({"nkeys_seed_str": from_file}, public_key(from_file))
    if seed is not None:
        try:
            public = public_key(seed.get_secret_value())
        except ValueError:
            raise ValueError("the NKey seed is not an NKey user seed") from None
        return NatsLogin({"nkeys_seed_str": seed.get_secret_value()}, public)
    return NatsLogin({}, None)


async def connect(
    settings: ServiceSettings,
    *,
    name: str,
    stopping: asyncio.Event,
    on_state: Callable[[bool], None] = lambda _up: None,
    login: NatsLogin | None = None,
) -> Client:
    """Connect to NATS, retrying with jittered backoff until it works or ``stopping`` is set.

    ``on_state(True/False)`` is called on every (re)connect and disconnect. ``name`` is the
    service, whose identity's inbox prefix replies use; ``login`` defaults to
    :func:`nats_login` of ``settings``. Refused credentials are retried like an outage (the
    server's users may be about to change, as in a rotation), and logged as errors.
    """
    login = login or nats_login(settings)
    if login.public_key is None:
        _log.warning(
            "no NATS credentials configured: connecting without authentication, which only "
            "a NATS server without authorization accepts"
        )
    else:
        _log.info("NATS identity", extra={"identity": name, "public_key": login.public_key})

    async def disconnected() -> None:
        _log.warning("NATS disconnected")
        on_state(False)

    async def reconnected() -> None:
        _log.info("NATS reconnected")
        on_state(True)

    backoff = Backoff(0.1, cap_s=5.0)
    while True:
        try:
            nc = CoalescingClient()
            options: dict[str, Any] = {
                "servers": settings.nats_url.split(","),
                "name": f"{name}:{settings.instance_id}",
                "connect_timeout": settings.nats_connect_timeout_s,
                "allow_reconnect": True,
                "max_reconnect_attempts": -1,
                "reconnect_time_wait": settings.nats_reconnect_wait_s,  # float seconds work
                "ping_interval": settings.nats_ping_interval_s,
                "max_outstanding_pings": 2,
                "disconnected_cb": disconnected,
                "reconnected_cb": reconnected,
                "error_cb": _on_error,
                "inbox_prefix": inbox_prefix(name),
                **login.options,
            }
            await nc.connect(**options)
            on_state(True)
            return nc
        except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
            _log.warning("NATS not reachable yet; retrying", extra={"error": type(exc).__name__})
        except nats.errors.Error as exc:  # 'Authorization Violation' and other server refusals
            _log.error("NATS refused the connection; retrying", extra={"detail": str(exc)})
        if stopping.is_set():
            raise Unavailable("shutdown before NATS became reachable")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff.next())


async def _on_error(exc: Exception) -> None:
    detail = str(exc)
    # A refused publish or subscription is a bug or a wrong permission table: never routine.
    refused = "violation" in detail.lower()
    _log.log(
        logging.ERROR if refused else logging.WARNING,
        "NATS refused an operation" if refused else "NATS client error",
        extra={"error": type(exc).__name__, "detail": detail},
    )


async def publish(
    nc: Publisher,
    subject: str,
    payload: bytes,
    *,
    context: Context | None = None,
    links: Sequence[Link] = (),
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Publish as a producer span (in ``context``'s trace, or the current one), carrying
    the trace context in the headers, so that receivers continue the trace."""
    with _tracer.start_as_current_span(
        f"send {subject}",
        context=context,
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=lambda: {**messaging_attributes(subject, "send"), **(attributes or {})},
    ):
        await nc.publish(subject, payload, headers=inject_headers() or None)


def traced_publish(nc: Publisher) -> Publish:
    """:func:`publish` on ``nc``, as a :data:`Publish` callable."""

    async def publish_on(subject: str, payload: bytes) -> None:
        await publish(nc, subject, payload)

    return publish_on


async def call(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """Request/reply with errors mapped to :class:`ChatError`; the trace context travels along."""
    with _tracer.start_as_current_span(
        f"send {subject}",
        kind=SpanKind.PRODUCER,
        attributes=lambda: messaging_attributes(subject, "send"),
    ) as span:
        started = time.perf_counter()
        try:
            reply = await _request(nc, subject, payload, timeout=timeout, headers=headers)
        except ChatError as exc:
            NATS_REQUEST_SECONDS.labels(subject, exc.code.value).observe(
                time.perf_counter() - started
            )
            span.set_attribute("chat.error.code", exc.code.value)
            if exc.code is not ErrorCode.NOT_FOUND:
                span.set_status(StatusCode.ERROR, exc.code.value)
            raise
        NATS_REQUEST_SECONDS.labels(subject, "OK").observe(time.perf_counter() - started)
        return reply


async def _request(
    nc: Client, subject: str, payload: bytes, *, timeout: float, headers: Mapping[str, str] | None
) -> bytes:
    try:
        msg = await nc.request(
            subject, payload, timeout=timeout, headers=inject_headers(dict(headers or {})) or None
        )
    except nats.errors.NoRespondersError as exc:
        raise Unavailable("no instance is serving this request") from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise Unavailable("request timed out") from exc
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
        raise Unavailable("message bus unavailable") from exc
    if msg.headers and (code := msg.headers.get(ERROR_CODE_HEADER)):
        raise ChatError(code, msg.headers.get(ERROR_HEADER, ""))
    return msg.data


async def serve(
    nc: Client,
    *,
    name: str,
    version: str,
    instance_id: str,
    endpoints: Mapping[str, Handler],
    subject: Callable[[str], str],
    inflight: InFlight,
    accepting: Callable[[], bool] = lambda: True,
) -> Service:
    """Register a micro service; ``endpoints`` maps endpoint name → handler, and each
    endpoint listens on ``subject(name)`` (e.g. :func:`chat_common.subjects.session_endpoint`),
    so a name is spelled once.

    Every endpoint joins the queue group ``name`` so instances share the load.

    ``$SRV.STATS`` replies carry, as each endpoint's ``data``, ``accepting`` (whether the
    instance wants traffic) and the endpoint's own ``requests``, ``errors`` (error replies)
    and ``averageMs``: nats.micro's counters only see the handoff to the request's task,
    so they count no errors and time only that handoff.
    """
    meters = {endpoint: _Meter() for endpoint in endpoints}

    def stats(endpoint: EndpointStats) -> dict[str, object]:
        meter = meters.get(endpoint.name)
        return {"accepting": accepting(), **(meter.data() if meter else {})}

    service = await add_service(
        nc,
        name=name,
        version=version,
        metadata={"instance": instance_id},
        queue_group=name,
        stats_handler=stats,
    )
    for endpoint, handler in endpoints.items():
        await service.add_endpoint(
            EndpointConfig(
                name=endpoint,
                subject=subject(endpoint),
                handler=_bounded(endpoint, handler, inflight, meters[endpoint]),
            )
        )
    return service


class _Meter:
    """Requests, error replies and handling time of one endpoint."""

    __slots__ = ("errors", "requests", "total_s")

    def __init__(self) -> None:
        self.requests = self.errors = 0
        self.total_s = 0.0

    def data(self) -> dict[str, object]:
        average = self.total_s / self.requests * 1e3 if self.requests else 0.0
        return {"requests": self.requests, "errors": self.errors, "averageMs": round(average, 3)}


def _bounded(
    endpoint: str, handler: Handler, inflight: InFlight, meter: _Meter
) -> Callable[[Request], Awaitable[None]]:
    async def on_request(request: Request) -> None:
        await inflight.spawn(_answer(endpoint, handler, request, meter), name=f"nats:{endpoint}")

    return on_request


async def _answer(endpoint: str, handler: Handler, request: Request, meter: _Meter) -> None:
    started = time.perf_counter()
    try:
        await _answer_one(endpoint, handler, request, meter)
    finally:
        meter.requests += 1
        meter.total_s += time.perf_counter() - started


async def _answer_one(endpoint: str, handler: Handler, request: Request, meter: _Meter) -> None:
    subject = request.subject
    with _tracer.start_as_current_span(
        f"process {subject}",
        context=extract_context(request.headers),
        kind=SpanKind.CONSUMER,
        attributes=lambda: messaging_attributes(subject, "process"),
    ):
        outcome = await guarded(
            lambda: handler(request.data), what="endpoint", log_extra={"endpoint": endpoint}
        )
    if isinstance(outcome, ChatError):
        meter.errors += 1
        await _respond_error(request, outcome.code.value, outcome.message)
        return
    try:
        await request.respond(outcome)
    except Exception:
        _log.exception("could not send reply", extra={"endpoint": endpoint})


async def _respond_error(request: Request, code: str, message: str) -> None:
    try:
        await request.respond_error(code, message)
    except Exception:
        _log.exception("could not send error reply", extra={"code": code})
