"""The proxy's own answers to gRPC calls, through the real proxy: a grpcio client (h2) and HTTP/1.1 gRPC requests
see Envoy's trailers-only replies (`:status 200`, `grpc-status` from Envoy's HTTP-to-gRPC map, `grpc-message` the
reason), counted as Envoy counts them: `response_code="200"` with the `grpc_response_status` and the flag."""

from __future__ import annotations

import grpc
import httpx
import pytest

from graylane.mesh.state import MeshOptions

from ..helpers import dr, series
from .support import envoy_filter, to
from .test_grpc import echo, grpc_svc  # noqa: F401  # echo: the grpcio upstreams fixture
from .test_h2_from_h1 import GRPC, frame, h1


def grpc_series(mesh, **labels: str) -> float:
    return series(mesh, request_protocol="grpc", response_code="200", **labels)


def call_fails(channel, path: str = "/demo.Echo/Say", body: bytes = b"x") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(path)(body, timeout=5)
    return err.value


def test_no_route_is_unimplemented(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"match": [{"uri": {"prefix": "/demo.Echo/Say"}}], "route": [to("v1", host="echo")]}],
         options=MeshOptions(access_log="json"))
    before = grpc_series(mesh, reporter="source", response_flags="NR", grpc_response_status="12")
    err = call_fails(channel(), "/demo.Echo/Count")
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert grpc_series(mesh, reporter="source", response_flags="NR", grpc_response_status="12") - before == 1
    entry = [e for e in mesh.get("/access_log").json()["entries"] if e["path"] == "/demo.Echo/Count"][-1]
    assert (entry["status"], entry["flags"], entry["grpc_status"]) == (200, "NR", "12")


def test_no_healthy_upstream_is_unavailable(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    # Subset v3 selects no endpoint: Envoy's 503 "no healthy upstream" (UH), as UNAVAILABLE.
    push([{"route": [to("v3", host="echo")]}], extra=(dr("echo", ["v1", "v2", "v3"]),))
    before = grpc_series(mesh, reporter="source", response_flags="UH", grpc_response_status="14")
    err = call_fails(channel())
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "no healthy upstream")
    assert grpc_series(mesh, reporter="source", response_flags="UH", grpc_response_status="14") - before == 1
    assert servers["v1"].calls == servers["v2"].calls == []


def test_connect_failure_is_unavailable(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}])
    servers["v1"].server.stop(0)  # its port now refuses connections (retried by Istio's default policy: URX)
    before = grpc_series(mesh, reporter="source", response_flags="UF,URX", grpc_response_status="14")
    err = call_fails(channel())
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details().startswith("upstream connect error or disconnect/reset before headers")
    assert grpc_series(mesh, reporter="source", response_flags="UF,URX", grpc_response_status="14") - before == 1


def test_route_timeout_is_deadline_exceeded_counted_200(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")], "timeout": "0.2s"}])
    before = grpc_series(mesh, reporter="source", response_flags="UT", grpc_response_status="4")
    err = call_fails(channel(), "/demo.Echo/Slow", b"2")
    assert (err.code(), err.details()) == (grpc.StatusCode.DEADLINE_EXCEEDED, "upstream request timeout")
    assert grpc_series(mesh, reporter="source", response_flags="UT", grpc_response_status="4") - before == 1


def test_fault_abort_with_http_status_is_mapped(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")],
           "fault": {"abort": {"httpStatus": 403, "percentage": {"value": 100}}}}])
    before = grpc_series(mesh, reporter="source", response_flags="FI", grpc_response_status="7")
    err = call_fails(channel())
    assert (err.code(), err.details()) == (grpc.StatusCode.PERMISSION_DENIED, "fault filter abort")
    assert grpc_series(mesh, reporter="source", response_flags="FI", grpc_response_status="7") - before == 1
    assert servers["v1"].calls == []


def test_rate_limited_is_unavailable_with_the_filter_headers(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}], extra=(envoy_filter("SIDECAR_INBOUND", {"app": "echo"}, 1),))
    before = grpc_series(mesh, reporter="destination", response_flags="RL", grpc_response_status="14")
    say = channel().unary_unary("/demo.Echo/Say")
    assert say(b"1", timeout=5) == b"echo-v1:1"
    with pytest.raises(grpc.RpcError) as err:
        say(b"2", timeout=5)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAVAILABLE, "local_rate_limited")
    assert dict(err.value.trailing_metadata())["x-local-rate-limit"] == "true"
    assert grpc_series(mesh, reporter="destination", response_flags="RL", grpc_response_status="14") - before == 1


def test_request_too_large_for_an_http1_upstream_is_unknown(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}], grpc_svc("echo", "http"))  # an HTTP/1.1 port: the body is buffered
    err = call_fails(channel(), body=b"x" * (2 * 2**20))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNKNOWN, "Payload Too Large")
    assert servers["v1"].calls == []


def grpc_head(r: httpx.Response) -> tuple[int, str | None, str | None, str | None, bytes]:
    return (r.status_code, r.headers.get("content-type"), r.headers.get("grpc-status"),
            r.headers.get("grpc-message"), r.content)


def test_http1_grpc_clients_get_trailers_only_replies(mesh, echo):  # noqa: F811
    """HTTP/1.1 gRPC requests (to the h2 upstream, and unrouted): the gRPC status in the response head, as Envoy's
    HTTP/1 codec writes a trailers-only answer; the connection stays usable. Plain HTTP requests keep HTTP's."""
    push, channel, servers = echo
    push([{"match": [{"uri": {"exact": "/demo.Echo/Slow"}}], "route": [to("v1", host="echo")], "timeout": "0.2s"},
          {"match": [{"uri": {"exact": "/demo.Echo/Flaky"}}], "route": [to("v1", host="echo")],
           "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}},
          {"match": [{"uri": {"exact": "/demo.Echo/Say"}}], "route": [to("v3", host="echo")]},
          {"match": [{"uri": {"exact": "/demo.Echo/Count"}}], "route": [to("v1", host="echo")]}],
         extra=(dr("echo", ["v1", "v2", "v3"]),))
    before = {g: grpc_series(mesh, reporter="source", grpc_response_status=g) for g in ("4", "14", "12")}
    with h1(channel.port) as c:
        r = c.post("/demo.Echo/Slow", headers=GRPC, content=frame(b"2"))
        assert grpc_head(r) == (200, "application/grpc", "4", "upstream request timeout", b"")
        assert r.headers["content-length"] == "0" and r.headers["server"] == "istio-envoy"
        r = c.post("/demo.Echo/Flaky", headers=GRPC, content=frame(b""))
        assert grpc_head(r) == (200, "application/grpc", "14", "fault filter abort", b"")
        r = c.post("/demo.Echo/Say", headers=GRPC, content=frame(b""))
        assert grpc_head(r) == (200, "application/grpc", "14", "no healthy upstream", b"")
        r = c.post("/other.Svc/Call", headers=GRPC, content=frame(b""))
        assert grpc_head(r) == (200, "application/grpc", "12", None, b"")
        # The same connection still carries a call that succeeds.
        assert c.post("/demo.Echo/Count", headers=GRPC, content=frame(b"1")).content == frame(b"echo-v1:0")
        # Not gRPC (gRPC-Web is not, as in Envoy): HTTP's local replies.
        r = c.post("/other.Svc/Call", headers={"host": "echo:9080", "content-type": "application/grpc-web"},
                   content=b"")
        assert (r.status_code, "grpc-status" in r.headers) == (404, False)
    assert servers["v1"].calls == ["Slow", "Count"]
    after = {g: grpc_series(mesh, reporter="source", grpc_response_status=g) for g in ("4", "14", "12")}
    assert {g: after[g] - before[g] for g in after} == {"4": 1, "14": 2, "12": 1}
