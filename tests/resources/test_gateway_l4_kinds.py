"""TCPRoute and TLSRoute as resources: names `graylane get` resolves, the versions served, the schema and the CRD's
rules `graylane validate` applies (each error names its field), apply order and the Kubernetes target's table."""

from __future__ import annotations

import pytest

from graylane.resources.document import Document
from graylane.resources.kinds import resolve_kind
from graylane.resources.load import load_text
from graylane.resources.order import apply_order
from graylane.resources.validate import validate
from graylane.targets.kubernetes import KNOWN_KINDS

G = "gateway.networking.k8s.io"


def findings(text: str) -> list[str]:
    return [f.plain() for f in validate(load_text(text, "r.yaml"), None)]


@pytest.mark.parametrize(("name", "kind"), [("tcproute", "TCPRoute"), ("TCPRoutes", "TCPRoute"),
                                            ("tlsroutes.gateway.networking.k8s.io", "TLSRoute")])
def test_names_resolve(name: str, kind: str) -> None:
    info = resolve_kind(name)
    assert (info.group, info.kind, info.preferred_version) == (G, kind, f"{G}/v1alpha2")


def test_served_versions_are_what_the_gateway_api_releases_serve() -> None:
    assert resolve_kind("tcproute").api_versions == (f"{G}/v1alpha2", f"{G}/v1")
    assert resolve_kind("tlsroute").api_versions == (f"{G}/v1alpha2", f"{G}/v1alpha3", f"{G}/v1")
    assert KNOWN_KINDS[(G, "TCPRoute")] == ("v1alpha2", "tcproutes")
    assert KNOWN_KINDS[(G, "TLSRoute")] == ("v1alpha2", "tlsroutes")


def test_routes_apply_after_gateways_and_grants() -> None:
    docs = [Document({"apiVersion": f"{G}/v1alpha2", "kind": k, "metadata": {"name": k.lower()}})
            for k in ("TLSRoute", "TCPRoute", "ReferenceGrant", "Gateway")]
    assert [d.kind for d in apply_order(docs)] == ["Gateway", "ReferenceGrant", "TCPRoute", "TLSRoute"]


GOOD = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tcp-31400, port: 31400, protocol: TCP}
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo-v1}
spec: {selector: {app: tcp-echo, version: v1}, ports: [{port: 9000, name: tcp}]}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo-v2}
spec: {selector: {app: tcp-echo, version: v2}, ports: [{port: 9000, name: tcp}]}
---
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {selector: {app: a}, ports: [{port: 9443, name: tls}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp-echo}
spec:
  parentRefs: [{name: gw, sectionName: tcp-31400}]
  rules:
  - backendRefs: [{name: tcp-echo-v1, port: 9000, weight: 80}, {name: tcp-echo-v2, port: 9000, weight: 20}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: sni}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [a.example.com, "*.b.example.com"]
  rules: [{backendRefs: [{name: a, port: 9443}]}]
"""


def test_valid_routes_have_no_findings() -> None:
    assert findings(GOOD) == []


@pytest.mark.parametrize(("doc", "expected"), [
    ("kind: TCPRoute\nspec: {rules: [{backendRefs: [{name: a, port: 9000, weight: -1}]}]}",
     "spec.rules[0].backendRefs[0].weight: Input should be greater than or equal to 0"),
    ("kind: TCPRoute\nspec: {rules: [{backendRefs: [{name: a, port: 9000}], matches: []}]}",
     "spec.rules[0].matches: unknown field"),
    ("kind: TCPRoute\nspec: {rules: []}", "spec.rules: List should have at least 1 item"),
    ("kind: TCPRoute\nspec: {rules: [{backendRefs: []}]}", "spec.rules[0].backendRefs: List should have at least 1"),
    ("kind: TCPRoute\nspec: {rules: [{backendRefs: [{name: a}]}]}",
     "spec.rules[0].backendRefs[0]: Must have port for Service reference"),
    ("kind: TCPRoute\nspec: {parentRefs: [{name: gw}, {name: gw}], rules: [{backendRefs: [{name: a, port: 1}]}]}",
     "spec.parentRefs: sectionName or port must be specified"),
    ("kind: TLSRoute\nspec: {hostnames: [Bad_Host], rules: [{backendRefs: [{name: a, port: 1}]}]}",
     "spec.hostnames[0]: invalid hostname 'Bad_Host'"),
])
def test_schema_and_crd_rules_name_the_field(doc: str, expected: str) -> None:
    text = findings(f"apiVersion: {G}/v1alpha2\nmetadata: {{name: r}}\n{doc}\n")
    assert any(expected in f for f in text), text


def test_tlsroute_hostnames_are_required_from_v1alpha3() -> None:
    body = "kind: TLSRoute\nmetadata: {name: r}\nspec: {rules: [{backendRefs: [{name: a, port: 9443}]}]}\n"
    assert not [f for f in findings(f"apiVersion: {G}/v1alpha2\n{body}") if "hostname" in f]
    assert any("spec.hostnames: TLSRoute needs at least one hostname" in f
               for f in findings(f"apiVersion: {G}/v1alpha3\n{body}"))


def test_an_unserved_version_is_refused() -> None:
    text = findings(f"apiVersion: {G}/v1beta1\nkind: TCPRoute\nmetadata: {{name: r}}\n"
                    "spec: {rules: [{backendRefs: [{name: a, port: 1}]}]}\n")
    assert any('no matches for kind "TCPRoute" in version' in f for f in text), text


def test_references_are_checked_as_for_httproutes() -> None:
    """IST0101 for a parent Gateway and a backendRef Service that do not exist, and a port the Service lacks; a
    warning for a cross-namespace backendRef no ReferenceGrant opens to TCPRoutes."""
    text = findings(f"""
apiVersion: v1
kind: Service
metadata: {{name: tcp-echo, namespace: default}}
spec: {{selector: {{app: tcp-echo}}, ports: [{{port: 9000, name: tcp}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: prod}}
spec: {{selector: {{app: db}}, ports: [{{port: 5432, name: tcp}}]}}
---
apiVersion: {G}/v1alpha2
kind: TCPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: nowhere}}]
  rules:
  - backendRefs: [{{name: tcp-echo, port: 9001}}, {{name: ghost, port: 1}}, {{name: db, namespace: prod, port: 5432}}]
""")
    joined = "\n".join(text)
    for expected in ("spec.parentRefs[0].name: Referenced parent Gateway not found: \"default/nowhere\"",
                     "spec.rules[0].backendRefs[0].port: Referenced backendRef Service port not found",
                     "spec.rules[0].backendRefs[1].name: Referenced backendRef Service not found: \"default/ghost\"",
                     "no ReferenceGrant in prod allows TCPRoutes from default: its share of the traffic is refused"):
        assert expected in joined, joined
