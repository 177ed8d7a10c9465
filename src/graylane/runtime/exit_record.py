"""Run one container's process and record how it ended, for a control plane that did not start it.

A process's exit status goes to its parent only. A control plane restarted while an init container or a Job's
container runs re-adopts the process by pid and start time (`runtime.process`), but cannot wait for it, so it
would not know whether the container succeeded. Such containers therefore start through this wrapper:

    python -I -S exit_record.py RECORD ARGV...

runs ARGV (same process group, same session: a signal to the group reaches the container directly), waits for
it, writes `{"exitCode": N, "reason": ..., "message": ...}` to RECORD atomically, and ends the way the container
ended (its exit code, or the same signal). An ARGV that cannot be executed is recorded as Kubernetes reports it:
exit code 128, reason `StartError`. The wrapper survives SIGTERM/SIGINT/SIGHUP (the container gets them through
the group) so it can record the result; a SIGKILL of the group leaves no record.

Run by path with `-I -S` (stdlib only, nothing of graylane imported), so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

START_ERROR_CODE = 128  # what the container runtime reports for a command that cannot start


@dataclass(frozen=True)
class ExitRecord:
    exit_code: int  # negative: killed by that signal (Python's convention, as Process.exit_status)
    reason: str = ""  # "" for a normal exit; StartError when the command could not start
    message: str = ""


def wrapped(argv: Sequence[str], record: Path) -> list[str]:
    """The argv that runs `argv` through this wrapper, recording its end in `record`."""
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(record), *argv]


def read(record: Path) -> ExitRecord | None:
    """The recorded end of the container, None if it has not ended (or ended with no record: SIGKILL)."""
    try:
        raw = json.loads(record.read_text())
        return ExitRecord(int(raw["exitCode"]), str(raw.get("reason") or ""), str(raw.get("message") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear(record: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        record.unlink()


def _write(record: Path, exit_code: int, reason: str = "", message: str = "") -> None:
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps({"exitCode": exit_code, "reason": reason, "message": message}))
    os.replace(tmp, record)


def main(args: list[str]) -> int:
    record, argv = Path(args[0]), args[1:]
    # A catching handler, not SIG_IGN: caught signals are reset to the default in the exec'd container.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    try:
        child = subprocess.Popen(argv)  # inherits stdin/stdout/stderr, environment and folder
    except OSError as exc:
        message = f"{argv[0] if argv else '(no command)'}: {exc.strerror or exc}"
        print(message, file=sys.stderr, flush=True)
        _write(record, START_ERROR_CODE, "StartError", message)
        return START_ERROR_CODE
    code = child.wait()
    _write(record, code)
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL/SIGSTOP cannot be set, only sent
            signal.signal(-code, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
