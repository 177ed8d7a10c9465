"""Analysis configs as stored resources: Kayenta canary configs and Argo AnalysisTemplates in the store.

- `CanaryConfig` (`graylane.io/v1alpha1`) wraps a Kayenta canary config unchanged in `spec`; `metadata.name`
  names it (a stage's `canaryConfigId` or `canaryConfigName`, or the config's own `name`).
- `AnalysisTemplate` / `ClusterAnalysisTemplate` (`argoproj.io/v1alpha1`) are stored exactly as Argo writes them.

`graylane apply` runs the admission checks below (the same validation as `graylane canary judge` and the
AnalysisRun loader), so a config with a typo is refused when it is applied, not when a release needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.errors import GraylaneError, ValidationError

CANARY_GROUP = "graylane.io"
CANARY_KIND = "CanaryConfig"
CANARY_API_VERSION = f"{CANARY_GROUP}/v1alpha1"
ARGO_GROUP = "argoproj.io"
ARGO_API_VERSION = f"{ARGO_GROUP}/v1alpha1"
TEMPLATE_KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate")


def wrap_canary_config(config: Mapping[str, Any], name: str | None = None,
                       namespace: str = "default") -> dict[str, Any]:
    """A Kayenta canary config as a `CanaryConfig` resource (`graylane canary config import`)."""
    raw = str(name or config.get("name") or "").strip()
    resource_name = "".join(c if c.isalnum() or c in "-." else "-" for c in raw.lower()).strip("-.")
    if not resource_name:
        raise ValidationError("the canary config has no name: give it a `name` or pass --name")
    return {"apiVersion": CANARY_API_VERSION, "kind": CANARY_KIND,
            "metadata": {"name": resource_name, "namespace": namespace}, "spec": dict(config)}


def canary_config_problem(body: Mapping[str, Any]) -> str | None:
    """Why a CanaryConfig resource would be refused, or None."""
    from graylane.analysis.judge import parse_canary_config

    spec = body.get("spec")
    name = (body.get("metadata") or {}).get("name", "?")
    if not isinstance(spec, dict):
        return "spec must be a Kayenta canary config (an object)"
    try:
        parse_canary_config(spec, f"CanaryConfig {name}")
    except GraylaneError as exc:
        return exc.message
    return None


def template_problem(body: Mapping[str, Any]) -> str | None:
    """Why an AnalysisTemplate / ClusterAnalysisTemplate would be refused, or None."""
    from graylane.analysis.argo import load_template

    try:
        load_template(body)
    except GraylaneError as exc:
        return exc.message
    return None


def check_canary_config(c: Any, spec: dict[str, Any]) -> None:
    """Admission check (graylane.resources.admission) of a CanaryConfig."""
    problem = canary_config_problem(c.doc.body)
    if problem:
        c.error(("spec",), problem)


def check_analysis_template(c: Any, spec: dict[str, Any]) -> None:
    """Admission check of an AnalysisTemplate or ClusterAnalysisTemplate."""
    problem = template_problem(c.doc.body)
    if problem:
        c.error(("spec",), problem)


async def find_canary_config(target: Any, ref: str, namespace: str = "default") -> dict[str, Any]:
    """The Kayenta config of the stored CanaryConfig named `ref` (its resource name, or the config's `name`).

    `target` is the local account's Target (graylane.targets.base): the store's resources through `get`/`list`.
    """
    from graylane.resources.document import ResourceKey

    body = await target.get(ResourceKey(CANARY_GROUP, CANARY_KIND, namespace, ref))
    stored = await target.list(CANARY_KIND, None, CANARY_GROUP) if body is None else []
    if body is None:
        body = next((b for b in stored if (b.get("spec") or {}).get("name") == ref
                     or (b.get("metadata") or {}).get("name") == ref), None)
    if body is None:
        names = sorted(str((b.get("metadata") or {}).get("name")) for b in stored)
        raise GraylaneError(f"canary config {ref!r} not found (stored: {', '.join(names) or 'none'})",
                            hint="apply a CanaryConfig (graylane.io/v1alpha1) or `graylane canary config import FILE`")
    return dict(body.get("spec") or {})


async def find_template(target: Any, name: str, *, cluster_scope: bool = False,
                        namespace: str = "default") -> dict[str, Any]:
    """A stored AnalysisTemplate (in `namespace`) or ClusterAnalysisTemplate, as written."""
    from graylane.resources.document import ResourceKey

    kind = "ClusterAnalysisTemplate" if cluster_scope else "AnalysisTemplate"
    body = await target.get(ResourceKey(ARGO_GROUP, kind, "" if cluster_scope else namespace, name))
    if body is None:
        names = sorted(str((b.get("metadata") or {}).get("name")) for b in await target.list(kind, None, ARGO_GROUP))
        raise GraylaneError(f"{kind} {name!r} not found (stored: {', '.join(names) or 'none'})",
                            hint="apply it with `graylane apply -f TEMPLATE.yaml`")
    return {k: v for k, v in body.items() if k != "status"}


# Registered with the validator under the `graylane.admission` entry point (pyproject.toml): resources never
# imports analysis.
ADMISSION_CHECKS = {
    ("graylane.io", "CanaryConfig"): check_canary_config,
    ("argoproj.io", "AnalysisTemplate"): check_analysis_template,
    ("argoproj.io", "ClusterAnalysisTemplate"): check_analysis_template,
}
