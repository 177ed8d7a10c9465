"""`canaryRollout`: Argo Rollouts-style canary steps driven by one stage, for one service or a lockstep release.

```json
{"type": "canaryRollout", "name": "reviews canary", "service": "reviews", "stableSubset": "v1",
 "canarySubset": "v2", "scaleDownDelay": 30,
 "steps": [{"setHeaderRoute": {"name": "jason", "match": [{"headerName": "end-user",
                                                             "headerValue": {"exact": "jason"}}]}},
           {"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}, {"pause": {}},
           {"setMirrorRoute": {"name": "mirror", "percentage": 20}}, {"analysis": {"type": "kayentaCanary"}}]}
```

- With the Gateway API, `"httpRoute": "reviews", "stableService": "reviews-v1", "canaryService": "reviews-v2"`
  moves the HTTPRoute's backendRef weights instead (as Argo Rollouts' Gateway API plugin), and header and mirror
  routes become named rules and RequestMirror filters (pipelines/httproute_edit.py); sticky canary needs a
  VirtualService and is refused on an HTTPRoute.
- `setWeight: N` moves every member to `{stable: 100-N, canary: N}` in one apply (one snapshot) and waits for the
  data plane; `{"setWeight": 50, "sticky": {"cookie": {"name": "gl-canary"}}}` (or `{"header": "x-user-id"}`)
  turns on sticky canary in the same apply (the `graylane.io/sticky` annotation; `"sticky": false` removes it);
  `pause: {duration}` waits (`s`, `m`, `h`); `pause: {}` waits for a person: a judgment (this stage's PATCH,
  as manualJudgment's) with `judgmentInput` **Promote** (next step), **Promote full** (straight to 100%) or
  **Abort**; `setHeaderRoute` / `setMirrorRoute` add (or, with only `name`, remove) Graylane's managed routes
  above the weighted one; `analysis` runs the `analysis`/`kayentaCanary` stage type inline (the step ends when it
  passes; a failure aborts); `setCanaryScale` (`{replicas}` | `{weight}` | `{matchTrafficWeight: true}`) scales the
  canary Deployments apart from the weight (stages/canary_scale.py), which then go to the stable's replicas at
  promotion and to 0 on abort (after `abortScaleDownDelaySeconds`, when given; 0 keeps them).
  `dynamicStableScale: true` shrinks the stable Deployments as the canary's weight grows and restores them before
  traffic goes back (canary_scale.scale_stable).
- Background analysis, as Argo Rollouts' `strategy.canary.analysis`: `"analysis": {"templates": [...], "args": [...],
  "startingStep": 1}` on the stage (or `{"type": "kayentaCanary", ...}`, or Flagger-style `builtins`) starts when
  the rollout reaches step `startingStep` (default 0) and keeps measuring across the later steps and pauses; its
  failure aborts the rollout at once, whatever step it is on; promotion stops it (`Terminated`). Its state is
  `context.rollout.backgroundAnalysis` (phase Running / Successful / Failed / Terminated, and the run's outputs).
- After the last step the canary gets 100% and the managed routes go, in one snapshot. With `scaleDownDelay`
  (seconds) the stage then keeps the previous version warm: an Abort within the window is one snapshot back to
  the stable subset (no redeploy); after it, `scaleDown` Deployments (names) are scaled to 0.
- Abort (any time, also `judgmentStatus: stop`) returns traffic to the stable subset (stepwise back through the
  weights set so far with `abort: {stepwise: true, interval: "5s"}`), removes the managed routes, and fails the
  stage with who aborted. Restarting the stage (`graylane release retry`) starts the steps again.

State lives in `context.rollout` (phase, step, weights, message): what `graylane release status` shows.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.pipelines import route_check, traffic
from graylane.pipelines import routes_edit as edit
from graylane.pipelines.stages import MODULES, canary_scale, definition
from graylane.pipelines.stages.manual_judgment import validate_judgment
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult
from graylane.resources.document import Document, ResourceKey, Source
from graylane.resources.sticky import parse_sticky

PROMOTE, PROMOTE_FULL, ABORT = "Promote", "Promote full", "Abort"
OPTIONS = [PROMOTE, PROMOTE_FULL, ABORT]
STEP_KINDS = ("setWeight", "pause", "setHeaderRoute", "setMirrorRoute", "analysis", "setPreviewHost",
              "setCanaryScale")
ANALYSIS_TYPES = ("analysis", "kayentaCanary")
JUDGMENT_POLL_S = 15.0
BACKGROUND = "backgroundAnalysis"  # context.rollout's slot for the stage-level (background) analysis


def seconds(raw: Any, where: str) -> float:
    """`30`, `"30s"`, `"5m"`, `"1h"` -> seconds."""
    if raw is None or raw == "":
        return 0.0
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(raw))
    if not match:
        raise ValidationError(f"{where}: duration {raw!r} is not a number with s, m or h")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    return float(match.group(1)) * unit


@dataclasses.dataclass(frozen=True)
class Release:
    """The members of the rollout: (member, stable subset, canary subset)."""

    members: list[tuple[traffic.Member, str, str]]

    @classmethod
    def parse(cls, ctx: dict[str, Any], where: str) -> Release:
        namespace = str(ctx.get("namespace") or "default")
        raw = ctx.get("services") or [{"service": ctx.get("service"), "virtualService": ctx.get("virtualService"),
                                       "httpRoute": ctx.get("httpRoute")}]
        out = []
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            at = f"{where} services[{i}]" if ctx.get("services") else where
            member = traffic.Member.parse(item, namespace, at)
            if member.http_route:  # Gateway API: versions are Services (Argo Rollouts' stable/canaryService)
                stable = item.get("stableService") or ctx.get("stableService")
                canary = item.get("canaryService") or ctx.get("canaryService")
                names = "Services, stableService and canaryService"
            else:
                stable = item.get("stableSubset") or ctx.get("stableSubset")
                canary = item.get("canarySubset") or ctx.get("canarySubset")
                names = "subsets, stableSubset and canarySubset"
            if not stable or not canary or stable == canary:
                raise ValidationError(f"{at}: name two different {names} (got {stable!r} and {canary!r})")
            out.append((member, str(stable), str(canary)))
        if not out:
            raise ValidationError(f"{where}: name a `service` (or `services`)")
        canary_scale.check_options(ctx, where)
        return cls(out)

    def weights(self, canary_weight: int) -> dict[str, dict[str, int]]:
        return {m.service: ({s: 100 - canary_weight, c: canary_weight} if canary_weight < 100 else {c: 100})
                if canary_weight > 0 else {s: 100, c: 0} for m, s, c in self.members}


def check_steps(steps: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(steps, list):
        raise ValidationError(f"{where}: steps must be a list")
    for i, step in enumerate(steps):
        kinds = [k for k in (step or {}) if k in STEP_KINDS] if isinstance(step, dict) else []
        if len(kinds) != 1:
            raise ValidationError(f"{where} steps[{i}]: one of {', '.join(STEP_KINDS)} per step (got {step!r})")
        if kinds[0] == "setWeight":
            edit.check_weights({"canary": step["setWeight"], "stable": 100 - int(step["setWeight"])},
                               f"{where} steps[{i}] setWeight")
        if kinds[0] == "setCanaryScale":
            canary_scale.check(step["setCanaryScale"], f"{where} steps[{i}]")
        if "sticky" in step:
            _check_sticky(step["sticky"], f"{where} steps[{i}] sticky")
    return steps


def _check_sticky(raw: Any, where: str) -> None:
    """`sticky` on a setWeight step: the graylane.io/sticky annotation's object, or false to turn it off."""
    if raw is False or raw is None:
        return
    try:
        parse_sticky(json.dumps(raw))
    except ValueError as exc:
        raise ValidationError(f"{where}: {exc}") from None


class RolloutTask(Task):
    """The whole rollout as one re-entrant task: each run does at most one step and returns RUNNING until done."""

    name = "runRolloutSteps"

    async def run(self, stage: StageView) -> TaskResult:
        where = f"stage {stage.name!r}"
        ctx = stage.context
        release = Release.parse(ctx, where)
        steps = check_steps(self.steps(ctx), where)
        st: dict[str, Any] = dict(ctx.get("rollout") or {"phase": "Progressing", "stepIndex": 0, "history": []})
        st.setdefault("totalSteps", len(steps))
        action = _action(ctx)
        consumed = {"judgmentStatus": None, "judgmentInput": None} if action else {}
        if action:
            st["lastAction"] = {"action": action, "by": ctx.get("lastModifiedBy") or "someone",
                                "time": stage.now_ms}
        run = _Run(stage, release, steps, st, where)
        try:
            result = await run.step(action)
        except GraylaneError as exc:
            if st.get("phase") == "Aborting" or not (st.get("weights") or int(st.get("stepIndex") or 0)):
                st["message"] = str(exc)
                return TaskResult.terminal(f"{where}: {exc}", {"rollout": st, **consumed})
            # traffic has moved: any failure aborts the whole release back to the stable subsets
            st.update(phase="Aborting", abortPlan=[], abortReason=f"step failed: {exc}", message=str(exc))
            return TaskResult.running(0, {"rollout": st, **consumed})
        result.context = {"rollout": st, **consumed, **result.context}
        return result

    def steps(self, ctx: dict[str, Any]) -> Any:
        return ctx.get("steps") or []


def _action(ctx: dict[str, Any]) -> str | None:
    status = str(ctx.get("judgmentStatus") or "").lower()
    if status == "stop":
        return ABORT
    if status == "continue":
        return str(ctx.get("judgmentInput") or PROMOTE)
    return None


class _Run:
    def __init__(self, stage: StageView, release: Release, steps: list[dict[str, Any]], st: dict[str, Any],
                 where: str) -> None:
        self.stage, self.release, self.steps, self.st, self.where = stage, release, steps, st, where
        self.ctx = stage.context
        self.dynamic = bool(self.ctx.get("dynamicStableScale"))

    async def target(self) -> Any:
        return await self.stage.services.target(self.ctx.get("account"), None)

    async def apply(self, edits: Sequence[tuple[traffic.Member, traffic.Edit]], checked: bool = True) -> None:
        await traffic.apply(await self.target(), edits, actor=self.stage.actor,
                            checked=checked and not self.ctx.get(route_check.OPTION))

    async def set_weight(self, weight: int, *, clear_routes: bool = False, checked: bool = True,
                         sticky: Any = None, scale_stable: bool = True) -> None:
        """`sticky` (a setWeight step's field): the sticky-canary annotation set in the same apply; false removes
        it; absent leaves it as it is. With dynamicStableScale the stable grows before a lower canary weight and
        shrinks after a higher one (unless `scale_stable` is false: the abort restored it already)."""
        wanted = self.release.weights(weight)
        grow_first = self.dynamic and scale_stable and weight < int(self.st.get("canaryWeight") or 0)
        if grow_first:
            await self.scale_stable(weight)

        def change(service: str, body: dict[str, Any]) -> dict[str, Any]:
            body = edit.set_weights(body, service, wanted[service])
            if sticky is not None:
                body = edit.set_sticky(body, sticky or None)
            return edit.remove_managed_routes(body, service) if clear_routes else body

        await self.apply([(m, partial(change, m.service)) for m, _, _ in self.release.members], checked)
        self.st["weights"], self.st["canaryWeight"] = wanted, weight
        if self.dynamic and scale_stable and not grow_first:
            await self.scale_stable(weight)

    def members(self) -> list[tuple[traffic.Member, str, str, dict[str, Any]]]:
        """(member, stable, canary, its config item) per member, for canary_scale."""
        items = self.ctx.get("services") if isinstance(self.ctx.get("services"), list) else [self.ctx]
        return [(m, s, c, item if isinstance(item, dict) else {})
                for (m, s, c), item in zip(self.release.members, items, strict=False)]

    async def scale_stable(self, canary_weight: int) -> None:
        """dynamicStableScale: the stables at 100 - canary_weight percent; the result is `rollout.stableScale`."""
        self.st["stableScale"] = await canary_scale.scale_stable(
            await self.target(), self.members(), canary_weight, self.st.get("stableScale") or {},
            actor=self.stage.actor, where=self.where)

    # ---- the state machine

    async def step(self, action: str | None) -> TaskResult:
        st = self.st
        if st.get("phase") == "Aborted" and st.get("scaleDownAt"):  # abortScaleDownDelaySeconds running
            return await self.aborted()
        if st.get("phase") == "Aborting" or action == ABORT:
            return await self.abort()
        if st.get("phase") == "Promoted":
            return await self.warm()
        if action == PROMOTE_FULL:
            return await self.promote()
        index = int(st.get("stepIndex") or 0)
        if index >= len(self.steps):
            return await self.promote()
        background = await self.background()
        if st.get("phase") == "Aborting":  # the background analysis failed
            return await self.abort()
        step = self.steps[index]
        kind = next(k for k in step if k in STEP_KINDS)
        st["step"] = {"index": index, "kind": kind, "config": step[kind]}
        handler = getattr(self, f"do_{kind}")
        done, retry = await handler(step[kind], action)
        if done:
            st["stepIndex"], st["phase"] = index + 1, "Progressing"
            st.pop("stepStart", None)
            st.pop("analysis", None)
            st["message"] = f"step {index + 1}/{len(self.steps)} ({kind}) done"
            return TaskResult.running(retry_after_s=0)
        return TaskResult.running(retry_after_s=retry if background is None else min(retry, background))

    async def do_setWeight(self, raw: Any, action: str | None) -> tuple[bool, float]:
        weight = int(raw)
        mode = (self.st.get("canaryScale") or {}).get("mode") or {}
        follow = bool(mode.get("matchTrafficWeight"))  # the canary's replicas follow the weight
        up = weight > int(self.st.get("canaryWeight") or 0)
        if follow and up:  # as Argo: the canary's pods are there before its traffic
            await self.scale_canary(mode, weight=weight)
        await self.set_weight(weight, sticky=self.steps[int(self.st.get("stepIndex") or 0)].get("sticky"))
        self.st.setdefault("history", []).append(weight)
        if follow and not up:
            await self.scale_canary(mode)
        return True, 0

    async def do_setCanaryScale(self, raw: Any, action: str | None) -> tuple[bool, float]:
        await self.scale_canary(canary_scale.check(raw, f"{self.where} setCanaryScale"))
        return True, 0

    async def scale_canary(self, mode: dict[str, Any] | None, to: int | None = None,
                           weight: int | None = None) -> None:
        """Scale every member's canary Deployment (canary_scale.scale) for the traffic `weight` (default: the
        current one); the result is `rollout.canaryScale`."""
        base = {k: int(v["replicas"]) for k, v in (self.st.get("stableScale") or {}).items()}
        deployments = await canary_scale.scale(await self.target(), self.members(), mode,
                                               int(self.st.get("canaryWeight") or 0) if weight is None else weight,
                                               actor=self.stage.actor, where=self.where, to=to, stable_base=base)
        previous = (self.st.get("canaryScale") or {}).get("mode")
        self.st["canaryScale"] = {"mode": mode if to is None else previous, "deployments": deployments}

    async def do_pause(self, raw: Any, action: str | None) -> tuple[bool, float]:
        now = self.stage.now_ms - self.stage.paused_ms  # time the execution spent paused does not count
        start = int(self.st.setdefault("stepStart", now))
        duration = seconds((raw or {}).get("duration") if isinstance(raw, dict) else raw, f"{self.where} pause")
        if action == PROMOTE:
            return True, 0
        self.st["phase"] = "Paused"
        if duration:
            left = start + duration * 1000 - now
            self.st["message"] = f"paused for {duration:g}s (CanaryPauseStep); promote to go on now"
            return (True, 0) if left <= 0 else (False, left / 1000)
        self.st["message"] = "paused until a person decides: Promote / Promote full / Abort (CanaryPauseStep)"
        return False, JUDGMENT_POLL_S

    async def do_setHeaderRoute(self, raw: Any, action: str | None) -> tuple[bool, float]:
        name = str((raw or {}).get("name") or "canary-header")
        match = (raw or {}).get("match")
        if match is None and not {"headers", "cookie", "cookies"} & set(raw or {}):
            edits = [(m, partial(_remove, m.service, name)) for m, _, _ in self.release.members]
        else:
            blocks = edit.header_matches(match if match is not None else raw, f"{self.where} setHeaderRoute")
            edits = [(m, partial(_header, m.service, name, blocks, c)) for m, _, c in self.release.members]
        await self.apply(edits)
        return True, 0

    async def do_setMirrorRoute(self, raw: Any, action: str | None) -> tuple[bool, float]:
        raw = raw or {}
        name = str(raw.get("name") or "canary-mirror")
        if raw.get("percentage") is None and not raw.get("match"):
            edits = [(m, partial(_remove, m.service, name)) for m, _, _ in self.release.members]
        else:
            pct = float(raw.get("percentage", 100))
            match = edit.header_matches(raw["match"], f"{self.where} setMirrorRoute") if raw.get("match") else None
            edits = [(m, partial(_mirror, m.service, name, pct, c, match)) for m, _, c in self.release.members]
        await self.apply(edits)
        return True, 0

    async def do_setPreviewHost(self, raw: Any, action: str | None) -> tuple[bool, float]:
        """A VirtualService of its own (`SERVICE-preview`, Graylane-managed) binding the preview hosts on the named
        gateways to the canary subset: everything arriving for those hosts reaches the new version, as Argo's
        previewService behind a second host does. Removed at promotion and abort."""
        docs, keys = [], []
        for member, _, canary in self.release.members:
            if member.http_route:
                raise ValidationError(f"{self.where}: a preview host needs a VirtualService, not an HTTPRoute")
            name = f"{member.service}-preview"
            docs.append(Document(body={
                "apiVersion": edit.ISTIO_API, "kind": "VirtualService",
                "metadata": {"name": name, "namespace": member.namespace,
                             "annotations": {edit.MANAGED_BY: "graylane"}},
                "spec": {"hosts": list(raw["hosts"]), "gateways": list(raw["gateways"]),
                         "http": [{"route": [{"destination": {"host": member.service, "subset": canary}}]}]}},
                source=Source(f"<preview host of {member.service}>", 1, 0)))
            keys.append([member.namespace, name])
        await traffic.apply_documents(await self.target(), docs, actor=self.stage.actor,
                                      checked=not self.ctx.get(route_check.OPTION))
        self.st["previewVirtualServices"] = keys
        return True, 0

    async def drop_previews(self) -> None:
        """The preview hosts' VirtualServices go (after the switch, or once traffic is back on the stable subset)."""
        keys = [ResourceKey(edit.ISTIO_API.split("/")[0], "VirtualService", ns, name)
                for ns, name in self.st.pop("previewVirtualServices", None) or []]
        if keys:
            await (await self.target()).delete(keys, actor=self.stage.actor)

    async def do_analysis(self, raw: Any, action: str | None) -> tuple[bool, float]:
        if action == PROMOTE:
            self.st["message"] = "analysis skipped by a promotion"
            return True, 0
        outcome, retry, stage_type = await self.advance("analysis", raw, self.stage.stage_id)
        if outcome == "running":
            self.st["message"] = f"analysis ({stage_type}) running"
            return False, retry
        return outcome == "passed", 0

    async def advance(self, slot: str, raw: Any, stage_id: str) -> tuple[str, float, str]:
        """One turn of the `analysis`/`kayentaCanary` stage type's tasks, its state in `st[slot]`: ("running",
        seconds to the next turn), ("passed", 0) once its last task succeeded, or ("failed", 0) with the rollout set
        to abort. `stage_id` keeps an inline step's run apart from the background one."""
        cfg = dict(raw or {})
        cfg.pop("startingStep", None)
        stage_type = str(cfg.pop("type", "") or ("kayentaCanary" if "canaryConfig" in cfg else "analysis"))
        if stage_type not in ANALYSIS_TYPES:
            raise ValidationError(f"{self.where}: an analysis runs {' or '.join(ANALYSIS_TYPES)}, not {stage_type!r}")
        if stage_type not in MODULES:  # a build without that stage type (tests remove it to check the message)
            raise GraylaneError(f"analysis is not yet available here: no {stage_type!r} stage type in this Graylane",
                                hint="remove the analysis, or use a pause with a judgment")
        sub = dict(self.st.get(slot) or {"task": 0, "context": {}})
        tasks = definition(stage_type).tasks(cfg)
        index = int(sub["task"])
        view = dataclasses.replace(self.stage, context={**self.ctx, **cfg, **sub["context"]}, type=stage_type,
                                   stage_id=stage_id)
        result = await tasks[index].run(view)
        sub["context"] = {**sub["context"], **result.context}
        # a task without outputs (completeAnalysis) keeps what the run showed: release status explains a failure
        self.st[slot] = {**sub, "type": stage_type, "outputs": {**(sub.get("outputs") or {}), **result.outputs}}
        if result.status == S.RUNNING:
            return "running", result.retry_after_s or 1.0, stage_type
        if result.status == S.SUCCEEDED:
            self.st[slot]["task"] = index + 1
            return ("passed" if index + 1 >= len(tasks) else "running"), 0, stage_type
        self.st["abortReason"] = f"analysis ({stage_type}) failed: {result.error or result.status}"
        self.st["phase"] = "Aborting"
        return "failed", 0, stage_type

    async def background(self) -> float | None:
        """Argo's background analysis (`analysis` on the stage, from `startingStep`): one turn when due; the
        seconds until the next, or None when it is not running (not started yet, passed, or the rollout is
        aborting because it failed)."""
        raw = self.ctx.get("analysis")
        st = self.st
        if not isinstance(raw, dict) or int(st.get("stepIndex") or 0) < int(raw.get("startingStep") or 0) \
                or (st.get(BACKGROUND) or {}).get("phase") in ("Successful", "Failed"):
            return None
        now = self.stage.now_ms
        due = int((st.get(BACKGROUND) or {}).get("due") or 0)
        if now < due:
            return (due - now) / 1000
        outcome, retry, _ = await self.advance(BACKGROUND, raw, f"{self.stage.stage_id}:background")
        bg = st[BACKGROUND]
        if outcome == "running":
            bg["phase"], bg["due"] = "Running", now + int(retry * 1000)
            return retry
        bg["phase"] = "Successful" if outcome == "passed" else "Failed"
        return None

    async def stop_background(self) -> None:
        """The rollout ended (promoted or aborted): a background analysis still measuring stops (Argo terminates
        it; it counts as passed when nothing failed)."""
        raw = self.ctx.get("analysis")
        bg = self.st.get(BACKGROUND)
        if not isinstance(raw, dict) or not bg or bg.get("phase") != "Running":
            return
        stage_type = bg.get("type") or "analysis"
        view = dataclasses.replace(self.stage, stage_id=f"{self.stage.stage_id}:background", type=stage_type)
        for task in definition(stage_type).tasks(dict(raw)):
            await task.on_cancel(view)
        bg["phase"] = "Terminated"

    async def promote(self) -> TaskResult:
        """100% to the canary and no managed routes, in one snapshot; then the warm window, if any."""
        await self.stop_background()
        if self.st.get("canaryScale") or self.dynamic:  # the canary gets the stable's replicas before the traffic
            await self.scale_canary(None, to=-1)
        await self.set_weight(100, clear_routes=True)
        await self.drop_previews()
        self.st.update(phase="Promoted", promotedAt=self.stage.now_ms, stepIndex=len(self.steps))
        self.st.pop("step", None)
        return await self.warm()

    async def warm(self) -> TaskResult:
        delay = seconds(self.ctx.get("scaleDownDelay"), f"{self.where} scaleDownDelay")
        left = int(self.st["promotedAt"]) + delay * 1000 - self.stage.now_ms
        stables = sorted({s for _, s, _ in self.release.members})
        if left > 0:
            self.st["message"] = (f"promoted; the previous version ({', '.join(stables)}) stays warm for "
                                  f"{left / 1000:.0f}s more: abort now is instant")
            return TaskResult.running(retry_after_s=left / 1000)
        names = [str(n) for n in self.ctx.get("scaleDown") or []]
        if names:
            target = await self.target()
            namespace = str(self.ctx.get("namespace") or "default")
            for name in names:
                await target.patch(ResourceKey("apps", "Deployment", namespace, name), {"spec": {"replicas": 0}},
                                   "merge", actor=self.stage.actor)
        self.st.update(phase="Healthy", message="promoted" + (f"; scaled down {', '.join(names)}" if names else ""))
        return TaskResult.succeeded({}, {"weights": self.st.get("weights"), "phase": "Healthy"})

    async def abort(self) -> TaskResult:
        st = self.st
        abort_cfg = self.ctx.get("abort") or {}
        if st.get("phase") != "Aborting":
            st["phase"] = "Aborting"
            history = [w for w in st.get("history") or [] if 0 < w < int(st.get("canaryWeight") or 0)]
            st["abortPlan"] = sorted(set(history), reverse=True) if abort_cfg.get("stepwise") else []
            st.setdefault("abortReason", f"aborted by {(st.get('lastAction') or {}).get('by') or 'someone'}")
            if self.dynamic and st.get("stableScale"):  # the stable at full size before any traffic returns
                await self.scale_stable(0)
        plan = list(st.get("abortPlan") or [])
        if plan:
            weight = plan.pop(0)
            st["abortPlan"] = plan
            await self.set_weight(weight, checked=False, scale_stable=False)
            st["message"] = f"aborting stepwise: canary at {weight}%"
            return TaskResult.running(retry_after_s=seconds(abort_cfg.get("interval", "5s"), f"{self.where} abort"))
        await self.set_weight(0, clear_routes=True, checked=False, scale_stable=False)
        await self.drop_previews()
        await self.stop_background()
        stables = ", ".join(sorted({s for _, s, _ in self.release.members}))
        st.update(phase="Aborted", message=f"{st['abortReason']}; all traffic is back on {stables}")
        delay = self.ctx.get("abortScaleDownDelaySeconds")
        if st.get("canaryScale") and delay:  # the canary's replicas stay that long, then follow weight 0
            st["scaleDownAt"] = self.stage.now_ms + int(delay) * 1000
            return await self.aborted()
        if st.get("canaryScale") and delay is None:  # as Argo: setCanaryScale no longer applies (weight 0)
            await self.scale_canary(None, to=0)
        elif st.get("canaryScale"):
            st["message"] += "; the canary keeps its replicas (abortScaleDownDelaySeconds: 0)"
        return TaskResult.terminal(f"{self.where}: rollout {st['message']}", {"rollout": st})

    async def aborted(self) -> TaskResult:
        """Traffic is back on the stable version; the canary keeps its replicas until `scaleDownAt`, then goes to
        0 and the stage fails as an abort does."""
        st = self.st
        left = int(st["scaleDownAt"]) - self.stage.now_ms
        base = str(st["message"]).split("; the canary scales down")[0]
        if left > 0:
            st["message"] = f"{base}; the canary scales down in {left / 1000:.0f}s (abortScaleDownDelaySeconds)"
            return TaskResult.running(retry_after_s=left / 1000)
        await self.scale_canary(None, to=0)
        st.pop("scaleDownAt", None)
        st["message"] = base
        return TaskResult.terminal(f"{self.where}: rollout {st['message']}", {"rollout": st})


def _remove(service: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return edit.remove_route(body, service, name)


def _header(service: str, name: str, blocks: list[dict[str, Any]], subset: str, body: dict[str, Any]) -> dict[str, Any]:
    return edit.set_header_route(body, service, name, blocks, subset)


def _mirror(service: str, name: str, pct: float, subset: str, match: list[dict[str, Any]] | None,
            body: dict[str, Any]) -> dict[str, Any]:
    return edit.set_mirror_route(body, service, name, pct, subset, match)


class CanaryRolloutStage(StageDefinition):
    type = "canaryRollout"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [RolloutTask()]

    def patch_fields(self) -> frozenset[str]:
        return frozenset({"judgmentStatus", "judgmentInput"})

    def validate_patch(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                       roles: list[str]) -> tuple[dict[str, Any], str]:
        body = dict(body)
        if str(body.get("judgmentStatus") or "").lower() == "stop" and body.get("judgmentInput") is None:
            body["judgmentInput"] = ABORT
        if body.get("judgmentStatus") is None and body.get("judgmentInput") is not None:
            body["judgmentStatus"] = "continue"
        phase = (context.get("rollout") or {}).get("phase")
        if phase in ("Aborted", "Healthy"):
            raise ValidationError(f"stage {name!r}: the rollout is {phase}; nothing to {body.get('judgmentInput')}")
        updates = validate_judgment({**context, "judgmentInput": None, "judgmentInputs": OPTIONS}, body,
                                    user=user, roles=roles)
        return {**updates, "lastModifiedBy": user}, "judgment"

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        return {"judgmentStatus", "judgmentInput", "rollout"} & set(config)


DEFINITION = CanaryRolloutStage()
