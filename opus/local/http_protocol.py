"""The HTTP/1.1 protocol `opus serve` speaks: uvicorn's httptools protocol, with request heads bounded.

httptools (llhttp, in C) parses a request several times faster than h11, the pure-Python parser, which was about
an eighth of a search request's Python time. But where h11 refuses a head that stays incomplete beyond
`max_incomplete_event_size`, httptools accumulates request lines and headers for as long as a client sends
them. `BoundedHeadProtocol` measures each head as its bytes arrive, before the parser sees them, up to the blank
line that ends it, and answers 431 (closing the connection) to a head of more than `MAX_REQUEST_HEAD_BYTES`,
whether it arrives in one read or trickles in: a client holds at most that much (plus one read) of the
server's memory.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request heads larger than this are refused before the app sees them (h11's default, which uvicorn used to use).
MAX_REQUEST_HEAD_BYTES = 16 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: %d\r\nconnection: close\r\n\r\n%s")
_END_OF_HEAD = b"\r\n\r\n"
_MESSAGE = b"Request head too large: at most %d bytes of request line and headers." % MAX_REQUEST_HEAD_BYTES


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing heads over MAX_REQUEST_HEAD_BYTES with 431."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_head()

    def _next_head(self) -> None:
        self._in_head = True  # the next bytes belong to a request head (the first, or the next on keep-alive)
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: its end may straddle two reads

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            seen = self._tail + data
            end = seen.find(_END_OF_HEAD)
            size = self._head_bytes + (len(data) if end < 0 else end + len(_END_OF_HEAD) - len(self._tail))
            if size > MAX_REQUEST_HEAD_BYTES:
                self.transport.write(_TOO_LARGE % (len(_MESSAGE), _MESSAGE))
                self.transport.close()
                return
            self._head_bytes += len(data)
            self._tail = seen[-(len(_END_OF_HEAD) - 1):]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._next_head()
