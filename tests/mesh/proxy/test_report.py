"""The report layer through real sockets: the access log."""

from __future__ import annotations

from graylane.mesh.state import MeshOptions

from ..helpers import vs
from .support import client, to


def test_access_log_records_requests_when_enabled(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], options=MeshOptions(access_log="json"))
    with client(port) as c:
        c.get("http://reviews:9080/logged", headers={"x-request-id": "rid-42"})
    entry = next(e for e in mesh.get("/access_log").json()["entries"] if e["request_id"] == "rid-42")
    assert entry["status"] == 200 and entry["flags"] == "-" and entry["path"] == "/logged"
    assert entry["upstream_cluster"] == "outbound|9080|v1|reviews.default.svc.cluster.local"
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    assert mesh.get("/access_log").json()["enabled"] is False
