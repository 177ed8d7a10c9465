"""Recorded Spinnaker executions, run again by Graylane: the final statuses must be the ones Spinnaker recorded.

Each case names a recorded execution (tests/pipelines/compat/README.md: sources and licences) and where its
pipeline comes from: the pipeline config the same source stores (saved before the execution was built), or the
stages as the execution records them (`derive`). The pipeline is imported as the API imports it and run on the
local account; the expectation is read from the recorded execution itself: its status and the status of every
top-level stage, by refId. Orca's synthetic stages (a checkPreconditions stage's `Check precondition` children) are
not compared: Graylane runs preconditions inside the stage (their results are in `preconditionResults`).

What the recording's outside world did is played back locally: a webhook's URL keeps its path and is sent to a
local server that answers what the recording says the remote answered (`webhook.statusCodeValue` / `body`), in
the recorded order; a manual judgment is judged as recorded (`judgmentStatus`); every account is the local
account, holding what the recording shows the cluster held.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from graylane.errors import ValidationError
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import Document, Source
from graylane.store import Store
from graylane.targets.local import LocalTarget

RECORDED = Path(__file__).parent / "compat" / "recorded"
SPEED = 300.0  # clock seconds per real second: a recorded 30 s wait takes ~0.1 s

# Keys orca's tasks add to a stage's context while it runs; a pipeline derived from an execution leaves them out.
RUNTIME_KEYS = {"webhook", "exception", "restartDetails", "judgmentStatus", "judgmentInput", "lastModifiedBy",
                "startTime", "expressionEvaluationSummary", "stageEnabledResult"}


def load(rel: str) -> Any:
    return json.loads((RECORDED / rel).read_text(encoding="utf-8"))


def recorded_execution(rel: str, execution_id: str) -> dict[str, Any]:
    data = load(rel)
    return dict(next(e for e in (data if isinstance(data, list) else [data]) if e["id"] == execution_id))


def derive(execution: dict[str, Any]) -> dict[str, Any]:
    """The pipeline as the execution records it: its top-level stages' contexts without what tasks added."""
    stages = [{**{k: v for k, v in s["context"].items() if k not in RUNTIME_KEYS},
               "refId": s["refId"], "type": s["type"], "name": s["name"],
               "requisiteStageRefIds": s.get("requisiteStageRefIds") or []}
              for s in execution["stages"] if not s.get("parentStageId")]
    return {"application": execution["application"], "name": execution["name"],
            "id": execution["pipelineConfigId"], "stages": stages}


def recorded_statuses(execution: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return execution["status"], {s["refId"]: s["status"] for s in execution["stages"] if not s.get("parentStageId")}


@dataclass
class Case:
    executions: str  # the file holding the recorded execution
    execution_id: str
    config: tuple[str, str] | None  # (file, pipeline id) of the stored config; None: derive it from the execution
    answers: dict[str, tuple[int, Any, float]] = field(default_factory=dict)  # URL path -> (code, body, delay s)
    live: list[dict[str, Any]] = field(default_factory=list)  # what the cluster held before the run
    after: tuple[str, ...] = ()  # cases run first in the same store (findArtifactFromExecution reads them)
    warnings: tuple[str, ...] = ()  # fragments of the import warnings expected


SAUL_EXECUTIONS = "saul/applicationPipelineExecutions.json"
SAUL_CONFIGS = "saul/applicationPipelineConfigs.json"
# The two endpoints the SAUL lab's webhooks called, answering 404 as recorded (context.webhook); the second one
# failed first (its stage ended 152 ms before the first's), so the first answers a little later here too.
SAUL_404 = {"/userss": (404, "Not found", 0.5),
            "/canary": (404, "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not "
                        "Found</h1></center>\r\n<hr><center>nginx/1.17.8</center>\r\n</body>\r\n</html>\r\n", 0.0)}
# The Service the lab's cluster held in namespace `dev` (patched by the recorded run; its ports and selector are
# the ones the pipeline's own Deploy (Manifest) stage deploys).
PATCH_SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "patch-service-test", "namespace": "dev"},
                 "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
                          "selector": {"ingress": "service-1"}}}
NGINX = {"type": "gcs/object", "name": "gs://sbws/manifests/nginx.yaml", "reference": "gs://sbws/manifests/nginx.yaml"}
LINODE = "account 'linode' does not exist"

CASES: dict[str, Case] = {
    # two branches: a webhook allowed to fail (continuePipeline) then Evaluate Variables, and a webhook with the
    # default options. Both answer 404: FAILED_CONTINUE and TERMINAL; Evaluate Variables, started after the halt
    # because its upstream completed, CANCELED; the execution TERMINAL.
    "saul-call-orca-1": Case(SAUL_EXECUTIONS, "01EH5F35DVKYEFEFBX2B93YKGF",
                             (SAUL_CONFIGS, "650604e3-812e-4cb9-8577-ea44e42898ce"), SAUL_404),
    # the same pipeline, recorded again (its second webhook was later restarted and failed the same way)
    "saul-call-orca-2": Case(SAUL_EXECUTIONS, "01EHQXX08NRMM6MC49R4CZ4FZV",
                             (SAUL_CONFIGS, "650604e3-812e-4cb9-8577-ea44e42898ce"), SAUL_404),
    # a later version of it (stages as recorded): a manual judgment after the webhook, judged `stop`
    "saul-call-orca-judged": Case(SAUL_EXECUTIONS, "01EHWN94SBFJ1Q914E9WRGA5QZ", None, SAUL_404),
    # parameter action=patch: `Is Deployment` (stage failPipeline false, precondition failPipeline true) halts its
    # branch STOPPED, its deploy never starts, `Is Patch` and the patch succeed, the execution SUCCEEDED
    "saul-patch-manifest": Case(SAUL_EXECUTIONS, "01EHQXY4E347ZXCTZZS2N5ZN83",
                                (SAUL_CONFIGS, "cfe1f184-f944-408d-83c6-d0b9457eef0c"), live=[PATCH_SERVICE],
                                warnings=(LINODE,)),
    # findArtifactFromExecution of the patch pipeline's last successful execution, which has no artifact: TERMINAL
    "saul-artifacts": Case(SAUL_EXECUTIONS, "01EHQXZN7SXM38AE9CWNKHHS03",
                           (SAUL_CONFIGS, "c61d6fdb-622a-4b63-aa3b-23810cfc7429"), live=[PATCH_SERVICE],
                           after=("saul-patch-manifest",), warnings=(LINODE,)),
    # its earlier version (stages as recorded) looked in the webhook pipeline, which never succeeded: TERMINAL
    "saul-artifacts-earlier": Case(SAUL_EXECUTIONS, "01EHQXWH4MRAWGPF3G9Z8ADE3C", None, SAUL_404,
                                   after=("saul-call-orca-1",)),
    "deck-simple-wait": Case("deck/core/manual_execution/pipelines.succeeded.json", "01D4NH3V9D1RK8GX4036M8BAXV",
                             ("deck/core/manual_execution/Simple Wait Pipeline.json",
                              "d6e7e0bc-83f5-461f-a95c-568080b49b6e")),
    # a webhook whose expectedArtifacts bind to the artifact its answer carries, then a wait. The recording keeps
    # no context (Deck's list view): the answers are ours, one binding the expected artifact, one not.
    "deck-webhook-artifacts-succeeded": Case(
        "deck/google/pipelines_list/pipelines.json", "01CXDG0Y3V6XQJTT1SK1YM4R9W",
        ("deck/google/pipelines_list/pipelineConfigs.json", "5f9b4f77-eae9-44e7-8587-dd9e30a89c99"),
        {"/": (200, {"artifacts": [NGINX]}, 0.0)}),
    "deck-webhook-artifacts-terminal": Case(
        "deck/google/pipelines_list/pipelines.json", "01CXDH5AFBEJ3NVA478DYR8MFX",
        ("deck/google/pipelines_list/pipelineConfigs.json", "5f9b4f77-eae9-44e7-8587-dd9e30a89c99"),
        {"/": (200, {"artifacts": [{**NGINX, "name": "gs://sbws/manifests/other.yaml"}]}, 0.0)}),
    # started by its Pub/Sub trigger (the recorded trigger, artifacts and payload as they came): a wait
    "deck-cloud-build-pubsub": Case(
        "deck/appengine/pipelines_list/pipelines.json", "01D0Q77DZYFYY30D4YJ3BX3YAV",
        ("deck/appengine/pipelines_list/pipelineConfigs.json", "5a452958-7e81-48ba-9a4f-3433024562c4")),
    # Evaluate Variables then a wait whose waitTime is the string "30" (stages as recorded)
    "spin-param-wait": Case("spin/executionList.json", "01D4B7ZJWYANYN45AWMK4RNTYN", None),
}

# Recorded executions of pipelines Graylane refuses: (file, execution id, config file, config id, what it says)
REFUSED = {
    "deck-appengine-exploded-war": (
        "deck/appengine/pipelines_list/pipelines.json", "01D16JPP3V9SCYHXCRTTTAEZTY",
        "deck/appengine/pipelines_list/pipelineConfigs.json", "9b0ce1bb-f479-4823-a9ac-90c78f082711",
        "'deploy' needs a cloud provider server group (Clouddriver)"),
}


def test_every_recorded_file_is_used() -> None:
    files = {str(p.relative_to(RECORDED)) for p in RECORDED.rglob("*.json")}
    used = {c.executions for c in CASES.values()} | {c.config[0] for c in CASES.values() if c.config}
    used |= {r[0] for r in REFUSED.values()} | {r[2] for r in REFUSED.values()}
    assert files == used


class _Answers(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, Any, float]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        code, body, delay = type(self).answers.get(self.path, (599, "no recorded answer", 0.0))
        time.sleep(delay)
        text = body if isinstance(body, str) and body.startswith("<") else json.dumps(body)
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html" if text.startswith("<") else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (a stopped control plane)
            pass


@pytest.fixture
def answering() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def pipeline_of(case: Case, base_url: str) -> dict[str, Any]:
    if case.config is None:
        config = derive(recorded_execution(case.executions, case.execution_id))
    else:
        data = load(case.config[0])
        config = copy.deepcopy(next(c for c in (data if isinstance(data, list) else [data])
                                    if c["id"] == case.config[1]))
    for st in config["stages"]:
        if st["type"] == "webhook":  # the recorded endpoint's path, on the local server
            st["url"] = base_url + (urlsplit(st["url"]).path or "/")
    return config


def fast_clock() -> Any:
    start = time.time()
    return lambda: start + (time.time() - start) * SPEED


async def _tick(ex: Executor, execution_id: str) -> None:
    while True:
        await asyncio.sleep(0.01)
        ex.wake(execution_id)


async def _judge_as_recorded(ex: Executor, execution_id: str, recorded: dict[str, Any]) -> None:
    for st in recorded["stages"]:
        judged = st["context"].get("judgmentStatus") if st["type"] == "manualJudgment" else None
        if judged:
            await ex.wait_for_stage(execution_id, st["refId"], {S.RUNNING}, timeout=20)
            body = {"judgmentStatus": judged, **({"judgmentInput": st["context"]["judgmentInput"]}
                                                 if st["context"].get("judgmentInput") else {})}
            await ex.update_stage(execution_id, st["refId"], body, user="recorded")


async def run_case(ex: Executor, name: str, base_url: str) -> tuple[str, dict[str, str]]:
    case = CASES[name]
    recorded = recorded_execution(case.executions, case.execution_id)
    _Answers.answers = case.answers
    [saved], warnings = ex.pipelines.import_many([pipeline_of(case, base_url)], actor="user:compat",
                                                 where=lambda i: name)
    assert saved.action in ("created", "unchanged")
    assert all(any(w in warning for w in case.warnings) for warning in warnings), warnings
    config = ex.pipelines.get(saved.id)
    trigger = {k: v for k, v in recorded["trigger"].items() if k not in ("executionId", "eventId")}
    exe = await ex.start_execution(config, build_trigger(config, trigger, ex), user="compat")
    ticker = asyncio.get_running_loop().create_task(_tick(ex, exe.id))
    try:
        await _judge_as_recorded(ex, exe.id, recorded)
        await ex.wait_until_complete(exe.id, timeout=30)
        for _ in range(300):  # a call under way when the pipeline halted ends after it (orca does the same)
            if not any(s.status == S.RUNNING for s in ex.get(exe.id).stages):
                break
            await asyncio.sleep(0.02)
    finally:
        ticker.cancel()
    done = ex.get(exe.id)
    return str(done.status), {s.ref_id: str(s.status) for s in done.stages}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_execution_ends_as_spinnaker_recorded_it(tmp_path: Path, answering: str, name: str) -> None:
    async def go() -> dict[str, tuple[str, dict[str, str]]]:
        store = Store.open(f"sqlite:///{tmp_path / 'recorded.db'}")
        target = LocalTarget(store)

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            return target  # every account of the recording is the local account here

        live = [b for n in (*CASES[name].after, name) for b in CASES[n].live]
        if live:
            store.apply([Document(body=copy.deepcopy(b), source=Source("<recorded cluster>", 1, i))
                         for i, b in enumerate({json.dumps(b, sort_keys=True): b for b in live}.values())],
                        actor="user:ops")
        ex = Executor(store.engine, services=TaskServices(get_target=get_target), clock=fast_clock())
        await ex.start()
        try:
            return {n: await run_case(ex, n, answering) for n in (*CASES[name].after, name)}
        finally:
            await ex.stop()
            store.close()

    got = asyncio.run(go())
    for n, result in got.items():
        want = recorded_statuses(recorded_execution(CASES[n].executions, CASES[n].execution_id))
        assert result == want, f"{n}: Graylane {result}, Spinnaker recorded {want}"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_recorded_pipelines_graylane_cannot_run_are_refused(tmp_path: Path, name: str) -> None:
    executions, execution_id, configs, config_id, says = REFUSED[name]
    assert recorded_execution(executions, execution_id)["status"]  # Spinnaker ran it; Graylane says why it cannot
    config = next(c for c in load(configs) if c["id"] == config_id)
    store = Store.open(f"sqlite:///{tmp_path / 'refused.db'}")
    try:
        repo = PipelineRepository(store.engine)
        with pytest.raises(ValidationError, match=says.replace("(", r"\(").replace(")", r"\)")):
            repo.import_many([config], actor="user:compat", where=lambda i: name)
        assert repo.list() == []
    finally:
        store.close()
