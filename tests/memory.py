"""Peak resident memory, for tests that feed hostile input: of this process around a call, or of a child.

The peak of this process is reset first (`/proc/self/clear_refs`, Linux >= 4.0), so the figure is what the
call itself reached, not what an earlier test did. A child's peak comes from `wait4`, for that child alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
MB = 1024 * 1024


def _status_kb(field: str, pid: int | str = "self") -> int:
    text = open(f"/proc/{pid}/status", encoding="ascii").read()  # noqa: SIM115 - one short read
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert found, f"/proc/{pid}/status has no {field}"
    return int(found.group(1))


def peak_growth(call: Callable[[], T], pid: int | str = "self") -> tuple[T, int]:
    """(what `call` returned, bytes the peak RSS of `pid` rose above its RSS before the call)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:  # resets VmHWM to the current RSS
            f.write("5")
    except OSError:  # a kernel or sandbox without it: sample the RSS while the call runs instead
        return _sampled_growth(call, pid)
    before = _status_kb("VmRSS", pid)
    result = call()
    return result, (_status_kb("VmHWM", pid) - before) * 1024


def _sampled_growth(call: Callable[[], T], pid: int | str) -> tuple[T, int]:
    before = _status_kb("VmRSS", pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _status_kb("VmRSS", pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = call()
    finally:
        done.set()
        sampler.join()
    return result, (max(peak[0], _status_kb("VmRSS", pid)) - before) * 1024


def _child_peak_kb(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Follow the child's own high-water mark (VmHWM of the program it exec'd) until it exits."""
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], _status_kb("VmHWM", pid))
        except (OSError, AssertionError):  # not exec'd yet, or already a zombie
            pass
        stop.wait(0.002)


def run_child(args: Sequence[str], *, env: dict[str, str], timeout_s: float = 30.0,
              stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run a child to completion: (its result, its own peak RSS in bytes).

    Not wait4's ru_maxrss: Linux carries the parent's high-water mark across fork and exec into it, so a
    child of a big pytest process would report pytest's size. The child's VmHWM is followed instead."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as feed:
        feed.write((stdin or "").encode())
        feed.seek(0)
        proc = subprocess.Popen(list(args), env=env, stdin=feed, stdout=out, stderr=err)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        stop, peak = threading.Event(), [0]
        follower = threading.Thread(target=_child_peak_kb, args=(proc.pid, stop, peak), daemon=True)
        follower.start()
        try:
            _, status, _usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            stop.set()
            follower.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode != -9, f"{' '.join(args)} did not finish within {timeout_s}s"
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(list(args), proc.returncode, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
    return done, peak[0] * 1024
