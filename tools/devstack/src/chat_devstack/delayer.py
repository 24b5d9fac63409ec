"""``python -m chat_devstack.delayer QUEUE DELAY_MS JITTER_MS``: hold each packet of an
NFQUEUE for ``DELAY_MS`` (± ``JITTER_MS``, uniformly, which reorders them), then accept it.

Run inside the network namespace whose firewall queues the packets (``ip netns exec``):
netlink sockets belong to the namespace they are opened in. Prints ``READY`` once bound;
SIGTERM ends it, and the kernel then drops what it still held (packets lost, as on a link
that goes away).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import sys

from . import nfqueue

__all__ = ["main"]


def _open(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    for request in (nfqueue.bind_queue(queue), nfqueue.set_copy_meta(queue)):
        sock.send(request)
        error = nfqueue.acknowledged(sock.recv(4096))
        if error:
            raise OSError(error, f"NFQUEUE {queue}: configuration refused")
    sock.setblocking(False)
    return sock


async def _serve(queue: int, delay_s: float, jitter_s: float) -> None:
    loop = asyncio.get_running_loop()
    sock = _open(queue)
    rng = random.Random()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def accept(packet_id: int) -> None:
        # OSError: the kernel gave up on it (queue full or closing): it is dropped.
        with contextlib.suppress(OSError):
            sock.send(nfqueue.verdict(queue, packet_id, nfqueue.ACCEPT))

    def readable() -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ENOBUFS: the kernel dropped some; go on with the rest
                continue
            for packet_id in nfqueue.packet_ids(data):
                hold = delay_s + rng.uniform(-jitter_s, jitter_s)
                loop.call_later(max(0.0, hold), accept, packet_id)

    loop.add_reader(sock.fileno(), readable)
    print("READY", flush=True)
    await stop.wait()
    loop.remove_reader(sock.fileno())
    sock.close()


def main(argv: list[str]) -> None:
    queue, delay_ms, jitter_ms = (int(a) for a in argv)
    asyncio.run(_serve(queue, delay_ms / 1000, jitter_ms / 1000))


if __name__ == "__main__":
    main(sys.argv[1:])
