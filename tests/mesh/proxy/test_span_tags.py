"""Span tags a trace search by version relies on: each span names the workload's version as Istio's sidecars do
(`istio.canonical_revision`: the caller's on the client span, the serving endpoint's on the server span)."""

from __future__ import annotations

from graylane.mesh.state import MeshOptions

from ..helpers import vs
from .support import client, to


def test_spans_name_the_version_that_served_and_the_version_that_called(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1", 50), to("v2", 50)]}])],
         options=MeshOptions(trace_sampling=100.0))
    since = mesh.get("/spans?since=0").json()["next"]
    with client(port) as c:
        served = [c.get("http://reviews:9080/", headers={"x-request-id": f"rid-{i}"}).json()["name"]
                  for i in range(4)]
    spans = mesh.get(f"/spans?since={since}").json()["spans"]
    by_request: dict[str, dict[str, str]] = {}
    for span in spans:
        tags = span["tags"]
        by_request.setdefault(tags["guid:x-request-id"], {})[span["kind"]] = tags["istio.canonical_revision"]
    assert len(by_request) == 4
    for i, name in enumerate(served):
        versions = by_request[f"rid-{i}"]
        assert versions["server"] == name.rsplit("-", 1)[1]  # reviews-v1 -> v1: the endpoint that answered
        assert versions["client"] == "v1"  # productpage-v1, the sidecar's own workload
