"""A small interactive chat client (python-socketio) for the local stack.

    .venv/bin/python examples/chat_client.py --email ann@example.com --room lobby

Type a line and press Enter to send it; ``/history`` pages back, ``/quit`` leaves.
Run a second copy with another email in another terminal to chat.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

import socketio


def show(message: dict[str, Any], *_offset: str) -> None:
    # With connection state recovery on, each new_message also carries a resume offset.
    print(f"[{message['ts']}] #{message['seq']} {message['email']}: {message['text']}")


async def read_lines(queue: asyncio.Queue[str | None]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        await queue.put(line.rstrip("\n") if line else None)
        if not line or line.strip() == "/quit":
            return


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--email", required=True)
    parser.add_argument("--room", default="lobby")
    parser.add_argument(
        "--say", action="append", default=[], help="send this and exit (repeatable)"
    )
    args = parser.parse_args()

    sio = socketio.AsyncClient()
    sio.on("new_message", show)
    # Presence is a change and a count (a small room's events also carry the list); a large
    # room's changes come as one presence_diff per interval (docs/protocol.md 4.12).
    sio.on("user_joined", lambda e: print(f"* {e['email']} joined ({e['count']} here)"))
    sio.on("user_left", lambda e: print(f"* {e['email']} left ({e['count']} here)"))
    sio.on("presence_diff", lambda e: print(
        f"* joined: {', '.join(e['joins']) or '-'}; left: {', '.join(e['leaves']) or '-'}"
        f" ({e['count']} here)"
    ))  # fmt: skip
    sio.on("error", lambda e: print(f"! {e['code']}: {e['message']}"))
    await sio.connect(args.url, transports=["websocket"])
    joined = await sio.call("join", {"email": args.email, "roomId": args.room})
    if not joined["ok"]:
        print(f"join failed: {joined['error']}")
        return 1
    more = joined["userCount"] - len(joined["users"])
    listed = ", ".join(joined["users"]) + (f" and {more} more" if more else "")
    print(f"joined {args.room} as {args.email}; here: {listed}")
    for message in joined["history"]:
        show(message)

    async def send(text: str) -> None:
        reply = await sio.call(
            "send_message", {"roomId": args.room, "text": text, "clientMsgId": uuid.uuid4().hex}
        )
        if not reply["ok"]:
            print(f"! {reply['error']['code']}: {reply['error']['message']}")

    if args.say:
        for text in args.say:
            await send(text)
        await sio.disconnect()
        return 0

    oldest = joined["history"][0]["seq"] if joined["history"] else None
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.create_task(read_lines(lines))
    while (line := await lines.get()) is not None and line != "/quit":
        if line == "/history":
            if oldest is None or oldest <= 1:
                print("* no older messages")
                continue
            page = await sio.call(
                "get_history", {"roomId": args.room, "beforeSeq": oldest, "limit": 20}
            )
            for message in page["messages"]:
                show(message)
            if page["messages"]:
                oldest = page["messages"][0]["seq"]
        elif line:
            await send(line)
    reader.cancel()
    await sio.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
