"""The console's view models (graylane.ui.views): pure functions, no server, no browser."""

from __future__ import annotations

import pytest
from tests.ui.canary_pipeline import FULL, RELEASE, judgments_only

from graylane.ui.views import (
    diff_lines,
    findings,
    markdown,
    option_consequences,
    stage_rows,
    time_tag,
    waiting_judgments,
)


@pytest.mark.parametrize("value", [
    pytest.param(1796517280680, id="epoch-ms-int"),
    pytest.param("1796517280680", id="epoch-ms-text"),
    pytest.param("2026-12-06T00:34:40.680Z", id="iso"),
])
def test_times_render_as_a_time_element_never_as_epoch_milliseconds(value):
    html = str(time_tag(value))
    assert html == '<time class="ts" datetime="2026-12-06T00:34:40.680Z">2026-12-06 00:34:40 UTC</time>'


def test_missing_times_render_nothing_and_text_stays_escaped():
    assert str(time_tag(None)) == "" and str(time_tag(0)) == ""
    assert str(time_tag("<b>soon</b>")) == "&lt;b&gt;soon&lt;/b&gt;"


def judgment(status="RUNNING", roles=None):
    return {"type": "manualJudgment", "status": status, "context": {"requiredJudgmentRoles": roles or []}}


def test_waiting_judgments_are_those_running_that_this_role_may_judge():
    exe = {"id": "e1", "stages": [judgment(), judgment("SUCCEEDED"), judgment(roles=["sre"])]}
    assert len(waiting_judgments([exe], "approver")) == 1
    assert len(waiting_judgments([exe], "sre")) == 2
    assert len(waiting_judgments([exe], "admin")) == 2


def test_apply_warnings_become_findings_with_the_catalog_level():
    rows = findings(['[IST0101] (VirtualService default/reviews console:10) Referenced host+subset in '
                     'destinationrule not found: "reviews+v3"',
                     "[GL0002] (VirtualService default/reviews console:7) route weights sum to 110, not 100",
                     "something without a code"])
    assert [(f.code, f.level) for f in rows] == [("IST0101", "Error"), ("GL0002", "Warning"), ("", "Warning")]
    assert rows[0].resource == "VirtualService default/reviews console:10" and rows[0].message.endswith('"reviews+v3"')


def test_diff_lines_are_classed_for_colour():
    assert diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z") == [
        ("file", "--- a"), ("file", "+++ b"), ("hunk", "@@ -1 +1 @@"), ("del", "-x"), ("add", "+y"), ("", " z")]


def test_instructions_render_markdown_but_never_raw_html():
    html = str(markdown("Send to `v2` **now** <script>alert(1)</script>"))
    assert "<code>v2</code>" in html and "<strong>now</strong>" in html and "<script>" not in html


def test_the_full_release_option_is_irreversible_and_says_what_it_does():
    pipeline = judgments_only()
    stages = [{**s, "id": s["refId"], "context": {k: v for k, v in s.items() if k not in ("refId", "type", "name")}}
              for s in pipeline["stages"]]
    exe = {"stages": stages, "trigger": {"parameters": {"base_version": "v1", "canary_version": "v2"}}}
    release = next(s for s in stages if s["name"] == RELEASE)
    out = option_consequences(exe, release)
    effects, irreversible = out[FULL]
    assert irreversible and effects == ["route reviews: 100% to reviews v2", "delete deployment reviews-v1"]
    assert out["结束发布"] == ([], False)


def test_stage_rows_say_what_each_stage_runs_after():
    elements = [{"group": "nodes", "data": {"id": "a", "label": "A", "status": "SUCCEEDED"}},
                {"group": "nodes", "data": {"id": "b", "label": "B", "status": "RUNNING", "duration": "2.0s"}},
                {"group": "edges", "data": {"id": "a-b", "source": "a", "target": "b"}}]
    assert stage_rows(elements)[1] == {"id": "b", "label": "B", "status": "RUNNING", "duration": "2.0s",
                                       "after": ["A"]}


def test_the_release_view_puts_configured_weights_beside_observed_shares():
    from graylane.ui.release import release_view

    exe = {"status": "RUNNING", "stages": [
        {"id": "d", "type": "deployManifest", "status": "SUCCEEDED", "context": {"manifests": [
            {"kind": "VirtualService", "spec": {"hosts": ["reviews"]}}]}},
        {"id": "j", "name": "设置灰度比例", "type": "manualJudgment", "status": "RUNNING", "context": {}}]}
    vs = [{"metadata": {"name": "reviews", "namespace": "default"}, "spec": {"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "base"}, "weight": 70},
        {"destination": {"host": "reviews", "subset": "canary"}, "weight": 30}]}]}}]
    dr = [{"spec": {"host": "reviews.default.svc.cluster.local", "subsets": [
        {"name": "base", "labels": {"version": "v1"}}, {"name": "canary", "labels": {"version": "v2"}}]}}]
    graph = {"nodes": [{"id": "p"}, {"id": "r1", "version": "v1"}, {"id": "r2", "version": "v2"}],
             "edges": [{"source": "p", "target": "r1", "service": "reviews", "requests": 702, "errorRate5xx": 0,
                        "p95": 12.0},
                       {"source": "p", "target": "r2", "service": "reviews", "requests": 298, "errorRate5xx": 1.5,
                        "p95": 20.25}]}
    view = release_view(exe, vs, dr, graph, "approver")
    [svc] = view.services
    assert [(v.version, v.configured, v.observed, v.error_rate, v.p95_ms) for v in svc.versions] == [
        ("v1", 70.0, 70.2, 0.0, 12.0), ("v2", 30.0, 29.8, 1.5, 20.2)]
    assert svc.requests == 1000 and svc.route == "VirtualService default/reviews"
    assert view.current == ["设置灰度比例"] and view.waiting is not None and view.waiting["id"] == "j"
    assert view.actions == ["pause", "cancel"]


def test_pipeline_actors_link_to_their_execution_and_stage():
    from graylane.ui.views import actor_href, editable_yaml_body

    assert actor_href("pipeline:01J9ABC/7f3e") == "/executions/01J9ABC#stage-7f3e"
    assert actor_href("user:alice") is None
    body = {"kind": "ConfigMap", "metadata": {"name": "x", "uid": "u", "resourceVersion": "7"}, "data": {"a": "b"}}
    assert editable_yaml_body(body) == {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}


def test_an_http_route_release_reads_backend_weights_by_the_services_version():
    from graylane.ui.release import release_view

    exe = {"status": "RUNNING", "stages": [{"type": "deployManifest", "status": "SUCCEEDED", "context": {"manifests": [
        {"kind": "HTTPRoute", "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}]}}]}}]}
    route = {"metadata": {"name": "reviews", "namespace": "default"}, "spec": {
        "parentRefs": [{"kind": "Service", "name": "reviews"}],
        "rules": [{"backendRefs": [{"name": "reviews-v1", "weight": 80}, {"name": "reviews-v2", "weight": 20}]}]}}
    services = [{"metadata": {"name": f"reviews-{v}"}, "spec": {"selector": {"app": "reviews", "version": v}}}
                for v in ("v1", "v2")]
    [svc] = release_view(exe, [], [], {}, "admin", [route], services).services
    assert svc.route == "HTTPRoute default/reviews"
    assert [(v.version, v.configured) for v in svc.versions] == [("v1", 80.0), ("v2", 20.0)]
    # a header route placed first (setHeaderRoute, as Argo's Gateway API plugin adds it) is not the split shown
    header = {"name": "canary-testers", "matches": [{"headers": [{"name": "x-canary", "value": "yes"}]}],
              "backendRefs": [{"name": "reviews-v2", "port": 9080}]}
    route["spec"]["rules"].insert(0, header)
    [svc] = release_view(exe, [], [], {}, "admin", [route], services).services
    assert [(v.version, v.configured) for v in svc.versions] == [("v1", 80.0), ("v2", 20.0)]


def test_a_pipeline_revision_is_approved_by_the_nearest_judgment_upstream():
    from graylane.ui.views import approval_of

    stages = [{**s, "id": s["name"], "context": {}} for s in judgments_only()["stages"]]
    by_name = {s["name"]: s for s in stages}
    by_name[RELEASE]["context"] = {"lastModifiedBy": "alice", "judgmentInput": FULL}
    by_name["设置灰度比例"]["context"] = {"lastModifiedBy": "bob"}
    exe = {"stages": stages}
    assert approval_of(exe, "删除基准版本") == f"alice ({RELEASE}: {FULL})"
    assert approval_of(exe, RELEASE) == "bob (设置灰度比例)"
    assert approval_of(exe, "设置灰度比例") is None


def test_a_ratio_previews_the_split_its_next_deploy_would_apply():
    from graylane.ui.preview import preview, spec_diff

    pipeline = judgments_only(apply_ratio=True)
    stages = [{**s, "id": s["refId"], "status": "NOT_STARTED",
               "context": {k: v for k, v in s.items() if k not in ("refId", "type", "name", "requisiteStageRefIds")}}
              for s in pipeline["stages"]]
    exe = {"id": "e1", "name": "p", "application": "bookinfo", "status": "RUNNING", "stages": stages,
           "trigger": {"type": "manual", "user": "alice", "parameters": {"base_version": "v1", "canary_version": "v2"}}}
    ratio = next(s for s in stages if s["name"] == "设置灰度比例")
    [p] = preview(exe, ratio, {"canary_ratio": "30"}, "alice")
    assert p.stage == "灰度比例生效" and p.failed == []
    assert [(s.virtual_service, s.shares) for s in p.splits] == [("reviews", [("reviews v1", 70), ("reviews v2", 30)])]
    live = {"spec": {**p.manifests[0]["spec"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"},
                                                                     "weight": 100}]}]}}
    assert "+    weight: 30" in spec_diff(live, p.manifests[0])
    [bad] = preview(exe, ratio, {"canary_ratio": "abc"}, "alice")
    assert bad.failed and bad.splits == []  # the expression says why; no split is guessed


def test_cancel_asks_naming_what_stays_deployed_as_the_execution_stands_now():
    from graylane.ui.release import cancel_questions

    vs = {"kind": "VirtualService", "metadata": {"name": "reviews"}, "spec": {"hosts": ["reviews"]}}
    exe = {"stages": [{"type": "deployManifest", "status": "NOT_STARTED", "context": {"manifests": [vs]}}]}
    assert cancel_questions(exe) == {
        "cancel": "Cancel this execution? What it deployed stays deployed.",
        "return": "Cancel this execution and put reviews traffic back as it was before it started? "
                  "Its other changes stay deployed."}
    exe["stages"][0].update(status="RUNNING", outputs={"manifests": [vs]})
    assert cancel_questions(exe)["cancel"] == "Cancel this execution? What it deployed stays deployed: " \
                                              "VirtualService reviews."
    assert cancel_questions({"stages": []}) == {"cancel": "Cancel this execution? What it deployed stays deployed."}


def test_a_stage_exception_reads_as_its_error_text_not_json():
    from graylane.server.ui_pipelines import stage_view

    error = "stage hold: waitTime 'soon' is not a number of seconds"
    stage = {"context": {"exception": {"details": {"error": error, "errors": [error]}, "taskName": "wait"},
                         "skipReason": {"why": "没有"}}}
    assert stage_view(stage)["messages"] == [f"exception: {error}", 'skipReason: {"why": "没有"}']
