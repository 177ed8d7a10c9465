"""Console sessions: one-time login links, the sessions they open, and the CSRF token bound to each.

Kept in the control plane's memory (a restart signs browsers out; `graylane status` prints a new
link). Knows nothing of HTTP routing; graylane.server.auth and graylane.server.ui use it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionUser:
    name: str
    role: str


class ConsoleSessions:
    """Login codes are single-use and expire after `code_ttl_s`; sessions last until the server stops
    or the user signs out."""

    def __init__(self, code_ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.code_ttl_s = code_ttl_s
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._codes: dict[str, tuple[SessionUser, float]] = {}
        self._sessions: dict[str, SessionUser] = {}
        self._lock = threading.Lock()

    def new_code(self, name: str, role: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            self._codes = {c: v for c, v in self._codes.items() if v[1] > now}  # forget expired codes
            self._codes[code] = (SessionUser(name, role), now + self.code_ttl_s)
        return code

    def redeem(self, code: str) -> str | None:
        """A new session id for a valid, unused code; None otherwise (the code is spent either way)."""
        with self._lock:
            entry = self._codes.pop(code, None)
            if entry is None or entry[1] <= self._clock():
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[session] = entry[0]
        return session

    def user(self, session: str) -> SessionUser | None:
        with self._lock:
            return self._sessions.get(session)

    def end(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)

    def csrf_for(self, credential: str) -> str:
        """The CSRF token of a cookie credential (session id or console token): an HMAC only this
        server can compute, so a page on another port that can set or read cookies cannot forge it."""
        return hmac.new(self._secret, credential.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, credential: str, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf_for(credential), sent)
