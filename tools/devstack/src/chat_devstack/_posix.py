"""Linux process plumbing: dropping root, parent-death signals, process groups.

Two ways to run a child "not as root" when we are root (Postgres refuses to run as root):

- ``RunAs(uid, gid, userns=True)``: the child enters a new user namespace in which our root
  account appears as ``uid``. It keeps root's file ownership (no chown, no chmod of parent
  directories) but has no capabilities at all.
- ``RunAs(uid, gid, userns=False)``: a plain ``setgid``/``setuid`` to another account, for
  machines where user namespaces are not allowed (Docker's default seccomp profile).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunAs", "group_alive", "make_preexec", "signal_group"]

_PR_SET_PDEATHSIG = 1
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class RunAs:
    """The identity a child takes on before ``exec`` (see the module docstring)."""

    uid: int
    gid: int
    userns: bool


def _enter_user_namespace(run_as: RunAs) -> None:
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    if _libc.unshare(_CLONE_NEWUSER) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWUSER): {os.strerror(errno)}")
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{run_as.uid} {outer_uid} 1"),
        ("gid_map", f"{run_as.gid} {outer_gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as control:
            control.write(text)


def _enter_network_namespace(netns: str) -> None:
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({netns}): {os.strerror(errno)}")
    finally:
        os.close(fd)


def make_preexec(
    run_as: RunAs | None, death_signal: signal.Signals | None, netns: str | None = None
) -> Callable[[], None]:
    """A ``preexec_fn``: enter the network namespace ``netns`` (a test host made with ``ip
    netns add``), take on ``run_as``, then ask to be signalled when we die.

    Done here rather than with ``Popen(user=...)`` so it also works under uvloop, and so the
    namespace is entered while we are still root. The death signal is set last because
    changing credentials clears it.
    """
    parent = os.getpid()

    def preexec() -> None:
        if netns is not None:
            _enter_network_namespace(netns)
        if run_as is not None and run_as.userns:
            _enter_user_namespace(run_as)
        elif run_as is not None:
            os.setgroups([])
            os.setgid(run_as.gid)
            os.setuid(run_as.uid)
        if death_signal is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            if os.getppid() != parent:  # we died before prctl took effect
                os.kill(os.getpid(), int(death_signal))

    return preexec


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in process group ``pgid`` (reads ``/proc``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
