"""Linux process plumbing: dropping privileges, parent-death signals, process groups."""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
from collections.abc import Callable
from pathlib import Path

__all__ = ["group_alive", "make_preexec", "signal_group", "uid_gid_for"]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def uid_gid_for(user: str | None) -> tuple[int, int] | None:
    """``(uid, gid)`` to switch to when we are root and ``user`` is set, else ``None``."""
    if user is None or os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make_preexec(
    run_as: tuple[int, int] | None, death_signal: signal.Signals | None
) -> Callable[[], None]:
    """A ``preexec_fn``: switch user, then ask the kernel to signal the child when we die.

    Done here rather than with ``Popen(user=...)`` so it also works under uvloop. The death
    signal is set after ``setuid`` because changing credentials clears it.
    """
    parent = os.getpid()

    def preexec() -> None:
        if run_as is not None:
            uid, gid = run_as
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
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
