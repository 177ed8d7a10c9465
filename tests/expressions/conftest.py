"""Execution snapshots for the expression tests: the article's reviews canary and CODING's blue/green."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import graylane.demos.bookinfo
from graylane.expressions import EvaluationContext, ExpressionOptions

# The article's VirtualService template, verbatim, as Bookinfo ships it (tests/bookinfo checks it against the
# walkthrough).
_SHIPPED = Path(graylane.demos.bookinfo.__file__).parent / "coding-cd-template"
ARTICLE_TEMPLATE = (_SHIPPED / "canary-ratio-virtual-service.yaml.tmpl").read_text(encoding="utf-8")

_TEMPLATE_DOC = yaml.safe_load(ARTICLE_TEMPLATE)

FIXED_NOW = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.UTC)


def fixed_clock() -> dt.datetime:
    return FIXED_NOW


def _stage(ident: str, ref: str, kind: str, name: str, status: str, requisites: list[str],
           context: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None,
           parent: str | None = None) -> dict[str, Any]:
    return {
        "id": ident, "refId": ref, "type": kind, "name": name, "status": status,
        "context": context or {}, "outputs": outputs or {}, "requisiteStageRefIds": requisites,
        "parentStageId": parent, "startTime": 1_700_000_000_000, "endTime": None, "tasks": [],
        "lastModified": {"user": "alice", "allowedAccounts": ["tke"], "lastModifiedTime": 1_700_000_000_500},
    }


def article_execution(canary_ratio: str | None = "50", full_release: str | None = None) -> dict[str, Any]:
    """The reviews-canary pipeline (spinnaker.md §1.5) paused at or past 灰度比例生效."""
    judged = {"judgmentStatus": "continue", "customParams": {"canary_ratio": canary_ratio}} \
        if canary_ratio is not None else {}
    full = {"judgmentStatus": "continue", "judgmentInput": full_release} if full_release else {}
    return {
        "id": "01HEXEC0000000000000000000",
        "type": "PIPELINE",
        "application": "bookinfo",
        "name": "reviews-canary",
        "pipelineConfigId": "cfg-reviews-canary",
        "status": "RUNNING",
        "startTime": 1_700_000_000_000,
        "authentication": {"user": "alice", "allowedAccounts": ["tke"]},
        "trigger": {
            "type": "manual", "user": "alice",
            "parameters": {"base_version": "v1", "canary_version": "v2", "replicas": 3, "dry": True},
            "artifacts": [
                {"type": "docker/image", "name": "reviews", "reference": "bookinfo/reviews:v2", "version": "v2"},
            ],
            "resolvedExpectedArtifacts": [
                {"id": "canary-reviews-deployment", "displayName": "canary-reviews-deployment",
                 "boundArtifact": {"type": "git/file", "name": "platform/kube/bookinfo-reviews-v2.yaml",
                                   "reference": "https://git.example/bookinfo.git", "version": "canary"}},
            ],
            "buildInfo": {"scm": [{"sha1": "abc123", "branch": "canary", "name": "bookinfo"}]},
        },
        "stages": [
            _stage("s1", "1", "deployManifest", "deploy canary", "SUCCEEDED", [],
                   context={"account": "tke", "outputs.manifests": [
                       {"kind": "Deployment", "metadata": {"name": "reviews-v2"},
                        "spec": {"template": {"metadata": {"labels": {"app": "reviews", "version": "v2"}}}}}]},
                   outputs={"deployedName": "reviews-v2", "region": "ap-guangzhou"}),
            _stage("s2", "2", "evaluateVariables", "compute", "SUCCEEDED", ["1"],
                   outputs={"region": "ap-shanghai", "environment": "staging"}),
            _stage("s3", "3", "manualJudgment", "设置灰度比例", "SUCCEEDED" if judged else "RUNNING", ["2"],
                   context={"instructions": "输入灰度比例", "judgmentInputs": [], **judged}),
            _stage("s4", "4", "deployManifest", "灰度比例生效", "RUNNING", ["3"],
                   context={"account": "tke", "source": "text", "waitTime": 30,
                            "manifests": [copy.deepcopy(_TEMPLATE_DOC)]}),
            _stage("s4b", "4<1", "wait", "wait for mesh", "NOT_STARTED", [], parent="s4",
                   context={"waitTime": 5}),
            _stage("s5", "5", "manualJudgment", "是否全量发布", "SUCCEEDED" if full else "NOT_STARTED", ["4"],
                   context={"judgmentInputs": [{"value": "全量发布"}, {"value": "结束发布"}], **full}),
            _stage("s6", "6", "deployManifest", "全量发布", "NOT_STARTED", ["5"],
                   context={"stageEnabled": {"type": "expression",
                                             "expression": "#judgment('是否全量发布') == '全量发布'"}}),
        ],
    }


def blue_green_execution(choice: str | None, status: str) -> dict[str, Any]:
    """CODING's blue/green pipeline: judgment 蓝绿验证 with two options, and a guard downstream."""
    judgment = {"judgmentInputs": [{"value": "控制全部流量到新集群"}, {"value": "控制部分流量到新集群"}],
                "customParams": {"blue_ratio": "20"}}
    if choice is not None:
        judgment.update({"judgmentStatus": "continue", "judgmentInput": choice})
    return {
        "id": "01HBLUEGREEN00000000000000", "application": "bookinfo", "name": "blue-green",
        "status": "RUNNING", "trigger": {"type": "manual", "user": "bob", "parameters": {}},
        "stages": [
            _stage("b1", "1", "deployManifest", "部署新集群", "SUCCEEDED", []),
            _stage("b2", "2", "manualJudgment", "蓝绿验证", status, ["1"], context=judgment),
            _stage("b3", "3", "deployManifest", "全部流量切换", "NOT_STARTED", ["2"]),
        ],
    }


@pytest.fixture
def make_ctx() -> Callable[..., EvaluationContext]:
    def build(execution: dict[str, Any] | None = None, stage_id: str | None = "s4", user: str | None = "alice",
              **options: Any) -> EvaluationContext:
        return EvaluationContext(
            execution=copy.deepcopy(execution if execution is not None else article_execution()),
            stage_id=stage_id, user=user, options=ExpressionOptions(clock=fixed_clock, **options))
    return build


@pytest.fixture
def article() -> Callable[..., dict[str, Any]]:
    return article_execution


@pytest.fixture
def blue_green() -> Callable[..., dict[str, Any]]:
    return blue_green_execution


@pytest.fixture
def article_template() -> str:
    return ARTICLE_TEMPLATE
