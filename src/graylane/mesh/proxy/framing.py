"""Where one downstream HTTP/1.1 request ends in the byte stream, so httptools is fed one request at a time.

httptools cannot pause mid-buffer: whatever it is fed, it parses, pipelined requests included. The listener asks
`Framer.advance` how far the current request reaches and feeds only that; bytes of the next request wait unparsed
(reading paused) until the current response is done, as Envoy's and nginx's HTTP/1 codecs do. The framer also
checks the request line strictly (httptools accepts `GET  / HTTP/1.1`). It trusts httptools for everything else:
for well-formed input both agree on the boundaries; on malformed input httptools raises first.
"""

from __future__ import annotations

import re
from typing import Final

from graylane.mesh.proxy.errors import BadRequest, HeadersTooLarge, UriTooLong

MAX_URL: Final = 16 * 1024  # request line beyond this gets 414
MAX_HEADERS: Final = 60 * 1024  # Envoy's max_request_headers_kb default: 60 KiB, beyond it 431
MAX_CHUNK_LINE: Final = 4 * 1024

# RFC 9112 §3: method SP request-target SP HTTP-version CRLF, one space each (Envoy's balsa parser is as strict).
REQUEST_LINE: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]\r\n")
CHUNK_SIZE_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,15})(;[^\r\n]*)?\r\n")

HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, TRAILERS = range(5)


class Framer:
    """Byte-level position inside the request being received: head, fixed-length body, or chunked body."""

    __slots__ = ("state", "remaining", "carry", "line_checked", "version")

    def __init__(self) -> None:
        self.state = HEAD
        self.remaining = 0
        self.carry = bytearray()  # the part of the current head / chunk line / trailer seen in earlier reads
        self.line_checked = False
        # The current request's HTTP version as its request line wrote it (b"1.1"), read when the line is checked:
        # the listener takes it from here, not from httptools' get_http_version(), which formats a str with
        # str.format on every call (~1,800 instructions a request). The parser is fed only what this framer has
        # passed, so when the parser completes a head, this is that head's version.
        self.version = b"1.1"

    @property
    def between_requests(self) -> bool:
        """True when the next byte starts a new request (nothing of it seen yet)."""
        return self.state == HEAD and not self.carry

    def start_body(self, content_length: int, chunked: bool) -> None:
        """Called by the listener once httptools has read the head: what follows is this request's body."""
        self.carry.clear()
        self.line_checked = False
        if chunked:
            self.state = CHUNK_SIZE
        elif content_length:
            self.state, self.remaining = BODY, content_length
        else:
            self.state = HEAD

    def advance(self, data: bytes, pos: int) -> int:
        """The end of the span of `data` from `pos` that belongs to the current request.

        A head ends the span at its blank line (the listener learns the body framing from httptools before
        asking again); a body ends it at the request's last byte. Raises BadRequest / 414 / 431 early.
        """
        n = len(data)
        if self.state == HEAD:
            if not self.carry:
                # RFC 9112 §2.2: ignore empty lines before a request (the first byte tested before calling
                # `startswith`, whose argument parsing costs ~900 instructions: issue #17).
                while pos < n and data[pos] == 13 and data.startswith(b"\r\n", pos):
                    pos += 2
                if pos >= n:
                    return n
            return self._head(data, pos)
        end = pos
        while end < n and self.state != HEAD:
            if self.state == BODY:
                step = min(self.remaining, n - end)
                self.remaining -= step
                end += step
                if not self.remaining:
                    self.state = HEAD
            elif self.state == CHUNK_DATA:
                step = min(self.remaining, n - end)
                self.remaining -= step
                end += step
                if not self.remaining:
                    self.state = CHUNK_SIZE
            else:
                end = self._chunk_line(data, end)
        return end

    def _head(self, data: bytes, pos: int) -> int:
        # A head may come a few bytes per read: grow one buffer and search only the new part (no quadratic work).
        seen = len(self.carry)
        buf: bytes | bytearray
        if seen:
            self.carry += memoryview(data)[pos:]
            buf = self.carry
        else:
            buf = data[pos:]
        if not self.line_checked:
            eol = buf.find(b"\r\n", seen - 1 if seen else 0)  # max(0, seen - 1) without the builtin's cost
            if eol < 0:
                if len(buf) > MAX_URL:
                    raise UriTooLong("request line too long")
            else:
                if eol > MAX_URL:
                    raise UriTooLong("request line too long")
                if not REQUEST_LINE.fullmatch(buf, 0, eol + 2):
                    raise BadRequest("malformed request line")
                self.version = bytes(buf[eol - 3:eol])  # REQUEST_LINE ends "HTTP/<digit>.<digit>\r\n"
                self.line_checked = True
        end = buf.find(b"\r\n\r\n", seen - 3 if seen > 3 else 0)
        if end < 0:
            if len(buf) > MAX_URL + MAX_HEADERS:
                raise HeadersTooLarge("header block too large")
            if not seen:
                self.carry += buf
            return len(data)
        self.carry.clear()
        return pos + end + 4 - seen

    def _chunk_line(self, data: bytes, pos: int) -> int:
        """Consume one chunk-size line or trailer line (possibly split across reads); returns its end."""
        seen = len(self.carry)
        eol = data.find(b"\n", pos)
        if eol < 0:
            self.carry += memoryview(data)[pos:]
            if len(self.carry) > (MAX_HEADERS if self.state == TRAILERS else MAX_CHUNK_LINE):
                raise BadRequest("chunk line too long")
            return len(data)
        line = bytes(self.carry) + data[pos:eol + 1] if seen else data[pos:eol + 1]
        self.carry.clear()
        if self.state == TRAILERS:
            if line == b"\r\n":
                self.state = HEAD
            return eol + 1
        m = CHUNK_SIZE_LINE.fullmatch(line)
        if m is None:
            raise BadRequest("invalid chunk size line")
        size = int(m.group(1), 16)
        if size:
            self.state, self.remaining = CHUNK_DATA, size + 2  # the data and its CRLF
        else:
            self.state = TRAILERS
        return eol + 1
