"""The workers' one view: the primary's channel framing to each worker and how worker answers merge into one.

Framing: every message is a 4-byte big-endian length and that many bytes. A request is two messages (JSON
`{"method", "url"}`, then the body); a reply is two (JSON `{"status", "ctype"}`, then the body). Merges:
`/stats/prometheus` sums every sample with the same name and labels across workers (counters, histogram
buckets, sums and counts all add up: the whole data plane's totals, as one Envoy's are across its threads);
`/clusters` sums connection and request gauges per endpoint, an endpoint is healthy when every worker says so
and ejected when any worker ejected it; `/access_log` and `/connections` gather every worker's.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

LENGTH = struct.Struct(">I")
MAX_FRAME = 512 * 1024 * 1024  # a snapshot body (the admin port bounds it at 256 MiB) and its header
Reply = tuple[int, str, bytes]


class ChannelClosed(Exception):
    """The other end of a worker channel went away (the worker or the primary exited)."""


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    try:
        (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        if size > MAX_FRAME:
            raise ChannelClosed(f"frame of {size} bytes (limit {MAX_FRAME})")
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc) or "channel closed") from None


def write_frames(writer: asyncio.StreamWriter, *frames: bytes) -> None:
    for frame in frames:
        writer.write(LENGTH.pack(len(frame)))
        writer.write(frame)  # no copy of a large snapshot


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    head = json.loads(await read_frame(reader))
    body = await read_frame(reader)
    return str(head["method"]), str(head["url"]), body


def write_request(writer: asyncio.StreamWriter, method: str, url: str, body: bytes) -> None:
    write_frames(writer, json.dumps({"method": method, "url": url}).encode(), body)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = json.loads(await read_frame(reader))
    body = await read_frame(reader)
    return int(head["status"]), str(head["ctype"]), body


def write_reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
    status, ctype, body = reply
    write_frames(writer, json.dumps({"status": status, "ctype": ctype}).encode(), body)


# -- merges ---------------------------------------------------------------------------------------------------
def merge_prometheus(texts: list[str]) -> str:
    """Prometheus text from every worker, each sample (name and labels) summed; comments and order kept from the
    first worker that has them."""
    order: list[str] = []
    values: dict[str, float] = {}
    comments: dict[str, list[str]] = {}  # '# TYPE' lines, placed before the first sample after them
    pending: list[str] = []
    for text in texts:
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                pending.append(line)
                continue
            key, _, raw = line.rpartition(" ")
            try:
                value = float(raw)
            except ValueError:
                continue
            if key not in values:
                order.append(key)
                values[key] = 0.0
                if pending:
                    comments[key] = pending
            values[key] += value
            pending = []
        pending = []
    out: list[str] = []
    seen: set[str] = set()
    for key in order:
        for c in comments.get(key, ()):
            if c not in seen:
                seen.add(c)
                out.append(c)
        v = values[key]
        out.append(f"{key} {int(v) if v.is_integer() else repr(v)}")
    return "\n".join(out) + "\n"


SUMMED = ("connections", "pending", "active", "times_ejected")


def merge_clusters(views: list[dict[str, Any]]) -> dict[str, Any]:
    """`/clusters` of every worker as one: the first worker's shape, per-worker load summed."""
    if not views:
        return {"version": None, "clusters": []}
    merged: dict[str, Any] = json.loads(json.dumps(views[0]))  # a deep copy
    index = {c["name"]: c for c in merged.get("clusters", [])}
    for view in views[1:]:
        for cluster in view.get("clusters", []):
            mine = index.get(cluster["name"])
            if mine is None:
                continue
            for key in SUMMED:
                if isinstance(cluster.get(key), int) and isinstance(mine.get(key), int):
                    mine[key] += cluster[key]
            eps = {e["address"]: e for e in mine.get("endpoints", [])}
            for ep in cluster.get("endpoints", []):
                if (m := eps.get(ep["address"])) is None:
                    continue
                for key in SUMMED:
                    if isinstance(ep.get(key), int) and isinstance(m.get(key), int):
                        m[key] += ep[key]
                if "healthy" in m:
                    m["healthy"] = bool(m["healthy"]) and bool(ep.get("healthy"))
                if "ejected" in m:
                    m["ejected"] = bool(m["ejected"]) or bool(ep.get("ejected"))
                if "ejected_for_s" in m:
                    m["ejected_for_s"] = max(m["ejected_for_s"], ep.get("ejected_for_s") or 0)
    return merged


def merge_access_log(views: list[dict[str, Any]], limit: int = 1000) -> dict[str, Any]:
    entries = [e for v in views for e in v.get("entries", [])]
    entries.sort(key=lambda e: float(e.get("start") or 0))
    return {"enabled": any(v.get("enabled") for v in views), "entries": entries[-limit:]}


def merge_connections(views: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, int] = {}
    for v in views:
        for port, n in v.get("connections", {}).items():
            total[port] = total.get(port, 0) + int(n)
    return {"connections": total}
