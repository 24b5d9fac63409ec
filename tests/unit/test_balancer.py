"""The balancer's pure round-robin choice of which backends to try, in which order."""

from __future__ import annotations

from chat_devstack.balancer import RoundRobin

A, B, C = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)


def test_each_call_starts_one_backend_further() -> None:
    """Successive orders rotate, so first choices spread evenly over the backends."""
    rr = RoundRobin([A, B, C])
    orders = [rr.next_order() for _ in range(4)]
    assert orders == [[A, B, C], [B, C, A], [C, A, B], [A, B, C]]


def test_order_lists_every_backend_once_as_fallbacks() -> None:
    """Every order holds each backend exactly once, so a failed connect can try the rest."""
    rr = RoundRobin([A, B, C])
    for _ in range(6):
        order = rr.next_order()
        assert sorted(order) == [A, B, C]


def test_single_backend_is_always_first() -> None:
    """With one backend every order is just that backend."""
    rr = RoundRobin([A])
    assert [rr.next_order() for _ in range(3)] == [[A], [A], [A]]


def test_no_backends_gives_an_empty_order() -> None:
    """Without backends there is nothing to try, and that is not an error."""
    assert RoundRobin().next_order() == []
    assert RoundRobin([]).next_order() == []


def test_set_backends_keeps_rotating_over_the_new_list() -> None:
    """Replacing the backends continues the rotation within the new list's length."""
    rr = RoundRobin([A, B, C])
    rr.next_order()
    rr.next_order()
    rr.set_backends([A, B])
    assert rr.backends == (A, B)
    assert [rr.next_order()[0] for _ in range(4)] == [A, B, A, B]


def test_set_backends_to_empty_and_back() -> None:
    """Emptying the list yields empty orders; new backends are used again afterwards."""
    rr = RoundRobin([A, B])
    rr.set_backends([])
    assert rr.next_order() == []
    rr.set_backends([C])
    assert rr.next_order() == [C]


def test_backends_are_copied() -> None:
    """Mutating the caller's list later does not change the balancer's backends."""
    backends = [A, B]
    rr = RoundRobin(backends)
    backends.append(C)
    assert rr.backends == (A, B)
