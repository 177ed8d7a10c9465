"""What Spinnaker pipelines written elsewhere need that Graylane does not do: refused or warned about at import.

Refused (model.find_problems calls `problems`): stage types that need systems Graylane does not integrate (one
finding listing them all, and the types Graylane runs), v2 pipeline template instances, manifest stages with empty
manifests. Warned (`warnings`): accounts that do not exist yet (they may be added later with `graylane account`).
Knows stage type names and account names; nothing of the store or executor.
"""

from __future__ import annotations

import difflib
from typing import Any

from graylane.pipelines.stages import STAGE_TYPE_NAMES
from graylane.targets.accounts import list_accounts

# Why common Spinnaker stage types are not run here (the rest: "no integration in Graylane").
NEEDS = {
    "bakeManifest": "a Helm/Kustomize renderer (Rosco)",
    "bake": "an image baker (Rosco/Packer)",
    "jenkins": "a Jenkins master (Igor)",
    "travis": "Travis CI (Igor)",
    "wercker": "Wercker (Igor)",
    "concourse": "Concourse (Igor)",
    "script": "a Jenkins script job (Igor)",
    "deploy": "a cloud provider server group (Clouddriver)",
    "createServerGroup": "a cloud provider server group (Clouddriver)",
    "disableCluster": "a cloud provider cluster (Clouddriver)",
    "destroyServerGroup": "a cloud provider server group (Clouddriver)",
    "resizeServerGroup": "a cloud provider server group (Clouddriver)",
    "findImage": "a cloud provider image catalogue (Clouddriver)",
    "findImageFromTags": "a cloud provider image catalogue (Clouddriver)",
    "canary": "Spinnaker's legacy ACA canary service (use kayentaCanary)",
    "scaleDownCluster": "a cloud provider cluster (Clouddriver)",
    "shrinkCluster": "a cloud provider cluster (Clouddriver)",
    "rollbackCluster": "a cloud provider cluster (Clouddriver)",
    "cloneServerGroup": "a cloud provider server group (Clouddriver)",
    "enableServerGroup": "a cloud provider server group (Clouddriver)",
    "disableServerGroup": "a cloud provider server group (Clouddriver)",
    "rollingPush": "a cloud provider server group (Clouddriver)",
    "deployService": "a Cloud Foundry service broker (Clouddriver)",
    "createServiceKey": "a Cloud Foundry service broker (Clouddriver)",
    "destroyService": "a Cloud Foundry service broker (Clouddriver)",
    "googleCloudBuild": "Google Cloud Build (Igor)",
    "updateApplication": "Front50 applications (Graylane has no application objects)",
    "deployCloudFormation": "AWS CloudFormation",
    "createApplication": "Front50 applications (Graylane has no application objects)",
    "savePipeline": "Front50 (use `graylane pipeline import`)",
    "jira": "Jira",
}
MANIFEST_STAGES = ("deployManifest", "runJobManifest")
LOCAL_ACCOUNT = "local"


def _label(stage: dict[str, Any], index: int) -> str:
    name = stage.get("name")
    return f"stages[{index}] ({name!r})" if name else f"stages[{index}]"


def unsupported_types(stages: list[Any]) -> tuple[list[int], str] | None:
    """(indexes of stages Graylane cannot run, one message naming them and the types it runs), or None."""
    found: list[tuple[int, str]] = []
    for i, stage in enumerate(stages):
        if isinstance(stage, dict) and isinstance(stage.get("type"), str) and stage["type"] \
                and stage["type"] not in STAGE_TYPE_NAMES:
            found.append((i, stage["type"]))
    if not found:
        return None
    parts = []
    for i, stype in found:
        if stype in NEEDS:
            parts.append(f"{_label(stages[i], i)}: {stype!r} needs {NEEDS[stype]}")
            continue
        close = difflib.get_close_matches(stype, sorted(STAGE_TYPE_NAMES), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"{_label(stages[i], i)}: unknown stage type {stype!r}{guess}")
    noun = "stage type" if len({t for _, t in found}) == 1 else "stage types"
    message = (f"Graylane cannot run this pipeline's {noun}: " + "; ".join(parts)
               + f". Graylane runs: {', '.join(sorted(STAGE_TYPE_NAMES))}")
    return [i for i, _ in found], message


def template_problem(body: dict[str, Any]) -> str | None:
    """A v2 managed pipeline template instance is refused (not rendered here)."""
    if str(body.get("schema") or "") == "v2" and ("template" in body or body.get("type") == "templatedPipeline"):
        ref = (body.get("template") or {}).get("reference") if isinstance(body.get("template"), dict) else None
        return (f"this is an instance of a v2 pipeline template{f' ({ref})' if ref else ''}: Graylane does not "
                "render managed pipeline templates (variables, inherit, stage injection); import the rendered "
                "pipeline instead (`spin pipeline-templates plan` or Deck's `Edit as JSON` on the planned pipeline)")
    if body.get("type") == "templatedPipeline" or str(body.get("schema") or "") == "1":
        return ("this is an instance of a v1 pipeline template (schema 1 / templatedPipeline): Graylane does not "
                "render pipeline templates; import the rendered pipeline instead")
    return None


def manifest_problems(stages: list[Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for manifest stages whose text manifests are missing or empty (`manifests: [{}]`)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or stage.get("type") not in MANIFEST_STAGES:
            continue
        if str(stage.get("source") or "text") != "text":
            continue
        label = _label(stage, i)
        raw = stage.get("manifests")
        key = "manifests"
        if raw is None and "manifest" in stage:
            raw, key = [stage["manifest"]], "manifest"
        if raw is None or raw == []:
            out.append((("stages", i, key), f"{label}: a {stage['type']} stage with source text needs "
                                            "`manifests` (a list of Kubernetes objects)"))
            continue
        if not isinstance(raw, list):
            continue  # YAML text or an expression: checked when the stage runs
        for j, item in enumerate(raw):
            if item in ({}, None, ""):
                path: tuple[str | int, ...] = ("stages", i, key) if key == "manifest" else ("stages", i, key, j)
                where = "manifest" if key == "manifest" else f"manifests[{j}]"
                out.append((path, f"{label}: {where} is empty (nothing to "
                                  f"{'run' if stage['type'] == 'runJobManifest' else 'deploy'})"))
    return out


def account_warnings(body: dict[str, Any], known: set[str]) -> list[str]:
    """Stages naming an account that does not exist (yet): a warning, as accounts may be added later."""
    out = []
    for i, stage in enumerate(body.get("stages") or []):
        if not isinstance(stage, dict):
            continue
        account = stage.get("account") or stage.get("credentials")
        if isinstance(account, str) and account and "${" not in account and account not in known:
            out.append(f"pipeline {body.get('application')}/{body.get('name')} {_label(stage, i)}: account "
                       f"{account!r} does not exist (accounts: {', '.join(sorted(known))}); the stage fails "
                       "when it runs unless it is added first (`graylane account add`)")
    return out


def known_accounts() -> set[str]:
    return {LOCAL_ACCOUNT, *(a.name for a in list_accounts())}
