"""Istio's Gateway API tcp-echo sample (samples/tcp-echo/gateway-api: the tcp-echo-gateway, its TCPRoute all-v1
then 20-v2) applied unchanged with `graylane apply` onto a running local mesh, a TLSRoute beside it; their statuses
as the control plane writes them, read with `graylane get ... -o yaml`, and the TLSRoute's HOSTNAMES column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.test_gateway_api_bookinfo import conditions, resource_yaml
from tests.e2e.test_istio_tasks import Local, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "istio_samples" / "istio" / "samples" / "tcp-echo"
TLS = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-gateway}
spec:
  gatewayClassName: istio
  listeners:
  - {name: tls, port: 8443, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: outside}
spec:
  parentRefs: [{name: tls-gateway}]
  hostnames: [nginx.example.org]
  rules: [{backendRefs: [{name: tcp-echo-v1, port: 9000}]}]
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("gateway-l4") / "state"
    state.mkdir()
    env = Local(state)
    env.cli("up", "--admin-port", str(env.admin_port), "--gateway-port", f"31400={free_port()}",
            "--gateway-port", f"8443={free_port()}")
    try:
        yield env
    finally:
        env.cli("down", check=False)


def test_tcp_echo_sample_and_a_refused_tlsroute(local: Local, tmp_path: Path) -> None:
    local.apply(SAMPLES / "gateway-api" / "tcp-echo-all-v1.yaml")
    route = resource_yaml(local, "tcproute", "tcp-echo", "ResolvedRefs")
    [parent] = route["status"]["parents"]
    assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": "tcp-echo-gateway", "sectionName": "tcp-31400"}
    assert conditions(parent["conditions"]) == {"Accepted": ("True", "Accepted"),
                                                "ResolvedRefs": ("True", "ResolvedRefs")}
    gw = resource_yaml(local, "gateways.gateway.networking.k8s.io", "tcp-echo-gateway", "attachedRoutes: 1")
    [listener] = gw["status"]["listeners"]
    assert listener["attachedRoutes"] == 1 and conditions(listener["conditions"])["Programmed"][0] == "True"
    assert listener["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]

    local.apply(SAMPLES / "gateway-api" / "tcp-echo-20-v2.yaml")
    route = resource_yaml(local, "tcproutes.gateway.networking.k8s.io", "tcp-echo", "observedGeneration: 2")
    assert all(c["observedGeneration"] == 2 for c in route["status"]["parents"][0]["conditions"])

    (tmp_path / "tls.yaml").write_text(TLS)
    local.apply(tmp_path / "tls.yaml")
    tls = resource_yaml(local, "tlsroute", "outside", "NoMatchingListenerHostname")
    assert conditions(tls["status"]["parents"][0]["conditions"])["Accepted"] == ("False", "NoMatchingListenerHostname")
    table = local.cli("get", "tlsroutes").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "HOSTNAMES"]
    assert table[1].split()[:2] == ["outside", '["nginx.example.org"]']
