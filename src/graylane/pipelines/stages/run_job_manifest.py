"""`runJobManifest`: run one Kubernetes Job to completion; its status, logs and properties become outputs.

Tasks as orca's RunJobStage: `runJob` creates the Job (name + a suffix derived from the stage, as clouddriver
suffixes run-job names; deterministic here so a resumed task finds its job), `waitOnJobCompletion` polls it.
Outputs: `jobStatus` (clouddriver's shape: jobState, completionDetails.exitCode, pods, failureDetails,
mostRecentPodName, plus the Job's `failed` count and the last pod's `logs` per container), `completionDetails`,
and with `propertyFile` (a container name) the properties that container printed as `SPINNAKER_PROPERTY_<NAME>=value`
lines (names lower-cased) or `SPINNAKER_CONFIG_JSON={...}`, merged into the outputs and kept in
`propertyFileContents`, as clouddriver's PropertyParser reads them. A failed job's error is orca's: `Job: 'NAME'
failed. Reason: R. Details: M. Additional Details: FAILUREDETAILS`.
On `local` the containers run as processes (graylane.targets.local_jobs); on Kubernetes the Job is created and
watched through the account.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.pipelines.stages.deploy_manifest import _manifest_docs
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult
from graylane.resources.document import Document, ResourceKey

_PROPERTY = re.compile(r"^\s*SPINNAKER_PROPERTY_(\S+?)=(.*)$", re.MULTILINE)
_CONFIG_JSON = re.compile(r"^\s*SPINNAKER_CONFIG_JSON=(.*)$", re.MULTILINE)
DEFAULT_TIMEOUT_MS = 2 * 3600 * 1000  # orca's WaitOnJobCompletion default


def properties_from_log(text: str) -> dict[str, Any]:
    """`SPINNAKER_PROPERTY_VERSION=1.2` -> {"version": "1.2"}; `SPINNAKER_CONFIG_JSON={"a": 1}` -> {"a": 1}."""
    out: dict[str, Any] = {}
    for match in _PROPERTY.finditer(text):
        out[match.group(1).lower()] = match.group(2).rstrip("\r")
    for match in _CONFIG_JSON.finditer(text):
        try:
            parsed = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(parsed, dict):
            out.update(parsed)
    return out


def job_name(doc: Document, stage_id: str, attempt: int = 0) -> str:
    """`migrate-1a2b3`: the same for a resumed task, new for a restarted stage (which runs a new Job)."""
    base = doc.name or str((doc.metadata or {}).get("generateName") or "job").rstrip("-")
    suffix = hashlib.sha256(f"{stage_id}/{attempt}".encode()).hexdigest()[:5]
    return f"{base[:57]}-{suffix}"


def _the_job(docs: list[Document], where: str) -> Document:
    if len(docs) != 1 or docs[0].kind != "Job":
        kinds = ", ".join(d.kind or "?" for d in docs) or "none"
        raise ValidationError(f"Run Job only supports manifests with a single Job (found: {kinds})", where=where)
    return docs[0]


class RunJobTask(Task):
    name = "runJob"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        doc = _the_job(await _manifest_docs(stage), f"stage {stage.name!r}")
        body = {**doc.body, "metadata": {**(doc.metadata or {}), "name": job_name(doc, stage.stage_id, stage.attempt)}}
        body["metadata"].pop("generateName", None)
        named = Document(body=body, source=doc.source)
        ns = ctx.get("namespaceOverride") or None
        target = await stage.services.target(ctx.get("account"), ns)
        if hasattr(target, "run_job"):
            key = await target.run_job(named, actor=stage.actor, namespace_override=ns)
        else:
            [applied] = await target.apply([named], actor=stage.actor, namespace_override=ns)
            key = applied.key
        return TaskResult.succeeded({"deploy.jobs": {key.namespace: [f"job {key.name}"]}, "jobName": key.name},
                                    {"manifest": body})


def _job_key(ctx: dict[str, Any]) -> ResourceKey:
    jobs = ctx.get("deploy.jobs") or {}
    for namespace, names in jobs.items():
        for name in names:
            return ResourceKey("batch", "Job", namespace, str(name).split()[-1])
    raise GraylaneError("No jobs in stage context.")


class WaitOnJobCompletionTask(Task):
    name = "waitOnJobCompletion"
    timeout_ms = DEFAULT_TIMEOUT_MS
    backoff_s = 1.0

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        key = _job_key(ctx)
        target = await stage.services.target(ctx.get("account"), ctx.get("namespaceOverride") or None)
        if hasattr(target, "job_status"):
            status = await target.job_status(key)
        else:
            from graylane.targets.kubernetes_jobs import job_status

            status = await job_status(target, key)
        job = status.to_json()
        outputs: dict[str, Any] = {"jobStatus": job, "completionDetails": job["completionDetails"]}
        if status.state == "Running":
            return TaskResult.running(self.backoff_s)
        container = ctx.get("propertyFile")
        if container:
            if container not in status.logs and status.state == "Succeeded":
                return TaskResult.terminal(f"propertyFile {container!r} names no container of Job {key.name} "
                                           f"(containers: {', '.join(status.logs) or 'none'})", outputs)
            props = properties_from_log(status.logs.get(str(container), ""))
            if props:
                outputs.update(props)
                outputs["propertyFileContents"] = props
        if status.state == "Failed":
            error = f"Job: '{key.name}' failed."
            if status.reason:
                error += f" Reason: {status.reason}."
            if status.message:
                error += f" Details: {status.message}."
            if status.failure_details:  # orca's processFailure
                error += f" Additional Details: {status.failure_details}"
            return TaskResult(TaskResult.terminal(error).status, outputs, outputs, error=error)
        return TaskResult.succeeded(outputs, outputs)

    async def on_cancel(self, stage: StageView) -> None:
        if not stage.context.get("deploy.jobs"):
            return
        target = await stage.services.target(stage.context.get("account"), None)
        key = _job_key(stage.context)
        if hasattr(target, "cancel_job"):
            await target.cancel_job(key)
        else:  # a cluster: delete the Job and its pods (orca JobUtils.cancelWait)
            await target.delete([key], actor=stage.actor, cascade=True)

    async def on_timeout(self, stage: StageView) -> None:
        await self.on_cancel(stage)  # orca WaitOnJobCompletion.onTimeout: stop waiting, stop the job


class RunJobManifestStage(StageDefinition):
    type = "runJobManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [RunJobTask(), WaitOnJobCompletionTask()]

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        return {"manifests", "manifest"} if config.get("skipExpressionEvaluation") else set()


DEFINITION = RunJobManifestStage()
