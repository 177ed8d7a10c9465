"""Deployment status reads as Kubernetes writes it."""

from __future__ import annotations

from graylane.runtime.status import PodState, Problem, deployment_status


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_rolled_out_deployment_is_available_and_complete() -> None:
    pods = [PodState("h", True, True), PodState("h", True, True)]
    st = deployment_status("web", {"replicas": 2}, "h", pods, observed_generation=3, caught_up=True, stalled=False)
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (2, 2, 2, 2)
    assert st["complete"] and st["observedGeneration"] == 3
    assert conditions(st) == {"Available": ("True", "MinimumReplicasAvailable"),
                              "Progressing": ("True", "NewReplicaSetAvailable")}


def test_mid_rollout_counts_old_and_new() -> None:
    pods = [PodState("old", True, True), PodState("old", True, True), PodState("new", True, False)]
    st = deployment_status("web", {"replicas": 2}, "new", pods, observed_generation=4, caught_up=True, stalled=False)
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (3, 1, 2)
    assert not st["complete"]
    assert conditions(st)["Progressing"] == ("True", "ReplicaSetUpdated")


def test_not_caught_up_is_never_complete() -> None:
    pods = [PodState("h", True, True)]
    st = deployment_status("web", {"replicas": 1}, "h", pods, observed_generation=1, caught_up=False, stalled=False)
    assert not st["complete"]


def test_stalled_rollout_and_replica_failure() -> None:
    st = deployment_status("web", {"replicas": 2}, "h", [], observed_generation=1, caught_up=True, stalled=True,
                           problem=Problem("ImageNotRunnableLocally", 'no LocalImage matches "x"; add one'))
    assert conditions(st) == {"Available": ("False", "MinimumReplicasUnavailable"),
                              "Progressing": ("False", "ProgressDeadlineExceeded"),
                              "ReplicaFailure": ("True", "ImageNotRunnableLocally")}
    assert st["unavailableReplicas"] == 2
