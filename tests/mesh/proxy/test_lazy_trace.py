"""Lazy trace context (issue #17): ids only for sampled or continued traces; the sampling decision always travels."""

from __future__ import annotations

import re

from graylane.mesh.state import MeshOptions

from ..helpers import vs
from .support import client, to

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_an_unsampled_request_carries_the_decision_and_a_request_id_but_no_trace_ids(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], options=MeshOptions(trace_sampling=0.0))
    with client(port) as c:
        fresh = [c.get("http://reviews:9080/").json()["headers"] for _ in range(3)]
        told = c.get("http://reviews:9080/", headers={"x-b3-sampled": "0"}).json()["headers"]
    for h in fresh:
        assert h["x-b3-sampled"] == "0" and "x-b3-traceid" not in h and "traceparent" not in h
        assert UUID4.match(h["x-request-id"])
    assert len({h["x-request-id"] for h in fresh}) == 3
    assert told["x-b3-sampled"] == "0" and "x-b3-traceid" not in told


def test_an_upstream_decision_not_to_sample_wins_over_sampling_everything(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], options=MeshOptions(trace_sampling=100.0))
    since = mesh.get("/spans?since=0").json()["next"]
    with client(port) as c:
        h = c.get("http://reviews:9080/", headers={"x-b3-sampled": "0", "x-request-id": "rid-1"}).json()["headers"]
        sampled = c.get("http://reviews:9080/", headers={"x-request-id": "rid-2"}).json()["headers"]
    assert h["x-b3-sampled"] == "0" and "x-b3-traceid" not in h and h["x-request-id"] == "rid-1"
    assert sampled["x-b3-sampled"] == "1" and len(sampled["x-b3-traceid"]) == 32
    spans = mesh.get(f"/spans?since={since}").json()["spans"]
    assert {s["tags"]["guid:x-request-id"] for s in spans} == {"rid-2"}
