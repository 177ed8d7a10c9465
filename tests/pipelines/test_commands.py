"""pipelines/commands.py alone: each command is a function of (execution, Tx, now), no scheduler or store."""

from __future__ import annotations

import pytest

from graylane.errors import Conflict, Forbidden, ValidationError
from graylane.pipelines import commands
from graylane.pipelines.execution import Execution, new_execution
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tx import Tx

NOW = 1_700_000_000_000


def running(*stages: dict[str, object]) -> Execution:
    exe = new_execution({"application": "shop", "name": "p", "stages": list(stages)}, {"user": "alice"}, NOW)
    exe.status = S.RUNNING
    for st in exe.stages:
        st.status, st.context = S.RUNNING, {k: v for k, v in st.config.items() if k not in ("refId", "type", "name")}
    return exe


def test_a_stage_type_decides_what_its_patch_takes() -> None:
    exe = running({"refId": "1", "type": "wait", "name": "long", "waitTime": 600},
                  {"refId": "2", "type": "manualJudgment", "name": "ok?", "judgmentInputs": [{"value": "go"}],
                   "requiredJudgmentRoles": ["qa"]})
    tx = Tx()
    with pytest.raises(ValidationError, match=r"'long' \(wait\) does not take judgmentStatus"):
        commands.update_stage("long", {"judgmentStatus": "continue"}, user="bob")(exe, tx, NOW)
    with pytest.raises(Forbidden):
        commands.update_stage("ok?", {"judgmentStatus": "continue", "judgmentInput": "go"}, user="bob",
                              roles=["viewer"])(exe, tx, NOW)
    assert not tx.dirty and not tx.events  # a refused command leaves no trace

    answer = commands.update_stage("ok?", {"judgmentStatus": "continue", "judgmentInput": "go"}, user="carol",
                                   roles=["qa"])(exe, tx, NOW)
    judged = exe.stage("ok?")
    assert judged is not None and answer["context"]["judgmentStatus"] == "continue"
    assert judged.context["lastModifiedBy"] == "carol"  # the judgment's definition records the judge
    assert [a["action"] for a in tx.audit] == ["judgment"] and tx.run_now == {judged.id}

    commands.update_stage("long", {"skipRemainingWait": True}, user="bob")(exe, tx, NOW)
    assert tx.audit[-1]["action"] == "skipWait"


def test_cancel_pause_resume_and_delete_check_the_state_first() -> None:
    exe = running({"refId": "1", "type": "wait", "name": "w", "waitTime": 60})
    tx = Tx()
    commands.pause(user="bob")(exe, tx, NOW)
    assert exe.status == S.PAUSED and exe.stages[0].status == S.PAUSED
    with pytest.raises(Conflict, match="only a RUNNING execution can be paused"):
        commands.pause(user="bob")(exe, Tx(), NOW)
    commands.resume(user="bob")(exe, tx, NOW + 5000)
    assert exe.paused is not None and exe.paused["pausedMs"] == 5000 and exe.stages[0].paused_ms == 5000
    with pytest.raises(Conflict, match="cancel it before deleting it"):
        commands.delete_execution(user="bob")(exe, Tx(), NOW)
    commands.cancel(user="bob", reason="enough")(exe, tx, NOW)
    assert exe.canceled and exe.cancellation_reason == "enough"
    exe.status = S.CANCELED
    deleting = Tx()
    commands.delete_execution(user="bob")(exe, deleting, NOW)
    assert deleting.delete
    with pytest.raises(ValidationError, match="the stage update is empty"):
        commands.update_stage("w", {}, user="bob")
