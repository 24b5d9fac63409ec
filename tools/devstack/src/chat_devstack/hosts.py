"""Test hosts on one machine: network namespaces with their own addresses on one bridge,
and the faults between them (root only).

:class:`HostNetwork` makes a bridge in the machine's own namespace (its address is where
the tests, their clients and load generators are: the "outside" host) and one namespace per
:meth:`HostNetwork.add` with a veth into the bridge and an address of the same /24. Every
process started with ``netns=host.netns`` (:class:`~chat_devstack.process.ManagedProcess`,
:func:`~chat_devstack.commands.run_command`) lives on that host: it binds and connects
from its address, and what the firewall of its namespace drops never reaches it.

:meth:`HostNetwork.apply` enforces a :class:`~chat_devstack.linkplan.LinkPlan`: each
host's chains are flushed and filled with the plan's rules, and a delayer is started for
each of its NFQUEUEs (and the ones no longer needed stopped). ``iptables`` comes from the
machine's packages (``make partition-setup``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from .commands import run_command
from .errors import DevstackError
from .linkplan import CHAINS, LinkPlan, Queue

__all__ = ["Host", "HostNetwork", "hosts_supported"]

_OWNERS = Path("/run/chat-test-hosts")
"""One file per live host network, named by its tag, holding its owner's pid: a network
whose owner died without tearing it down (a killed test run) is removed by the next."""
_IPTABLES = "iptables-legacy"
"""The legacy backend: its NFQUEUE target needs nothing from nftables' compat layer."""


def hosts_supported() -> str | None:
    """``None`` if test hosts can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", _IPTABLES):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make partition-setup)"
    probe = f"chprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode().strip()}"
    try:
        rules = subprocess.run(
            ["ip", "netns", "exec", probe, _IPTABLES, "-L", "-n"], capture_output=True, check=False
        )
        if rules.returncode != 0:
            return f"iptables in a namespace failed: {rules.stderr.decode().strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass(frozen=True, slots=True)
class Host:
    """One test host: a network namespace and its address."""

    name: str
    netns: str
    address: str
    interface: str


@dataclass(slots=True)
class _Delayer:
    queue: Queue
    process: asyncio.subprocess.Process


@dataclass
class HostNetwork:
    """A bridge and its hosts; an async context manager that removes them all on exit."""

    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    hosts: dict[str, Host] = field(default_factory=dict)
    outside: str = ""
    """The bridge's address: the machine's own namespace, as the hosts see it."""
    plan: LinkPlan = field(init=False)
    _subnet: ipaddress.IPv4Network | None = None
    _delayers: dict[tuple[str, int], _Delayer] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"chb{self.tag}"

    async def __aenter__(self) -> Self:
        for orphan in _orphans():
            await _remove(orphan)
        _claim(self.tag)
        self._subnet = _free_subnet()
        self.outside = str(self._subnet.network_address + 1)
        self.plan = LinkPlan(outside=self.outside)
        await _ip("link", "add", self.bridge, "type", "bridge")
        await _ip("addr", "add", f"{self.outside}/24", "dev", self.bridge)
        await _ip("link", "set", self.bridge, "up")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for delayer in self._delayers.values():
            await _stop(delayer.process)
        self._delayers.clear()
        await _remove(self.tag)

    async def add(self, name: str) -> Host:
        """A new host called ``name`` (its namespace, veth and address)."""
        if self._subnet is None:
            raise DevstackError("the host network is not up")
        if name in self.hosts:
            raise DevstackError(f"host {name} exists")
        n = len(self.hosts) + 2
        host = Host(
            name=name,
            netns=f"ch{self.tag}-{name}",
            address=str(self._subnet.network_address + n),
            interface="eth0",
        )
        outer = f"chv{self.tag}{n:02d}"
        await _ip("netns", "add", host.netns)
        await _ip(
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            host.interface,
            "netns",
            host.netns,
        )
        await _ip("link", "set", outer, "master", self.bridge, "up")
        for argv in (
            ("addr", "add", f"{host.address}/24", "dev", host.interface),
            ("link", "set", host.interface, "up"),
            ("link", "set", "lo", "up"),
        ):
            await _ip("-n", host.netns, *argv)
        for builtin, ours in CHAINS.items():
            await self._iptables(host, "-N", ours)
            await self._iptables(host, "-A", builtin, "-j", ours)
        self.hosts[name] = host
        return host

    def addresses(self, *names: str) -> list[str]:
        """The addresses of the hosts ``names`` (``"outside"``: the machine's own)."""
        return [self.outside if n == "outside" else self.hosts[n].address for n in names]

    async def apply(self) -> None:
        """Make every host's firewall and delayers what :attr:`plan` says."""
        for host in self.hosts.values():
            wall = self.plan.firewall(host.address)
            # Delayers first, so a queue has its reader before packets are sent to it.
            wanted = {(host.name, q.number): q for q in wall.queues}
            for key, queue in wanted.items():
                running = self._delayers.get(key)
                if running is not None and running.queue != queue:
                    await _stop(running.process)
                    running = None
                if running is None:
                    self._delayers[key] = _Delayer(queue, await self._start_delayer(host, queue))
            for chain, rules in wall.rules.items():
                await self._iptables(host, "-F", chain)
                for rule in rules:
                    await self._iptables(host, "-A", chain, *rule)
            for key in [k for k in self._delayers if k[0] == host.name and k not in wanted]:
                await _stop(self._delayers.pop(key).process)

    async def heal(self) -> None:
        """End every fault."""
        self.plan.heal()
        await self.apply()

    async def _iptables(self, host: Host, *args: str) -> None:
        await run_command(["ip", "netns", "exec", host.netns, _IPTABLES, "-w", *args], timeout=30)

    async def _start_delayer(self, host: Host, queue: Queue) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", host.netns, sys.executable, "-m", "chat_devstack.delayer",
            str(queue.number), str(queue.delay_ms), str(queue.jitter_ms),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if line.strip() != b"READY":
            rest = await proc.stdout.read()
            raise DevstackError(f"delayer on {host.name} failed: {(line + rest).decode()[-500:]}")
        return proc


async def _remove(tag: str) -> None:
    """Every namespace and the bridge of the network ``tag``, and its owner file."""
    listing = await run_command(["ip", "netns", "list"], timeout=30)
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith(f"ch{tag}-"):
            await _ip("netns", "del", name, check=False)
    await _ip("link", "del", f"chb{tag}", check=False)
    (_OWNERS / tag).unlink(missing_ok=True)


def _claim(tag: str) -> None:
    _OWNERS.mkdir(parents=True, exist_ok=True)
    (_OWNERS / tag).write_text(str(os.getpid()))


def _orphans() -> list[str]:
    """The tags of the host networks whose owner process is gone."""
    if not _OWNERS.is_dir():
        return []
    found = []
    for owner in _OWNERS.iterdir():
        try:
            os.kill(int(owner.read_text()), 0)
        except (ValueError, ProcessLookupError):
            found.append(owner.name)
        except PermissionError:
            pass  # alive, someone else's
    return found


async def _ip(*args: str, check: bool = True) -> None:
    try:
        await run_command(["ip", *args], timeout=30)
    except Exception:
        if check:
            raise


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address of the machine is in (another run's bridge, say)."""
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, check=True)
    used = [
        ipaddress.IPv4Interface(words[words.index("inet") + 1]).network
        for words in (line.split() for line in listing.stdout.decode().splitlines())
        if "inet" in words
    ]
    for _ in range(100):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(180, 250)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise DevstackError("no free 10.x.y.0/24 for test hosts")  # pragma: no cover
