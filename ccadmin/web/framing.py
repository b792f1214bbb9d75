"""Strict HTTP/1.1 framing for both web servers (waitress 3.0.2), refused at once and closed.

waitress parses each request itself, before any WSGI middleware could see
it, and it allows three things RFC 9112 does not:

- `Content-Length` together with `Transfer-Encoding`: it follows the
  chunked body and keeps the connection open, serving whatever was pipelined
  behind it. A front proxy that framed the request by `Content-Length` sees
  a different request there (request smuggling); section 6.1 says the
  server must close the connection. Refused with 400.
- A chunk size larger than the body limit (`FFFFFFFFFFFFFFFFFFFF`): it
  waits for that many bytes until the channel times out, holding the
  connection 30 s or more. Refused with 413 as soon as the size is read.
- HTTP/1.1 without `Host` (section 3.2: a 400). Refused with 400.

Every refusal is waitress's own error answer, which closes the connection.
"""

from __future__ import annotations

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.utilities import RequestEntityTooLarge


class StrictRequestParser(HTTPRequestParser):
    """waitress's parser with the three checks above."""

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # waitress has dropped Transfer-Encoding by now; `chunked` says it was there.
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("Content-Length and Transfer-Encoding together")
        if self.version == "1.1" and not self.headers.get("HOST", "").strip():
            raise ParsingError("HTTP/1.1 request without Host")

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        receiver = self.body_rcv
        if not self.completed and self.chunked and receiver is not None:
            limit = self.adj.max_request_body_size
            if self.body_bytes_received + receiver.chunk_remainder >= limit:
                self.error = RequestEntityTooLarge(f"a chunk exceeds max_body of {limit}")
                self.completed = True
        return consumed


class StrictChannel(HTTPChannel):
    """A waitress connection that parses with StrictRequestParser."""

    parser_class = StrictRequestParser


def use_strict_framing(server: object, channel_class: type[HTTPChannel] = StrictChannel) -> None:
    """Make `server` (one waitress server, or several listening at once) use `channel_class`."""
    for each in [server, *getattr(server, "map", {}).values()]:
        if hasattr(each, "channel_class"):
            each.channel_class = channel_class
