"""`${...}` templating: typed results, mixed text, keys, escapes, and the evaluation summary."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from graylane.errors import NotFound
from graylane.expressions import ExpressionError, evaluate_expression, evaluate_for_execution, evaluate_templated

BLUE_GREEN_GUARD = (
    '${ (#stage("蓝绿验证")["status"].toString() == "SUCCEEDED" && #judgment(\'蓝绿验证\') == \'控制全部流量到新集群\')'
    ' || (#stage("蓝绿验证")["status"].toString() == "SUCCEEDED"'
    ' && #toInt(#stage("蓝绿验证")["context"]["customParams"]["blue_ratio"]) == 100) }'
)


def _weights(value: dict[str, Any]) -> list[tuple[Any, Any]]:
    routes = value["spec"]["http"][0]["route"]
    return [(r["destination"]["subset"], r["weight"]) for r in routes]


@pytest.mark.parametrize(("ratio", "expected"), [
    pytest.param("50", [("v1", 50), ("v2", 50)], id="half"),
    pytest.param("1", [("v1", 99), ("v2", 1)], id="one-percent"),
    pytest.param("100", [("v1", 0), ("v2", 100)], id="all"),
])
def test_article_template_gives_integer_weights(make_ctx: Any, article: Any, article_template: str,
                                                ratio: str, expected: list[tuple[str, int]]) -> None:
    manifest = yaml.safe_load(article_template)
    result = evaluate_templated(manifest, make_ctx(article(canary_ratio=ratio)))
    assert not result.failed and result.summary == {}
    assert _weights(result.value) == expected
    assert all(type(w) is int for _, w in _weights(result.value))
    assert result.value["metadata"] == {"name": "reviews"}


def test_article_template_folded_scalar_is_one_expression(article_template: str) -> None:
    weight = yaml.safe_load(article_template)["spec"]["http"][0]["route"][0]["weight"]
    assert weight.startswith("${100 - #toInt(") and "\n" not in weight


def test_article_template_with_literal_block_keeps_newlines_inside(make_ctx: Any, article_template: str) -> None:
    manifest = yaml.safe_load(article_template.replace("weight: >-", "weight: |-"))
    weight_text = manifest["spec"]["http"][0]["route"][0]["weight"]
    assert "\n" in weight_text
    assert _weights(evaluate_templated(manifest, make_ctx()).value) == [("v1", 50), ("v2", 50)]


def test_article_template_without_the_judgment_stage_keeps_text_and_explains(
        make_ctx: Any, article: Any, article_template: str) -> None:
    execution = article()
    execution["stages"][2]["name"] = "set ratio"
    manifest = yaml.safe_load(article_template)
    result = evaluate_templated(manifest, make_ctx(execution))
    assert result.failed
    route = result.value["spec"]["http"][0]["route"]
    assert route[0]["weight"] == manifest["spec"]["http"][0]["route"][0]["weight"]  # raw text kept
    assert route[0]["destination"]["subset"] == "v1"  # the others still evaluate
    entries = result.summary['100 - #toInt(#stage("设置灰度比例")["context"]["customParams"]["canary_ratio"])']
    entry = entries[0]
    assert set(entry) >= {"description", "exceptionType", "level", "timestamp"}
    assert entry["level"] == "ERROR"
    assert entry["path"] == "spec.http[0].route[0].weight"
    assert entry["timestamp"] == 1773500966000
    lines = entry["description"].splitlines()
    assert lines[0] == ('Failed to evaluate [spec.http[0].route[0].weight] #stage("设置灰度比例"): no stage named '
                        '"设置灰度比例" in this execution (01HEXEC0000000000000000000); stages are: "deploy canary", '
                        '"compute", "set ratio", "灰度比例生效", "wait for mesh", "是否全量发布", "全量发布"')
    assert lines[-2].startswith('100 - #toInt(#stage("设置灰度比例")')
    assert lines[-1] == " " * len("100 - #toInt(") + "^"


def test_article_template_with_bad_ratio_says_not_an_integer(make_ctx: Any, article: Any,
                                                           article_template: str) -> None:
    result = evaluate_templated(yaml.safe_load(article_template), make_ctx(article(canary_ratio="abc")))
    assert result.failed
    descriptions = [e["description"] for items in result.summary.values() for e in items]
    assert len(descriptions) == 2
    assert all('#toInt("abc"): not an integer' in d for d in descriptions)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("${1 + 1}", 2, id="int"),
    pytest.param("${1.5}", 1.5, id="float"),
    pytest.param("${true}", True, id="bool"),
    pytest.param("${{1,2}}", [1, 2], id="list"),
    pytest.param("${{a:1}}", {"a": 1}, id="map"),
    pytest.param("${parameters.base_version}", "v1", id="string"),
    pytest.param("v${1 + 1}", "v2", id="mixed-prefix"),
    pytest.param("${1}-${'x'}-${true}", "1-x-true", id="mixed-several"),
    pytest.param("${1.0}x", "1.0x", id="mixed-java-double"),
    pytest.param("${{1,2}} items", "[1, 2] items", id="mixed-list"),
    pytest.param(" ${1}", " 1", id="leading-space-makes-a-string"),
    pytest.param("no expressions here", "no expressions here", id="plain"),
    pytest.param("cost: $5 {ok}", "cost: $5 {ok}", id="dollar-without-brace"),
    pytest.param('${"${VAR}"}', "${VAR}", id="escape-literal"),
    pytest.param('echo ${"${HOME}"}/bin', "echo ${HOME}/bin", id="escape-in-text"),
    pytest.param("${ {a:{b:1}}['a']['b'] }", 1, id="braces-inside-expression"),
    pytest.param("${'}'}", "}", id="brace-in-string"),
    pytest.param("${#toJson({a:'x'})}", '{"a":"x"}', id="toJson-braces"),
])
def test_template_strings(make_ctx: Any, text: str, expected: Any) -> None:
    result = evaluate_templated(text, make_ctx())
    assert not result.failed, result.summary
    assert result.value == expected and type(result.value) is type(expected)


def test_maps_and_lists_are_walked_keys_too(make_ctx: Any) -> None:
    value = {"${parameters.base_version}-key": ["${1 + 2}", {"deep": "${'d'}"}, 7, None, True],
             "plain": "text"}
    result = evaluate_templated(value, make_ctx())
    assert result.value == {"v1-key": [3, {"deep": "d"}, 7, None, True], "plain": "text"}
    assert value["plain"] == "text" and "${parameters.base_version}-key" in value  # input untouched


def test_non_string_key_results_become_strings(make_ctx: Any) -> None:
    assert evaluate_templated({"${1 + 1}": "x", 5: "${true}"}, make_ctx()).value == {"2": "x", 5: True}


def test_existing_summary_is_not_evaluated(make_ctx: Any) -> None:
    context = {"expressionEvaluationSummary": {"x": [{"description": "${boom}"}]}, "a": "${1}"}
    result = evaluate_templated(context, make_ctx())
    assert result.value == {"expressionEvaluationSummary": {"x": [{"description": "${boom}"}]}, "a": 1}


@pytest.mark.parametrize(("text", "cause"), [
    pytest.param("${ 1 + ${2} }", "expressions cannot be nested", id="nested"),
    pytest.param("${1 + 2", "has no closing", id="unterminated"),
    pytest.param("${'open}", "a string in the expression is not closed", id="open-string"),
    pytest.param("${}", "the expression is empty", id="empty"),
    pytest.param("${1 +}", "ends too early", id="syntax"),
])
def test_bad_templates_keep_text_and_report(make_ctx: Any, text: str, cause: str) -> None:
    result = evaluate_templated({"f": text}, make_ctx())
    assert result.failed and result.value == {"f": text}
    (entries,) = result.summary.values()
    assert entries[0]["level"] == "ERROR" and cause in entries[0]["description"]
    assert entries[0]["path"] == "f"


def test_null_result_keeps_text_with_info(make_ctx: Any) -> None:
    result = evaluate_templated({"x": "${nope}"}, make_ctx())
    assert result.value == {"x": "${nope}"} and not result.failed
    (entry,) = result.summary["nope"]
    assert entry["level"] == "INFO"
    assert "nope not found" in entry["description"] and "no key 'nope' in the root" in entry["description"]


def test_null_part_of_mixed_text_stays_literal(make_ctx: Any) -> None:
    result = evaluate_templated("x${1}-${nope}", make_ctx())
    assert result.value == "x1-${nope}" and not result.failed
    assert result.summary["nope"][0]["level"] == "INFO"


def test_failed_part_of_mixed_text_keeps_whole_text(make_ctx: Any) -> None:
    result = evaluate_templated("a ${1} b ${1/0}", make_ctx())
    assert result.value == "a ${1} b ${1/0}" and result.failed
    assert "division by zero" in result.summary["1/0"][0]["description"]


def test_do_not_eval_returns_value_untouched(make_ctx: Any) -> None:
    result = evaluate_templated({"script": "${#doNotEval('echo ${HOME}')}"}, make_ctx())
    assert result.value == {"script": "echo ${HOME}"} and not result.failed


def test_do_not_eval_inside_a_structure_is_plain_data(make_ctx: Any) -> None:
    result = evaluate_templated("${{#doNotEval('${A}'), {k: #doNotEval({1})}}}", make_ctx())
    assert result.value == ["${A}", {"k": [1]}] and not result.failed


def test_uncached_and_cached_agree(make_ctx: Any, article_template: str) -> None:
    manifest = yaml.safe_load(article_template)
    assert evaluate_templated(manifest, make_ctx(), use_cache=False).value == \
        evaluate_templated(manifest, make_ctx()).value


@pytest.mark.parametrize(("choice", "status", "ratio", "expected"), [
    pytest.param("控制全部流量到新集群", "SUCCEEDED", "20", True, id="chose-all-traffic"),
    pytest.param("控制部分流量到新集群", "SUCCEEDED", "20", False, id="chose-partial"),
    pytest.param("控制部分流量到新集群", "SUCCEEDED", "100", True, id="partial-at-100-percent"),
    pytest.param(None, "SKIPPED", "20", False, id="judgment-skipped-guard-avoids-error"),
])
def test_coding_blue_green_guard(make_ctx: Any, blue_green: Any, choice: str | None, status: str, ratio: str,
                                 expected: bool) -> None:
    execution = blue_green(choice, status)
    execution["stages"][1]["context"]["customParams"]["blue_ratio"] = ratio
    result = evaluate_templated({"stageEnabled": {"type": "expression", "expression": BLUE_GREEN_GUARD}},
                                make_ctx(execution, stage_id="b3"))
    assert not result.failed, result.summary
    assert result.value["stageEnabled"]["expression"] is expected


def test_unguarded_judgment_on_skipped_stage_fails_with_hint(make_ctx: Any, blue_green: Any) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate_expression("#judgment('蓝绿验证') == '控制全部流量到新集群'",
                            make_ctx(blue_green(None, "SKIPPED"), stage_id="b3"))
    text = caught.value.describe()
    assert 'the manual judgment "蓝绿验证" was skipped' in text
    assert '#stage("蓝绿验证")["status"].toString() == "SUCCEEDED"' in text


@pytest.mark.parametrize(("choice", "expression", "expected"), [
    pytest.param("全量发布", "#judgment('是否全量发布') == '全量发布'", True, id="bare-true"),
    pytest.param("结束发布", "#judgment('是否全量发布') == '全量发布'", False, id="bare-false"),
    pytest.param("全量发布", "${#judgment('是否全量发布') == '全量发布'}", True, id="wrapped"),
    pytest.param("全量发布", '#judgement("是否全量发布")', "全量发布", id="judgement-alias"),
])
def test_stage_enabled_style_expressions(make_ctx: Any, article: Any, choice: str, expression: str,
                                         expected: Any) -> None:
    ctx = make_ctx(article(full_release=choice), stage_id="s6")
    assert evaluate_expression(expression, ctx) == expected


def test_evaluate_for_execution_by_stage_name(article: Any) -> None:
    answer = evaluate_for_execution(article(), "${waitTime + 1}", "灰度比例生效", user="bob")
    assert answer == {"result": 31, "summary": {}, "failed": False}
    assert evaluate_for_execution(article(), "#currentUser()", "4", user="bob")["result"] == "bob"
    assert evaluate_for_execution(article(), "name", None)["result"] == "reviews-canary"


def test_evaluate_for_execution_failure_has_summary(article: Any) -> None:
    answer = evaluate_for_execution(article(), "#toInt('x')", None)
    assert answer["failed"] and answer["result"] == "${#toInt('x')}"
    assert '#toInt("x"): not an integer' in answer["summary"]["#toInt('x')"][0]["description"]


def test_evaluate_for_execution_unknown_stage(article: Any) -> None:
    with pytest.raises(NotFound, match='no stage named "nope" in execution 01HEXEC0000000000000000000; '
                                       'stages are: "deploy canary"'):
        evaluate_for_execution(copy.deepcopy(article()), "1", "nope")
