"""Istio's own sample YAML and the YAML of istio.io's traffic-management tasks, copied unchanged into
tests/resources/istio_samples/ (see its README): each file loads, passes the schema and admission checks, is
stored, and compiles; each task, applied step by step as istio.io applies it, validates as istioctl would judge
it against the cluster the task builds, and compiles into a snapshot that behaves as the task says.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from graylane.mesh.config import compile_snapshot, endpoints_from_deployments
from graylane.mesh.state import MeshOptions
from graylane.resources.document import Document
from graylane.resources.finding import Severity
from graylane.resources.load import load_paths
from graylane.resources.validate import admission_errors, validate
from graylane.store import Store

ROOT = Path(__file__).parent / "istio_samples"
SAMPLES = ROOT / "istio" / "samples"
TASKS = ROOT / "istio.io"

# Files Kubernetes itself refuses (`kubectl apply` fails too): not resources, or no metadata.name.
REFUSED = {
    "security/spire/istio-spire-config.yaml": ("metadata.name: required field is missing", 3),
}
ALL_FILES = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.yaml"))
ACCEPTED = [f for f in ALL_FILES if f.removeprefix("istio/samples/") not in REFUSED]


def _compile(bodies: list[dict[str, Any]], isolate: bool = False) -> dict[str, Any]:
    endpoints, _ = endpoints_from_deployments(bodies)
    return compile_snapshot(bodies, endpoints, [], MeshOptions(gateway_port_map={}), 1, isolate=isolate)


def test_every_file_is_counted() -> None:
    assert len(ALL_FILES) >= 130, ALL_FILES


@pytest.mark.parametrize("name", ACCEPTED)
def test_sample_loads_passes_admission_is_stored_and_compiles(name: str) -> None:
    docs = load_paths([ROOT / name])
    assert docs, name
    assert [e.plain() for e in admission_errors(docs)] == []
    findings = validate(docs)  # analyzers never crash on a file alone (its references may be elsewhere)
    assert all(f.code != "IST0106" for f in findings)
    store = Store.open("sqlite://")
    store.apply(docs, actor="user:test")
    snapshot = _compile([r.body for r in store.list()], isolate=True)
    # Left out only for a missing TLS Secret (istio.io creates it with `kubectl create secret`): never a crash.
    assert all("Secret" in r["message"] for r in snapshot["rejected"]), snapshot["rejected"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_file_kubernetes_refuses_is_refused_naming_file_line_and_field(name: str) -> None:
    message, line = REFUSED[name]
    errors = admission_errors(load_paths([SAMPLES / name]))
    assert errors, name
    assert errors[0].message == message and errors[0].where.endswith(f"{name}:{line}"), errors[0].plain()


# --------------------------------------------------------------------------------------------- tasks, step by step


def tls_secret(name: str, namespace: str, hosts: tuple[str, ...], ca: bool = False) -> Document:
    """What `kubectl create -n NS secret tls NAME --key ... --cert ...` (or `generic` with ca.crt) creates."""
    from tests.mesh.proxy.l4support import CA

    authority = CA()
    cert, key = authority.issue(*hosts)
    data = {"tls.crt": cert, "tls.key": key, **({"ca.crt": authority.pem} if ca else {})}
    return Document({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls" if not ca else "Opaque",
                     "metadata": {"name": name, "namespace": namespace},
                     "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


Step = str | Callable[[], list[Document]]


@dataclass
class Task:
    """Files applied in order (`kubectl apply [-n namespace] -f`); `allowed`: analyzer errors istioctl reports
    too for this cluster, each with why."""

    steps: list[Step]
    namespace: str | None = None
    allowed: dict[tuple[str, str], str] = field(default_factory=dict)  # (code, text in the message) -> why

    def allows(self, code: str, message: str) -> bool:
        return any(code == c and text in message for c, text in self.allowed)


BOOKINFO = ["samples/bookinfo/platform/kube/bookinfo.yaml", "samples/bookinfo/networking/bookinfo-gateway.yaml",
            "samples/bookinfo/networking/destination-rule-all.yaml"]
# destination-rule-all.yaml names subsets (ratings v2, v2-mysql, v2-mysql-vm, details v2) that bookinfo.yaml runs
# no pods for: istioctl reports them as IST0173 too.
NO_PODS = {("IST0173", ""): "destination-rule-all.yaml defines subsets bookinfo.yaml runs no pods for"}
# The egress tasks route from sidecars to the egress gateway's own Service, which Istio's installation creates: the
# local mesh has no such Service (its one gateway serves the egress Gateways, but a sidecar cannot route to it by
# that name), and istioctl reports the host as missing too on a cluster without an egress gateway.
EGRESS = {("IST0101", '"istio-egressgateway.istio-system.svc.cluster.local"'): "no istio-egressgateway Service"}
BOOKINFO_GAPI = ["samples/bookinfo/platform/kube/bookinfo.yaml",
                 "samples/bookinfo/platform/kube/bookinfo-versions.yaml",
                 "samples/bookinfo/gateway-api/bookinfo-gateway.yaml"]
NET = "samples/bookinfo/networking/"
TCP_ECHO_NS = "istio-io-tcp-traffic-shifting"

TASK_LIST: dict[str, Task] = {
    "request-routing": Task([*BOOKINFO, NET + "virtual-service-all-v1.yaml",
                             NET + "virtual-service-reviews-test-v2.yaml"], allowed=NO_PODS),
    "request-routing-gateway-api": Task([*BOOKINFO_GAPI, "istio.io/request-routing/route_to_version_1_2.yaml",
                                         "istio.io/request-routing/route_based_on_user_identity_3.yaml"]),
    "fault-injection": Task([*BOOKINFO, NET + "virtual-service-all-v1.yaml",
                             NET + "virtual-service-reviews-test-v2.yaml",
                             NET + "virtual-service-ratings-test-delay.yaml",
                             NET + "virtual-service-ratings-test-abort.yaml"], allowed=NO_PODS),
    "traffic-shifting": Task([*BOOKINFO, NET + "virtual-service-all-v1.yaml",
                              NET + "virtual-service-reviews-80-20.yaml",
                              NET + "virtual-service-reviews-90-10.yaml", NET + "virtual-service-reviews-50-v3.yaml",
                              NET + "virtual-service-reviews-v2-v3.yaml",
                              NET + "virtual-service-reviews-jason-v2-v3.yaml",
                              NET + "virtual-service-reviews-v3.yaml"], allowed=NO_PODS),
    "traffic-shifting-gateway-api": Task([*BOOKINFO_GAPI, "samples/bookinfo/gateway-api/route-all-v1.yaml",
                                          "samples/bookinfo/gateway-api/route-reviews-v1.yaml",
                                          "samples/bookinfo/gateway-api/route-reviews-90-10.yaml",
                                          "samples/bookinfo/gateway-api/route-reviews-50-v3.yaml",
                                          "samples/bookinfo/gateway-api/route-reviews-v3.yaml"]),
    "request-timeouts": Task([*BOOKINFO, NET + "virtual-service-all-v1.yaml",
                              "istio.io/request-timeouts/request_timeouts_1.yaml",
                              "istio.io/request-timeouts/request_timeouts_2.yaml",
                              "istio.io/request-timeouts/request_timeouts_3.yaml"], allowed=NO_PODS),
    "bookinfo-versions": Task([*BOOKINFO, "samples/bookinfo/platform/kube/bookinfo-details-v2.yaml",
                               "samples/bookinfo/platform/kube/bookinfo-ratings-v2.yaml",
                               "samples/bookinfo/platform/kube/bookinfo-ratings-v2-mysql.yaml",
                               "samples/bookinfo/platform/kube/bookinfo-ratings-v2-mysql-vm.yaml",
                               "samples/bookinfo/platform/kube/bookinfo-db.yaml",
                               "samples/bookinfo/platform/kube/bookinfo-mysql.yaml",
                               NET + "virtual-service-all-v1.yaml", NET + "virtual-service-details-v2.yaml",
                               NET + "virtual-service-ratings-db.yaml", NET + "virtual-service-ratings-mysql.yaml",
                               NET + "fault-injection-details-v1.yaml", NET + "destination-rule-reviews.yaml",
                               NET + "destination-rule-all-mtls.yaml"],
                              allowed=NO_PODS),
    "helloworld": Task(["samples/helloworld/helloworld.yaml", "samples/helloworld/helloworld-gateway.yaml"]),
    "helloworld-gateway-api": Task(["samples/helloworld/helloworld.yaml",
                                    "samples/helloworld/gateway-api/helloworld-versions.yaml",
                                    "samples/helloworld/gateway-api/helloworld-gateway.yaml",
                                    "samples/helloworld/gateway-api/helloworld-route.yaml"]),
    "httpbin": Task(["samples/httpbin/httpbin.yaml", "samples/httpbin/httpbin-gateway.yaml",
                     "samples/httpbin/sample-client/fortio-deploy.yaml", "samples/curl/curl.yaml",
                     "samples/sleep/sleep.yaml"]),
    "httpbin-gateway-api": Task(["samples/httpbin/httpbin.yaml", "samples/httpbin/gateway-api/httpbin-gateway.yaml"]),
    "circuit-breaking": Task(["samples/httpbin/httpbin.yaml",
                              "istio.io/circuit-breaking/configuring_the_circuit_breaker_1.yaml",
                              "samples/httpbin/sample-client/fortio-deploy.yaml"]),
    "mirroring": Task([f"istio.io/mirroring/{n}.yaml" for n in (
        "before_you_begin_1", "before_you_begin_2", "before_you_begin_3", "before_you_begin_4",
        "creating_a_default_routing_policy_1", "mirroring_traffic_to_v2_1")]),
    "ingress-control": Task(["samples/httpbin/httpbin.yaml", *(f"istio.io/ingress-control/{n}.yaml" for n in (
        "configuring_ingress_using_a_gateway_1", "configuring_ingress_using_a_gateway_2",
        "accessing_ingress_services_using_a_browser_1"))]),
    "ingress-control-gateway-api": Task(["samples/httpbin/httpbin.yaml", *(
        f"istio.io/ingress-control/{n}.yaml" for n in (
            "configuring_ingress_using_a_gateway_3", "configuring_ingress_using_a_gateway_5",
            "accessing_ingress_services_using_a_browser_2"))]),
    "secure-ingress": Task([
        "samples/httpbin/httpbin.yaml",
        lambda: [tls_secret("httpbin-credential", "istio-system", ("httpbin.example.com",))],
        "istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_a_single_host_2.yaml",
        "istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_a_single_host_3.yaml",
        "samples/helloworld/helloworld.yaml",
        lambda: [tls_secret("helloworld-credential", "istio-system", ("helloworld.example.com",))],
        "istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_multiple_hosts_4.yaml",
        "istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_multiple_hosts_5.yaml"]),
    "secure-ingress-mutual": Task([
        "samples/httpbin/httpbin.yaml",
        lambda: [tls_secret("httpbin-credential", "istio-system", ("httpbin.example.com",), ca=True)],
        "istio.io/secure-ingress/configure_a_mutual_tls_ingress_gateway_2.yaml",
        "istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_a_single_host_3.yaml"]),
    "secure-ingress-gateway-api": Task([
        "samples/httpbin/httpbin.yaml", "samples/helloworld/helloworld.yaml",
        lambda: [tls_secret("httpbin-credential", "istio-system", ("httpbin.example.com",)),
                 tls_secret("helloworld-credential", "istio-system", ("helloworld.example.com",))],
        *(f"istio.io/secure-ingress/configure_a_tls_ingress_gateway_for_{n}.yaml" for n in (
            "a_single_host_4", "a_single_host_5", "multiple_hosts_6", "multiple_hosts_7")),
        "istio.io/secure-ingress/configure_a_mutual_tls_ingress_gateway_3.yaml"]),
    "ingress-sni-passthrough": Task([
        lambda: [tls_secret("nginx-server-certs", "default", ("nginx.example.com",))],
        *(f"istio.io/ingress-sni-passthrough/{n}.yaml" for n in (
            "deploy_an_nginx_server_4", "configure_an_ingress_gateway_1", "configure_an_ingress_gateway_3"))]),
    "ingress-sni-passthrough-gateway-api": Task([*(f"istio.io/ingress-sni-passthrough/{n}.yaml" for n in (
        "deploy_an_nginx_server_4", "configure_an_ingress_gateway_2", "configure_an_ingress_gateway_4"))]),
    "tcp-traffic-shifting": Task(["samples/sleep/sleep.yaml", "samples/tcp-echo/tcp-echo-services.yaml",
                                  "samples/tcp-echo/tcp-echo-all-v1.yaml", "samples/tcp-echo/tcp-echo-20-v2.yaml"],
                                 namespace=TCP_ECHO_NS),
    "tcp-traffic-shifting-gateway-api": Task(["samples/sleep/sleep.yaml", "samples/tcp-echo/tcp-echo-services.yaml",
                                              "samples/tcp-echo/gateway-api/tcp-echo-all-v1.yaml",
                                              "samples/tcp-echo/gateway-api/tcp-echo-20-v2.yaml"],
                                             namespace=TCP_ECHO_NS),
    "tcp-echo": Task(["samples/tcp-echo/tcp-echo.yaml", "samples/tcp-echo/tcp-echo-ipv4.yaml"]),
    "websockets": Task(["samples/websockets/app.yaml", "samples/websockets/route.yaml"]),
    "grpc-echo": Task(["samples/grpc-echo/grpc-echo.yaml"]),
    "egress-control": Task(["samples/sleep/sleep.yaml", *(f"istio.io/egress-control/{n}.yaml" for n in (
        "access_an_external_http_service_1", "access_an_external_https_service_1",
        "manage_traffic_to_external_services_2", "manage_traffic_to_external_services_3"))]),
    "egress-external": Task(["samples/sleep/sleep.yaml", "samples/external/aptget.yaml",
                             "samples/external/github.yaml", "samples/external/pypi.yaml",
                             NET + "egress-rule-google-apis.yaml"]),
    "locality-load-balancing": Task(["samples/helloworld/helloworld.yaml", "samples/sleep/sleep.yaml",
                                     "istio.io/locality-failover/configure_locality_failover_1.yaml",
                                     "istio.io/locality-distribute/configure_weighted_distribution_1.yaml"],
                                    namespace="sample"),
    # authn-policy runs httpbin and sleep in namespace foo (`kubectl apply -n foo`); the policies name theirs.
    "security": Task(["samples/httpbin/httpbin.yaml", "samples/sleep/sleep.yaml",
                      *(p.relative_to(ROOT).as_posix() for p in sorted(TASKS.glob("security-*/*.yaml"))),
                      "samples/security/psp/sidecar-psp.yaml", "samples/security/spire/sleep-spire.yaml"],
                     namespace="foo"),
    "egress-gateway": Task(["samples/sleep/sleep.yaml", *(f"istio.io/egress-gateway/{n}.yaml" for n in (
        "egress_gateway_for_http_traffic_1", "egress_gateway_for_http_traffic_3", "egress_gateway_for_http_traffic_5",
        "egress_gateway_for_https_traffic_1", "egress_gateway_for_https_traffic_3",
        "apply_kubernetes_network_policies_9"))], allowed=EGRESS),
    "egress-gateway-gateway-api": Task(["samples/sleep/sleep.yaml", *(f"istio.io/egress-gateway/{n}.yaml" for n in (
        "egress_gateway_for_http_traffic_1", "egress_gateway_for_http_traffic_4", "egress_gateway_for_http_traffic_6",
        "egress_gateway_for_https_traffic_1", "egress_gateway_for_https_traffic_4"))]),
    "egress-gateway-tls-origination": Task(["samples/sleep/sleep.yaml", *(
        f"istio.io/egress-gateway-tls-origination/{n}.yaml" for n in (
            "perform_tls_origination_with_an_egress_gateway_1", "perform_tls_origination_with_an_egress_gateway_3",
            "perform_tls_origination_with_an_egress_gateway_4", "deploy_a_mutual_tls_server_5",
            "deploy_a_mutual_tls_server_6", "deploy_a_container_to_test_the_nginx_deployment_2",
            "configure_mutual_tls_origination_for_egress_traffic_1",
            "configure_mutual_tls_origination_for_egress_traffic_2"))],
        allowed={**EGRESS, ("IST0109", "nginx.example.com"): "istioctl reports it too: the task's VirtualServices "
                 "nginx (tls) and direct-nginx-through-egress-gateway (http) both bind nginx.example.com to mesh"}),
}


def _task_docs(step: Step, namespace: str | None) -> list[Document]:
    docs = step() if callable(step) else load_paths([ROOT / (step if step.startswith("istio.io") else f"istio/{step}")])
    return [d.with_namespace(namespace) if namespace and not d.metadata.get("namespace") else d for d in docs]


def _run(task: Task) -> Iterator[tuple[Step, list[str], Store]]:
    """Apply each step as `graylane apply` does; yield the step, its analyzer errors (judged with the store, as
    `graylane validate` judges files with the live resources) and the store."""
    store = Store.open("sqlite://")
    for step in task.steps:
        docs = _task_docs(step, task.namespace)
        live = [r.body for r in store.list()]
        errors = [f"{f.code} {f.resource} {f.where}: {f.message}" for f in validate(docs, live)
                  if f.severity is Severity.ERROR and not task.allows(f.code, f.message)]
        store.apply(docs, actor="user:test")
        yield step, errors, store


@pytest.mark.parametrize("name", sorted(TASK_LIST))
def test_task_applies_step_by_step_validates_and_compiles(name: str) -> None:
    for step, errors, store in _run(TASK_LIST[name]):
        assert errors == [], f"{step}: {errors}"
        snapshot = _compile([r.body for r in store.list()])  # strict: any resource it cannot compile raises
        assert snapshot["rejected"] == []


def _final_snapshot(name: str) -> dict[str, Any]:
    *_, (_, _, store) = _run(TASK_LIST[name])
    return _compile([r.body for r in store.list()])


def _vs(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in snapshot["virtual_services"] if v["name"] == name)


def test_tcp_echo_20_v2_splits_80_20_on_the_gateway_port() -> None:
    snapshot = _final_snapshot("tcp-traffic-shifting")
    (route,) = [r for r in snapshot["l4_routes"] if r["virtual_service"].endswith("/tcp-echo")]
    host = f"tcp-echo.{TCP_ECHO_NS}.svc.cluster.local"
    assert [(d["host"], d["subset"], d["port"], d["weight"]) for d in route["route"]] == [
        (host, "v1", 9000, 80), (host, "v2", 9000, 20)]
    assert route["match"][0]["port"] == 31400
    assert any(lst["kind"] == "gateway" and lst["port"] == 31400 and lst.get("protocol") == "tcp"
               for lst in snapshot["listeners"])


def test_ratings_test_delay_injects_7s_for_jason_and_abort_500() -> None:
    store = Store.open("sqlite://")
    for step in [*BOOKINFO, NET + "virtual-service-ratings-test-delay.yaml"]:
        store.apply(_task_docs(step, None), actor="user:test")
    rule = _vs(_compile([r.body for r in store.list()]), "ratings")["http"][0]
    assert rule["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert rule["fault"]["delay"] == {"fixed_s": 7.0, "percent": 100.0}
    abort = _vs(_final_snapshot("fault-injection"), "ratings")["http"][0]["fault"]["abort"]
    assert abort["httpStatus"] == 500


def test_request_timeout_half_a_second_and_httpbin_circuit_breaker() -> None:
    rule = _vs(_final_snapshot("request-timeouts"), "reviews")["http"][0]
    assert rule["timeout_s"] == 0.5
    cluster = _final_snapshot("circuit-breaking")["clusters"]["outbound|8000||httpbin.default.svc.cluster.local"]
    assert cluster["policy"]["pool"]["max_connections"] == 1


def test_mirroring_mirrors_all_of_v1s_traffic_to_v2() -> None:
    rule = _vs(_final_snapshot("mirroring"), "httpbin")["http"][0]
    assert [(m["host"], m["subset"], m["percent"]) for m in rule["mirrors"]] == [
        ("httpbin.default.svc.cluster.local", "v2", 100.0)]


def test_reviews_50_v3_and_httproute_splits() -> None:
    store = Store.open("sqlite://")
    for step in [*BOOKINFO, NET + "virtual-service-reviews-50-v3.yaml"]:
        store.apply(_task_docs(step, None), actor="user:test")
    route = _vs(_compile([r.body for r in store.list()]), "reviews")["http"][0]["route"]
    assert [(d["subset"], d["weight"]) for d in route] == [("v1", 50), ("v3", 50)]
