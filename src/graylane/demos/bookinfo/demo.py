"""`graylane demo bookinfo`: the article's demo on this machine, from a fresh state folder to a running baseline.

Steps: start the local mesh if needed; put the demo files (platform/, networking/, coding-cd-template/) in a
local git repository in the state folder, so pipeline artifacts are git files at a branch as in the article;
import both pipelines with their artifacts pointing at that repository; run the baseline pipeline; print the
productpage URL, the console URL and the next commands.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graylane.errors import GraylaneError

DEMO_ROOT = Path(__file__).resolve().parent
DEMO_FOLDERS = ("platform", "networking", "coding-cd-template")
# The pipelines name the article's repository; the demo points them at its local copy instead.
TEMPLATE_REPO = "https://ci-cd.coding.net/public/bookinfo/bookinfo/git"
BRANCH = "master"
BASELINE = "bookinfo-baseline"
CANARY = "reviews-canary"
CANARY_HTTPROUTE = "reviews-canary-httproute"  # the same flow with a Gateway API HTTPRoute (docs/dataplane.md)
CANARY_AUTO = "reviews-canary-auto"  # kayentaCanary after each step, automatic rollback (docs/analysis.md)
RELEASES = ("reviews-progressive", "reviews-ratings-lockstep")  # canaryRollout steps, lockstep (docs/strategies.md)
APPLICATION = "bookinfo"
COMPLETE = {"SUCCEEDED", "TERMINAL", "CANCELED", "STOPPED", "FAILED_CONTINUE", "SKIPPED"}

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Graylane demo", "GIT_AUTHOR_EMAIL": "demo@graylane.invalid",
    "GIT_COMMITTER_NAME": "Graylane demo", "GIT_COMMITTER_EMAIL": "demo@graylane.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def pipeline_file(name: str) -> Path:
    return DEMO_ROOT / "coding-cd-template" / f"{name}.json"


def load_pipeline(name: str, repo: str | Path | None = None) -> dict[str, Any]:
    """A pipeline as shipped, with its git artifacts pointed at `repo` (a local path or URL) when given."""
    body = json.loads(pipeline_file(name).read_text(encoding="utf-8"))
    return point_artifacts_at(body, str(repo)) if repo is not None else body


def point_artifacts_at(pipeline: dict[str, Any], repo: str) -> dict[str, Any]:
    """Replace the article's repository by `repo` in every git artifact (default and match, and the artifacts
    stages name inline, such as reviews-canary's `manifestArtifact`)."""
    out = copy.deepcopy(pipeline)
    found = [expected.get(key) for expected in out.get("expectedArtifacts") or []
             for key in ("defaultArtifact", "matchArtifact")]
    found += [stage.get("manifestArtifact") for stage in out.get("stages") or []]
    for art in found:
        if isinstance(art, dict) and art.get("reference") == TEMPLATE_REPO:
            art["reference"] = repo
    return out


# ---- the local git repository -------------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    try:
        done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GraylaneError("git is not installed", hint="install git; the demo keeps its files in a git repository") \
            from None
    if done.returncode != 0:
        raise GraylaneError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def prepare_repository(repo: Path, branch: str = BRANCH) -> str:
    """Create or refresh the demo repository at `repo` (files committed on `branch`); returns the commit id."""
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        _git(repo, "init", "-q")
        _git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    elif _git(repo, "rev-parse", "--abbrev-ref", "HEAD") != branch:
        _git(repo, "checkout", "-q", "-B", branch)
    for folder in DEMO_FOLDERS:
        target = repo / folder
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(DEMO_ROOT / folder, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (repo / "README.md").write_text(
        "# bookinfo\n\nIstio's Bookinfo as the CODING CD + TKE Mesh canary article lays it out:\n"
        "`platform/kube/` (Deployments), `networking/` (Gateway, DestinationRules, VirtualServices) and\n"
        "`coding-cd-template/` (the two pipelines). Created by `graylane demo bookinfo`.\n", encoding="utf-8")
    _git(repo, "add", "-A", "--", *DEMO_FOLDERS, "README.md")
    if _git(repo, "status", "--porcelain"):
        _git(repo, "commit", "-q", "-m", "Bookinfo demo files")
    return _git(repo, "rev-parse", "HEAD")


# ---- talking to the control plane -------------------------------------------------------------------------------

@dataclass
class PipelineApi:
    """The few pipeline-engine calls the demo makes, over the control plane's HTTP API."""

    client: Any  # graylane.cli.client.ApiClient

    def save(self, pipelines: list[dict[str, Any]]) -> dict[str, Any]:
        """Import (create or update) pipelines; all are validated before any is saved."""
        return self.client.post("/api/v1/pipelines", json=pipelines)

    def start(self, name: str, parameters: dict[str, str] | None = None,
              artifacts: list[dict[str, Any]] | None = None) -> str:
        """Manual trigger; returns the execution id."""
        resp = self.client.post(f"/api/v1/pipelines/{name}/start",
                                json={"parameters": parameters or {}, "artifacts": artifacts or [],
                                      "application": APPLICATION})
        return str(resp["id"])

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self.client.get(f"/api/v1/executions/{execution_id}")

    def judge(self, execution_id: str, stage_name: str, status: str = "continue", judgment_input: str | None = None,
              custom_params: dict[str, str] | None = None) -> dict[str, Any]:
        """Approve (`continue`) or reject (`stop`) a waiting manual judgment stage, by its name."""
        stages = [s for s in self.execution(execution_id).get("stages") or [] if s.get("name") == stage_name]
        if not stages:
            raise GraylaneError(f"execution {execution_id} has no stage named {stage_name!r}")
        body: dict[str, Any] = {"judgmentStatus": status}
        if judgment_input is not None:
            body["judgmentInput"] = judgment_input
        if custom_params:
            body["customParams"] = custom_params
        return self.client.patch(f"/api/v1/executions/{execution_id}/stages/{stages[0]['id']}", json=body)


def _stage_line(stage: dict[str, Any]) -> str:
    return f"{stage.get('name') or stage.get('refId')}: {stage.get('status', 'NOT_STARTED')}"


def watch_execution(api: PipelineApi, execution_id: str, on_update: Callable[[dict[str, Any]], None],
                    timeout_s: float = 600.0, poll_s: float = 0.5) -> dict[str, Any]:
    """Poll an execution until it is complete (or waits for a person); report every change."""
    deadline = time.monotonic() + timeout_s
    last: str | None = None
    while True:
        execution = api.execution(execution_id)
        snapshot = json.dumps([(s.get("refId"), s.get("status")) for s in execution.get("stages") or []])
        if snapshot != last:
            on_update(execution)
            last = snapshot
        if execution.get("status") in COMPLETE:
            return execution
        if time.monotonic() > deadline:
            raise GraylaneError(f"execution {execution_id} did not finish within {timeout_s:g}s",
                                hint=f"see `graylane execution show {execution_id}`")
        time.sleep(poll_s)


@dataclass
class DemoResult:
    repository: Path
    commit: str
    baseline_execution: str
    productpage_url: str | None
    console_url: str
    next_commands: list[str] = field(default_factory=list)


def gateway_url(client: Any) -> str | None:
    try:
        items = client.get("/api/v1/mesh/gateways").get("items", [])
    except GraylaneError:
        return None
    for item in items:
        if item.get("name") == "bookinfo-gateway" and item.get("url"):
            return str(item["url"]).rstrip("/")
    return str(items[0]["url"]).rstrip("/") if items and items[0].get("url") else None


def next_commands(repo: Path) -> list[str]:
    return [
        f"graylane pipeline run {CANARY} -p base_version=v1 -p canary_version=v2 --watch",
        "graylane judge <EXECUTION> --stage 设置灰度比例 --continue -P canary_ratio=50",
        "graylane judge <EXECUTION> --stage 是否全量发布 --continue --input 全量发布   # or --input 结束发布",
        "graylane graph   # the live topology",
    ]


def run_demo(client: Any, repo: Path, on_update: Callable[[dict[str, Any]], None],
             timeout_s: float = 600.0) -> DemoResult:
    """Everything after the mesh is up: repository, pipelines, baseline run."""
    commit = prepare_repository(repo)
    api = PipelineApi(client)
    api.save([load_pipeline(name, repo) for name in (BASELINE, CANARY, CANARY_HTTPROUTE, *RELEASES, CANARY_AUTO)])
    configs = sorted((DEMO_ROOT / "analysis").glob("*.yaml"))  # canary configs (reviews-canary-auto judges by one)
    client.post("/api/v1/apply", json={"files": [{"name": f.name, "text": f.read_text(encoding="utf-8")}
                                                 for f in configs]})
    execution_id = api.start(BASELINE)
    execution = watch_execution(api, execution_id, on_update, timeout_s)
    if execution.get("status") != "SUCCEEDED":
        failed = [s for s in execution.get("stages") or [] if s.get("status") not in ("SUCCEEDED", "SKIPPED")]
        detail = "; ".join(_stage_line(s) for s in failed) or execution.get("status")
        raise GraylaneError(f"the baseline pipeline ended {execution.get('status')}: {detail}",
                            hint=f"see `graylane execution show {execution_id}`")
    base = gateway_url(client)
    return DemoResult(repository=repo, commit=commit, baseline_execution=execution_id,
                      productpage_url=f"{base}/productpage" if base else None,
                      console_url=str(client.base_url).rstrip("/") + "/",
                      next_commands=next_commands(repo))
