"""The console's trace look-ups: recent traces of requests that one version of a service handled.

A span carries the version of the workload that recorded it as `istio.canonical_revision` (as Istio's
sidecars tag spans), beside `istio.canonical_service`; the traces API matches both on one span.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from graylane.server.ui import api_json


def version_tags(service: str, version: str) -> list[str]:
    """The traces API's `tag` values for spans recorded by `version` of `service`."""
    return [f"istio.canonical_service={service}", f"istio.canonical_revision={version}"]


async def version_traces(request: Request, service: str, version: str, *, limit: int = 3,
                         lookback_s: float | None = 600) -> list[dict[str, Any]]:
    """Newest first: trace summaries (traceId, startUs, durationUs, errors, ...) that hit that version."""
    params: dict[str, Any] = {"limit": limit, "tag": version_tags(service, version)}
    if lookback_s:
        params["lookback"] = f"{max(int(lookback_s), 1)}s"
    data = await api_json(request, "/api/v1/traces", {"traces": []}, params=params)
    return list((data or {}).get("traces") or [])
