"""The release timeline's view model (graylane.ui.timeline) and its fragment: pure data in, marks and HTML out."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from graylane.ui.timeline import buckets, build_timeline, roles

T0 = 1_796_517_000_000  # epoch ms
VS = "VirtualService"


def vs_body(v1: int, v2: int) -> dict[str, Any]:
    route = [{"destination": {"host": "reviews", "subset": "v1"}, "weight": v1},
             {"destination": {"host": "reviews", "subset": "v2"}, "weight": v2}]
    return {"kind": VS, "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": route}]}}


def iso(ms: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


EXECUTION = {
    "id": "E1", "startTime": T0, "trigger": {"parameters": {"base_version": "v1", "canary_version": "v2"}},
    "stages": [
        {"id": "j", "name": "设置灰度比例", "type": "manualJudgment", "status": "SUCCEEDED", "endTime": T0 + 20_000,
         "lastModified": {"lastModifiedTime": T0 + 20_000},
         "context": {"judgmentStatus": "continue", "lastModifiedBy": "alice", "customParams": {"canary_ratio": "30"}}},
        {"id": "a", "name": "灰度比例生效", "type": "deployManifest", "status": "SUCCEEDED",
         "outputs": {"manifests": [vs_body(70, 30)]}},
    ]}
REVISIONS = [
    {"kind": VS, "namespace": "default", "name": "reviews", "revision": 1, "actor": "user:bob",
     "time": iso(T0 - 60_000), "action": "created", "before": True, "body": vs_body(100, 0)},
    {"kind": VS, "namespace": "default", "name": "reviews", "revision": 2, "actor": "pipeline:E1/a",
     "time": iso(T0 + 21_000), "action": "configured", "body": vs_body(70, 30)},
]
DR = [{"spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                {"name": "v2", "labels": {"version": "v2"}}]}}]


def graph(v2_errors: float) -> dict[str, Any]:
    return {"nodes": [{"id": "p"}, {"id": "r1", "version": "v1"}, {"id": "r2", "version": "v2"}],
            "edges": [{"source": "p", "target": "r1", "service": "reviews", "requests": 70, "errorRate5xx": 0},
                      {"source": "p", "target": "r2", "service": "reviews", "requests": 30,
                       "errorRate5xx": v2_errors}]}


def timeline() -> Any:
    samples = [(T0, T0 + 20_000, graph(0.0)), (T0 + 20_000, T0 + 40_000, graph(10.0))]
    traces = {("reviews", "v2"): [{"traceId": "ok", "startUs": (T0 + 25_000) * 1000, "errors": 0},
                                  {"traceId": "bad", "startUs": (T0 + 26_000) * 1000, "errors": 1}]}
    return build_timeline(EXECUTION, REVISIONS, samples, traces, DR, now_ms=T0 + 40_000)


def test_judgment_revision_weights_and_error_rates_share_one_axis() -> None:
    t = timeline()
    [judged] = t.lane("Judgments")
    assert judged.text == "alice judged 设置灰度比例: continue (canary_ratio=30)" and judged.x == 50.0
    assert judged.href == "/executions/E1#stage-j"
    [revision] = t.lane("Revisions")
    assert revision.text == "VirtualService default/reviews revision 2 configured by stage 灰度比例生效"
    assert revision.href == "/resources/VirtualService/default/reviews?diff=2"
    before, change = t.lane("Weights")
    assert before.text.startswith("reviews weights before this execution: v1 100% · v2 0%") and before.x == 0
    assert change.text == "reviews weights v1 70% · v2 30% (VirtualService reviews revision 2)"
    assert change.short == "v2 30%" and change.y == 30 and change.x == 52.5
    canary = [m for m in t.lane("Error rate") if "canary" in m.css]
    assert [m.short for m in canary] == ["0%", "10%"]
    assert canary[1].href == "/traces/bad"  # a trace with errors, from that bucket, when the rate is above zero
    assert canary[0].href == "/traces?service=reviews&version=v2"  # no trace in that bucket: its traces
    assert [line.label for line in t.error_lines] == ["reviews v1 (baseline)", "reviews v2 (canary)"]


def test_the_table_lists_marks_in_time_order_and_error_rates_only_where_they_changed() -> None:
    rows = timeline().rows
    assert [m.lane for m in rows] == ["Weights", "Error rate", "Error rate", "Judgments", "Revisions", "Weights",
                                      "Error rate"]
    assert rows[-1].text.startswith("reviews v2 (canary): 5xx 10%")  # v1 stayed at 0%: listed once


def test_buckets_cover_the_window_and_roles_come_from_the_trigger() -> None:
    assert buckets(0, 60_000, 12) == [(i * 5000.0, i * 5000.0 + 5000) for i in range(12)]
    assert len(buckets(0, 3_600_000)) == 12
    assert roles(EXECUTION) == {"v1": "baseline", "v2": "canary"}


@pytest.fixture(scope="module")
def templates() -> Any:
    from graylane.server import ui

    ui.mount(FastAPI())  # registers the console's filters
    return ui.templates


def test_the_fragment_escapes_what_it_renders(templates: Any) -> None:
    hostile = dict(EXECUTION, stages=[dict(EXECUTION["stages"][0], context={
        "judgmentStatus": "continue", "lastModifiedBy": "<img src=x onerror=alert(1)>",
        "customParams": {"note": '"><script>alert(2)</script>'}})])
    t = build_timeline(hostile, [], [], {}, now_ms=T0 + 40_000)
    html = templates.get_template("fragments/timeline.html").render(timeline=t)
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'data-lane="Judgments"' in html and "The timeline as a table" in html


def test_the_release_account_is_the_first_release_stages_account() -> None:
    """A Kubernetes account's release reads its observed traffic from that account's Prometheus."""
    from graylane.ui.release import release_account

    stages = [{"type": "manualJudgment", "context": {"account": "ignored"}},
              {"type": "deployManifest", "context": {"account": "staging", "manifests": []}},
              {"type": "trafficShift", "context": {"account": "prod"}}]
    assert release_account({"stages": stages}) == "staging"
    assert release_account({"stages": stages[:1]}) == "local"
    assert release_account({"stages": [{"type": "canaryRollout", "context": {"account": "${parameters.acct}"}}]}) \
        == "local"  # not evaluated yet: the local mesh until the stage runs
