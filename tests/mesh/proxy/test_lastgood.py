"""The data plane's kept snapshot: the newest ACKed one wins, replaced atomically, unreadable files ignored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from graylane.mesh.proxy.lastgood import SNAPSHOT_FILE, LastGood


def test_acks_during_a_write_coalesce_into_the_newest_snapshot(tmp_path: Path) -> None:
    kept = LastGood(tmp_path)
    queued: list[Callable[[], None]] = []
    kept.save_soon({"version": 1}, queued.append)
    kept.save_soon({"version": 2}, queued.append)  # the writer is busy (queued): no second writer
    kept.save_soon({"version": 3}, queued.append)
    assert len(queued) == 1
    queued.pop()()
    assert kept.load() == {"version": 3}
    kept.save_soon({"version": 4}, queued.append)  # idle again: a new writer
    assert len(queued) == 1
    queued.pop()()
    assert kept.load() == {"version": 4}
    assert [p.name for p in tmp_path.iterdir()] == [SNAPSHOT_FILE]  # no temp file left behind


def test_a_missing_or_unreadable_kept_snapshot_is_none(tmp_path: Path) -> None:
    kept = LastGood(tmp_path)
    assert kept.load() is None
    (tmp_path / SNAPSHOT_FILE).write_text('{"version": 5, "listeners": [')  # cut short (not by us: we rename)
    assert kept.load() is None
    (tmp_path / SNAPSHOT_FILE).write_text("[1, 2]")
    assert kept.load() is None
