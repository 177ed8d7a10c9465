"""Orca's own expression cases, with the results orca's tests assert.

Sources (spinnaker/orca at commit 2fdb327a9f67345c4919e1503ff5119fa3c31caf, Apache License 2.0; the cases are
re-expressed here, the specs are not copied):
  CPP  = orca-core/src/test/groovy/com/netflix/spinnaker/orca/pipeline/util/ContextParameterProcessorSpec.groovy
  SEF  = orca-core/src/test/groovy/.../pipeline/expressions/functions/StageExpressionFunctionProviderSpec.groovy
  AEF  = .../functions/ArtifactExpressionFunctionProviderSpec.groovy
  DSG  = .../functions/DeployedServerGroupsExpressionFunctionProviderSpec.groovy
  MLV  = .../functions/ManifestLabelValueExpressionFunctionProviderSpec.groovy
  CFSK = orca-integrations-cloudfoundry/src/test/java/.../functions/ServiceKeyExpressionFunctionProviderTest.java
  URL  = orca-core/src/main/java/.../functions/UrlExpressionFunctionProvider.java (#propertiesFromUrl)
The execution below holds each spec's stages in one pipeline: orca's test stages, with the current stage `cur`
carrying the context CPP's table evaluates against.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from graylane.expressions import EvaluationContext, ExpressionOptions, evaluate_templated
from graylane.expressions.functions import parse_properties

E = pytest.param


def _stage(ident: str, ref: str, kind: str, name: str, status: str = "SUCCEEDED", requisites: tuple[str, ...] = (),
           context: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
           parent: str | None = None) -> dict[str, Any]:
    return {"id": ident, "refId": ref, "type": kind, "name": name, "status": status, "context": context or {},
            "outputs": outputs or {}, "requisiteStageRefIds": list(requisites), "parentStageId": parent,
            "tasks": []}


_DETAILS = [{"ami": "ami-06362b6e", "amiSuffix": "201505150627", "baseLabel": "candidate", "baseOs": "ubuntu",
             "package": "flex", "region": "us-east-1", "storeType": "ebs", "vmType": "pv"},
            {"ami": "ami-f759b7b3", "amiSuffix": "201505150627", "baseLabel": "candidate", "baseOs": "ubuntu",
             "package": "flex", "region": "us-west-1", "storeType": "ebs", "vmType": "pv"}]
_RS_LABELS = {"my-label-key": "my-label-value", "my-other-label-key": "my-other-label-value"}

EXECUTION: dict[str, Any] = {
    "id": "01ORCASPEC0000000000000000", "type": "PIPELINE", "application": "flex", "name": "orca specs",
    "status": "RUNNING",
    # CPP "can read authenticated user in an execution"
    "authentication": {"user": "joeyjoejoejuniorshabadoo@host.net", "allowedAccounts": ["test"]},
    "trigger": {
        "type": "manual", "user": "joeyjoejoejuniorshabadoo@host.net", "correlationId": "id",
        "parameters": {"branch": "hello"},
        # AEF: one expected artifact bound at trigger time
        "resolvedExpectedArtifacts": [{"matchArtifact": {"type": "docker/image", "name": "artifact1"},
                                       "boundArtifact": {"type": "docker/image", "name": "artifact1",
                                                         "reference": "artifact1"}}],
        "artifacts": [{"type": "docker/image", "name": "loose", "reference": "loose:1"}],
    },
    "stages": [
        # SEF: stages found by name, id and refId
        _stage("1", "1.0", "wait", "My First Stage", context={"region": "us-east-1"},
               outputs={"artifacts": [{"type": "type1", "name": "name1", "reference": "ref1"}]}),
        _stage("2", "2.0", "wait", "My Second Stage", context={"region": "us-west-1"},
               outputs={"artifacts": [{"type": "type2", "name": "name2", "reference": "ref2"}]}),
        # CPP "is able to parse deployment details": a bake, then a deploy with two createServerGroup children
        _stage("bake", "3", "bake", "Bake", outputs={"deploymentDetails": _DETAILS}),
        _stage("deploy", "4", "deploy", "Deploy", requisites=("3",)),
        _stage("east", "4<1", "createServerGroup", "Deploy in us-east-1", parent="deploy", context={
            "account": "test", "application": "flex", "capacity": {"desired": 1, "max": 1, "min": 1},
            "availabilityZones": {"us-east-1": ["us-east-1c", "us-east-1d", "us-east-1e"]},
            "deploy.account.name": "test", "deploy.server.groups": {"us-east-1": ["flex-test-v043"]},
            "kato.tasks": [{"resultObjects": [{"deployments": [{"serverGroupName": "flex-test-v043"}]}]}]}),
        _stage("destroy", "4<2", "destroyAsg", "destroyAsg", status="NOT_STARTED", parent="deploy"),
        _stage("west", "4<3", "createServerGroup", "Deploy in us-west-1", parent="deploy", context={
            "account": "prod", "application": "flex", "capacity": {"desired": 1, "max": 1, "min": 1},
            "availabilityZones": {"us-west-1": ["us-west-1a", "us-west-1c"]}, "deploy.account.name": "prod",
            "deploy.server.groups": {"us-west-1": ["flex-prestaging-v011"]}, "provider": "aws"}),
        # DSG: a disableServerGroup with deploy.server.groups is not a deploy
        _stage("disable", "5", "disableServerGroup", "disable server group", context={
            "account": "test", "deploy.server.groups": {"us-west-2": ["app-test-v002"]},
            "availabilityZones": {"us-east-1": ["us-east-1c"]}}),
        # CPP "can find a judgment result": a bake and a judgment share a name; the judgment's input counts
        _stage("jbake", "6", "bake", "my stage", context={"judgmentInput": "input2"}),
        _stage("judge", "7", "manualJudgment", "my stage", context={"judgmentInput": "Real Judgment input"}),
        _stage("mj", "8", "manualJudgment", "manualJudgment stage", context={"judgmentInput": "Real Judgment input"}),
        # MLV
        _stage("rs", "9", "deployManifest", "Deploy ReplicaSet", context={
            "manifests": [{"kind": "ReplicaSet", "spec": {"template": {"metadata": {"labels": _RS_LABELS}}}}],
            "outputs.manifests": [{"kind": "ReplicaSet", "spec": {"template": {"metadata": {"labels": {
                **_RS_LABELS, "moniker.spinnaker.io/sequence": "0"}}}}}]}),
        _stage("rs2", "10", "deployManifest", "Deploy again", status="RUNNING", context={
            "outputs.manifests": [{"kind": "Deployment", "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}]}),
        # CFSK
        _stage("sk1", "11", "createServiceKey", "stage-name-1", context={"kato.tasks": [{"resultObjects": [
            {"serviceKey": {"username": "user1", "password": "password1", "url": "mysql.example.com"}}]}]}),
        _stage("sk3", "12", "createServiceKey", "stage-name-3", context={"kato.tasks": [{"resultObjects": []}]}),
        _stage("sk4", "13", "createServiceKey", "stage-name-4", status="RUNNING",
               context={"kato.tasks": [{"resultObjects": []}]}),
        # CPP's table, evaluated in this stage; it follows My First Stage
        _stage("cur", "cur", "wait", "cur", status="RUNNING", requisites=("1.0",), context={
            "testArray": ["good", {"arrayVal": "bad"}, [{"one": "two"}]], "replaceMe": "newValue",
            "h1": {"h1": "h1Val"}, "hierarchy": {"h2": "hierarchyValue", "h3": {"h4": "h4Val"}},
            "replaceTest": "stack-with-hyphens", "withUpperCase": "baconBacon", "isempty": "", "isnull": None,
            "map": [{"v1": "k1"}, {"v2": "k2"}], "list": {"regions": "us-east-1,us-west-2"}, "str": "7.5",
            "var1": 17, "map1": {"map1key": "map1val"}}),
    ],
}

_EAST = {"account": "test", "capacity": {"desired": 1, "max": 1, "min": 1}, "parentStage": None,
         "region": "us-east-1", **_DETAILS[0], "serverGroup": "flex-test-v043",
         "deployments": [{"serverGroupName": "flex-test-v043"}]}
_WEST = {"account": "prod", "capacity": {"desired": 1, "max": 1, "min": 1}, "parentStage": None,
         "region": "us-west-1", **_DETAILS[1], "serverGroup": "flex-prestaging-v011", "deployments": []}

ORCA = [
    # CPP "should #processAttributes"
    E("${replaceMe}", "newValue", id="cpp-simple-property"),
    E("${h1.h1}", "h1Val", id="cpp-dots"),
    E("${replaceMe} and ${replaceMe}", "newValue and newValue", id="cpp-embedded"),
    E("${hierarchy.h2}", "hierarchyValue", id="cpp-hierarchy"),
    E("${hierarchy.h3.h4}", "h4Val", id="cpp-nested-hierarchy"),
    E("${notResolvable}", "${notResolvable}", id="cpp-unresolvable-left-alone"),
    E("${testArray[0]}", "good", id="cpp-array"),
    E("${testArray[1].arrayVal}", "bad", id="cpp-map-in-array"),
    E("${testArray[2][0].one}", "two", id="cpp-array-in-array"),
    E('${ h1.h1 == "h1Val" }', True, id="cpp-spel-comparison"),
    E("${ h1.h2  ?: 60 }", 60, id="cpp-elvis-default"),
    E("${ withUpperCase.toLowerCase() }", "baconbacon", id="cpp-string-method"),
    E('${ replaceTest.replaceAll("-","") }', "stackwithhyphens", id="cpp-replaceAll"),
    E("${ #alphanumerical(replaceTest) }", "stackwithhyphens", id="cpp-alphanumerical"),
    E("""${#readJson('{ "newValue":"two" }')[#root.replaceMe]}""", "two", id="cpp-readJson-root-index"),
    E("a.${replaceMe}.b.${replaceMe}", "a.newValue.b.newValue", id="cpp-composite"),
    E("a.${ENV1}.b.${ENV2}", "a.${ENV1}.b.${ENV2}", id="cpp-unresolved-composite"),
    E("a.${ENV1}.b.${replaceMe}", "a.${ENV1}.b.newValue", id="cpp-partial-composite"),
    E('${ "jeyrs!".replaceAll("\\W", "") }', "jeyrs", id="cpp-replaceAll-regex"),
    E("a.${'${ESCAPED_LITERAL}'}.b.${replaceMe}", "a.${ESCAPED_LITERAL}.b.newValue", id="cpp-escaped-literal"),
    # CPP "base64 encode and decode"
    E('${#toBase64("Yo Dawg")}', "WW8gRGF3Zw==", id="cpp-toBase64"),
    E('${#fromBase64("WW8gRGF3Zw==")}', "Yo Dawg", id="cpp-fromBase64"),
    # CPP "when allowUnknownKeys is true"
    E('${noexists ?: "bacon"}', "bacon", id="cpp-elvis-missing"),
    E('${isempty ?: "bacon"}', "bacon", id="cpp-elvis-empty"),
    E('${isnull ?: "bacon"}', "bacon", id="cpp-elvis-null"),
    # CPP "should be able to swap out a SPEL expression of a string with other types"
    E("${var1}", 17, id="cpp-int-stays-int"),
    E("${map1}", {"map1key": "map1val"}, id="cpp-map-stays-map"),
    # CPP "does not fail when buildInfo contains a webhook stage response"
    E("${trigger.correlationId}", "id", id="cpp-trigger-correlationId"),
    # CPP "helper method to convert objects into json", "can operate on List from json"
    E("${#toJson( map )}", '[{"v1":"k1"},{"v2":"k2"}]', id="cpp-toJson"),
    E('${#toJson(list["regions"].split(",")).contains("us-west-2")}', True, id="cpp-toJson-split-contains"),
    E('${#toJson("us-east-1,eu-west-1".split(",")).contains("us-west-2")}', False, id="cpp-toJson-split-absent"),
    # CPP toInt / toFloat / toBoolean
    E("${#toInt('1')}", 1, id="cpp-toInt"),
    E("${#toFloat( str )}", 7.5, id="cpp-toFloat"),
    E("${#toFloat('7')}", 7.0, id="cpp-toFloat-whole"),
    E("${#toBoolean('true')}", True, id="cpp-toBoolean"),
    E("${#toBoolean(null)}", False, id="cpp-toBoolean-null"),
    # CPP json reader
    E("${#readJson('[ \"one\", \"two\" ]')[1]}", "two", id="cpp-readJson-list"),
    # CPP "can read authenticated user", "can find a judgment result", "should get stage status as String"
    E('${execution["authentication"]["user"].split("@")[0]}', "joeyjoejoejuniorshabadoo", id="cpp-auth-user"),
    E('${#judgment("my stage")}', "Real Judgment input", id="cpp-judgment-skips-other-types"),
    E('${#judgement("my stage")}', "Real Judgment input", id="cpp-judgement-alias"),
    E('${#stage("manualJudgment stage")["status"]}', "SUCCEEDED", id="cpp-stage-status-string"),
    E('succeeded: ${#stage("My First Stage")["status"] == "SUCCEEDED"}', "succeeded: true",
      id="cpp-stage-status-in-text"),
    E('${#stage("My First Stage").hasSucceeded}', True, id="cpp-hasSucceeded"),
    E('${#stage("My First Stage").hasFailed}', False, id="cpp-hasFailed"),
    # CPP "Correctly evaluates parameters field in the trigger"
    E('${parameters["branch"] ?: "noValue"}', "hello", id="cpp-parameter"),
    E('${parameters["notFound"] ?: "noValue"}', "noValue", id="cpp-parameter-default"),
    # SEF
    E("${#currentStage().name}", "cur", id="sef-currentStage"),
    E('${#stageByRefId("1.0").name}', "My First Stage", id="sef-stageByRefId"),
    E('${#stageByRefId("2.0")["name"]}', "My Second Stage", id="sef-stageByRefId-2"),
    E('${#stage("My Second Stage").context.region}', "us-west-1", id="sef-stage-by-name"),
    E('${#stage("1").context.region}', "us-east-1", id="sef-stage-by-id"),
    E('${#stageExists("My First Stage")}', True, id="sef-stageExists-name"),
    E('${#stageExists("2")}', True, id="sef-stageExists-id"),
    E('${#stageExists("Non-existent Stage")}', False, id="sef-stageExists-missing"),
    E('${#stageExists("42")}', False, id="sef-stageExists-missing-id"),
    # AEF
    E('${#triggerResolvedArtifact("artifact1").type}', "docker/image", id="aef-triggerResolvedArtifact"),
    E('${#triggerResolvedArtifactByType("docker/image").name}', "artifact1", id="aef-byType"),
    E("${#resolvedArtifacts().![name]}", ["name1", "name2"], id="aef-resolvedArtifacts-names"),
    E("${#resolvedArtifacts().![reference]}", ["ref1", "ref2"], id="aef-resolvedArtifacts-references"),
    # CPP deployedServerGroups (the bare alias and the function), DSG
    E("${deployedServerGroups}", [_EAST, _WEST], id="cpp-deployedServerGroups-alias"),
    E("${#deployedServerGroups()}", [_EAST, _WEST], id="cpp-deployedServerGroups"),
    E("${#deployedServerGroups().![serverGroup]}", ["flex-test-v043", "flex-prestaging-v011"],
      id="cpp-deployedServerGroups-serverGroup"),
    E("${#deployedServerGroups().![ami]}", ["ami-06362b6e", "ami-f759b7b3"], id="cpp-deployedServerGroups-ami"),
    E('${#deployedServerGroups("Deploy in us-east-1").![region]}', ["us-east-1"], id="cpp-deployedServerGroups-named"),
    E('${#deployedServerGroups("west").![serverGroup]}', ["flex-prestaging-v011"], id="dsg-by-id"),
    E("${#deployedServerGroups()[0].deployments}", [{"serverGroupName": "flex-test-v043"}],
      id="cpp-deployedServerGroups-deployments"),
    # MLV
    E('${#manifestLabelValue("Deploy ReplicaSet", "ReplicaSet", "my-label-key")}', "my-label-value", id="mlv-label"),
    E('${#manifestLabelValue("Deploy ReplicaSet", "ReplicaSet", "moniker.spinnaker.io/sequence")}', "0",
      id="mlv-label-spinnaker-added"),
    # CFSK
    E('${#cfServiceKey("stage-name-1")}', {"username": "user1", "password": "password1", "url": "mysql.example.com"},
      id="cfsk-service-key"),
    E('${#cfServiceKey("sk1").url}', "mysql.example.com", id="cfsk-by-id"),
    E('${#cfServiceKey("stage-name-4")}', {}, id="cfsk-running-stage-is-empty"),
    E('${#cfServiceKey("no such stage")}', {}, id="cfsk-missing-is-empty"),
]

# each leaves the text as written with an ERROR entry whose description contains the fragment
ORCA_FAILURES = [
    # CPP "should restrict fromUrl requests": off here unless an operator enables URL functions
    E("${ #fromUrl('file:///etc/passwd')}", "#fromUrl is disabled", id="cpp-fromUrl-file"),
    E("${ #fromUrl('http://169.254.169.254/')}", "#fromUrl is disabled", id="cpp-fromUrl-link-local"),
    E("${#propertiesFromUrl('https://config.example.com/app.properties')}", "#propertiesFromUrl is disabled",
      id="url-propertiesFromUrl-off"),
    # CPP "should not System.exit", "should not allow bad type", "should not allow bad method"
    E("${T(java.lang.System).exit(1)}", "java.lang.System", id="cpp-system-exit"),
    E("${T(java.lang.Runtime).runtime.exit(1)}", "java.lang.Runtime", id="cpp-runtime-exit"),
    E("${ new java.net.URL('http://google.com').openConnection() }", "java.net.URL", id="cpp-new-url"),
    E("${T(java.lang.Boolean).forName('java.net.URI').getSimpleName()}", "forName", id="cpp-forName"),
    E("${ new java.lang.Integer(1).wait(100000) }", "wait", id="cpp-wait"),
    E("${ new java.lang.Integer(1).getClass().getSimpleName() }", "getClass", id="cpp-getClass"),
    E("${#toJson(execution)}", "cannot contain an expression", id="cpp-toJson-execution-with-expressions"),
    # SEF, AEF, MLV, CFSK failures
    E('${#stageByRefId("does_not_exist")}', 'no stage with refId "does_not_exist"', id="sef-stageByRefId-missing"),
    E('${#stage("does_not_exist")}', 'no stage named "does_not_exist"', id="sef-stage-missing"),
    E('${#triggerResolvedArtifact("somename")}', 'no resolved artifact named "somename"', id="aef-missing"),
    E('${#triggerResolvedArtifactByType("s3/object")}', 'no resolved artifact of type "s3/object"',
      id="aef-type-missing"),
    E('${#triggerResolvedArtifact("loose")}', "only the bound artifacts", id="aef-loose-trigger-artifact"),
    E('${#manifestLabelValue("Non-existent Stage", "ReplicaSet", "my-label-key")}', "no deployManifest stage",
      id="mlv-stage-missing"),
    E('${#manifestLabelValue("Deploy ReplicaSet", "Deployment", "my-label-key")}', 'deployed no "Deployment"',
      id="mlv-kind-missing"),
    E('${#manifestLabelValue("Deploy ReplicaSet", "ReplicaSet", "non-existent-label")}', "no pod-template label",
      id="mlv-label-missing"),
    E('${#manifestLabelValue("Deploy ReplicaSet", "Service", "app")}', "only Deployments and ReplicaSets",
      id="mlv-kind-not-allowed"),
    E('${#manifestLabelValue("Deploy again", "Deployment", "a")}', "has not SUCCEEDED", id="mlv-not-succeeded"),
    E('${#cfServiceKey("stage-name-3")}', "no result objects", id="cfsk-empty-results"),
    E('${#canaryConfigNameToId("my-config", "kayenta")}', "needs Kayenta's stored canary configs",
      id="kayenta-canaryConfigNameToId"),
]


def _ctx() -> EvaluationContext:
    return EvaluationContext(execution=copy.deepcopy(EXECUTION), stage_id="cur", user="alice",
                             options=ExpressionOptions())


@pytest.mark.parametrize(("text", "expected"), ORCA)
def test_orca_expression_case(text: str, expected: Any) -> None:
    res = evaluate_templated({"v": text}, _ctx())
    assert json.dumps(res.value["v"], sort_keys=True) == json.dumps(expected, sort_keys=True), res.summary
    assert not res.failed


@pytest.mark.parametrize(("text", "fragment"), ORCA_FAILURES)
def test_orca_failure_case_keeps_the_text_with_an_error(text: str, fragment: str) -> None:
    if "toJson(execution)" in text:  # CPP: a stage context holding the expression itself
        execution = copy.deepcopy(EXECUTION)
        execution["stages"][-1]["context"]["comments"] = text
        ctx = EvaluationContext(execution=execution, stage_id="cur", options=ExpressionOptions())
    else:
        ctx = _ctx()
    res = evaluate_templated({"v": text}, ctx)
    assert res.value["v"] == text
    assert res.failed
    [entries] = res.summary.values()
    assert entries[0]["level"] == "ERROR"
    assert fragment in entries[0]["description"], entries[0]["description"]


def test_deployed_server_groups_skip_stages_not_succeeded_and_read_every_kato_task() -> None:
    # DSG "should resolve deployments for valid stage type": three tasks' deployments, one empty result, one {}
    execution = {"id": "x", "stages": [_stage("1", "1", "createServerGroup", "Deploy in us-east-1", context={
        "account": "test", "availabilityZones": {"us-east-1": ["us-east-1c"]},
        "deploy.server.groups": {"us-east-1": ["app-test-v001", "app-test-v002", "app-test-v003"]},
        "kato.tasks": [{"resultObjects": [{"deployments": [{"serverGroupName": "app-test-v001"}],
                                           "serverGroupNames": ["us-east-1:app-test-v001"]}]},
                       {"resultObjects": [{"deployments": [{"serverGroupName": "app-test-v002"},
                                                           {"serverGroupName": "app-test-v003"}]}]},
                       {"resultObjects": [{}]}, {}]}),
        _stage("2", "2", "deploy", "not yet", status="RUNNING", context={"deploy.server.groups": {"r": ["x"]},
                                                                           "region": "r"})]}
    ctx = EvaluationContext(execution=execution, stage_id=None)
    res = evaluate_templated({"sg": "${#deployedServerGroups().![serverGroup]}",
                              "d": "${#deployedServerGroups()[0].deployments.![serverGroupName]}"}, ctx)
    assert res.value == {"sg": ["app-test-v001"], "d": ["app-test-v001", "app-test-v002", "app-test-v003"]}


def test_properties_are_read_as_java_properties_load_reads_them() -> None:
    # URL: #propertiesFromUrl parses what it fetched with java.util.Properties.load
    text = ("# comment\n! also a comment\nversion=1.2.3\nimage : repo/app\nbranch main\n"
            "  long = first \\\n     second\nescaped\\=key=v\nunicode=caf\\u00e9\\tend\nempty=\n")
    assert parse_properties(text) == {"version": "1.2.3", "image": "repo/app", "branch": "main",
                                      "long": "first second", "escaped=key": "v", "unicode": "café\tend",
                                      "empty": ""}


# Expressions from public pipelines (stageEnabled gates, precondition checks, child-pipeline parameters), each
# evaluated as orca evaluates it in that field; SpEL reads a keyword after a dot as a method name.
PUBLIC_EXECUTION: dict[str, Any] = {
    "id": "01PUBLIC000000000000000000", "application": "svc", "name": "deploy", "status": "RUNNING",
    "trigger": {"type": "docker", "user": "ci", "parameters": {"deployToTest": "true", "testRequiresApproval": "false",
                                                               "target": "qa"},
                "artifacts": [{"type": "docker/image", "name": "svc", "reference": "svc:release-1.4",
                               "version": "release-1.4"}]},
    "stages": [
        _stage("p", "1", "runJobManifest", "plan", outputs={"jobStatus": {"logs": "Plan: 0 to add\nPLAN_EXITSTATUS0"}}),
        _stage("m", "2", "manualJudgment", "Manual Judgment", requisites=("1",),
               context={"judgmentStatus": "continue", "judgmentInput": "Continue"}),
        _stage("g", "3", "pipeline", "Deploy Application Test", status="RUNNING", requisites=("2",)),
    ],
}

PUBLIC = [
    E("trigger['artifacts'][0]['version'].matches(\"(pull-|master-|release-).*\") && "
      "trigger['parameters']['deployToTest'] == \"true\"", True, id="public-artifact-version-matches"),
    E("${trigger['parameters']['testRequiresApproval']}", "false", id="public-child-parameter"),
    E('${#stage("plan")["outputs"]["jobStatus"]["logs"].toString().split("PLAN_EXITSTATUS")[1].equals("0")}', True,
      id="public-terraform-plan-exit-status"),
    E('${ #judgment("Manual Judgment").equals("Continue")}', True, id="public-judgment-equals"),
    E("${parameters.target == 'qa'}", True, id="public-target-leg"),
    E("\"${ #stage('Manual Judgment')['status'].toString() == 'SUCCEEDED'}\"", '"true"',
      id="public-quoted-gate-is-text-first"),
]


@pytest.mark.parametrize(("text", "expected"), PUBLIC)
def test_public_pipeline_expression(text: str, expected: Any) -> None:
    ctx = EvaluationContext(execution=copy.deepcopy(PUBLIC_EXECUTION), stage_id="g", options=ExpressionOptions())
    wrapped = text if "${" in text else "${" + text + "}"  # a bare stageEnabled expression: orca wraps it
    res = evaluate_templated({"v": wrapped}, ctx)
    assert res.value["v"] == expected, res.summary



_SG = {"account": None, "capacity": None, "parentStage": None, "region": "r", "serverGroup": "a", "deployments": []}
_MANIFESTS = {"outputs.manifests": [{"kind": "Deployment",
                                     "spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}]}


@pytest.mark.parametrize(("context", "text", "expected"), [
    # malformed entries are skipped, as the helper skips the others (a non-list resultObjects, a non-map task)
    E({"region": "r", "deploy.server.groups": {"r": ["a"]}, "kato.tasks": 5}, "${#deployedServerGroups()}", [_SG],
      id="dsg-kato-tasks-a-number"),
    E({"region": "r", "deploy.server.groups": {"r": ["a"]}, "kato.tasks": True}, "${deployedServerGroups}", [_SG],
      id="dsg-bare-name"),
    E({"region": ["r"], "deploy.server.groups": {"r": ["a"]}}, "${#deployedServerGroups()}", [],
      id="dsg-region-a-list"),
    E(_MANIFESTS, '${#manifestLabelValue("D", "Deployment", {1})}', "the label key must be a String",
      id="mlv-label-a-list"),
    E(_MANIFESTS, '${#manifestLabelValue("D", "Deployment", {"a": 1})}', "the label key must be a String",
      id="mlv-label-a-map"),
])
def test_hostile_stage_contexts_and_arguments_get_an_answer_not_an_internal_error(
        context: dict[str, Any], text: str, expected: Any) -> None:
    kind = "deployManifest" if "manifestLabelValue" in text else "deploy"
    execution = {"id": "x", "stages": [_stage("1", "1", kind, "D", context=context)]}
    res = evaluate_templated({"v": text}, EvaluationContext(execution=execution, stage_id=None))
    described = [e["exceptionType"] for entries in res.summary.values() for e in entries]
    assert "InternalEvaluationError" not in described, res.summary
    if isinstance(expected, str):
        [entries] = res.summary.values()
        assert expected in entries[0]["description"], entries[0]["description"]
    else:
        assert res.value["v"] == expected, res.summary
