"""The fault proxy's pure part: what each mode does with a chunk, an end and a connection."""

from __future__ import annotations

import pytest

from tests.support.faultproxy import BLACKHOLE, PASS, RESET, FaultProxy, latency, slow_close


def test_pass_delivers_a_chunk_as_soon_as_it_arrives() -> None:
    """In pass mode a chunk is due the moment it arrived."""
    assert PASS.forwards and not PASS.resets
    assert PASS.due_at(12.5) == 12.5


def test_latency_delays_each_chunk_from_its_own_arrival() -> None:
    """Latency adds the same delay to every chunk's arrival time, so order is kept and
    chunks are not delayed cumulatively."""
    mode = latency(0.1)
    assert mode.forwards
    assert [mode.due_at(t) for t in (1.0, 1.01, 1.02)] == pytest.approx([1.1, 1.11, 1.12])


def test_blackhole_and_reset_deliver_nothing() -> None:
    """A blackholed or reset link never makes a chunk due; only reset aborts connections."""
    assert BLACKHOLE.due_at(1.0) is None and not BLACKHOLE.forwards and not BLACKHOLE.resets
    assert RESET.due_at(1.0) is None and RESET.resets


def test_slow_close_holds_ends_but_not_data() -> None:
    """Slow close passes data at once and only holds ends (FIN or RST)."""
    mode = slow_close(3.0)
    assert mode.due_at(5.0) == 5.0
    assert mode.close_hold_s == 3.0
    assert PASS.close_hold_s == 0.0


def test_negative_durations_are_refused() -> None:
    """A negative latency or hold is a mistake in the test, not a mode."""
    with pytest.raises(ValueError, match="latency"):
        latency(-1)
    with pytest.raises(ValueError, match="hold"):
        slow_close(-0.5)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:{port}"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:{port}/0"),
        (
            "postgresql://postgres@127.0.0.1:5432/chat_1",
            "postgresql://postgres@127.0.0.1:{port}/chat_1",
        ),
        (
            "postgresql://u:p%40ss@localhost:5432/db?x=1",
            "postgresql://u:p%40ss@127.0.0.1:{port}/db?x=1",
        ),
    ],
)
def test_url_keeps_everything_but_host_and_port(target: str, expected: str) -> None:
    """Clients get the target URL with only the address swapped for the proxy's."""
    proxy = FaultProxy(target)
    assert proxy.url == expected.format(port=proxy.port)
    assert proxy.upstream[1] in (4222, 6379, 5432)


def test_target_without_a_port_is_refused() -> None:
    """The proxy needs to know exactly where to connect."""
    with pytest.raises(ValueError, match="port"):
        FaultProxy("nats://127.0.0.1")
