"""`graylane route`: the offline explainer over YAML files, text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from graylane.cli.main import app
from graylane.errors import NotFound

from .helpers import dr, svc, vs


def deployment(name: str, app_: str, version: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": app_, "version": version}},
                                                        "spec": {"containers": [{"name": app_, "ports": [
                                                            {"containerPort": 9080}]}]}}}}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    docs = [svc("reviews"), svc("productpage"), dr("reviews", ["v1", "v2", "v3"]),
            deployment("productpage-v1", "productpage", "v1"),
            *[deployment(f"reviews-{v}", "reviews", v) for v in ("v1", "v2")],
            vs("reviews", ["reviews"], [
                {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                 "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                 "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 100}}}},
                {"name": "split", "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                                            {"destination": {"host": "reviews", "subset": "v3"}, "weight": 10}],
                 "timeout": "3s"}])]
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["route", *args])


def test_explains_the_matching_rule_and_why_earlier_ones_did_not(files):
    r = run("-f", str(files), "--from", "productpage-v1", "http://reviews:9080/reviews/0", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["virtualService"] == "default/reviews" and out["rule"] == {"index": 1, "name": "split"}
    assert out["skipped"][0]["rule"] == 0 and "end-user" in out["skipped"][0]["why"]
    assert out["timeout"] == "3s" and "Istio default" in out["retries"]


def test_header_rule_with_fault_and_text_output(files):
    r = run("-f", str(files), "--from", "productpage-v1", "http://reviews:9080/", "-H", "end-user: jason")
    assert r.exit_code == 0, r.output
    assert "http[0] 'jason'" in r.output and "subset v2" in r.output and "7s for 100% (DI)" in r.output


def test_count_shows_the_exact_split_and_missing_deployments_are_noted(files):
    r = run("-f", str(files), "--from", "productpage-v1", "http://reviews:9080/", "--count", "100", "-o", "json")
    out = json.loads(r.output)
    assert out["split"] == {"outbound|9080|v1|reviews.default.svc.cluster.local": 90,
                            # reviews-v3 has no Deployment in the input:
                            "outbound|9080|v3|reviews.default.svc.cluster.local: 503 UH": 10}
    assert any("subset v3 of reviews.default.svc.cluster.local" in n for n in out["notes"])
    r = run("-f", str(files), "--from", "productpage-v1", "http://reviews:9080/", "--count", "100")
    assert "split of 100 requests" in r.output


def test_unknown_source_is_a_clear_error(files):
    r = run("-f", str(files), "--from", "nobody", "http://reviews:9080/")
    assert isinstance(r.exception, NotFound)
    assert "no Deployment 'nobody'" in str(r.exception) and "productpage-v1" in str(r.exception)


def test_gateway_entry_explains_with_count(files):
    docs = list(yaml.safe_load_all(files.read_text()))
    docs += [{"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
              "metadata": {"name": "bookinfo-gateway", "namespace": "default"},
              "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                  {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}},
             vs("bookinfo", ["*"], [{"match": [{"uri": {"exact": "/productpage"}}],
                                     "route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}],
                gateways=["bookinfo-gateway"])]
    files.write_text(yaml.safe_dump_all(docs))
    r = run("-f", str(files), "--gateway", "bookinfo-gateway", "http://bookinfo.example/productpage",
            "--count", "10", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["virtualService"] == "default/bookinfo" and out["from"]["workload"] == "istio-ingressgateway"
    assert out["split"] == {"outbound|9080||productpage.default.svc.cluster.local": 10}
    r = run("-f", str(files), "--gateway", "bookinfo-gateway", "http://bookinfo.example/other", "-o", "json")
    assert json.loads(r.output)["status"] == 404


def test_a_grpc_abort_fault_is_explained_as_its_grpc_status(tmp_path):
    docs = [svc("echo"), dr("echo", ["v1"]), deployment("echo-v1", "echo", "v1"),
            deployment("productpage-v1", "productpage", "v1"),
            vs("echo", ["echo"], [{"fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}},
                                   "route": [{"destination": {"host": "echo", "subset": "v1"}}]}])]
    path = tmp_path / "grpc.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    r = run("-f", str(path), "--from", "productpage-v1", "http://echo:9080/demo.Echo/Say", "-o", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["outcome"] == "FAULT_ABORT" and out["grpcStatus"] == "14 UNAVAILABLE" and out["flags"] == "FI"
    assert out["status"] == 200  # a trailers-only gRPC answer, as the proxy reports it (response_code 200)
    assert out["fault"]["abort"].startswith("gRPC status 14 UNAVAILABLE (trailers-only, HTTP 200) for 100%")
