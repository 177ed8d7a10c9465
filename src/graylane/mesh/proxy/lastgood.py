"""The last snapshot the data plane ACKed, kept in its state folder so a restarted data plane serves it at once.

One file, `proxy-snapshot.json`, replaced atomically (a temp file of this process, fsync, rename): a
reader sees the old snapshot or the new one, never half of one, even when the process is killed
mid-write. Writes happen off the event loop through one writer that coalesces bursts: whatever
was ACKed last is what ends up on disk, in ACK order, never an older snapshot after a newer one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graylane.dataplane_contract import SNAPSHOT_FILE

log = logging.getLogger(__name__)

Submit = Callable[[Callable[[], None]], object]  # run a function off the event loop (an executor)


class LastGood:
    def __init__(self, folder: Path) -> None:
        self.path = folder / SNAPSHOT_FILE
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._writing = False

    def save_soon(self, snapshot: dict[str, Any], submit: Submit) -> None:
        """Remember `snapshot` as the newest ACKed one; the busy writer, or a new one, writes it."""
        with self._lock:
            self._pending = snapshot
            if self._writing:
                return
            self._writing = True
        submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                snapshot, self._pending = self._pending, None
                if snapshot is None:
                    self._writing = False
                    return
            try:
                self.write(snapshot)
            except (OSError, TypeError, ValueError) as exc:
                log.warning("could not keep the ACKed snapshot in %s: %s", self.path, exc)

    def write(self, snapshot: dict[str, Any]) -> None:
        """Atomic replace of the kept snapshot."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner only: it may hold gateway TLS keys
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump(snapshot, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any] | None:
        """The kept snapshot, or None when there is none (or it cannot be read: then it is logged)."""
        try:
            snapshot = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return None
        if not isinstance(snapshot, dict):
            log.warning("ignoring %s: not a snapshot object", self.path)
            return None
        return snapshot
