"""The Deployment controller's diff: rolling updates honour maxSurge/maxUnavailable, make before break."""

from __future__ import annotations

import pytest

from graylane.runtime.plan import ActionKind, Desired, ObservedPod, desired_from, plan


def simulate(desired: Desired, pods: list[ObservedPod], steps: int = 50) -> list[list[ObservedPod]]:
    """Apply plans until stable; new pods become available on the step after creation."""
    history = [list(pods)]
    counter = 0
    for _ in range(steps):
        actions = plan(desired, pods)
        if not actions:
            # Pending new pods turn available.
            if all(p.available for p in pods):
                return history
            pods = [ObservedPod(p.name, p.template_hash, True, p.created) for p in pods]
            history.append(list(pods))
            continue
        deleted = {a.pod for a in actions if a.kind is ActionKind.DELETE}
        pods = [p for p in pods if p.name not in deleted]
        for a in actions:
            if a.kind is ActionKind.CREATE:
                counter += 1
                pods.append(ObservedPod(f"new-{counter}", a.template_hash, False, 100 + counter))
        history.append(list(pods))
        pods = [ObservedPod(p.name, p.template_hash, True if p.template_hash == "new" and p.name.startswith("new")
                            and any(h.name == p.name for h in history[-2]) else p.available, p.created)
                for p in pods]
    raise AssertionError("did not converge")


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    pytest.param(1, 1, 0, id="one-replica-default"),
    pytest.param(2, 1, 0, id="two-surge-one"),
    pytest.param(4, 1, 1, id="four-25pct"),
    pytest.param(3, 0, 1, id="no-surge"),
    pytest.param(5, 2, 0, id="surge-two"),
])
def test_rolling_update_keeps_availability_and_pod_bounds(replicas: int, surge: int, unavailable: int) -> None:
    desired = Desired(replicas, "new", surge, unavailable)
    old = [ObservedPod(f"old-{i}", "old", True, i) for i in range(replicas)]
    history = simulate(desired, old)
    final = history[-1]
    assert sorted(p.template_hash for p in final) == ["new"] * replicas
    for pods in history:
        assert len(pods) <= replicas + surge
        assert sum(p.available for p in pods) >= replicas - unavailable


def test_old_pod_leaves_only_after_new_one_is_available() -> None:
    d = Desired(1, "new", max_surge=1, max_unavailable=0)
    assert [a.kind for a in plan(d, [ObservedPod("a", "old", True)])] == [ActionKind.CREATE]
    assert plan(d, [ObservedPod("a", "old", True), ObservedPod("b", "new", False)]) == []
    actions = plan(d, [ObservedPod("a", "old", True), ObservedPod("b", "new", True)])
    assert [(a.kind, a.pod) for a in actions] == [(ActionKind.DELETE, "a")]


def test_scale_down_removes_unready_then_newest() -> None:
    d = Desired(1, "h", 1, 0)
    pods = [ObservedPod("a", "h", True, 1), ObservedPod("b", "h", True, 2), ObservedPod("c", "h", False, 0)]
    assert sorted(a.pod for a in plan(d, pods)) == ["b", "c"]


def test_scale_up_creates_missing_replicas() -> None:
    assert [a.kind for a in plan(Desired(3, "h", 1, 0), [ObservedPod("a", "h", True)])] == [ActionKind.CREATE] * 2


def test_unhealthy_old_pods_go_first() -> None:
    d = Desired(2, "new", 1, 0)
    pods = [ObservedPod("a", "old", False, 1), ObservedPod("b", "old", True, 2), ObservedPod("n", "new", True, 3)]
    deletes = [a.pod for a in plan(d, pods) if a.kind is ActionKind.DELETE]
    assert deletes[0] == "a"
    assert "b" not in deletes  # b is still needed for availability (2 available would drop to 1)


def test_recreate_deletes_everything_old_first() -> None:
    d = desired_from({"replicas": 2, "strategy": {"type": "Recreate"}}, "new")
    actions = plan(d, [ObservedPod("a", "old", True), ObservedPod("b", "old", True)])
    assert {(a.kind, a.pod) for a in actions} == {(ActionKind.DELETE, "a"), (ActionKind.DELETE, "b")}


@pytest.mark.parametrize(("spec", "surge", "unavailable"), [
    pytest.param({"replicas": 4}, 1, 1, id="defaults-25pct"),
    pytest.param({"replicas": 1}, 1, 0, id="defaults-one"),
    pytest.param({"replicas": 10, "strategy": {"rollingUpdate": {"maxSurge": "30%", "maxUnavailable": "30%"}}},
                 3, 3, id="percent-rounding"),
    pytest.param({"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
                 0, 1, id="zero-zero"),
])
def test_strategy_defaults_and_rounding(spec: dict, surge: int, unavailable: int) -> None:
    d = desired_from(spec, "h")
    assert (d.max_surge, d.max_unavailable) == (surge, unavailable)
