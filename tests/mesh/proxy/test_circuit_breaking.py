"""Istio's circuit-breaking task and outlier detection through the real proxy, with Envoy's semantics:
local overflow (UO) never counts as a host failure, `interval` is a timer, an ejection ends with its policy."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest

from ..helpers import dr, free_port, proxy_workers, series, sidecar, svc

# istio.io tasks/traffic-management/circuit-breaking: the DestinationRule, verbatim.
TASK_POLICY = {
    "connectionPool": {"tcp": {"maxConnections": 1},
                       "http": {"http1MaxPendingRequests": 1, "maxRequestsPerConnection": 1}},
    "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "3m",
                         "maxEjectionPercent": 100},
}


def httpbin(mesh, port: int, policy: dict | None, upstream: str = "httpbin", status: int = 200) -> None:
    """The task's setup: Service httpbin:8000, one pod, the DestinationRule (no VirtualService)."""
    up = mesh.upstreams.get(upstream) or mesh.upstream(upstream, status)
    resources = [svc("httpbin", port=8000)]
    if policy is not None:
        resources.append(dr("httpbin", [], policy=policy))
    mesh.push(resources, [mesh.endpoint(up, "httpbin", "v1")], [sidecar(port, app="fortio")])


def fortio_load(port: int, connections: int, calls: int, path: str) -> list[int]:
    """`fortio load -c C -qps 0 -n N`: C keep-alive connections started together, N/C calls each, back to back."""
    start = threading.Barrier(connections)

    def worker(_: int) -> list[int]:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
            start.wait()
            return [c.get(f"http://httpbin:8000{path}").status_code for _ in range(calls // connections)]

    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        return [code for codes in pool.map(worker, range(connections)) for code in codes]


def endpoints(mesh, service: str = "httpbin") -> list[dict]:
    return [e for c in mesh.get("/clusters").json()["clusters"] if c["service"].startswith(service + ".")
            for e in c["endpoints"]]


def eventually(check, what: str, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def test_istio_circuit_breaking_task_trips_the_breaker_without_ejecting_the_host(mesh):
    port = free_port()
    httpbin(mesh, port, TASK_POLICY)
    flags = {f: series(mesh, reporter="source", destination_service_name="httpbin", response_flags=f)
             for f in ("-", "UO", "UH")}
    # httpbin's /get takes a few milliseconds behind its own sidecar: the upstream here answers in 5 ms.
    # The limits hold per worker (docs/dataplane.md, Workers): with N workers, 3N connections put at least 3 on
    # one worker, as the task puts 3 on its one proxy.
    workers = proxy_workers()
    codes = fortio_load(port, connections=3 * workers, calls=30 * workers, path="/delay/0.005")
    after = {f: series(mesh, reporter="source", destination_service_name="httpbin", response_flags=f)
             for f in flags}
    ok, tripped = codes.count(200), codes.count(503)
    assert ok + tripped == 30 * workers
    # Istio's docs show 19/30 (fortio 0.6) and 11/30 (fortio 1.3) successes for this run; here runs spread over
    # about 7..19 with the machine's timing. The old proxy counted its own overflow as host errors, ejected the
    # only host for 3 minutes and answered 2/30.
    assert 5 <= ok <= 24 or workers > 1, codes
    assert tripped > 0, codes
    # Every 503 is local overflow (UO), as upstream_rq_pending_overflow counts it; none is "no healthy upstream".
    assert {f: after[f] - flags[f] for f in flags} == {"-": ok, "UO": tripped, "UH": 0}
    assert [e["times_ejected"] for e in endpoints(mesh)] == [0]


def test_an_ejection_ends_with_the_destination_rule_that_configured_it(mesh):
    port = free_port()
    httpbin(mesh, port, TASK_POLICY, upstream="failing", status=500)
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
        assert c.get("http://httpbin:8000/get").status_code == 500  # consecutive5xxErrors: 1 -> ejected
        r = c.get("http://httpbin:8000/get")
        assert (r.status_code, r.text) == (503, "no healthy upstream")
        assert [e["ejected"] for e in endpoints(mesh)] == [True]
        httpbin(mesh, port, None, upstream="failing")  # kubectl delete destinationrule httpbin
        assert c.get("http://httpbin:8000/get").status_code == 500  # the host is back: its own answer
    assert [(e["ejected"], e["times_ejected"]) for e in endpoints(mesh)] == [(False, 0)]


def test_the_interval_timer_returns_an_ejected_host_without_any_request(mesh):
    port = free_port()
    policy = {"outlierDetection": {"consecutive5xxErrors": 1, "interval": "50ms", "baseEjectionTime": "1500ms",
                                   "maxEjectionPercent": 100}}
    httpbin(mesh, port, policy, upstream="flaky", status=500)
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
        assert c.get("http://httpbin:8000/get").status_code == 500
    assert [e["ejected"] for e in endpoints(mesh)] == [True]
    eventually(lambda: [e["ejected"] for e in endpoints(mesh)] == [False], "the host was never returned")
    assert [e["times_ejected"] for e in endpoints(mesh)] == [1]


@pytest.mark.parametrize(("max_percent", "hosts", "ejected"), [
    pytest.param(10, 1, 1, id="istio-default-still-ejects-one-host"),
    pytest.param(50, 4, 2, id="half-of-four"),
    pytest.param(100, 3, 3, id="all"),
])
def test_max_ejection_percent_caps_how_many_hosts_are_out(mesh, max_percent, hosts, ejected):
    port = free_port()
    ups = [mesh.upstream(f"bad-{max_percent}-{i}", status=500) for i in range(hosts)]
    mesh.push([svc("httpbin", port=8000), dr("httpbin", [], policy={"outlierDetection": {
        "consecutive5xxErrors": 1, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": max_percent}})],
        [mesh.endpoint(up, "httpbin", "v1") for up in ups], [sidecar(port, app="fortio")])
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
        for _ in range(hosts * 4):
            c.get("http://httpbin:8000/get")
    assert sum(e["ejected"] for e in endpoints(mesh)) == ejected
