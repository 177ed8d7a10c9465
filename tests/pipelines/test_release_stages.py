"""trafficShift, canaryRollout and blueGreen through the engine on the local target (store only, no processes):
what the VirtualServices say after each step, what is refused, judgments, abort and the warm window."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_canary_stages import FakeControlPlane, FakeTelemetry, Traffic

from graylane.pipelines.component import ControlPlaneAnalysis
from graylane.pipelines.executor import Executor
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import ResourceKey
from graylane.resources.load import load_text
from graylane.store import Store
from graylane.targets.local import LocalTarget

ISTIO = "networking.istio.io"


def deployment(service: str, version: str, replicas: int = 1) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {service}-{version}, labels: {{app: {service}, version: {version}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {service}, version: {version}}}}}
  template:
    metadata: {{labels: {{app: {service}, version: {version}}}}}
    spec: {{containers: [{{name: {service}, image: docker.io/istio/examples-bookinfo-{service}-{version}:1.20.2}}]}}
---
"""


def world(service: str, versions: dict[str, int], subsets: list[str]) -> str:
    subset_yaml = "".join(f"  - {{name: {s}, labels: {{version: {s}}}}}\n" for s in subsets)
    return "".join(deployment(service, v, n) for v, n in versions.items()) + f"""
apiVersion: v1
kind: Service
metadata: {{name: {service}, labels: {{app: {service}}}}}
spec: {{selector: {{app: {service}}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {service}}}
spec:
  host: {service}
  subsets:
{subset_yaml}---
"""


USER_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: tester}}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - timeout: 3s
    retries: {attempts: 2}
    route: [{destination: {host: reviews, subset: v1}}]
"""


class Rig:
    def __init__(self, store: Store, ex: Executor) -> None:
        self.store, self.ex = store, ex

    def vs(self, name: str = "reviews") -> dict[str, Any]:
        got = self.store.get(ResourceKey(ISTIO, "VirtualService", "default", name))
        assert got is not None, name
        return got.body  # type: ignore[no-any-return]

    def weights(self, name: str = "reviews") -> list[tuple[str, int]]:
        return [(r["destination"]["subset"], r.get("weight", 100)) for r in self.vs(name)["spec"]["http"][-1]["route"]]

    async def run(self, *stages: dict[str, Any]) -> str:
        body = {"application": "bookinfo", "name": f"p{len(self.ex.pipelines.list())}",
                "stages": [{"refId": str(i), "requisiteStageRefIds": [str(i - 1)] if i else [], "name": f"s{i}",
                            **st} for i, st in enumerate(stages)]}
        config = self.ex.pipelines.get(self.ex.pipelines.save(body, actor="user:t").id)
        trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {}, "artifacts": []}, self.ex)
        return (await self.ex.start_execution(config, trigger, user="t")).id

    async def done(self, execution_id: str) -> Any:
        return await self.ex.wait_until_complete(execution_id, timeout=30)

    async def rollout(self, execution_id: str, phase: str, step: int | None = None,
                      showing: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Wait until the rollout stage's state shows `phase` (and step index, and whatever `showing` looks for)."""
        async with self.ex.bus.subscribe() as q:
            for _ in range(400):
                exe = self.ex.get(execution_id)
                st = exe.stage("0").context.get("rollout") or {}
                if st.get("phase") == phase and (step is None or st.get("stepIndex") == step) and \
                        (showing is None or showing(st)):
                    return st  # type: ignore[no-any-return]
                assert not exe.status.is_complete or phase in ("Aborted", "Healthy"), (exe.status, st)
                try:
                    await asyncio.wait_for(q.get(), timeout=0.5)
                except TimeoutError:
                    pass
        raise AssertionError(f"rollout never reached {phase}: {st}")


def run_rig(tmp_path: Path, setup: str, test: Callable[[Rig], Awaitable[None]], traffic: Traffic | None = None) -> None:
    """`traffic`: the local mesh's telemetry the analysis steps measure (test_canary_stages' recorder)."""
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
        store.apply(load_text(setup), "user:setup")
        target = LocalTarget(store)

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            return target

        analysis = None
        if traffic is not None:
            analysis = ControlPlaneAnalysis(FakeControlPlane({"telemetry": FakeTelemetry(traffic.recorder)}))
        ex = Executor(store.engine, services=TaskServices(get_target=get_target, analysis=analysis))
        await ex.start()
        try:
            await test(Rig(store, ex))
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())


REVIEWS = world("reviews", {"v1": 1, "v2": 1, "v3": 0}, ["v1", "v2", "v3"])
RATINGS = world("ratings", {"v1": 1, "v2": 1}, ["v1", "v2"])


def test_traffic_shift_edits_the_users_route_in_place(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        before = rig.vs()
        exe = await rig.run({"type": "trafficShift", "service": "reviews", "weights": {"v1": 90, "v2": 10}})
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        after = rig.vs()
        assert after["spec"]["http"][0] == before["spec"]["http"][0]  # the tester's fault rule
        assert after["spec"]["http"][1]["timeout"] == "3s" and after["spec"]["http"][1]["retries"] == {"attempts": 2}
        assert rig.weights() == [("v1", 90), ("v2", 10)]
        assert done.stage("0").outputs["weights"] == {"reviews": {"v1": 90, "v2": 10}}

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_traffic_shift_creates_a_managed_virtual_service(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        done = await rig.done(await rig.run({"type": "trafficShift", "service": "ratings",
                                             "weights": {"v1": 50, "v2": 50}}))
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert rig.vs("ratings")["metadata"]["annotations"]["graylane.io/managed-by"] == "graylane"
        assert rig.weights("ratings") == [("v1", 50), ("v2", 50)]

    run_rig(tmp_path, RATINGS, test)


@pytest.mark.parametrize(("weights", "message"), [
    ({"v1": 50, "v4": 50}, "Referenced host+subset in destinationrule not found"),
    ({"v1": 50, "v3": 50}, "IST0173"),
])
def test_traffic_shift_refuses_subsets_without_rule_or_pods(tmp_path: Path, state_dir: Path,
                                                             weights: dict[str, int], message: str) -> None:
    async def test(rig: Rig) -> None:
        revision = rig.store.revision()
        done = await rig.done(await rig.run({"type": "trafficShift", "service": "reviews", "weights": weights}))
        assert done.status == S.TERMINAL
        assert message in done.stage("0").context["exception"]["details"]["error"]
        assert rig.store.revision() == revision and rig.weights() == [("v1", 100)]

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_several_services_move_in_one_transaction(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        seen: list[list[ResourceKey]] = []
        rig.store.subscribe(lambda keys: seen.append([k for k in keys if k.kind == "VirtualService"]))
        done = await rig.done(await rig.run({"type": "trafficShift", "services": [
            {"service": "reviews", "weights": {"v1": 50, "v2": 50}},
            {"service": "ratings", "weights": {"v1": 50, "v2": 50}}]}))
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert [sorted(k.name for k in keys) for keys in seen if keys] == [["ratings", "reviews"]]
        assert rig.weights() == rig.weights("ratings") == [("v1", 50), ("v2", 50)]

    run_rig(tmp_path, REVIEWS + RATINGS + USER_VS, test)


STEPS = {"type": "canaryRollout", "service": "reviews", "stableSubset": "v1", "canarySubset": "v2",
         "steps": [{"setHeaderRoute": {"name": "jason", "match": [{"headerName": "end-user",
                                                                    "headerValue": {"exact": "jason"}}]}},
                   {"setWeight": 10}, {"pause": {"duration": "0.2s"}}, {"setWeight": 50},
                   {"setMirrorRoute": {"name": "mirror", "percentage": 20}}, {"pause": {}}, {"setWeight": 80}]}


def test_canary_steps_header_route_with_weights_then_promote(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run(STEPS)
        st = await rig.rollout(exe, "Paused", 5)
        assert "Promote / Promote full / Abort" in st["message"]
        http = rig.vs()["spec"]["http"]
        assert http[0]["name"] == "jason" and http[0]["route"] == [{"destination": {"host": "reviews",
                                                                                    "subset": "v2"}}]
        assert http[1]["fault"]  # the user's rule is still there, below Graylane's route
        assert rig.weights() == [("v1", 50), ("v2", 50)]
        assert http[-1]["mirror"] == {"host": "reviews", "subset": "v2"}
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "continue", "judgmentInput": "Promote"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        http = rig.vs()["spec"]["http"]
        assert [r.get("name") for r in http] == [None, None]  # managed routes gone at the end
        assert rig.weights() == [("v2", 100)] and "mirror" not in http[-1]
        assert done.stage("0").context["rollout"]["phase"] == "Healthy"

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_abort_returns_to_baseline_stepwise_and_removes_managed_routes(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**STEPS, "abort": {"stepwise": True, "interval": "0.1s"}})
        await rig.rollout(exe, "Paused", 5)
        seen: list[list[tuple[str, int]]] = []
        rig.store.subscribe(lambda keys: seen.append(rig.weights()))
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        error = done.stage("0").context["exception"]["details"]["error"]
        assert "aborted by bob" in error and "back on v1" in error
        assert seen == [[("v1", 90), ("v2", 10)], [("v1", 100), ("v2", 0)]]
        assert [r.get("name") for r in rig.vs()["spec"]["http"]] == [None, None]
        assert "mirror" not in rig.vs()["spec"]["http"][-1]
        # retry: the stage restarts from the first step
        await rig.ex.restart_stage(exe, "0", user="bob")
        await rig.rollout(exe, "Paused", 5)
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote full"}, user="bob")
        assert (await rig.done(exe)).status == S.SUCCEEDED
        assert rig.weights() == [("v2", 100)]

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_promotion_keeps_the_previous_version_warm_and_abort_is_one_change(tmp_path: Path,
                                                                          state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [{"setWeight": 50}], "scaleDownDelay": 60,
                             "scaleDown": ["reviews-v1"]})
        st = await rig.rollout(exe, "Promoted")
        assert "stays warm" in st["message"] and rig.weights() == [("v2", 100)]
        revision = rig.store.revision()
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Abort"}, user="carol")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert rig.store.revision() == revision + 1  # one change: straight back, no redeploy
        assert rig.weights() == [("v1", 100), ("v2", 0)]
        v1 = rig.store.get(ResourceKey("apps", "Deployment", "default", "reviews-v1"))
        assert v1 is not None and v1.body["spec"]["replicas"] == 1

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_scale_down_after_the_warm_window(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [], "scaleDownDelay": "0.3s",
                             "scaleDown": ["reviews-v1"]})
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert "scaled down reviews-v1" in done.stage("0").context["rollout"]["message"]
        v1 = rig.store.get(ResourceKey("apps", "Deployment", "default", "reviews-v1"))
        assert v1 is not None and v1.body["spec"]["replicas"] == 0

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_lockstep_rollout_moves_every_member_in_one_change(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        changes: list[list[str]] = []
        rig.store.subscribe(lambda keys: changes.append(sorted(k.name for k in keys if k.kind == "VirtualService")))
        exe = await rig.run({"type": "canaryRollout", "stableSubset": "v1", "canarySubset": "v2",
                             "services": [{"service": "reviews"}, {"service": "ratings"}],
                             "steps": [{"setWeight": 10}, {"setWeight": 50}]})
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert changes == [["ratings", "reviews"]] * 3  # 10, 50, 100: each one transaction
        assert rig.weights() == rig.weights("ratings") == [("v2", 100)]

    run_rig(tmp_path, REVIEWS + RATINGS + USER_VS, test)


def test_blue_green_preview_then_switch(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "blueGreen", "service": "reviews", "activeSubset": "v1",
                             "previewSubset": "v2", "preview": {"headers": {"x-preview": "true"}},
                             "scaleDownDelay": 0})
        await rig.rollout(exe, "Paused")
        http = rig.vs()["spec"]["http"]
        assert http[0]["name"] == "preview" and http[0]["match"] == [{"headers": {"x-preview": {"exact": "true"}}}]
        assert rig.weights() == [("v1", 100), ("v2", 0)]
        revision = rig.store.revision()
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="dave")
        assert (await rig.done(exe)).status == S.SUCCEEDED
        assert rig.store.revision() == revision + 1  # the switch is one change
        assert rig.weights() == [("v2", 100)] and rig.vs()["spec"]["http"][0].get("name") is None

    run_rig(tmp_path, REVIEWS + USER_VS, test)


@pytest.mark.parametrize(("kind", "message"), [("kayentaCanary", "not yet available"),
                                               ("nonesuch", "runs analysis or kayentaCanary, not 'nonesuch'")])
def test_analysis_step_without_such_a_stage_type_says_so(tmp_path: Path, state_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch, kind: str,
                                                         message: str) -> None:
    from graylane.pipelines import stages

    monkeypatch.delitem(stages.MODULES, "kayentaCanary", raising=False)

    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [{"analysis": {"type": kind}}]})
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert message in done.stage("0").context["exception"]["details"]["error"]

    run_rig(tmp_path, REVIEWS + USER_VS, test)


class _FakeAnalysis:
    """An `analysis` stage type whose one task measures twice, then passes or fails as its context says."""

    type = "analysis"

    def tasks(self, context: dict[str, Any]) -> list[Any]:
        from graylane.pipelines.tasks import Task, TaskResult

        class Measure(Task):
            name = "measure"

            async def run(self, stage: Any) -> TaskResult:
                n = int(stage.context.get("measured") or 0) + 1
                if n < 2:
                    return TaskResult.running(0.01, {"measured": n})
                if stage.context.get("verdict") == "fail":
                    return TaskResult.terminal("metric success-rate assessed Failed")
                return TaskResult.succeeded({"measured": n}, {"analysisRun": {"phase": "Successful"}})

        return [Measure()]


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_analysis_step_calls_the_analysis_stage_type(tmp_path: Path, state_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch, verdict: str) -> None:
    from graylane.pipelines import stages

    monkeypatch.setitem(stages.MODULES, "analysis", "analysis")
    monkeypatch.setitem(stages._cache, "analysis", _FakeAnalysis())

    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [{"setWeight": 20},
                                                             {"analysis": {"type": "analysis", "verdict": verdict}},
                                                             {"setWeight": 50}]})
        done = await rig.done(exe)
        st = done.stage("0").context["rollout"]
        if verdict == "pass":
            assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
            assert rig.weights() == [("v2", 100)]
        else:
            assert done.status == S.TERMINAL and st["phase"] == "Aborted"
            assert "analysis (analysis) failed: metric success-rate assessed Failed" in st["message"]
            assert rig.weights() == [("v1", 100), ("v2", 0)]  # back on the baseline

    run_rig(tmp_path, REVIEWS + USER_VS, test)


# An Argo AnalysisTemplate on the local mesh's telemetry: the version's success rate, measured twice a second apart.
SUCCESS_RATE = """
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args: [{name: version}]
  metrics:
  - name: success-rate
    successCondition: result[0] >= 0.95
    count: 2
    interval: 1s
    provider:
      plugin:
        graylane.io/local:
          metric: istio_requests_total
          aggregation: success-rate
          window: 5s
          filter: {destination_service_name: reviews, destination_version: "{{args.version}}"}
"""
GATE = {"type": "analysis", "templates": [{"templateName": "success-rate"}], "args": [{"name": "version",
                                                                                       "value": "v2"}]}
FAILED_GATE = ('analysis (analysis) failed: AnalysisRun Failed: Metric "success-rate" assessed Failed due to '
               "failed (1) > failureLimit (0); last measurement: result = [0.5]; successCondition "
               "`result[0] >= 0.95` is false, so the measurement Failed")


def _measured(value: float) -> Callable[[dict[str, Any]], bool]:
    """A rollout state whose running analysis step shows a Successful measurement of `value` (release status)."""
    def check(st: dict[str, Any]) -> bool:
        run = ((st.get("analysis") or {}).get("outputs") or {}).get("analysisRun") or {}
        taken = [m for r in run.get("metricResults") or [] for m in r.get("measurements") or []]
        return any(m.get("phase") == "Successful" and m.get("value") == [value] for m in taken)
    return check


@pytest.mark.parametrize("errors", [0.0, 0.5], ids=["passes", "fails"])
def test_an_analysis_step_measures_the_canary_then_goes_on_or_aborts(tmp_path: Path, state_dir: Path,
                                                                     errors: float) -> None:
    """A real `analysis` stage inline in a rollout: the Argo template above over the local mesh's telemetry."""
    traffic = Traffic(canary_error_share=errors)

    async def test(rig: Rig) -> None:
        traffic.fill(time.time() - 10, time.time())
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [{"setWeight": 20}, {"analysis": GATE},
                                                             {"setWeight": 50}, {"pause": {}}]})
        if errors:
            done = await rig.done(exe)
            st = done.stage("0").context["rollout"]
            assert done.status == S.TERMINAL and st["phase"] == "Aborted" and st["stepIndex"] == 1
            assert st["message"] == FAILED_GATE + "; all traffic is back on v1"
            run = st["analysis"]["outputs"]["analysisRun"]  # what `graylane release status` shows as Analysis
            assert run["phase"] == "Failed" and run["metricResults"][0]["measurements"][0]["value"] == [0.5]
            assert rig.weights() == [("v1", 100), ("v2", 0)]
            return
        await rig.rollout(exe, "Progressing", 1, showing=_measured(1.0))  # the first of two measurements
        assert rig.weights() == [("v1", 80), ("v2", 20)]
        st = await rig.rollout(exe, "Paused", 3)
        assert st["weights"] == {"reviews": {"v1": 50, "v2": 50}} and rig.weights() == [("v1", 50), ("v2", 50)]
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="dave")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert rig.weights() == [("v2", 100)]

    run_rig(tmp_path, REVIEWS + USER_VS + SUCCESS_RATE, test, traffic)


@pytest.mark.parametrize("errors", [0.0, 0.5], ids=["passes", "fails"])
def test_blue_green_pre_promotion_analysis_gates_the_switch(tmp_path: Path, state_dir: Path, errors: float) -> None:
    traffic = Traffic(canary_error_share=errors)

    async def test(rig: Rig) -> None:
        seen: list[list[tuple[str, int]]] = []
        rig.store.subscribe(lambda keys: seen.append(rig.weights()) if any(k.kind == "VirtualService" for k in keys)
                            else None)
        traffic.fill(time.time() - 10, time.time())
        exe = await rig.run({"type": "blueGreen", "service": "reviews", "activeSubset": "v1",
                             "previewSubset": "v2", "preview": {"headers": {"x-preview": "true"}},
                             "prePromotionAnalysis": GATE, "autoPromotionEnabled": True, "scaleDownDelay": 0})
        if not errors:  # while the analysis measures the preview version: only x-preview requests reach it
            await rig.rollout(exe, "Progressing", 2, showing=_measured(1.0))
            assert rig.vs()["spec"]["http"][0]["name"] == "preview" and rig.weights() == [("v1", 100), ("v2", 0)]
        done = await rig.done(exe)
        stage = done.stage("0")
        assert [r.get("name") for r in rig.vs()["spec"]["http"]] == [None, None]  # the preview route is gone
        if errors:
            assert done.status == S.TERMINAL and stage.context["rollout"]["phase"] == "Aborted"
            assert stage.context["exception"]["details"]["error"] == (
                f"stage 's0': rollout {FAILED_GATE}; all traffic is back on v1")
            assert rig.weights() == [("v1", 100), ("v2", 0)]
            assert all(w == [("v1", 100), ("v2", 0)] for w in seen), seen  # v2 only ever had the preview
        else:
            assert done.status == S.SUCCEEDED, stage.context.get("exception")
            # pinned to v1, preview route added, the analysis, then the switch in one change
            assert seen == [[("v1", 100), ("v2", 0)]] * 2 + [[("v2", 100)]]

    run_rig(tmp_path, REVIEWS + USER_VS + SUCCESS_RATE, test, traffic)


@pytest.mark.parametrize(("stage", "message"), [
    ({"type": "trafficShift", "service": "reviews", "weights": {"v1": 90, "v2": 20}}, "add up to 110"),
    ({"type": "trafficShift", "weights": {"v1": 100}}, "a member needs `service`"),
    ({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1", "canarySubset": "v2",
      "steps": [{"setWeight": 10}, {"jump": 3}]}, "steps[1]: one of setWeight, pause"),
    ({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1", "canarySubset": "v1", "steps": []},
     "two different subsets"),
    ({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1", "canarySubset": "v2",
      "steps": [{"pause": {"duration": "soon"}}]}, "duration 'soon' is not a number"),
    ({"type": "blueGreen", "service": "reviews", "activeSubset": "v1", "previewSubset": "v2"}, "`preview` needs"),
])
def test_release_stages_that_cannot_run_are_refused_at_import(stage: dict[str, Any], message: str) -> None:
    from graylane.pipelines.model import find_problems

    body = {"application": "a", "name": "p", "stages": [{"refId": "1", "name": "release", **stage}]}
    problems = [str(p) for p in find_problems(body)]
    assert any(message in p and "stages[0]" in p for p in problems), problems
    templated = {**stage, "steps": "${parameters.steps}"} if "steps" in stage else {**stage, "service": "${x}"}
    assert find_problems({**body, "stages": [{"refId": "1", "name": "r", **templated}]}) == []


def test_a_set_weight_step_turns_on_sticky_canary_in_the_same_change(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        sticky = {"cookie": {"name": "gl-canary", "maxAge": "24h", "path": "/", "sameSite": "Lax"}}
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                             "canarySubset": "v2", "steps": [{"setWeight": 10}, {"setWeight": 50, "sticky": sticky},
                                                             {"pause": {}}]})
        await rig.rollout(exe, "Paused", 2)
        assert rig.weights() == [("v1", 50), ("v2", 50)]
        annotations = rig.vs()["metadata"]["annotations"]
        assert json.loads(annotations["graylane.io/sticky"]) == sticky
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        await rig.done(exe)

    run_rig(tmp_path, REVIEWS + USER_VS, test)
