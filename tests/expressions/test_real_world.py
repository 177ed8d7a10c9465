"""Real-world expressions from spinnaker.io's expression guide and reference, with their documented results.

Sources (spinnaker/spinnaker.io at commit 3bc6188):
  REF   = content/en/docs/reference/pipeline/expressions/_index.md
  GUIDE = content/en/docs/guides/user/pipeline/expressions/_index.md
  OLDGUIDE = spinnaker/spinnaker.github.io pull request #685 (the guide before spinnaker.io)
  DOCS310 = spinnaker/spinnaker.github.io issue #310 (a wrong date pattern once published in the docs)
  ISSUE = graylane issue 22, "Expressions real users write"
The execution below holds what each page describes ("a parameter regions of us-east-1,us-west-1,eu-west-1",
"a stage named Deploy", "an Evaluate Variables stage 'Set My Variables' with environment", ...). Each expected
value is the result the page states, or for a stated computation ("the date 5 days from now") that
computation at the fixed clock (2026-03-14T15:09:26Z).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.expressions.conftest import fixed_clock

from graylane.expressions import (
    EvaluationContext,
    ExpressionError,
    ExpressionOptions,
    evaluate_expression,
    evaluate_templated,
)

E = pytest.param


def _stage(ident: str, ref: str, kind: str, name: str, status: str, requisites: list[str],
           context: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": ident, "refId": ref, "type": kind, "name": name, "status": status, "context": context or {},
            "outputs": outputs or {}, "requisiteStageRefIds": requisites, "startTime": 1_700_000_000_000,
            "tasks": []}


EXECUTION: dict[str, Any] = {
    "id": "01HDOCS0000000000000000000", "type": "PIPELINE", "application": "myapp", "name": "deploy",
    "status": "RUNNING",
    "trigger": {
        "type": "manual", "user": "alice",
        "parameters": {"stack": "staging", "regions": "us-east-1,us-west-1,eu-west-1", "runCanary": "true",
                       "iteration": "4"},
        "properties": {"example": "example-value", "version": "1.2.3"},
        "buildInfo": {"number": 21, "scm": [{"sha1": "0a1b2c3", "branch": "feature/new-login"}]},
    },
    "stages": [
        _stage("b", "1", "bake", "Bake", "SUCCEEDED", [], context={"desiredProperty": "ami-123"}),
        _stage("v", "2", "evaluateVariables", "Set My Variables", "SUCCEEDED", ["1"],
               outputs={"environment": "production"}),
        _stage("d", "3", "deploy", "Deploy", "SUCCEEDED", ["2"]),
        _stage("j", "4", "manualJudgment", "Ask for next step", "SUCCEEDED", ["3"],
               context={"judgmentStatus": "continue", "judgmentInput": "clean up"}),
        _stage("c", "5", "checkPreconditions", "Check", "RUNNING", ["4"],
               context={"instance": {"size": 500}, "package": "spinnaker-deck"}),
    ],
}

DOCUMENTED = [
    # REF "Code": "process the list us-east-1,us-west-1,eu-west-1 with ${parameters.regions.split(",")}"
    E('parameters.regions.split(",")', ["us-east-1", "us-west-1", "eu-west-1"], id="ref-split-regions"),
    # REF "Code": "the current date in MM-dd-yyyy format"
    E('new java.text.SimpleDateFormat("MM-dd-yyyy").format(new java.util.Date())', "03-14-2026",
      id="ref-simpledateformat-today"),
    # REF "Code": "to calculate the date 5 days from now"
    E("T(java.time.LocalDate).now().plusDays(5).toString()", "2026-03-19", id="ref-localdate-plus-5"),
    # REF "Comparisons"
    E('instance["size"] > 400', True, id="ref-instance-size"),
    E('parameters["runCanary"] == "true"', True, id="ref-runCanary-string"),
    E('#toBoolean(parameters["runCanary"]) == true', True, id="ref-runCanary-toBoolean"),
    E('#stage("Deploy")["status"].toString() == "SUCCEEDED"', True, id="ref-stage-status"),
    # REF "Lists": "returns the value of the first stage in your pipeline"
    E('execution["stages"][0]["name"]', "Bake", id="ref-first-stage"),
    # REF "Maps": "evaluates to the value of the example trigger property"
    E('trigger["properties"]["example"]', "example-value", id="ref-trigger-property"),
    # REF "Maps": filter stages by type; "[0] returns the first bake stage in your pipeline"
    E('execution["stages"].?[type == "bake"].size()', 1, id="ref-filter-bake"),
    E('execution["stages"].?[type == "bake"][0]["name"]', "Bake", id="ref-filter-bake-first"),
    # REF "Math"
    E('trigger["buildInfo"]["number"] * 2', 42, id="ref-build-number-times-2"),
    # REF "Strings": "becomes This is a String."
    E('"This is a String."', "This is a String.", id="ref-string-literal"),
    # REF "#stage": access a property of a stage's context
    E('#stage("Bake")["context"]["desiredProperty"]', "ami-123", id="ref-stage-context"),
    # REF "#judgment": the chosen judgment input
    E('#judgment("Ask for next step")', "clean up", id="ref-judgment"),
    # GUIDE "Parameters": four spellings of one parameter
    E('execution.trigger.parameters["stack"]', "staging", id="guide-parameter-long-index"),
    E("execution.trigger.parameters.stack", "staging", id="guide-parameter-long-dot"),
    E('parameters["stack"]', "staging", id="guide-parameter-index"),
    E("parameters.stack", "staging", id="guide-parameter-dot"),
    # GUIDE "Evaluate Variables": Option 1 and Option 2 give the same value
    E("execution.stages.?[ name == 'Set My Variables' ][0].outputs.environment", "production",
      id="guide-variable-option-1"),
    E("environment", "production", id="guide-variable-option-2"),
    # GUIDE "Trigger properties" / "#root"
    E('trigger["properties"]["version"]', "1.2.3", id="guide-trigger-version"),
    E('#root["package"]', "spinnaker-deck", id="guide-root-package"),
    # GUIDE "Default values": ?: sets the region when the parameter is absent
    E("parameters[\"region\"] ?: 'us-east-1'", "us-east-1", id="guide-elvis-default"),
    # GUIDE "Dynamic clusters": the branch, letters and digits only
    E("#alphanumerical(scmInfo.branch)", "featurenewlogin", id="guide-alphanumerical-branch"),
    # GUIDE "Check precondition": the judgment input decides the branch
    E("#judgment(\"Ask for next step\") == 'clean up'", True, id="guide-judgment-precondition"),
    E('#stage("Deploy")["type"]', "deploy", id="guide-stage-type"),
    # OLDGUIDE: "You can use methods available to existing types like String"
    E("'this is a long string'.substring(0,5)", "this ", id="oldguide-substring"),
    # DOCS310: "MM-DD-YYYY ... will give me the day of year for DD instead of day of month"
    E("new java.text.SimpleDateFormat('MM-DD-YYYY').format(new java.util.Date())", "03-73-2026",
      id="docs310-day-of-year-pitfall"),
    E("new java.text.SimpleDateFormat('mm-dd-yyyy').format(new java.util.Date())", "09-14-2026",
      id="docs310-minutes-pitfall"),
    # ISSUE 22: constructors and Java idioms users write
    E("new Integer(parameters['iteration']) + 1", 5, id="issue-new-integer"),
    E("parameters.regions.split(',').length", 3, id="issue-split-length"),
    E('T(java.lang.String).format("%s-%s", parameters.stack, parameters.iteration)', "staging-4",
      id="issue-string-format"),
]


def _ctx() -> EvaluationContext:
    return EvaluationContext(execution=copy.deepcopy(EXECUTION), stage_id="c", user="alice",
                             options=ExpressionOptions(clock=fixed_clock))


@pytest.mark.parametrize(("expression", "expected"), DOCUMENTED)
def test_documented_expression(expression: str, expected: Any) -> None:
    got = evaluate_expression(expression, _ctx())
    assert json.dumps(got, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False), expression


def test_guide_mixed_template_with_two_expressions() -> None:
    # GUIDE: "${expressionA}-randomString-${expressionB}" concatenates as text
    res = evaluate_templated({"name": "${parameters.stack}-randomString-${new Integer(parameters.iteration)}"},
                             _ctx())
    assert not res.failed
    assert res.value == {"name": "staging-randomString-4"}


def test_reference_date_example_in_a_stage_field_is_text() -> None:
    res = evaluate_templated({"tag": 'release-${new java.text.SimpleDateFormat("MM-dd-yyyy").format('
                                     'new java.util.Date())}'}, _ctx())
    assert res.value == {"tag": "release-03-14-2026"}


def test_reference_nested_expressions_do_not_work() -> None:
    # REF/GUIDE: "expressions can't be nested: ${ expression1 ${expression2} } won't be evaluated"
    res = evaluate_templated({"x": "${ parameters.stack ${parameters.stack} }"}, _ctx())
    assert res.value == {"x": "${ parameters.stack ${parameters.stack} }"}


def test_types_off_the_allow_list_stay_refused() -> None:
    # REF "Allowed Java classes": only the listed classes may be instantiated or called
    with pytest.raises(ExpressionError, match="type java.lang.Runtime is not allowed"):
        evaluate_expression("new java.lang.Runtime()", _ctx())
