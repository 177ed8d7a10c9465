"""Trace context (B3 multi/single and W3C traceparent) and a bounded ring of finished spans for /spans."""

from __future__ import annotations

import itertools
import os
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

TRACE_HEADERS = ("traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                 "x-b3-sampled", "x-b3-flags")


_ids = random.Random(os.urandom(16))


def new_id(bits: int = 64) -> str:
    """A random span/trace id (a seeded PRNG: ids need uniqueness, not secrecy, and urandom is a syscall)."""
    return format(_ids.getrandbits(bits), "016x" if bits == 64 else "032x")


class TraceContext:
    __slots__ = ("trace_id", "parent_id", "sampled")

    def __init__(self, trace_id: str, parent_id: str | None, sampled: bool) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.sampled = sampled

    @classmethod
    def extract(cls, headers: Mapping[str, str], sampling_percent: float, rng: random.Random) -> TraceContext:
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
                sampled = parts[2] in ("1", "d") if len(parts) > 2 else rng.random() * 100 < sampling_percent
                return cls(parts[0].rjust(32, "0"), parts[1], sampled)
        return cls(new_id(128), None, rng.random() * 100 < sampling_percent)

    def inject(self, headers: list[tuple[str, str]], span_id: str, parent_id: str | None) -> list[tuple[str, str]]:
        out = [(k, v) for k, v in headers if k not in TRACE_HEADERS or k == "tracestate"]
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
