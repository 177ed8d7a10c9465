"""Listening sockets that outlive a data-plane process, as systemd socket activation keeps them.

The supervisor starting the data plane passes it one end of a Unix socketpair (`GRAYLANE_LISTEN_CHANNEL`, an
inherited descriptor) and the listening sockets it holds from the previous run (`GRAYLANE_LISTEN_FDS`, JSON
`[[host, port, fd], ...]`). The data plane sends every listener it binds over the channel (`hold`, with the
descriptor) and every listener it closes (`release`). When the data plane dies, the supervisor's copies keep
the ports bound: connections arriving meanwhile wait in the kernel's accept queue instead of being refused,
and the next process accepts them from the very same sockets. Without a supervisor nothing is passed and the
data plane binds as usual.

The next process is usually a warm standby (`--standby-fd`): started ahead of need, its imports done, it waits
in `await_activation` until the supervisor sends it its log file, the channel and the kept sockets.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from graylane.dataplane_contract import ENV_CHANNEL, ENV_FDS

log = logging.getLogger(__name__)
Address = tuple[str, int]


def message(op: str, addr: Address) -> bytes:
    return json.dumps([op, addr[0], addr[1]]).encode()


class Handoff:
    def __init__(self, channel: socket.socket | None, inherited: dict[Address, socket.socket]) -> None:
        self.channel = channel
        self.inherited = inherited

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Handoff | None:
        """The channel and sockets a supervisor passed, or None when the data plane runs on its own."""
        raw_channel = environ.get(ENV_CHANNEL)
        if not raw_channel:
            return None
        try:
            channel = socket.socket(fileno=int(raw_channel))
            channel.setblocking(False)  # a stalled supervisor must never stall the proxy: sends fail instead
            inherited = {(str(host), int(port)): socket.socket(fileno=int(fd))
                         for host, port, fd in json.loads(environ.get(ENV_FDS) or "[]")}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring the listening sockets passed by the supervisor: %s", exc)
            return None
        if inherited:
            log.info("took over %d listening sockets from the previous run", len(inherited))
        return cls(channel, inherited)

    def take(self, addr: Address) -> socket.socket | None:
        """The socket the previous run listened on at `addr`, already bound and listening."""
        return self.inherited.pop(addr, None)

    def hold(self, addr: Address, sockets: Sequence[Any]) -> None:
        """Have the supervisor keep `addr`'s listening socket (`sockets`: a server's, anything with fileno();
        kept only when the address gave one socket)."""
        if len(sockets) == 1:
            self._send(message("hold", addr), [sockets[0].fileno()])

    def release(self, addr: Address) -> None:
        """The listener at `addr` is gone: the supervisor closes its copy, so the port is free again."""
        self._send(message("release", addr), [])

    def release_unclaimed(self) -> None:
        """Close (here and in the supervisor) the previous run's sockets the restored snapshot did not want."""
        for addr in list(self.inherited):
            self.inherited.pop(addr).close()
            self.release(addr)

    def _send(self, data: bytes, fds: list[int]) -> None:
        if self.channel is None:
            return
        try:
            socket.send_fds(self.channel, [data], fds)
        except OSError as exc:  # the supervisor went away: listeners no longer survive a crash, nothing else
            log.warning("the supervisor no longer keeps listening sockets: %s", exc)
            self.channel.close()
            self.channel = None


def await_activation(fd: int, environ: MutableMapping[str, str]) -> bool:
    """A standby: block until the supervisor activates it, then log to the file it sent (stdout and stderr) and
    put the handoff into `environ` with this process's descriptor numbers. False: the supervisor went away."""
    with socket.socket(fileno=fd) as channel:
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, 1 << 16, 1024)
        except OSError:
            return False
    if not data or not fds:
        return False
    spec = json.loads(data)
    log_fd, passed = fds[0], fds[1:]
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    ours = dict(zip((int(f) for f in spec["fds"]), passed, strict=True))
    env = dict(spec["env"])
    environ[ENV_CHANNEL] = str(ours[int(env[ENV_CHANNEL])])
    environ[ENV_FDS] = json.dumps([[host, port, ours[int(f)]] for host, port, f in json.loads(env[ENV_FDS])])
    return True
