"""`findArtifactsFromResource`: the artifacts a live manifest uses (images, ConfigMaps, Secrets) as outputs.

As orca's FindArtifactsFromResourceTask over clouddriver's manifest artifacts: `account`, `location`,
`manifestName` ("deployment reviews-v1"). Outputs `manifest` (the live body) and `artifacts`: each container
image as `docker/image` (name without tag, reference the full image, version the tag), each ConfigMap and Secret
the pod template mounts or reads as `kubernetes/configMap` / `kubernetes/secret`.
"""

from __future__ import annotations

from typing import Any

from graylane.errors import NotFound
from graylane.pipelines import manifests
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def _image(image: str) -> dict[str, Any]:
    name, version = image, None
    if "@" in image:
        name, version = image.split("@", 1)
    elif ":" in image.rsplit("/", 1)[-1]:
        name, version = image.rsplit(":", 1)
    return {"type": "docker/image", "name": name, "reference": image, "version": version}


def artifacts_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    spec = body.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or (spec if body.get("kind") == "Pod" else {})
    namespace = (body.get("metadata") or {}).get("namespace") or "default"
    out: list[dict[str, Any]] = []
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    for c in containers:
        if isinstance(c, dict) and c.get("image"):
            out.append(_image(str(c["image"])))
    refs: list[tuple[str, str]] = []
    for vol in pod.get("volumes") or []:
        if (vol.get("configMap") or {}).get("name"):
            refs.append(("kubernetes/configMap", vol["configMap"]["name"]))
        if (vol.get("secret") or {}).get("secretName"):
            refs.append(("kubernetes/secret", vol["secret"]["secretName"]))
    for c in containers:
        for src in c.get("envFrom") or []:
            if (src.get("configMapRef") or {}).get("name"):
                refs.append(("kubernetes/configMap", src["configMapRef"]["name"]))
            if (src.get("secretRef") or {}).get("name"):
                refs.append(("kubernetes/secret", src["secretRef"]["name"]))
    for atype, name in dict.fromkeys(refs):
        out.append({"type": atype, "name": name, "reference": name, "location": namespace})
    unique = {(a["type"], a["reference"]): a for a in out}
    return list(unique.values())


class FindArtifactsFromResourceTask(Task):
    name = "findArtifactsFromResource"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        where = f"stage {stage.name!r}"
        key = manifests.key_for(str(ctx.get("manifestName") or ""), ctx.get("location"), where)
        target = await stage.services.target(ctx.get("account"), None)
        body = await target.get(key)
        if body is None:
            raise NotFound(f"{where}: {ctx.get('manifestName')} does not exist in {key.namespace or 'the cluster'} "
                           f"(account {ctx.get('account') or 'local'})")
        outputs = {"manifest": body, "artifacts": artifacts_of(body)}
        return TaskResult.succeeded(outputs, outputs)


class FindArtifactsFromResourceStage(StageDefinition):
    type = "findArtifactsFromResource"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [FindArtifactsFromResourceTask()]


DEFINITION = FindArtifactsFromResourceStage()
