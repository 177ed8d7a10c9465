"""Trace context (B3 multi/single and W3C traceparent) and a bounded ring of finished spans for /spans."""

from __future__ import annotations

import itertools
import os
import random
from collections import deque
from typing import Any, Final

TRACE_HEADERS: Final = ("traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                        "x-b3-sampled", "x-b3-flags")


_ids = random.Random(os.urandom(16))


def new_id(bits: int = 64) -> str:
    """A random span/trace id (a seeded PRNG: ids need uniqueness, not secrecy, and urandom is a syscall)."""
    return format(_ids.getrandbits(bits), "016x" if bits == 64 else "032x")


_request_ids: list[str] = []
# RFC 9562 UUID version 4: the version nibble is 4, the variant's two top bits are 10.
_VERSION: Final = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT: Final = bytes((b & 0x3F) | 0x80 for b in range(256))
_BATCH: Final = 256
# Where each of a UUID's 32 hex digits goes in its 36-character form (dashes at 8, 13, 18, 23), plus a space.
_DIGIT_AT: Final = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]
_TEMPLATE: Final = b"-" * 36 + b" "


def request_id() -> str:
    """A random UUID4 for `x-request-id` (Envoy's form), made 256 at a time from one `os.urandom` read with
    C-speed byte operations only: translate sets the version and variant bits, strided slices place the digits."""
    if not _request_ids:
        raw = bytearray(os.urandom(16 * _BATCH))
        raw[6::16] = raw[6::16].translate(_VERSION)
        raw[8::16] = raw[8::16].translate(_VARIANT)
        digits = raw.hex().encode()
        out = bytearray(_TEMPLATE * _BATCH)
        for j, at in enumerate(_DIGIT_AT):
            out[at::37] = digits[j::32]
        _request_ids.extend(out.decode().split())
    return _request_ids.pop()


class TraceContext:
    """A request's trace: continued from the caller's headers, or started here.

    Lazy (issue #17): a request that carries no trace and is not sampled gets no ids (`has_ids` is false; its
    `trace_id` is made only if something reads it). The proxy then passes only the decision on (`x-b3-sampled: 0`),
    so later hops do not sample a trace whose root was not sampled.
    """

    __slots__ = ("_trace_id", "parent_id", "sampled", "has_ids")

    def __init__(self, trace_id: str | None, parent_id: str | None, sampled: bool) -> None:
        self._trace_id = trace_id
        self.parent_id = parent_id
        self.sampled = sampled
        # Sampled, continued from the caller, or its id was asked for: the trace headers go upstream. A plain
        # attribute, kept in step with `_trace_id`: read twice per request, where a property call costs ~600
        # instructions (issue #17).
        self.has_ids = trace_id is not None

    @property
    def trace_id(self) -> str:
        if self._trace_id is None:
            self._trace_id = new_id(128)
            self.has_ids = True
        return self._trace_id

    @classmethod
    def extract(cls, headers: dict[str, str], sampling_percent: float, rng: random.Random) -> TraceContext:
        """Continue the caller's trace (W3C first, then B3) or start one, sampled at `sampling_percent`."""
        tp = headers.get("traceparent")
        if tp:
            parts = tp.split("-")
            if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
                return cls(parts[1], parts[2], parts[3][-1:] in ("1", "3", "5", "7", "9", "b", "d", "f"))
        tid = headers.get("x-b3-traceid")
        if tid:
            sampled = headers.get("x-b3-sampled")
            return cls(tid.rjust(32, "0"), headers.get("x-b3-spanid"),
                       headers.get("x-b3-flags") == "1" or (sampled in ("1", "true") if sampled is not None
                                                            else rng.random() * 100 < sampling_percent))
        single = headers.get("b3")
        if single and single not in ("0", "1", "d"):
            parts = single.split("-")
            if len(parts) >= 2:
                decided = parts[2] in ("1", "d") if len(parts) > 2 else rng.random() * 100 < sampling_percent
                return cls(parts[0].rjust(32, "0"), parts[1], decided)
        if single == "0" or headers.get("x-b3-sampled") in ("0", "false"):
            return cls(None, None, False)  # the caller decided (B3 sampling-state only): passed on, no ids
        if rng.random() * 100 < sampling_percent:
            return cls(new_id(128), None, True)
        return cls(None, None, False)

    def inject(self, headers: list[tuple[str, str]], span_id: str, parent_id: str | None) -> list[tuple[str, str]]:
        out = [(k, v) for k, v in headers if k not in TRACE_HEADERS or k == "tracestate"]
        if self._trace_id is None:  # lazy and not sampled: only the decision travels
            out.append(("x-b3-sampled", "0"))
            return out
        flag = "1" if self.sampled else "0"
        out += [("x-b3-traceid", self.trace_id), ("x-b3-spanid", span_id), ("x-b3-sampled", flag),
                ("traceparent", f"00-{self.trace_id}-{span_id}-0{flag}")]
        if parent_id:
            out.append(("x-b3-parentspanid", parent_id))
        return out


class SpanRing:
    """The last `size` finished spans, each with a sequence number for `/spans?since=SEQ`."""

    def __init__(self, size: int = 20_000) -> None:
        self.spans: deque[dict[str, Any]] = deque(maxlen=size)
        self.seq = itertools.count()
        self.next = 0

    def add(self, span: dict[str, Any]) -> None:
        span["seq"] = self.next = next(self.seq)
        self.next += 1
        self.spans.append(span)

    def since(self, seq: int, limit: int = 5000) -> dict[str, Any]:
        if seq > self.next:  # the reader remembers a previous process: start over
            seq = 0
        out = [s for s in self.spans if s["seq"] >= seq][:limit]
        return {"spans": out, "next": out[-1]["seq"] + 1 if out else max(seq, self.next)}
