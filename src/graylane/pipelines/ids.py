"""ULIDs for executions and stages (sortable by creation time, as orca's ids are)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def derived_ulid(now_ms: int, seed: str) -> str:
    """A ULID whose 80 random bits come from `seed`: the same seed always gives the same id (idempotent starts)."""
    import hashlib

    value = (now_ms << 80) | int.from_bytes(hashlib.sha256(seed.encode()).digest()[:10], "big")
    return _encode(value)


def new_ulid(now_ms: int | None = None) -> str:
    """26 Crockford base32 characters: 48 bits of milliseconds then 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return _encode(value)


def _encode(value: int) -> str:
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))
