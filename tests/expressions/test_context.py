"""The root object: precedence of precomputed values, stage context and ancestor outputs."""

from __future__ import annotations

from typing import Any

import pytest

from graylane.expressions import ExpressionError, evaluate_expression, evaluate_templated


def test_stage_context_shadows_ancestor_outputs(make_ctx: Any, article: Any) -> None:
    execution = article()
    execution["stages"][3]["context"]["region"] = "local"
    assert evaluate_expression("region", make_ctx(execution)) == "local"


def test_precomputed_values_win_over_stage_context(make_ctx: Any, article: Any) -> None:
    execution = article()
    execution["stages"][3]["context"]["parameters"] = {"base_version": "shadow"}
    assert evaluate_expression("parameters.base_version", make_ctx(execution)) == "v1"


def test_synthetic_stage_sees_parent_and_its_ancestors(make_ctx: Any, article: Any) -> None:
    execution = article()
    execution["stages"][3]["outputs"] = {"vsName": "reviews"}
    ctx = make_ctx(execution, stage_id="s4b")
    assert evaluate_expression("vsName", ctx) == "reviews"
    assert evaluate_expression("region", ctx) == "ap-shanghai"
    assert evaluate_expression("waitTime", ctx) == 5  # its own context first


def test_downstream_outputs_are_not_visible(make_ctx: Any, article: Any) -> None:
    execution = article()
    execution["stages"][6]["outputs"] = {"later": 1}
    result = evaluate_templated("${later}", make_ctx(execution))
    assert result.value == "${later}" and result.summary["later"][0]["level"] == "INFO"


def test_stage_addressed_by_ref_id(make_ctx: Any) -> None:
    assert evaluate_expression("#currentStage().name", make_ctx(stage_id="4")) == "灰度比例生效"


def test_without_a_stage_the_execution_is_the_root(make_ctx: Any) -> None:
    ctx = make_ctx(stage_id=None)
    assert evaluate_expression("name + ':' + status", ctx) == "reviews-canary:RUNNING"
    assert evaluate_expression("parameters.canary_version", ctx) == "v2"
    with pytest.raises(ExpressionError, match="there is no current stage"):
        evaluate_expression("#currentStage()", ctx)


def test_parameters_are_strings_and_missing_parameters_are_empty(make_ctx: Any, article: Any) -> None:
    assert evaluate_expression("parameters.replicas + 1", make_ctx()) == "31"
    execution = article()
    del execution["trigger"]["parameters"]
    assert evaluate_expression("parameters.isEmpty()", make_ctx(execution)) is True


def test_scm_info_from_git_trigger(make_ctx: Any, article: Any) -> None:
    execution = article()
    execution["trigger"] = {"type": "git", "hash": "f00d", "branch": "main", "slug": "bookinfo"}
    assert evaluate_expression("scmInfo.sha1 + '@' + scmInfo.branch", make_ctx(execution)) == "f00d@main"


def test_current_user_defaults_to_anonymous(make_ctx: Any) -> None:
    assert evaluate_expression("#currentUser()", make_ctx(user=None)) == "anonymous"


def test_strict_mode_rejects_unknown_keys(make_ctx: Any) -> None:
    with pytest.raises(ExpressionError, match="no key 'nope' in the root; keys: 'execution'"):
        evaluate_expression("nope", make_ctx(allow_unknown_keys=False))


def test_unknown_key_then_error_mentions_why(make_ctx: Any) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate_expression("#toInt(#stage('设置灰度比例')['context']['customParams']['canary-ratio'])", make_ctx())
    text = caught.value.describe()
    assert "not an integer (the value is null; is the key spelled right?)" in text


def test_pipeline_lookup_is_injected(make_ctx: Any) -> None:
    lookup = {("deploy-prod", "bookinfo"): "cfg-prod"}
    ctx = make_ctx(pipeline_lookup=lambda name, app: lookup.get((name, app)))
    assert evaluate_expression("#pipelineId('deploy-prod')", ctx) == "cfg-prod"
    assert evaluate_expression("#pipelineIdInApplication('deploy-prod', 'bookinfo')", ctx) == "cfg-prod"
    assert evaluate_expression("#pipelineIdOrNull('other')", ctx) is None


@pytest.mark.parametrize("expression", [
    "execution.stagess", "execution['stagess']", "execution.stages[0].contxt", "execution.stages[0]['contxt']",
    "#stage('deploy canary').contxt", "#stage('deploy canary')['contxt']", "execution.stages.![contxt]",
])
def test_execution_and_stage_objects_fail_on_a_name_they_do_not_have(make_ctx: Any, expression: str) -> None:
    """orca's `execution` and its stages are Java objects (PipelineExecutionImpl, StageExecutionImpl): SpEL reads
    their getters, and a name with none fails ("requested getter stagess not found on type class ...
    PipelineExecutionImpl", recorded by a Spinnaker expression tester, tests/expressions/test_real_world.py)."""
    with pytest.raises(ExpressionError, match="requested getter 'stagess|requested getter 'contxt'"):
        evaluate_expression(expression, make_ctx())


@pytest.mark.parametrize(("expression", "expected"), [
    ("execution.templateVariables", None),  # a getter the JSON leaves out reads null
    ("execution.stages[0].scheduledTime", None),
    ("#stage('deploy canary').parentStageId", None),
    ("execution.stages[0].name", "deploy canary"),
    ("execution.stages.?[type == 'manualJudgment'].![name]", ["设置灰度比例", "是否全量发布"]),
    ("#stage('deploy canary')['context']['nothing']", None),  # context, outputs and trigger are maps
    ("#stage('deploy canary').outputs.nothing", None),
    ("trigger.nothing", None),
])
def test_getters_and_maps_of_the_execution_read_null_when_absent(make_ctx: Any, expression: str,
                                                                  expected: Any) -> None:
    assert evaluate_expression(expression, make_ctx()) == expected
