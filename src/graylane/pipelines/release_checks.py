"""Import-time checks of the release stages (trafficShift, canaryRollout, blueGreen): what would fail when the stage
runs is refused when the pipeline is saved, naming the stage and the field. Values holding `${...}` are left for
run time (they are evaluated when the stage starts)."""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError

Problem = tuple[tuple[str | int, ...], str]


def _dynamic(value: Any) -> bool:
    return "${" in str(value)


def _label(stage: dict[str, Any], index: int) -> str:
    return f"stages[{index}] ({stage.get('name') or stage.get('type')!r})"


def release_problems(stages: list[Any]) -> list[Problem]:
    """(path, message) for every release stage whose config cannot run."""
    from graylane.pipelines.stages import blue_green, canary_rollout, traffic_shift

    out: list[Problem] = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or stage.get("type") not in ("trafficShift", "canaryRollout", "blueGreen"):
            continue
        ctx = {k: v for k, v in stage.items() if k not in ("refId", "requisiteStageRefIds", "type", "name")}
        if _dynamic(ctx):
            continue
        where = _label(stage, i)
        try:
            if stage["type"] == "trafficShift":
                traffic_shift.members(ctx, where)
            elif stage["type"] == "canaryRollout":
                canary_rollout.Release.parse(ctx, where)
                canary_rollout.check_steps(ctx.get("steps") or [], where)
                _durations(ctx, ctx.get("steps") or [], where)
            else:
                rollout = blue_green._as_rollout(ctx)
                canary_rollout.Release.parse(rollout, where)
                _durations(rollout, blue_green.blue_green_steps(ctx), where)
        except GraylaneError as exc:
            out.append(((i,), exc.message))
        except (TypeError, ValueError) as exc:
            out.append(((i,), f"{where}: {exc}"))
    return out


def _durations(ctx: dict[str, Any], steps: list[Any], where: str) -> None:
    from graylane.pipelines.stages.canary_rollout import seconds

    seconds(ctx.get("scaleDownDelay"), f"{where} scaleDownDelay")
    seconds((ctx.get("abort") or {}).get("interval"), f"{where} abort.interval")
    for j, step in enumerate(steps):
        pause = step.get("pause") if isinstance(step, dict) else None
        if isinstance(pause, dict):
            seconds(pause.get("duration"), f"{where} steps[{j}] pause")
