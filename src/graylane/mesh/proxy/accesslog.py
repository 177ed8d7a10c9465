"""Access log lines as Istio configures Envoy by default: `text` (Istio's default TEXT format) or `json`
(Istio's default JSON keys). Fields the proxy does not know are "-" (text) or null (json)."""

from __future__ import annotations

import json
import time
from typing import Any

# Envoy's %START_TIME% default: ISO 8601 with milliseconds, UTC.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _start_time(epoch: float) -> str:
    return time.strftime(_TIME_FORMAT, time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _dash(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def format_entry(entry: dict[str, Any], fmt: str) -> str:
    """One line for `entry` (the dict the proxy keeps at /access_log)."""
    start = _start_time(float(entry["start"]))
    duration = int(round(float(entry.get("duration_ms") or 0)))
    if fmt == "json":
        return json.dumps({
            "start_time": start, "method": entry.get("method"), "path": entry.get("path"),
            "protocol": "HTTP/1.1", "response_code": entry.get("status"),
            "response_flags": entry.get("flags") or "-", "bytes_received": entry.get("bytes_received"),
            "bytes_sent": entry.get("bytes_sent"), "duration": duration,
            "upstream_service_time": entry.get("upstream_service_time"),
            "user_agent": entry.get("user_agent"), "request_id": entry.get("request_id"),
            "authority": entry.get("authority"), "upstream_host": entry.get("upstream_host"),
            "upstream_cluster": entry.get("upstream_cluster"), "route_name": entry.get("route_name"),
            **({"grpc_status": entry["grpc_status"]} if entry.get("grpc_status") else {}),  # Envoy's %GRPC_STATUS%
        }, separators=(",", ":"))
    return (f'[{start}] "{entry.get("method")} {entry.get("path")} HTTP/1.1" {entry.get("status")} '
            f'{entry.get("flags") or "-"} - - "-" {_dash(entry.get("bytes_received"))} '
            f'{_dash(entry.get("bytes_sent"))} {duration} {_dash(entry.get("upstream_service_time"))} "-" '
            f'"{_dash(entry.get("user_agent"))}" "{_dash(entry.get("request_id"))}" '
            f'"{_dash(entry.get("authority"))}" "{_dash(entry.get("upstream_host"))}" '
            f'{_dash(entry.get("upstream_cluster"))} - - - - {_dash(entry.get("route_name"))}')
