"""The plain downstream HTTP/1.1 request head, read in one pass instead of through httptools' callbacks (#17).

httptools (llhttp) calls back into Python for a message's start, its URL, every header and the end of its head,
and the listener's callbacks then do their part: ~1,300 instructions per header line and ~4,000 more per head.
Most requests a mesh carries are plain: a known method, an origin-form target (or the absolute-form `http://...`
an app sends its sidecar as its HTTP_PROXY), HTTP/1.1, header lines of printable ASCII, no body. Such a head,
whole in one read, is checked here with a few C loops over its bytes and split into its lines; the listener then
skips httptools for that request (listener.py `_consume`).

Anything else returns None and the listener feeds httptools as before: a head split across reads, a body
(Content-Length, Transfer-Encoding), an upgrade, a Connection header other than `keep-alive` or `close`, obs-text
or any control byte, a bare CR or LF, a target with other bytes or another scheme, a method outside `METHODS`,
another HTTP version, a head over `MAX_HEAD`. So the subset is narrower than what httptools accepts, never wider,
and means the same: leading whitespace is stripped from values and trailing kept, as llhttp does, and keep-alive
follows the same rule. tests/mesh/proxy/test_heads.py reads heads both ways and compares.

Responses stay with httptools: the same approach measured slower there (an upstream head is larger, and its
lines are re-emitted as bytes, where llhttp's per-byte work is cheaper than Python's bytes methods).
"""

from __future__ import annotations

from typing import Final

from graylane.mesh.proxy.request import NO_BODY, Request

MAX_HEAD: Final = 8 * 1024  # larger heads take httptools' path, which enforces the 414 / 431 limits
MAX_FIELDS: Final = 100  # Envoy's max_headers_count: more lines take httptools' path (431 / 502 there)

# Checked with C loops over the bytes (translate, splitlines), not a regular expression: `re` costs ~60
# instructions a byte here, more than the callbacks it would save (measured, issue #17). A translation table that
# maps every allowed byte to itself and every other byte elsewhere returns the very same object when all bytes are
# allowed: one pass and an identity test, no table built per call (as `translate(None, delete)` does).
_PLAIN: Final = bytes(b if 0x20 <= b < 0x7F or b in (9, 10, 13) else (0x20 if b == 0 else 0) for b in range(256))
_TOKEN: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 9110 tchar
# A target's bytes: RFC 3986 pchar, "/" and "?" (no fragment, no space, no obs-text, no IPv6 brackets).
_TARGET_BYTES: Final = b"-._~!$&'()*+,;=:@/?%0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TARGET: Final = bytes(b if b in _TARGET_BYTES else (0x20 if b == 0 else 0) for b in range(256))
_AUTHORITY_BYTES: Final = b"-._:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_AUTHORITY: Final = bytes(b if b in _AUTHORITY_BYTES else (0x20 if b == 0 else 0) for b in range(256))

# Request header names as they came -> lowercase str: clients send the same few names
# again and again. Only valid names are kept; bounded: names up to 64 bytes, MAX_NAMES_CACHED of them (no client
# can grow them); others are checked and lowered each time.
HEADER_NAMES: Final[dict[bytes, str]] = {}
MAX_NAMES_CACHED: Final = 512
METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_FRAMING: Final = frozenset(("content-length", "transfer-encoding", "upgrade"))  # headers a plain head has not


def header_name(name: bytes) -> str:
    """A request header's name in lowercase, from the cache when it was seen before (no decode and lower)."""
    lname = HEADER_NAMES.get(name)
    if lname is None:
        lname = name.decode("latin-1").lower()
        if len(HEADER_NAMES) < MAX_NAMES_CACHED and len(name) <= 64 and not name.translate(None, _TOKEN):
            HEADER_NAMES[name] = lname
    return lname


def _lines(head: bytes) -> list[bytes] | None:
    """The lines of a whole head (it ends with its blank line), each with its CRLF, if the head is made of
    printable ASCII and tabs and every line ends with CRLF (no bare CR or LF); the last one is the blank line."""
    if len(head) > MAX_HEAD or head.translate(_PLAIN) is not head:
        return None
    lines = head.splitlines(True)  # at CRLF, CR and LF alike: a bare one makes a line that does not end CRLF
    if len(lines) > MAX_FIELDS + 2 or lines[-1] != b"\r\n":
        return None
    for i in range(len(lines)):
        line = lines[i]
        n = len(line)
        if n < 2 or line[n - 1] != 10 or line[n - 2] != 13:
            return None
    return lines


def request(data: bytes, pos: int, end: int) -> Request | None:
    """The request whose whole head is `data[pos:end]` (ending with its blank line), if it is plain and has no
    body; None for httptools to read. Its body is NO_BODY; timing fields are the caller's."""
    lines = _lines(data[pos:end] if pos or end != len(data) else data)
    if lines is None:
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1\r\n":
        return None
    method = METHODS.get(parts[0])
    target = parts[1]
    if method is None or not target:
        return None
    if target[0] != 47:  # not origin-form ("/..."): absolute-form, what an app sends its sidecar (HTTP_PROXY)?
        if not target.startswith(b"http://"):
            return None
        slash = target.find(b"/", 7)
        authority = target[7:] if slash < 0 else target[7:slash]
        if authority.translate(_AUTHORITY) is not authority:
            return None  # host[:port] of letters, digits, ".", "-", "_" only (no userinfo, no IPv6 literal)
    if target.translate(_TARGET) is not target:
        return None  # a byte outside RFC 3986's path and query characters (and ":", "@")
    req = Request()
    headers = req.headers
    hmap = req.hmap
    for i in range(1, len(lines) - 1):
        line = lines[i]
        name, colon, value = line.partition(b": ")  # the common form; else at the colon
        if not colon:
            name, colon, value = line.partition(b":")
        lname = HEADER_NAMES.get(name)
        if lname is None:
            if not colon or not name or name.translate(None, _TOKEN):
                return None
            lname = header_name(name)
        if lname in _FRAMING:
            return None  # a body or an upgrade: httptools' path, without reading the rest here first
        if value[0] == 32 or value[0] == 9:  # (value ends with CRLF: never empty)
            value = value.lstrip(b" \t")  # leading whitespace is not the value's; llhttp keeps the trailing
        val = value[:-2].decode("latin-1")
        headers.append((lname, val))
        if lname in hmap:
            hmap[lname] = f"{hmap[lname]},{val}"
        else:
            hmap[lname] = val
    connection = hmap.get("connection")
    if connection is not None:
        token = connection.lower()
        if token == "close":
            req.keep_alive = False
        elif token != "keep-alive":
            return None
    req.method = method
    req.target = target.decode("latin-1")
    req.header_bytes = end - pos
    req.body = NO_BODY
    return req
