"""A warm standby data plane: started ahead of need, so a restart skips the interpreter start and the imports.

The supervisor keeps one standby process (`python -m graylane.mesh.proxy ... --standby-fd N`) waiting on a Unix
socketpair once the data plane has run a while. To restart the data plane it sends the standby the log file,
the listening-socket channel and the kept sockets (`graylane.mesh.proxy.handoff.await_activation`); the standby
then restores the kept snapshot and serves. Without a standby (none yet, or it died) the data plane starts cold.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from graylane.dataplane_contract import activation_message

log = logging.getLogger("graylane.supervisor")
WARM_AFTER_S = 2.0  # start the next standby once the active data plane ran this long (not while it starts)


class Standby:
    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: socket.socket | None = None

    def maintain(self, data_plane_ran_s: float) -> None:
        """Reap a standby that died; start one when the data plane has run `WARM_AFTER_S`."""
        if self.proc is not None and self.proc.poll() is not None:
            log.warning("data-plane standby pid %s exited with code %s", self.proc.pid, self.proc.returncode)
            self.discard()
        if self.proc is None and data_plane_ran_s >= WARM_AFTER_S:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self.proc = subprocess.Popen([*self.argv, "--standby-fd", str(theirs.fileno())], env=self.env,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True,
                                             pass_fds=(theirs.fileno(),))
            except OSError as exc:
                log.warning("data-plane standby not started: %s", exc)
                ours.close()
                return
            finally:
                theirs.close()
            self.channel = ours

    def activate(self, log_path: Path, env: Mapping[str, str],
                 fds: tuple[int, ...]) -> subprocess.Popen[bytes] | None:
        """Hand the standby its log, `env` (the handoff, numbered as `fds`) and `fds`; None: start cold instead."""
        proc, channel = self.proc, self.channel
        self.proc, self.channel = None, None
        if proc is None or channel is None or proc.poll() is not None:
            if channel is not None:
                channel.close()
            return None
        try:
            with open(log_path, "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(self.argv)} "
                          f"(warm standby pid {proc.pid})\n".encode())
                out.flush()
                socket.send_fds(channel, [activation_message(env, fds)], [out.fileno(), *fds])
        except OSError as exc:
            log.warning("data-plane standby pid %s not activated (%s): starting cold", proc.pid, exc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            return None
        finally:
            channel.close()
        return proc

    def discard(self) -> None:
        """Stop the standby (the supervisor stops, or it died): closing the channel alone makes it exit."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
