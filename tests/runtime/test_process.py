"""Replica processes: identity by pid + start time, log rotation, stopping recorded replicas."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from graylane.runtime.process import PodRecord, Process, RecordStore, rotate_if_large, start_ticks, stop_recorded


def test_a_recycled_pid_is_not_adopted() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        ticks = start_ticks(proc.pid)
        assert ticks is not None
        assert Process.adopt(proc.pid, ticks) is not None
        assert Process.adopt(proc.pid, ticks + 1) is None  # same pid, another process start
    finally:
        proc.kill()
        proc.wait()
    assert Process.adopt(proc.pid, ticks) is None


def test_large_logs_are_copy_truncated(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    with open(log, "ab") as writer:  # the replica's O_APPEND descriptor stays valid
        writer.write(b"x" * 2000)
        writer.flush()
        rotate_if_large(log, max_bytes=1000)
        writer.write(b"after\n")
        writer.flush()
    assert (tmp_path / "web.log.1").read_bytes() == b"x" * 2000
    assert log.read_bytes() == b"after\n"
    rotate_if_large(log, max_bytes=1000)
    assert log.read_bytes() == b"after\n"


def test_stop_recorded_stops_every_replica_and_forgets_it(tmp_path: Path) -> None:
    records = RecordStore(tmp_path)
    proc = Process.spawn([sys.executable, "-c", "import time; time.sleep(30)"], env={}, cwd=None,
                         log=tmp_path / "p.log")
    rec = PodRecord(namespace="default", name="web-abc-xyz", deployment="web", template_hash="abc", labels={},
                    port=1, sidecar_port=2, container_port=9080, pid=proc.pid, ticks=proc.ticks, started=time.time())
    records.save(rec)
    assert stop_recorded(tmp_path, grace_s=2) == ["default/web-abc-xyz"]
    assert proc.exit_status() is not None
    assert records.load_all() == []
