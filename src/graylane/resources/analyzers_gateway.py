"""Gateway analyzer: IST0101 for a server's `tls.credentialName` that names no Secret (istioctl's
gateway.SecretAnalyzer). The Secret is looked for in the Gateway's namespace and in `istio-system`, where the
local mesh reads it (docs/dataplane.md, Protocols)."""

from __future__ import annotations

from collections.abc import Iterable

from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import REFERENCED_RESOURCE_NOT_FOUND

SECRET_ANALYZER = "gateway.SecretAnalyzer"


def check_gateway_secrets(gw: Document, docs: Iterable[Document]) -> list[Finding]:
    secrets = {(d.namespace, d.name) for d in docs if d.kind == "Secret" and d.group == ""}
    findings = []
    servers = gw.spec.get("servers")
    for i, server in enumerate(servers if isinstance(servers, list) else []):
        tls = server.get("tls") if isinstance(server, dict) else None
        name = tls.get("credentialName") if isinstance(tls, dict) else None
        if not isinstance(name, str) or not name:
            continue
        if (gw.namespace, name) not in secrets and ("istio-system", name) not in secrets:
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(gw, ("spec", "servers", i, "tls", "credentialName"),
                                                             "credentialName", name, analyzer=SECRET_ANALYZER))
    return findings
