"""The retry layer through real sockets: Istio's default policy, retryOn conditions, another host on each try."""

from __future__ import annotations

import pytest

from ..helpers import free_port, series, vs
from .support import client, to


def test_connection_refused_is_503_uf_after_default_retries(mesh, reviews):
    push, port, ups = reviews
    dead = mesh.endpoint(ups["v1"], "reviews", "v1")
    dead = type(dead)(**{**dead.__dict__, "port": free_port(), "pod": "dead"})
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], endpoints=[dead])
    before = series(mesh, reporter="source", response_flags="UF,URX")
    with client(port) as c:
        r = c.get("http://reviews:9080/")
    assert r.status_code == 503
    assert r.text == "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    assert series(mesh, reporter="source", response_flags="UF,URX") - before == 1


def test_default_retry_policy_retries_503_on_another_host(mesh, reviews):
    push, port, ups = reviews
    bad = mesh.upstream("bad", status=503)
    eps = [mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")]
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], endpoints=eps)
    with client(port) as c:
        results = [c.get("http://reviews:9080/").status_code for _ in range(10)]
    assert results == [200] * 10
    assert bad.requests and all("x-request-id" in r["headers"] for r in bad.requests)


def test_retries_disabled_pass_the_error_through_and_5xx_policy_retries(mesh, reviews):
    push, port, ups = reviews
    bad = mesh.upstream("bad2", status=500)
    eps = [mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")]
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"x-r": {"exact": "0"}}}], "route": [to("v1")], "retries": {"attempts": 0}},
        {"route": [to("v1")], "retries": {"attempts": 3, "retryOn": "5xx"}}])], endpoints=eps)
    with client(port) as c:
        off = [c.get("http://reviews:9080/", headers={"x-r": "0"}).status_code for _ in range(24)]
        on = [c.get("http://reviews:9080/").status_code for _ in range(10)]
    assert 500 in off
    assert on == [200] * 10


@pytest.mark.parametrize(("retry_on", "bad_kind", "expected"), [
    ("reset", "reset", {200}), ("retriable-4xx", 409, {200}), ("retriable-status-codes", "reset", {200, 503}),
], ids=["reset-retried", "409-retried", "reset-not-retried"])
def test_retry_on_reset_and_retriable_4xx_move_to_the_healthy_host(mesh, reviews, retry_on, bad_kind, expected):
    push, port, ups = reviews
    bad = mesh.upstream(f"bad-{retry_on}", status=409 if bad_kind == 409 else 200)
    bad.reset = bad_kind == "reset"
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "retries": {"attempts": 2, "retryOn": retry_on}}])],
         endpoints=[mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")])
    with client(port) as c:
        got = {c.get("http://reviews:9080/").status_code for _ in range(16)}
    assert got == expected
