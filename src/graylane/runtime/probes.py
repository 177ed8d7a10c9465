"""Readiness and liveness probes with Kubernetes fields (httpGet, tcpSocket, exec).

A probe result is a state with a reason (`Failure("GET /health returned 503")`), not a bool; the
`ProbeTracker` applies initialDelaySeconds, successThreshold and failureThreshold over results.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class ProbeSpec:
    """A probe as Kubernetes spells it, with its defaults."""

    action: Mapping[str, Any] = field(default_factory=dict)  # {"httpGet": {...}} | {"tcpSocket": ...} | {"exec": ...}
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any] | None, *, default_action: Mapping[str, Any] | None = None) -> ProbeSpec:
        raw = raw or {}
        action = {k: raw[k] for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in raw} or dict(default_action or {})
        return cls(action=action,
                   initial_delay_s=float(raw.get("initialDelaySeconds", 0)),
                   period_s=float(raw.get("periodSeconds", 10 if raw else 0.2)),
                   timeout_s=float(raw.get("timeoutSeconds", 1)),
                   success_threshold=int(raw.get("successThreshold", 1)),
                   failure_threshold=int(raw.get("failureThreshold", 3)))


def readiness_spec(container: Mapping[str, Any]) -> ProbeSpec | None:
    """The container's readinessProbe; without one, None (Ready once running) or a wait for its port.

    Kubernetes marks a container without a readinessProbe Ready as soon as it runs, ports or not, so
    a pod that declares no ports (Istio's `samples/curl`: `sleep infinity`) is Ready at once. One that
    declares a containerPort is Ready once that port accepts connections: the data plane sends it
    traffic at once, and where Envoy would retry a refused connection on another replica, a lone
    local replica that is still starting has none.
    """
    raw = container.get("readinessProbe")
    if raw:
        return ProbeSpec.from_k8s(raw)
    if container.get("ports"):
        return ProbeSpec.from_k8s(None, default_action={"tcpSocket": {}})
    return None


def resolve_port(port: Any, container: Mapping[str, Any], local_port: int) -> int:
    """Map a probe's port (number or name) to where the process listens locally."""
    ports = container.get("ports") or []
    if isinstance(port, str) and not port.isdigit():
        if any(p.get("name") == port for p in ports):
            return local_port
        raise ValueError(f"probe port name {port!r} is not a containerPort name")
    number = int(port) if port is not None else 0
    declared = [int(p.get("containerPort", 0)) for p in ports]
    # The container's declared ports (and an unset one) all map to PORT; others are taken literally.
    if not number or number in declared or not declared:
        return local_port
    return number


async def run_probe(spec: ProbeSpec, container: Mapping[str, Any], local_port: int,
                    env: Mapping[str, str] | None = None, cwd: str | None = None) -> ProbeResult:
    """One probe attempt against the replica, bounded by timeoutSeconds."""
    action = spec.action
    try:
        if "httpGet" in action:
            return await _http_get(action["httpGet"], container, local_port, spec.timeout_s)
        if "exec" in action:
            return await _exec(action["exec"], spec.timeout_s, env, cwd)
        tcp = action.get("tcpSocket") or {}
        port = resolve_port(tcp.get("port"), container, local_port)
        return await _tcp(str(tcp.get("host") or "127.0.0.1"), port, spec.timeout_s)
    except ValueError as exc:
        return ProbeResult(False, str(exc))


async def _tcp(host: str, port: int, timeout_s: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (TimeoutError, OSError) as exc:
        return ProbeResult(False, f"dial tcp {host}:{port}: {exc.__class__.__name__}: connection refused"
                           if isinstance(exc, ConnectionRefusedError) else f"dial tcp {host}:{port}: {exc!r}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True)


async def _http_get(raw: Mapping[str, Any], container: Mapping[str, Any], local_port: int,
                    timeout_s: float) -> ProbeResult:
    port = resolve_port(raw.get("port"), container, local_port)
    path = str(raw.get("path") or "/")
    scheme = str(raw.get("scheme") or "HTTP").lower()
    host = str(raw.get("host") or "127.0.0.1")
    headers = {str(h.get("name")): str(h.get("value", "")) for h in raw.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.30")
    url = f"{scheme}://{host}:{port}{path}"
    try:
        async with httpx.AsyncClient(trust_env=False, verify=False, timeout=timeout_s) as client:
            resp = await client.get(url, headers=headers)
    except httpx.TimeoutException:
        return ProbeResult(False, f"GET {path}: timeout after {timeout_s:g}s")
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"GET {path}: {exc.__class__.__name__}")
    # Kubernetes: 200 <= code < 400 is success.
    if 200 <= resp.status_code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"GET {path} returned {resp.status_code}")


async def _exec(raw: Mapping[str, Any], timeout_s: float, env: Mapping[str, str] | None,
                cwd: str | None) -> ProbeResult:
    argv = [str(a) for a in raw.get("command") or []]
    if not argv:
        return ProbeResult(False, "exec probe has no command")
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=dict(env or os.environ), cwd=cwd,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        return ProbeResult(False, f"exec {argv[0]}: {exc.strerror}")
    try:
        code = await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ProbeResult(False, f"exec {argv[0]}: timeout after {timeout_s:g}s")
    return ProbeResult(code == 0, "" if code == 0 else f"exec {argv[0]} exited {code}")


@dataclass
class ProbeTracker:
    """Turns a stream of results into a state, per successThreshold/failureThreshold."""

    spec: ProbeSpec
    healthy: bool = False
    reason: str = "not probed yet"
    _successes: int = 0
    _failures: int = 0

    def record(self, result: ProbeResult) -> bool:
        """Record one attempt; returns True when the state changed."""
        before = self.healthy
        if result.ok:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.spec.success_threshold:
                self.healthy, self.reason = True, ""
        else:
            self._failures += 1
            self._successes = 0
            self.reason = result.reason
            if self._failures >= self.spec.failure_threshold or not self.healthy:
                self.healthy = False
        return before != self.healthy
