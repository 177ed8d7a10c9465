"""Real-world expressions from spinnaker.io's expression guide and reference, with their documented results.

Sources (spinnaker/spinnaker.io at commit 3bc6188):
  REF   = content/en/docs/reference/pipeline/expressions/_index.md
  GUIDE = content/en/docs/guides/user/pipeline/expressions/_index.md
  OLDGUIDE = spinnaker/spinnaker.github.io pull request #685 (the guide before spinnaker.io)
  DOCS310 = spinnaker/spinnaker.github.io issue #310 (a wrong date pattern once published in the docs)
  ISSUE = graylane issue 22, "Expressions real users write"
More real-world expressions (REAL_WORLD, RECORDED, below), each with its source and licence:
  GUIDE17  = spinnaker/spinnaker.github.io guides/user/pipeline-expressions/index.md at commit aa46f47a (the 2017
             "Pipeline Expressions Guide"; MIT License, the repository's LICENSE.txt)
  CODELAB  = spinnaker/spinnaker.io content/en/docs/guides/tutorials/codelabs/safe-deployments/index.md at 3bc6188
  K8SPARAM = spinnaker/spinnaker.io content/en/docs/guides/user/kubernetes/parameterize-manifests/index.md at 3bc6188
  JENKINS  = spinnaker/spinnaker.io content/en/docs/guides/user/pipeline/triggers/jenkins/_index.md at 3bc6188
             (spinnaker/spinnaker.io has no licence file; Spinnaker is Apache-2.0; expressions quoted as facts)
  I1396    = https://github.com/spinnaker/spinnaker/issues/1396 ; ORCA2832 = https://github.com/spinnaker/orca/pull/2832
  ORCA2303 = https://github.com/spinnaker/orca/pull/2303 (issue and pull-request text: no licence stated; the
             repositories are Apache-2.0)
  SAUL     = marqaaron/spinnaker-advance-user-lab at commit 4a44f635 (MIT License): executions Spinnaker recorded,
             with the values orca computed (tests/pipelines/compat/recorded/saul/, README there), its pipeline configs
             and its expression tester's docs and recorded failure (app/src/modules/pipelineExpressionTester/)
Where a source states no result, the expected value is what orca's SpEL semantics give on the execution below.

The execution below holds what each page describes ("a parameter regions of us-east-1,us-west-1,eu-west-1",
"a stage named Deploy", "an Evaluate Variables stage 'Set My Variables' with environment", ...). Each expected
value is the result the page states, or for a stated computation ("the date 5 days from now") that
computation at the fixed clock (2026-03-14T15:09:26Z).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
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


# ---------------------------------------------------------------- real-world expressions from more sources

GUIDE_EXECUTION: dict[str, Any] = {
    "id": "01HGUIDE000000000000000000", "type": "PIPELINE", "application": "myapp", "name": "guide",
    "status": "RUNNING",
    "trigger": {
        "type": "jenkins", "user": "alice",
        "parameters": {"command": "make test", "value1": "first", "stack": "prod", "region": "us-west-2", "min": "2",
                       "run canary": "yes", "environment": "prod", "Pipeline Successful": "true",
                       "namespace": "staging", "replicas": "3", "commitSha": "0a1b2c3d4e5f67890"},
        # GUIDE17 "Property files": BUILD_STACK=bojack, BUILD_ANIMAL=horseman; JENKINS: BUILD=${BUILD_NUMBER} (90)
        "properties": {"BUILD_STACK": "bojack", "BUILD_ANIMAL": "horseman", "BUILD": "90"},
        "buildInfo": {"number": 90, "scm": [{"sha1": "9f8e7d6c5b4a", "branch": "master"}]},
    },
    "stages": [
        # a Jenkins stage with the same property file: its outputs reach later stages as plain names (GUIDE17)
        _stage("j1", "1", "jenkins", "first jenkins job", "SUCCEEDED", [],
               context={"BUILD_ANIMAL": "horseman", "baseAmiName": "ubuntu-base"},
               outputs={"BUILD_ANIMAL": "horseman"}),
        _stage("a", "2", "jenkins", "Acceptance", "SUCCEEDED", ["1"], context={"buildInfo": {"result": "SUCCESS"}}),
        _stage("v", "3", "jenkins", "Validation", "SUCCEEDED", ["2"]),
        _stage("k", "4", "kayentaCanary", "Canary", "SUCCEEDED", ["3"]),
        # CODELAB: "select `rollback` as your input"
        _stage("m", "5", "manualJudgment", "Manual Judgment", "SUCCEEDED", ["4"],
               context={"judgmentStatus": "continue", "judgmentInput": "rollback"}),
        _stage("d", "6", "deploy", "Deploy", "RUNNING", ["5"], context={"account": "prod"}),
    ],
}

REAL_WORLD = [
    # GUIDE17 "What are pipeline expressions?" / "the name of the first stage"
    E("execution.stages[0].name", "first jenkins job", id="guide17-first-stage-name"),
    E("execution.stages[0]['name']", "first jenkins job", id="guide17-first-stage-name-index"),
    # GUIDE17: "it resolves the expression to what I've entered for command"
    E("parameters.command", "make test", id="guide17-parameter-command"),
    E("trigger.parameters['value1']", "first", id="guide17-trigger-parameter"),
    # GUIDE17 "Other stages": stage attributes and the values passed into the stage
    E("#stage('first jenkins job')['id']", "j1", id="guide17-stage-id"),
    E("#stage('first jenkins job')['context']['baseAmiName']", "ubuntu-base", id="guide17-stage-context"),
    # GUIDE17 "Pipeline parameters": a parameter name with a space
    E("parameters['run canary']", "yes", id="guide17-parameter-with-space"),
    # GUIDE17 "Trigger values": the version hash of the git commit
    E("trigger.buildInfo.scm[0]['sha1']", "9f8e7d6c5b4a", id="guide17-scm-sha1"),
    # GUIDE17 "Property files": "to get `horseman`", three ways
    E("trigger.properties['BUILD_ANIMAL']", "horseman", id="guide17-trigger-property"),
    E("BUILD_ANIMAL", "horseman", id="guide17-stage-property-as-name"),
    E("#stage( 'first jenkins job' )['context']['BUILD_ANIMAL']", "horseman", id="guide17-stage-property"),
    # GUIDE17 "Comparisons" and "Testing expressions"
    E("#stage('Validation')['status'].toString() == 'SUCCEEDED'", True, id="guide17-status-toString"),
    E('#stage("Canary").status.toString()', "SUCCEEDED", id="guide17-evaluateExpression-example"),
    # GUIDE17 "#root": "set a value depending on the baseLabel field" (the deploy stage has none)
    E("#root.baseLabel ?: 'noBaseLabelValue'", "noBaseLabelValue", id="guide17-root-elvis"),
    # GUIDE17 "#readJson": the instance type for the environment parameter
    E("#readJson('{\"prod\": \"r3.8xlarge\"}')[#root.parameters['environment']]", "r3.8xlarge",
      id="guide17-readJson-by-parameter"),
    # CODELAB: the rollback stage runs, the deploy stage is skipped
    E('#judgment("Manual Judgment").equals("rollback")', True, id="codelab-judgment-rollback"),
    E('#judgment("Manual Judgment").equals("continue")', False, id="codelab-judgment-continue"),
    # CODELAB "Creating an automatic rollback pipeline": the precondition on the parameter
    E('parameters["Pipeline Successful"].equals("true")', True, id="codelab-parameter-equals"),
    # I1396: "I tried using the context path and worked"
    E("#stage('Acceptance')['context']['buildInfo']['result']=='SUCCESS'", True, id="issue1396-context-path"),
    # I1396 reported false in 2017; orca's ContextParameterProcessorSpec ("can find a stage in an execution and get
    # its status") has compared the status with a string since
    E("#stage('Acceptance')['status'] == 'SUCCEEDED'", True, id="issue1396-status-equals"),
    # ORCA2832: "the first six chars of SHA"
    E('parameters["commitSha"].substring(0,6)', "0a1b2c", id="orca2832-sha-substring"),
]


def _guide_ctx() -> EvaluationContext:
    return EvaluationContext(execution=copy.deepcopy(GUIDE_EXECUTION), stage_id="d", user="alice",
                             options=ExpressionOptions(clock=fixed_clock))


@pytest.mark.parametrize(("expression", "expected"), REAL_WORLD)
def test_real_world_expression(expression: str, expected: Any) -> None:
    got = evaluate_expression(expression, _guide_ctx())
    assert json.dumps(got, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False), expression


TEMPLATED = [
    # GUIDE17: "the expression can be a complex one"
    E({"name": "${ trigger.parameters['stack'] }-readonly-${ trigger.parameters['region'] }"},
      {"name": "prod-readonly-us-west-2"}, id="guide17-two-expressions"),
    # GUIDE17: a capacity field set in the stage JSON ("min": "${trigger.parameters['min']}"): a parameter is text
    E({"min": "${trigger.parameters['min']}"}, {"min": "2"}, id="guide17-capacity-from-parameter"),
    # GUIDE17 "#readJson": "instanceType": "${#readJson('{\"prod\": \"r3.8xlarge\"}')[#root.parameters[...]]}"
    E({"instanceType": "${#readJson('{\"prod\": \"r3.8xlarge\"}')[#root.parameters['environment']]}"},
      {"instanceType": "r3.8xlarge"}, id="guide17-readJson-field"),
    # K8SPARAM: the namespace from a parameter; the replica count converted to a number ("the correct type")
    E({"metadata": {"namespace": "${ parameters.namespace }"}}, {"metadata": {"namespace": "staging"}},
      id="k8sparam-namespace"),
    E({"spec": {"replicas": "${ #toInt( parameters.replicas ) }"}}, {"spec": {"replicas": 3}},
      id="k8sparam-replicas-toInt"),
    # JENKINS: the build number in an HTTP file artifact's URL
    E({"reference": "https://jenkins.example/job/DevToolStack/${trigger.properties['BUILD']}/artifact/cdk8s/dist/"
                    "terraform-operator.k8s.yaml"},
      {"reference": "https://jenkins.example/job/DevToolStack/90/artifact/cdk8s/dist/terraform-operator.k8s.yaml"},
      id="jenkins-build-property-in-url"),
]


@pytest.mark.parametrize(("field", "expected"), TEMPLATED)
def test_real_world_templated_field(field: dict[str, Any], expected: Any) -> None:
    res = evaluate_templated(field, _guide_ctx())
    assert not res.failed
    assert res.value == expected


@pytest.mark.parametrize("text", [
    # GUIDE17 "Testing expressions": the missing `}` answers the text as it was, with "No ending suffix '}'"
    pytest.param('${ #stage("Canary").status.toString()', id="guide17-no-ending-suffix"),
    # ORCA2303: the sample stage's comments "${failing spel missing closing parens" (failOnFailedExpressions fails it)
    pytest.param("${failing spel missing closing parens", id="orca2303-missing-closing-brace"),
])
def test_real_world_unterminated_expression_stays_text_and_fails(text: str) -> None:
    res = evaluate_templated({"comments": text}, _guide_ctx())
    assert res.value == {"comments": text}
    assert res.failed


# SAUL: executions Spinnaker recorded (the compatibility suite's files), evaluated at the stage that evaluated them.
_SAUL = Path(__file__).parents[1] / "pipelines" / "compat" / "recorded" / "saul"


def _saul_execution(execution_id: str) -> dict[str, Any]:
    executions = json.loads((_SAUL / "applicationPipelineExecutions.json").read_text(encoding="utf-8"))
    return dict(next(e for e in executions if e["id"] == execution_id))


def _recorded_variable(execution_id: str, ref: str, key: str) -> Any:
    stage = next(s for s in _saul_execution(execution_id)["stages"] if s["refId"] == ref)
    return next(v["value"] for v in stage["context"]["variables"] if v["key"] == key)


def _recorded_precondition(execution_id: str, parent_ref: str) -> Any:
    """The value orca stored for the expression of the precondition stage `<parent_ref><1`."""
    stage = next(s for s in _saul_execution(execution_id)["stages"] if s["refId"] == f"{parent_ref}<1")
    return stage["context"]["context"]["expression"]


RECORDED = [
    # "Call Orca Endpoint with Webhook": Evaluate Variables' webhook_status, as Spinnaker evaluated it (twice)
    E("01EH5F35DVKYEFEFBX2B93YKGF", "2", "execution.stages.?[name == 'Webhook'][0].status",
      _recorded_variable("01EH5F35DVKYEFEFBX2B93YKGF", "2", "webhook_status"), id="saul-webhook-status-1"),
    E("01EHQXX08NRMM6MC49R4CZ4FZV", "2", "execution.stages.?[name == 'Webhook'][0].status",
      _recorded_variable("01EHQXX08NRMM6MC49R4CZ4FZV", "2", "webhook_status"), id="saul-webhook-status-2"),
    # "Patch Manifest with Strategic Merge Strategy" (action=patch): the two preconditions, as Spinnaker evaluated
    E("01EHQXY4E347ZXCTZZS2N5ZN83", "2", "parameters['action'] == 'deploy'",
      _recorded_precondition("01EHQXY4E347ZXCTZZS2N5ZN83", "2"), id="saul-precondition-is-deployment"),
    E("01EHQXY4E347ZXCTZZS2N5ZN83", "3", "parameters['action'] == 'patch'",
      _recorded_precondition("01EHQXY4E347ZXCTZZS2N5ZN83", "3"), id="saul-precondition-is-patch"),
    # the expression tester's docs: "to return the type of the pipeline, simply enter execution.type"
    E("01EHQXWH4MRAWGPF3G9Z8ADE3C", "1", "execution.type", "PIPELINE", id="saul-execution-type"),
]


@pytest.mark.parametrize(("execution_id", "stage_ref", "expression", "expected"), RECORDED)
def test_recorded_spinnaker_evaluation(execution_id: str, stage_ref: str, expression: str, expected: Any) -> None:
    ctx = EvaluationContext(execution=_saul_execution(execution_id), stage_id=stage_ref, user="mark",
                            options=ExpressionOptions(clock=fixed_clock))
    assert evaluate_expression(expression, ctx) == expected


def test_recorded_failure_an_unknown_property_of_the_execution_is_an_error() -> None:
    """SAUL's recorded failure for `execution.stagess`: "Failed to evaluate [expression] requested getter stagess
    not found on type class com.netflix.spinnaker.orca.pipeline.model.PipelineExecutionImpl - EL1021E". The
    execution and its stages are Java objects in orca: a name with no getter fails; a map's unknown key is null."""
    ctx = EvaluationContext(execution=_saul_execution("01EHQXWH4MRAWGPF3G9Z8ADE3C"), stage_id="1", user="mark",
                            options=ExpressionOptions(clock=fixed_clock))
    with pytest.raises(ExpressionError, match="requested getter 'stagess' not found on PipelineExecution"):
        evaluate_expression("execution.stagess", ctx)
    with pytest.raises(ExpressionError, match="requested getter 'stagess' not found on PipelineExecution"):
        evaluate_expression("execution['stagess']", ctx)
    with pytest.raises(ExpressionError, match="requested getter 'contxt' not found on StageExecution"):
        evaluate_expression("execution.stages[0].contxt", ctx)
    with pytest.raises(ExpressionError, match="requested getter 'contxt' not found on StageExecution"):
        evaluate_expression("#stage('Find Artifacts From Execution').contxt", ctx)
    # getters whose value the JSON leaves out read as null; maps (context, outputs, trigger) keep null for unknown keys
    assert evaluate_expression("execution.templateVariables", ctx) is None
    assert evaluate_expression("execution.stages[0].parentStageId", ctx) is None
    assert evaluate_expression("#stage('Find Artifacts From Execution')['context']['nothing']", ctx) is None
    assert evaluate_expression("trigger.nothing", ctx) is None


# SAUL's "Self Looping Pipeline" (applicationPipelineConfigs.json, id d140f157...): Evaluate Variables turns the
# iteration parameters into numbers, two preconditions compare them, the next run gets them as parameters.
LOOP_EXECUTION: dict[str, Any] = {
    "id": "01HLOOP0000000000000000000", "type": "PIPELINE", "application": "pattern-test-segments",
    "name": "Self Looping Pipeline", "status": "RUNNING",
    "trigger": {"type": "pipeline", "user": "mark", "parameters": {"iteration": "1", "limit": "2"}},
    "stages": [
        _stage("l1", "1", "evaluateVariables", "Evaluate Variables", "SUCCEEDED", [],
               outputs={"nextIteration": 2, "currentIteration": 1, "limit": 2}),
        _stage("l2", "2", "checkPreconditions", "More Looping Needed", "RUNNING", ["1"]),
    ],
}

LOOP = [
    E("new Integer(parameters['iteration']) + 1", 2, id="saul-loop-nextIteration"),
    E("new Integer(parameters['limit'])", 2, id="saul-loop-limit"),
    E("currentIteration  <= limit", True, id="saul-loop-more-looping-needed"),
    E("currentIteration > limit", False, id="saul-loop-looping-complete"),
]


def _loop_ctx() -> EvaluationContext:
    return EvaluationContext(execution=copy.deepcopy(LOOP_EXECUTION), stage_id="l2", user="mark",
                             options=ExpressionOptions(clock=fixed_clock))


@pytest.mark.parametrize(("expression", "expected"), LOOP)
def test_self_looping_pipeline_expression(expression: str, expected: Any) -> None:
    assert evaluate_expression(expression, _loop_ctx()) == expected


def test_self_looping_pipeline_passes_numbers_on() -> None:
    # the Re-run Pipeline stage's pipelineParameters: a field that is one expression keeps the value's type
    res = evaluate_templated({"iteration": "${nextIteration}", "limit": "${limit}"}, _loop_ctx())
    assert res.value == {"iteration": 2, "limit": 2}
