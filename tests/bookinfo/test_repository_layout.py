"""The article's repository as shipped: YAML that validates and runs our images, the two pipelines, the demo repo."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from graylane.demos.bookinfo import demo, images

ROOT = Path(demo.DEMO_ROOT)
WALKTHROUGH = Path(__file__).parent / "data" / "seed-walkthrough.md"  # the article, in English (see data/README.md)


def docs(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / rel).read_text()) if d]


def kinds(rel: str) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in docs(rel)]


def test_baseline_manifest_has_all_four_services_at_v1():
    found = kinds("platform/kube/bookinfo-reviews-v1.yaml")
    for svc in ("productpage", "details", "reviews", "ratings"):
        assert ("Service", svc) in found
        assert ("ServiceAccount", f"bookinfo-{svc}") in found
        assert ("Deployment", f"{svc}-v1") in found
    assert not [n for k, n in found if k == "Deployment" and not n.endswith("-v1")]
    for d in docs("platform/kube/bookinfo-reviews-v1.yaml"):
        if d["kind"] == "Service":
            assert d["spec"]["ports"] == [{"port": 9080, "name": "http"}]
            assert d["spec"]["selector"] == {"app": d["metadata"]["name"]}
    assert kinds("platform/kube/bookinfo-reviews-v2.yaml") == [("Deployment", "reviews-v2")]
    assert kinds("platform/kube/bookinfo-reviews-v3.yaml") == [("Deployment", "reviews-v3")]


def _containers(rel: str) -> list[dict]:
    return [c for d in docs(rel) if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("rel", ["platform/kube/bookinfo-reviews-v1.yaml", "platform/kube/bookinfo-reviews-v2.yaml",
                                 "platform/kube/bookinfo-reviews-v3.yaml"])
def test_images_are_istios_and_resolve_to_our_services(rel):
    from graylane.runtime.images import builtin_entries, resolve

    entries = builtin_entries()
    for container in _containers(rel):
        m = re.fullmatch(r"docker\.io/istio/examples-bookinfo-(\w+)-(v\d):[\d.]+", container["image"])
        assert m, container["image"]
        resolved = resolve(container, [], entries)
        assert not hasattr(resolved, "reason"), resolved
        assert resolved.command[1:] == ("-m", f"graylane.demos.bookinfo.services.{m.group(1)}")


@pytest.mark.parametrize(("image", "module", "env"), [
    ("registry.istio.io/release/examples-bookinfo-reviews-v2:1.20.3", "reviews",
     {"ENABLE_RATINGS": "true", "STAR_COLOR": "black"}),
    ("docker.io/istio/examples-bookinfo-reviews-v3:1.16.2", "reviews", {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"}),
    ("docker.io/istio/examples-bookinfo-reviews-v1:1.16.2", "reviews", {"ENABLE_RATINGS": "false"}),
    ("istio/examples-bookinfo-ratings-v-faulty:1.20.2", "ratings", {"SERVICE_VERSION": "v-faulty"}),
    ("registry.istio.io/release/examples-bookinfo-productpage-v1:1.20.3", "productpage", {}),
])
def test_builtin_image_patterns(image, module, env):
    from graylane.runtime.images import builtin_entries, resolve

    resolved = resolve({"image": image}, [], builtin_entries())
    assert resolved.command[-1] == f"graylane.demos.bookinfo.services.{module}"
    assert {k: v for k, v in resolved.env if k in env} == env
    assert images.BUILTIN_IMAGES  # the list the runtime imports
    assert resolve({"image": "docker.io/istio/examples-bookinfo-reviews-v9:1"}, [], builtin_entries()).reason


NETWORKING_EXPECTATIONS = {
    "virtual-service-reviews-test-v2.yaml": ("jason", "v2", "v1"),
    "virtual-service-reviews-jason-v2-v3.yaml": ("jason", "v2", "v3"),
}


def test_routing_task_files_have_istios_semantics():
    weights = {}
    for name, split in [("50-v3", {"v1": 50, "v3": 50}), ("80-20", {"v1": 80, "v2": 20}),
                        ("90-10", {"v1": 90, "v2": 10}), ("v2-v3", {"v2": 50, "v3": 50}), ("v3", {"v3": None})]:
        [vs] = docs(f"networking/virtual-service-reviews-{name}.yaml")
        weights[name] = {r["destination"]["subset"]: r.get("weight") for r in vs["spec"]["http"][0]["route"]}
        assert weights[name] == split, name
    for rel, (user, matched, default) in NETWORKING_EXPECTATIONS.items():
        [vs] = docs(f"networking/{rel}")
        first, second = vs["spec"]["http"]
        assert first["match"] == [{"headers": {"end-user": {"exact": user}}}]
        assert first["route"][0]["destination"]["subset"] == matched
        assert second["route"][0]["destination"]["subset"] == default
    [delay] = docs("networking/virtual-service-ratings-test-delay.yaml")
    assert delay["spec"]["http"][0]["fault"] == {"delay": {"percentage": {"value": 100.0}, "fixedDelay": "7s"}}
    [abort] = docs("networking/virtual-service-ratings-test-abort.yaml")
    assert abort["spec"]["http"][0]["fault"] == {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}}
    gw, vs = docs("networking/bookinfo-gateway.yaml")
    assert gw["spec"]["servers"][0]["port"]["number"] == 80 and vs["spec"]["gateways"] == ["bookinfo-gateway"]
    assert [m["uri"] for m in vs["spec"]["http"][0]["match"]] == [
        {"exact": "/productpage"}, {"prefix": "/static"}, {"exact": "/login"}, {"exact": "/logout"},
        {"prefix": "/api/v1/products"}]


@pytest.mark.parametrize("rel", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "networking").glob("*.yaml")))
def test_files_validate_without_errors(rel):
    """Each file, with the Deployments and the DestinationRules it relies on, passes Graylane's validator."""
    from graylane.resources.finding import Severity
    from graylane.resources.load import load_paths
    from graylane.resources.validate import validate

    rules = "networking/destination-rule-all.yaml"
    paths = [ROOT / "platform/kube", ROOT / rel] + ([ROOT / rules] if "virtual-service" in rel else [])
    findings = [f for f in validate(load_paths(paths)) if f.severity == Severity.ERROR]
    # destination-rule-all names subsets (ratings v2-mysql, details v2, ...) that no demo Deployment runs.
    findings = [f for f in findings if f.code != "IST0173"]
    assert not findings, [str(f.message) for f in findings]


# ---- pipelines ----------------------------------------------------------------------------------------------------

def canary() -> dict:
    return demo.load_pipeline(demo.CANARY)


def stage(pipeline: dict, name: str) -> dict:
    [found] = [s for s in pipeline["stages"] if s["name"] == name]
    return found


def verbatim_template() -> str:
    text = WALKTHROUGH.read_text(encoding="utf-8")
    found = re.search(r"```yaml\n(apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService.*?)```", text, re.S)
    assert found, f"{WALKTHROUGH} no longer holds the article's VirtualService template"
    return found.group(1)


def test_canary_ratio_stage_applies_the_articles_template_verbatim():
    template = verbatim_template()
    assert (ROOT / "coding-cd-template/canary-ratio-virtual-service.yaml.tmpl").read_text(encoding="utf-8") == template
    assert stage(canary(), "灰度比例生效")["manifests"] == [yaml.safe_load(template)]


def test_canary_pipeline_shape():
    p = canary()
    assert [c["name"] for c in p["parameterConfig"]] == ["base_version", "canary_version"]
    # issue #20: the canary's manifest and the DestinationRule's subsets follow the parameters
    deploy, rule = stage(p, "部署灰度版本 (canary Deployment)"), stage(p, "更新 Destination Rule")
    art = deploy["manifestArtifact"]
    assert art["name"] == "platform/kube/bookinfo-reviews-${parameters.canary_version}.yaml"
    assert art["type"] == "git/file" and art["version"] == demo.BRANCH and art["reference"] == demo.TEMPLATE_REPO
    assert [s["name"] for s in rule["manifests"][0]["spec"]["subsets"]] == [
        "${parameters.base_version}", "${parameters.canary_version}"]
    assert rule["requisiteStageRefIds"] == [deploy["refId"]]  # an unknown version applies nothing
    check = stage(p, "检查基准版本 (base Deployment)")  # and a base version that is not running neither
    assert (check["type"], check["manifestName"]) == ("findArtifactsFromResource",
                                                      "deployment reviews-${parameters.base_version}")
    assert deploy["requisiteStageRefIds"] == [check["refId"]]
    ratio = stage(p, "设置灰度比例")
    assert ratio["type"] == "manualJudgment"
    [param] = ratio["customParamConfig"]
    assert (param["name"], param["type"], param["min"], param["max"]) == ("canary_ratio", "int", 0, 100)
    judge = stage(p, "是否全量发布")
    assert [o["value"] for o in judge["judgmentInputs"]] == ["全量发布", "结束发布"]
    promote, delete, end = stage(p, "全量发布"), stage(p, "删除基准版本"), stage(p, "结束发布")
    assert promote["requisiteStageRefIds"] == [judge["refId"]] and end["requisiteStageRefIds"] == [judge["refId"]]
    assert delete["requisiteStageRefIds"] == [promote["refId"]]
    assert delete["type"] == "deleteManifest"
    assert delete["manifestName"] == "deployment reviews-${parameters.base_version}"
    assert "#judgment('是否全量发布')" in promote["stageEnabled"]["expression"]
    assert delete["stageEnabled"] == promote["stageEnabled"] != end["stageEnabled"]


def test_baseline_pipeline_deploys_the_four_artifacts_gateway_second():
    p = demo.load_pipeline(demo.BASELINE)
    by_id = {a["id"]: a["defaultArtifact"]["name"] for a in p["expectedArtifacts"]}
    order = [by_id[s["manifestArtifactId"]] for s in sorted(p["stages"], key=lambda s: int(s["refId"]))]
    assert order == ["platform/kube/bookinfo-reviews-v1.yaml", "networking/bookinfo-gateway.yaml",
                     "networking/destination-rule-all-reviews-v1.yaml", "networking/virtual-service-all-v1.yaml"]


@pytest.mark.parametrize("name", [demo.BASELINE, demo.CANARY])
def test_pipelines_pass_the_engines_import_checks(name):
    from graylane.pipelines import model

    body = demo.load_pipeline(name)
    assert [str(p) for p in model.find_problems(model.normalise(body))] == []


def _execution(ratio: str | None, choice: str | None) -> dict:
    p = canary()
    stages = []
    for s in p["stages"]:
        ctx = {k: v for k, v in s.items() if k not in ("name", "type", "refId", "requisiteStageRefIds")}
        if s["name"] == "设置灰度比例" and ratio is not None:
            ctx["customParams"] = {"canary_ratio": ratio}
            ctx["judgmentStatus"] = "continue"
        if s["name"] == "是否全量发布" and choice is not None:
            ctx.update(judgmentStatus="continue", judgmentInput=choice)
        stages.append({"id": f"s{s['refId']}", "refId": s["refId"], "type": s["type"], "name": s["name"],
                       "status": "SUCCEEDED" if s["type"] == "manualJudgment" else "NOT_STARTED",
                       "context": ctx, "outputs": {}, "requisiteStageRefIds": s["requisiteStageRefIds"]})
    return {"id": "e1", "name": p["name"], "application": p["application"], "status": "RUNNING",
            "trigger": {"type": "manual", "user": "alice",
                        "parameters": {"base_version": "v1", "canary_version": "v2"}}, "stages": stages}


@pytest.mark.parametrize("ratio", ["0", "30", "50", "100"])
def test_canary_template_evaluates_to_integer_weights(ratio):
    from graylane import expressions as expr

    execution = _execution(ratio, None)
    ctx = expr.EvaluationContext(execution=execution, stage_id="s4", user="alice")
    result = expr.evaluate_templated(stage(canary(), "灰度比例生效")["manifests"], ctx)
    assert not result.failed, result.summary
    route = result.value[0]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [
        ("v1", 100 - int(ratio)), ("v2", int(ratio))]
    assert all(isinstance(r["weight"], int) for r in route)
    delete = expr.evaluate_templated(stage(canary(), "删除基准版本")["manifestName"], ctx).value
    assert delete == "deployment reviews-v1"


@pytest.mark.parametrize(("choice", "promote"), [("全量发布", True), ("结束发布", False)])
def test_branch_conditions_follow_the_judgment(choice, promote):
    from graylane import expressions as expr

    ctx = expr.EvaluationContext(execution=_execution("50", choice), stage_id="s6", user="alice")
    p = canary()
    assert expr.evaluate_expression(stage(p, "全量发布")["stageEnabled"]["expression"], ctx) is promote
    assert expr.evaluate_expression(stage(p, "结束发布")["stageEnabled"]["expression"], ctx) is (not promote)


# ---- the demo repository ------------------------------------------------------------------------------------------

def test_demo_repository_holds_the_files_at_the_branch(tmp_path):
    repo = tmp_path / "bookinfo"
    first = demo.prepare_repository(repo)
    again = demo.prepare_repository(repo)
    assert first == again  # nothing changed, no new commit
    shown = subprocess.run(["git", "show", f"{demo.BRANCH}:platform/kube/bookinfo-reviews-v2.yaml"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout
    assert shown == (ROOT / "platform/kube/bookinfo-reviews-v2.yaml").read_text()
    tree = subprocess.run(["git", "ls-tree", "-r", "--name-only", demo.BRANCH], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.split()
    assert "networking/destination-rule-v1-v2.yaml" in tree and "coding-cd-template/reviews-canary.json" in tree
    edited = repo / "networking/virtual-service-reviews-v3.yaml"
    edited.write_text("# edited\n")
    assert demo.prepare_repository(repo) == first  # the working copy is restored to the shipped files
    assert edited.read_text() == (ROOT / "networking/virtual-service-reviews-v3.yaml").read_text()


def test_pipelines_point_at_the_local_repository(tmp_path):
    def refs(body: dict) -> set[str]:
        found = {a["defaultArtifact"]["reference"] for a in body["expectedArtifacts"]}
        return found | {s["manifestArtifact"]["reference"] for s in body["stages"] if s.get("manifestArtifact")}

    for name in (demo.BASELINE, demo.CANARY):
        assert refs(demo.load_pipeline(name, tmp_path)) == {str(tmp_path)}
        assert refs(json.loads(demo.pipeline_file(name).read_text())) == {demo.TEMPLATE_REPO}
