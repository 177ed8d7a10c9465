"""The columns `graylane get` shows per kind, as kubectl prints them (and the extra `-o wide` ones).

Pure functions of a resource body; `graylane.cli.resources` lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def dig(body: dict[str, Any], *path: str, default: Any = None) -> Any:
    cur: Any = body
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def _json_list(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if value else ""


def _ports(body: dict[str, Any]) -> str:
    ports = dig(body, "spec", "ports", default=[]) or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports if isinstance(p, dict)) or "<none>"


def _selector(sel: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sel.items()) if isinstance(sel, dict) and sel else "<none>"


def _containers(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in dig(body, "spec", "template", "spec", "containers", default=[]) or [] if isinstance(c, dict)]


Column = tuple[str, Callable[[dict[str, Any]], str]]

COLUMNS: dict[str, list[Column]] = {
    "Deployment": [
        ("READY", lambda b: f"{dig(b, 'status', 'readyReplicas', default=0)}/"
                            f"{dig(b, 'spec', 'replicas', default=1)}"),
        ("UP-TO-DATE", lambda b: str(dig(b, "status", "updatedReplicas", default=0))),
        ("AVAILABLE", lambda b: str(dig(b, "status", "availableReplicas", default=0))),
    ],
    "Service": [
        ("TYPE", lambda b: str(dig(b, "spec", "type", default="ClusterIP"))),
        ("CLUSTER-IP", lambda b: str(dig(b, "spec", "clusterIP", default="<none>"))),
        ("EXTERNAL-IP", lambda b: "<none>"),
        ("PORT(S)", _ports),
    ],
    "VirtualService": [
        ("GATEWAYS", lambda b: _json_list(dig(b, "spec", "gateways"))),
        ("HOSTS", lambda b: _json_list(dig(b, "spec", "hosts"))),
    ],
    "DestinationRule": [("HOST", lambda b: str(dig(b, "spec", "host", default="")))],
    "Gateway": [("URLS", lambda b: ",".join(dig(b, "status", "urls", default=[]) or []) or "<none>")],
    "ServiceEntry": [
        ("HOSTS", lambda b: _json_list(dig(b, "spec", "hosts"))),
        ("LOCATION", lambda b: str(dig(b, "spec", "location", default=""))),
        ("RESOLUTION", lambda b: str(dig(b, "spec", "resolution", default=""))),
    ],
    "ConfigMap": [("DATA", lambda b: str(len(b.get("data") or {}) + len(b.get("binaryData") or {})))],
    "Secret": [("TYPE", lambda b: str(b.get("type", "Opaque"))),
               ("DATA", lambda b: str(len(b.get("data") or {}) + len(b.get("stringData") or {})))],
    "Namespace": [("STATUS", lambda b: str(dig(b, "status", "phase", default="Active")))],
    # Kubernetes Gateway API (kubectl's printer columns of the CRDs)
    "HTTPRoute": [("HOSTNAMES", lambda b: _json_list(dig(b, "spec", "hostnames")))],
    "GRPCRoute": [("HOSTNAMES", lambda b: _json_list(dig(b, "spec", "hostnames")))],
    "TLSRoute": [("HOSTNAMES", lambda b: _json_list(dig(b, "spec", "hostnames")))],
    "GatewayClass": [("CONTROLLER", lambda b: str(dig(b, "spec", "controllerName", default=""))),
                     ("ACCEPTED", lambda b: _condition(b, "Accepted"))],
}


def _condition(body: dict[str, Any], kind: str) -> str:
    for cond in dig(body, "status", "conditions", default=[]) or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return str(cond.get("status", "Unknown"))
    return "Unknown"

WIDE: dict[str, list[Column]] = {
    "Deployment": [
        ("CONTAINERS", lambda b: ",".join(str(c.get("name", "")) for c in _containers(b))),
        ("IMAGES", lambda b: ",".join(str(c.get("image", "")) for c in _containers(b))),
        ("SELECTOR", lambda b: _selector(dig(b, "spec", "selector", "matchLabels"))),
    ],
    "Service": [("SELECTOR", lambda b: _selector(dig(b, "spec", "selector")))],
    "DestinationRule": [("SUBSETS", lambda b: ",".join(str(s.get("name", "")) for s in
                                                       dig(b, "spec", "subsets", default=[]) or []))],
}
