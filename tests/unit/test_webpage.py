"""The web chat page's static file routing: exact names only, types, security headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_gateway.edge.answers import HttpAnswer, Upgrade, route
from chat_gateway.webpage import CONTENT_SECURITY_POLICY, STATIC_DIR, WebPage

PAGE = WebPage.load()


def test_the_packaged_page_has_its_three_files() -> None:
    """index.html, app.js, style.css and the icon ship inside the chat_gateway package."""
    assert PAGE.names == ["app.js", "favicon.svg", "index.html", "style.css"]
    assert STATIC_DIR.parent.name == "chat_gateway"


@pytest.mark.parametrize(
    "path,name,ctype",
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/?room=lobby&token=x", "index.html", "text/html; charset=utf-8"),
        ("/static/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "style.css", "text/css; charset=utf-8"),
    ],
)
def test_page_files_are_served_with_type_and_security_headers(
    path: str, name: str, ctype: str
) -> None:
    """Each file comes back whole with its content type, no-cache, the CSP and nosniff."""
    response = route("GET", path, PAGE)
    assert isinstance(response, HttpAnswer) and response.status == 200
    assert response.body == (STATIC_DIR / name).read_bytes()
    headers = dict(response.header_list())
    assert headers["Content-Type"] == ctype
    assert headers["Content-Length"] == str(len(response.body))
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_policy_allows_only_this_origin_and_websockets() -> None:
    """No inline script, no other origin: default-src 'self', connect-src adds ws:/wss:."""
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws: wss:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/%2e%2e/x",
        "/static/..%2fserver.py",
        "/static//etc/passwd",
        "/static/",
        "/static",
        "/static/app.js/",
        "/static/APP.JS",
        "/static/./app.js",
        "/static/sub/app.js",
        "/index.html",
        "/app.js",
        "/server.py",
        "/favicon.ico",
        "//",
    ],
)
def test_anything_else_is_not_found(path: str) -> None:
    """Traversal attempts and unknown names get the ordinary 404."""
    assert PAGE.respond(path) is None
    response = route("GET", path, PAGE)
    assert isinstance(response, HttpAnswer) and response.status == 404


def test_websocket_paths_still_pass_through() -> None:
    """/ws and Socket.IO are unchanged when the page is served."""
    assert route("GET", "/ws", PAGE) == Upgrade("native")
    assert route("GET", "/socket.io/?EIO=4&transport=websocket", PAGE) == Upgrade("socketio")


def test_files_are_read_once_at_load(tmp_path: Path) -> None:
    """Changing or deleting a file after load changes nothing; unknown types are skipped."""
    (tmp_path / "index.html").write_text("<p>one</p>")
    (tmp_path / "notes.txt").write_text("secret")
    (tmp_path / "sub").mkdir()
    page = WebPage.load(tmp_path)
    (tmp_path / "index.html").unlink()
    response = page.respond("/")
    assert response is not None and response.body == b"<p>one</p>"
    assert page.names == ["index.html"]
    assert page.respond("/static/notes.txt") is None


def test_a_missing_directory_serves_nothing(tmp_path: Path) -> None:
    """Without static files every path falls through to the normal routing."""
    page = WebPage.load(tmp_path / "absent")
    assert page.names == [] and page.respond("/") is None
