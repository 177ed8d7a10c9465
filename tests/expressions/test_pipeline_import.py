"""A pipeline carrying constructors and Java idioms imports (the engine's import checks) and evaluates.

Before constructors were supported, one `new ...` expression made the whole pipeline refuse to import
("expression does not parse"); Spinnaker saves and runs such pipelines.
"""

from __future__ import annotations

from typing import Any

from tests.expressions.conftest import fixed_clock

from graylane.expressions import EvaluationContext, ExpressionOptions, evaluate_templated
from graylane.pipelines import model


def _pipeline() -> dict[str, Any]:
    return {
        "application": "myapp", "name": "iterate",
        "parameterConfig": [{"name": "iteration", "default": "1"}, {"name": "regions", "default": "a,b"}],
        "stages": [
            {"refId": "1", "requisiteStageRefIds": [], "type": "wait", "name": "wait",
             "waitTime": "${new Integer(parameters['iteration']) + 1}"},
            {"refId": "2", "requisiteStageRefIds": ["1"], "type": "evaluateVariables", "name": "vars",
             "variables": [
                 {"key": "today",
                  "value": '${new java.text.SimpleDateFormat("MM-dd-yyyy").format(new java.util.Date())}'},
                 {"key": "regionCount", "value": "${parameters.regions.split(',').length}"},
                 {"key": "tag", "value": '${T(java.lang.String).format("%s-%s", parameters.iteration, "x")}'},
             ]},
        ],
    }


def test_a_pipeline_with_constructors_and_java_idioms_imports() -> None:
    assert [str(p) for p in model.find_problems(model.normalise(_pipeline()))] == []


def test_a_broken_constructor_still_refuses_the_import_naming_the_field() -> None:
    body = _pipeline()
    body["stages"][0]["waitTime"] = "${new java.lang.Integer(1 +)}"
    problems = [str(p) for p in model.find_problems(model.normalise(body))]
    assert len(problems) == 1
    assert "stages[0].waitTime" in problems[0] and "expression does not parse" in problems[0]


def test_the_imported_stages_evaluate() -> None:
    body = model.normalise(_pipeline())
    stages = [dict(s, id=s["refId"], status="RUNNING", context={k: v for k, v in s.items() if k not in
                                                                   ("refId", "type", "name")}, outputs={})
              for s in body["stages"]]
    execution = {"id": "01HIMPORT00000000000000000", "application": "myapp", "name": "iterate",
                 "trigger": {"type": "manual", "parameters": {"iteration": "4", "regions": "a,b,c"}},
                 "stages": stages}
    ctx = EvaluationContext(execution=execution, stage_id="1", options=ExpressionOptions(clock=fixed_clock))
    assert evaluate_templated(stages[0]["context"]["waitTime"], ctx).value == 5
    variables = evaluate_templated(stages[1]["context"]["variables"], ctx)
    assert not variables.failed
    assert [v["value"] for v in variables.value] == ["03-14-2026", 3, "4-x"]
