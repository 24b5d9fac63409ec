"""The gateway's per-user limiter over the session service's shared bucket, in process: the
limiter (gateway), the session handlers and the in-memory store (held to Redis' answers
by the contract suite, tests/contracts/session_store.py), with a clock the test moves."""

from __future__ import annotations

import asyncio

from chat_common.errors import ErrorCode
from chat_common.schemas import TakeRequest, TakeResponse, decode, encode
from chat_gateway.userlimit import UserLimiter
from chat_session.handlers import SessionHandlers
from chat_session.memorystore import InMemorySessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class SessionService:
    """What a gateway's backend asks of the session service for rate limiting: ``take``,
    answered by the real handler. Counts the round trips."""

    def __init__(self, handlers: SessionHandlers) -> None:
        self._handlers = handlers
        self.takes = 0

    async def take(self, req: TakeRequest) -> TakeResponse:
        self.takes += 1
        return decode(await self._handlers.take(encode(req)), TakeResponse)


def _service(clock: Clock, *, rate: float, burst: float) -> SessionService:
    async def publish(_subject: str, _payload: bytes) -> None:
        return None

    handlers = SessionHandlers(
        InMemorySessionStore(), publish, resume_window_s=10, heartbeat_ttl_s=5,
        user_rate_per_s=rate, user_rate_burst=burst, clock=clock,
    )  # fmt: skip
    return SessionService(handlers)


async def _settled(limiter: UserLimiter) -> None:
    """Until the limiter's background refills are answered (in process: a few loop turns)."""
    while limiter._refills:
        await asyncio.gather(*limiter._refills)


async def test_a_steady_sender_waits_for_one_lease_and_then_never_again() -> None:
    """Only the first event waits for the session service; each later lease is asked for in
    the background once half of the last is spent: one request per ten events here."""
    clock = Clock()
    service = _service(clock, rate=1, burst=1000)
    limiter = UserLimiter(service.take, lease=10, clock=lambda: clock.now / 1000)
    waited = 0
    for _ in range(100):
        before = service.takes
        assert await limiter.admit("ann@example.com") is None
        waited += service.takes > before  # a take answered inside admit: the event waited
        await _settled(limiter)
        clock.now += 100
    assert waited == 1
    assert 10 <= service.takes <= 11


async def test_a_refused_user_is_refused_here_until_the_retry_time_without_asking() -> None:
    clock = Clock()
    service = _service(clock, rate=1, burst=3)
    limiter = UserLimiter(service.take, lease=10, clock=lambda: clock.now / 1000)
    answers = [await limiter.admit("flood@example.com") for _ in range(3)]
    assert answers == [None, None, None]
    takes = service.takes
    refusals = [await limiter.admit("flood@example.com") for _ in range(1000)]
    await _settled(limiter)
    assert all(r is not None and r.code is ErrorCode.RATE_LIMITED for r in refusals)
    # the refill asked for at half the lease, and the take of the first refused event
    assert service.takes - takes <= 2, "a flood costs no request per event"
    clock.now += 1000  # the shared bucket refilled one token; the refusal has run out
    assert await limiter.admit("flood@example.com") is None


async def test_across_two_gateways_admissions_stay_within_the_stated_tolerance() -> None:
    """A user flooding through two gateways for 20 s: admitted at most the bucket's
    allowance plus 1.5 leases per gateway, and at least it minus one lease per gateway
    (tokens leased but unspent when the run ends)."""
    clock = Clock()
    rate, burst, lease = 30, 60, 10
    service = _service(clock, rate=rate, burst=burst)
    gateways = [
        UserLimiter(service.take, lease=lease, clock=lambda: clock.now / 1000) for _ in range(2)
    ]
    admitted = 0
    for step in range(20_000):  # one event per ms, alternating gateways
        admitted += await gateways[step % 2].admit("busy@example.com") is None
        if step % 7 == 0:
            await _settled(gateways[step % 2])
        clock.now += 1
    allowance = burst + rate * 20
    assert allowance - 2 * lease <= admitted <= allowance + 2 * 1.5 * lease, (admitted, allowance)


async def test_an_unspent_lease_lapses_after_its_time() -> None:
    clock = Clock()
    service = _service(clock, rate=0.001, burst=20)
    limiter = UserLimiter(service.take, lease=10, ttl_s=10, clock=lambda: clock.now / 1000)
    assert await limiter.admit("idle@example.com") is None
    assert service.takes == 1
    clock.now += 10_001
    assert await limiter.admit("idle@example.com") is None
    assert service.takes == 2, "the lapsed lease's tokens are not spent; a new lease is taken"


async def test_a_users_budget_is_shared_by_every_gateway_and_refused_with_a_retry_time() -> None:
    clock = Clock()
    service = _service(clock, rate=2, burst=6)
    gateways = [UserLimiter(service.take, lease=2) for _ in range(2)]
    admitted = [await gateways[n % 2].admit("bob@example.com") is None for n in range(10)]
    assert admitted.count(True) == 6
    refusal = await gateways[0].admit("bob@example.com")
    assert refusal is not None and refusal.code is ErrorCode.RATE_LIMITED
    assert refusal.retry_after_ms is not None and 0 < refusal.retry_after_ms <= 500
    assert await gateways[1].admit("carol@example.com") is None  # another user's budget
