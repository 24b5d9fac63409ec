"""The web chat page: a few static files, answered by the client port.

The files live next to this module in ``static/`` and are read once, when the gateway
starts; a request is answered from that in-memory table by exact name, so no request path
ever reaches the file system (``/static/../x`` or ``/static/%2e%2e/x`` is simply not a key).

* ``GET /`` (any query string): ``index.html``.
* ``GET /static/<name>``: that file, for the names in ``static/`` (no subdirectories).
* anything else: ``None``, and the caller routes it as before (WebSocket or ``404``).

Every answer carries a strict Content-Security-Policy (scripts, styles and connections from
this origin only; the page's WebSocket to ``/ws``), ``nosniff``, ``no-referrer`` (a
``?token=`` in the page URL must not leak) and ``Cache-Control: no-cache``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from chat_gateway.edge.answers import HttpAnswer

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_DIR", "WebPage"]

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
INDEX = "index.html"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from another origin except WebSocket connections
(``'self'`` does not cover ``ws:`` in every browser, hence ``ws: wss:``)."""

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str


class WebPage:
    """The page's files, loaded once; :meth:`respond` maps a request path to a response."""

    def __init__(self, files: Mapping[str, tuple[bytes, str]]) -> None:
        """``files``: name → (body, content type); ``index.html`` is served at ``/``."""
        self._files = {name: _File(body, ctype) for name, (body, ctype) in files.items()}

    @classmethod
    def load(cls, directory: Path = STATIC_DIR) -> WebPage:
        """Read every file of a known type directly in ``directory`` (an absent directory
        gives an empty page: every path then falls through)."""
        files: dict[str, tuple[bytes, str]] = {}
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                ctype = CONTENT_TYPES.get(path.suffix)
                if ctype is not None and path.is_file():
                    files[path.name] = (path.read_bytes(), ctype)
        return cls(files)

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def respond(self, path: str) -> HttpAnswer | None:
        """The response for a request path (query ignored), or ``None`` when it is not ours."""
        target = urlsplit(path).path
        if target == "/":
            name = INDEX
        elif target.startswith(STATIC_PREFIX):
            name = target.removeprefix(STATIC_PREFIX)
        else:
            return None
        file = self._files.get(name)
        if file is None:
            return None
        return HttpAnswer(
            200,
            file.body,
            content_type=file.content_type,
            headers=(
                ("Cache-Control", "no-cache"),
                ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"),
            ),
        )
