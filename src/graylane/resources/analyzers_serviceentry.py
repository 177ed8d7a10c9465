"""ServiceEntry analyzers (istioctl's pkg/config/analysis/analyzers/serviceentry):

- serviceentry.Analyzer (ProtocolAddressesAnalyzer): IST0134, once per port without a protocol or with `TCP` (any
  case) of a ServiceEntry that has no `addresses` and no address allocated in its status. istioctl stays silent
  when the mesh config turns on DNS capture with address auto-allocation; Graylane takes no mesh config, so it
  always reports.
- ConflictingServiceEntryProtocolAnalyzer: IST0177 when ServiceEntries visible in one namespace (`exportTo`, as
  Istio scopes hosts) give one host (as written) and port different protocols (compared in upper case); each
  ServiceEntry is reported once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from graylane.resources.analyzers_index import ALL, ISTIO, entry_scopes, strings
from graylane.resources.document import Document, ResourceKey
from graylane.resources.finding import Finding
from graylane.resources.messages import CONFLICTING_SERVICE_ENTRY_PROTOCOL, SERVICE_ENTRY_ADDRESSES_REQUIRED

ADDRESSES_ANALYZER = "serviceentry.Analyzer"
PROTOCOL_ANALYZER = "serviceentry.ConflictingServiceEntryProtocolAnalyzer"


def _ports(entry: Document) -> list[tuple[int, dict[str, Any]]]:
    ports = entry.spec.get("ports")
    return [(i, p) for i, p in enumerate(ports if isinstance(ports, list) else []) if isinstance(p, dict)]


def _protocol(port: dict[str, Any]) -> str:
    protocol = port.get("protocol")
    return protocol if isinstance(protocol, str) else ""


def _allocated(entry: Document) -> bool:
    status = entry.body.get("status")
    return isinstance(status, dict) and bool(status.get("addresses"))


def check_addresses(entry: Document) -> list[Finding]:
    if entry.spec.get("addresses") or _allocated(entry):
        return []
    return [SERVICE_ENTRY_ADDRESSES_REQUIRED.at(entry, ("spec", "ports", i), analyzer=ADDRESSES_ANALYZER)
            for i, port in _ports(entry) if _protocol(port).upper() in ("", "TCP")]


def check_conflicting_protocols(inputs: set[ResourceKey], docs: Iterable[Document]) -> list[Finding]:
    """IST0177 on the input ServiceEntries among those (input and live) that disagree on a host and port's protocol."""
    by_key: dict[tuple[str, str, int], list[tuple[str, Document]]] = defaultdict(list)
    for entry in docs:
        if entry.group != ISTIO or entry.kind != "ServiceEntry":
            continue
        for scope in entry_scopes(entry):
            for host in strings(entry.spec.get("hosts")):
                for _, port in _ports(entry):
                    if isinstance(port.get("number"), int):
                        by_key[(scope, host, port["number"])].append((_protocol(port).upper(), entry))
    reported: set[ResourceKey] = set()
    findings = []
    for (scope, host, number), entries in sorted(by_key.items(), key=lambda item: item[0]):
        group = entries + (by_key.get((ALL, host, number), []) if scope != ALL else [])
        protocols = sorted({protocol for protocol, _ in group})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted({f"{e.namespace}/{e.name}" for _, e in group}))
        for _, entry in group:
            if entry.key in reported:
                continue
            reported.add(entry.key)
            if entry.key in inputs:
                findings.append(CONFLICTING_SERVICE_ENTRY_PROTOCOL.at(
                    entry, ("metadata", "name"), names, host, number, ", ".join(protocols), analyzer=PROTOCOL_ANALYZER))
    return findings
