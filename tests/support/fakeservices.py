"""Stand-in service packages for tests of the local stack itself (no NATS, Redis, Postgres).

The stack starts each service as ``python -m chat_<kind>``; a test writes packages of the
same names with its own ``__main__`` into a folder and puts that folder first on
``PYTHONPATH``, so the stack runs the stand-ins instead.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["write_fake_services"]


def write_fake_services(tmp_path: Path, main_source: str) -> tuple[dict[str, str], Path]:
    """Write ``chat_gateway``, ``chat_session`` and ``chat_history`` packages whose
    ``__main__`` is ``main_source``; return the env that selects them (``PYTHONPATH``, and
    ``FAKE_OUT``: a folder for the stand-ins to report into) and that folder."""
    root, out = tmp_path / "fakes", tmp_path / "out"
    out.mkdir()
    for kind in ("gateway", "session", "history"):
        package = root / f"chat_{kind}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(textwrap.dedent(main_source))
    return {"PYTHONPATH": str(root), "FAKE_OUT": str(out)}, out
