"""Raw HTTP/1.1 over a socket: requests a well-behaved client library would refuse to send."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass

CLOSED = 0  # the server closed the connection without an answer


@dataclass(frozen=True)
class Answer:
    status: int  # CLOSED when the server hung up without answering
    head: bytes
    seconds: float


def request(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
            content_length: bool = True, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if content_length and not {"Transfer-Encoding", "Content-Length"} & set(headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def json_body(value: object) -> bytes:
    return json.dumps(value).encode()


Piece = bytes | float  # bytes to send, or seconds to wait


async def exchange(port: int, pieces: list[Piece], *, timeout_s: float = 5.0,
                   hang_up: bool = False) -> Answer:
    """Send ``pieces`` (in the background) and read the status line and head of the answer."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            for piece in pieces:
                if isinstance(piece, float):
                    await asyncio.sleep(piece)
                else:
                    writer.write(piece)
                    await writer.drain()
            if hang_up:
                writer.close()

    sender = asyncio.create_task(send())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    except (asyncio.IncompleteReadError, ConnectionError):
        head = b""
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    seconds = time.monotonic() - started
    if not head:
        return Answer(CLOSED, b"", seconds)
    return Answer(int(head.split(b" ", 2)[1]), head, seconds)
