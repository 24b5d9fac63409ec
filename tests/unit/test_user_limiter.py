"""The gateway's per-user limiter over the session service's shared bucket, in process: the
limiter (gateway), the session handlers and the in-memory store (held to Redis' answers
by the contract suite, tests/contracts/session_store.py), with a clock the test moves."""

from __future__ import annotations

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


async def test_a_lease_spares_the_round_trip_for_the_events_it_covers() -> None:
    service = _service(Clock(), rate=1, burst=100)
    limiter = UserLimiter(service.take, lease=10)
    for _ in range(25):
        assert await limiter.admit("ann@example.com") is None
    assert service.takes == 3


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
