"""Which packets between test hosts are dropped, lost or delayed (pure, no I/O).

Test hosts (:mod:`chat_devstack.hosts`) are network namespaces on one bridge, each with its
own address; the machine's own namespace (where the tests and their clients run) is a host
too, at the bridge's address. A :class:`LinkPlan` holds the faults in force, each on one
direction of one pair of addresses:

* a **cut**: every packet from ``src`` to ``dst`` is dropped, silently (no RST, no ICMP),
  as when a switch or a firewall between them fails;
* a **degraded** link: a share of the packets is lost, the rest delayed (with jitter, which
  reorders them).

:meth:`LinkPlan.firewall` turns the plan into the ``iptables`` rules of one host's own
chains. A fault is enforced inside a namespace, never in the machine's own: at the
receiving host (its ``INPUT``, matched on the source) when it is a namespace, else at the
sending one (``OUTPUT``, matched on the destination). Delays go through an NFQUEUE to a
delayer process (:mod:`chat_devstack.delayer`), one queue per distinct delay in a host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["CHAINS", "Degraded", "Firewall", "LinkPlan", "Queue"]

CHAINS = {"INPUT": "CHAT-IN", "OUTPUT": "CHAT-OUT"}
"""Our chains, jumped to from the built-in ones; healing flushes them."""


@dataclass(frozen=True, slots=True)
class Degraded:
    """A link that loses ``loss`` (0 to 1) of its packets and delays the rest."""

    loss: float = 0.0
    delay_ms: int = 0
    jitter_ms: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.loss <= 1:
            raise ValueError("loss is a share between 0 and 1")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.jitter_ms > self.delay_ms:
            raise ValueError("delays are >= 0 and the jitter at most the delay")

    @property
    def delays(self) -> bool:
        return self.delay_ms > 0


@dataclass(frozen=True, slots=True)
class Queue:
    """An NFQUEUE of one host and the delay its delayer applies."""

    number: int
    delay_ms: int
    jitter_ms: int


@dataclass(slots=True)
class Firewall:
    """One host's rules: ``iptables`` arguments after ``-A <chain>``, by our chain name,
    and the queues whose delayers must run."""

    rules: dict[str, list[list[str]]] = field(
        default_factory=lambda: {c: [] for c in CHAINS.values()}
    )
    queues: list[Queue] = field(default_factory=list)


class LinkPlan:
    """The faults in force between addresses; ``outside`` is the address that is not a
    namespace (the machine's own, where rules are never put)."""

    QUEUE_BASE = 100

    def __init__(self, *, outside: str) -> None:
        self.outside = outside
        self._cut: set[tuple[str, str]] = set()
        self._degraded: dict[tuple[str, str], Degraded] = {}

    def cut(self, a: Iterable[str], b: Iterable[str], *, both_ways: bool = True) -> None:
        """Drop every packet from each of ``a`` to each of ``b`` (and back, ``both_ways``)."""
        for pair in _pairs(a, b, both_ways):
            self._cut.add(pair)

    def degrade(
        self, a: Iterable[str], b: Iterable[str], link: Degraded, *, both_ways: bool = True
    ) -> None:
        """Lose and delay packets from ``a`` to ``b`` (and back, ``both_ways``)."""
        for pair in _pairs(a, b, both_ways):
            self._degraded[pair] = link

    def heal(self, a: Iterable[str] | None = None, b: Iterable[str] | None = None) -> None:
        """End the faults between ``a`` and ``b`` (both ways); without them, every fault."""
        if a is None or b is None:
            self._cut.clear()
            self._degraded.clear()
            return
        for pair in _pairs(a, b, True):
            self._cut.discard(pair)
            self._degraded.pop(pair, None)

    @property
    def faults(self) -> int:
        return len(self._cut) + len(self._degraded)

    def hosts(self) -> set[str]:
        """The addresses whose rules are not empty."""
        return {self._enforcer(src, dst)[0] for src, dst in (*self._cut, *self._degraded)}

    def firewall(self, address: str) -> Firewall:
        """The rules the host at ``address`` enforces."""
        out = Firewall()
        queues: dict[tuple[int, int], Queue] = {}
        for src, dst in sorted(self._cut):
            host, chain, match = self._enforcer(src, dst)
            if host == address:
                out.rules[chain].append([*match, "-j", "DROP"])
        for (src, dst), link in sorted(self._degraded.items()):
            host, chain, match = self._enforcer(src, dst)
            if host != address:
                continue
            if link.loss > 0:
                out.rules[chain].append(
                    [*match, "-m", "statistic", "--mode", "random",
                     "--probability", f"{link.loss:.4f}", "-j", "DROP"]
                )  # fmt: skip
            if link.delays:
                key = (link.delay_ms, link.jitter_ms)
                queue = queues.get(key)
                if queue is None:
                    queue = queues[key] = Queue(self.QUEUE_BASE + len(queues), *key)
                out.rules[chain].append([*match, "-j", "NFQUEUE", "--queue-num", str(queue.number)])
        out.queues = list(queues.values())
        return out

    def _enforcer(self, src: str, dst: str) -> tuple[str, str, list[str]]:
        """(host, our chain, match) where the fault on ``src -> dst`` is enforced."""
        if dst != self.outside:
            return dst, CHAINS["INPUT"], ["-s", src]
        return src, CHAINS["OUTPUT"], ["-d", dst]


def _pairs(a: Iterable[str], b: Iterable[str], both_ways: bool) -> list[tuple[str, str]]:
    a, b = list(a), list(b)
    pairs = [(x, y) for x in a for y in b if x != y]
    if both_ways:
        pairs += [(y, x) for x, y in pairs]
    return pairs
