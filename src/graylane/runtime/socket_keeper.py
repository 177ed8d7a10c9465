"""The supervisor's side of `graylane.mesh.proxy.handoff`: it keeps the data plane's listening sockets.

For each data-plane start the keeper makes a Unix socketpair, passes one end and every socket it holds to the
new process (inherited descriptors named in its environment), and reads `hold`/`release` messages from the
other end: a held socket is a duplicate of the data plane's listening socket, so the port stays bound and its
accept queue keeps filling while the data plane is dead. The keeper never accepts a connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket

from graylane.dataplane_contract import ENV_CHANNEL, ENV_FDS

log = logging.getLogger("graylane.supervisor")
Address = tuple[str, int]


class SocketKeeper:
    def __init__(self) -> None:
        self.held: dict[Address, socket.socket] = {}
        self.channel: socket.socket | None = None
        self.poller: select.poll | None = None

    def attach(self, poller: select.poll) -> None:
        """Read messages when `poller` (the supervisor's) says the channel is readable."""
        self.poller = poller

    def owns(self, fd: int) -> bool:
        return self.channel is not None and fd == self.channel.fileno()

    def spawn_args(self) -> tuple[dict[str, str], tuple[int, ...], socket.socket]:
        """Environment and descriptors for a new data plane; the caller closes the returned end once spawned."""
        self.drain()
        self._close_channel()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.channel = ours
        if self.poller is not None:
            self.poller.register(ours.fileno(), select.POLLIN)
        env = {ENV_CHANNEL: str(theirs.fileno()),
               ENV_FDS: json.dumps([[host, port, s.fileno()] for (host, port), s in self.held.items()])}
        return env, (theirs.fileno(), *(s.fileno() for s in self.held.values())), theirs

    def drain(self) -> None:
        """Apply every message the data plane sent (called when the channel is readable and before a restart)."""
        while self.channel is not None:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.channel, 1024, 4)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("data-plane: listening-socket channel failed: %s", exc)
                self._close_channel()
                return
            if not data:  # the data plane exited: its end is closed
                for fd in fds:
                    socket.close(fd)
                self._close_channel()
                return
            self._apply(data, fds)

    def _apply(self, data: bytes, fds: list[int]) -> None:
        try:
            op, host, port = json.loads(data)
            addr = (str(host), int(port))
        except (ValueError, TypeError) as exc:
            log.warning("data-plane: ignoring a malformed listening-socket message %r: %s", data[:100], exc)
            for fd in fds:
                socket.close(fd)
            return
        old = self.held.pop(addr, None)
        if old is not None:
            old.close()
        if op == "hold" and fds:
            self.held[addr] = socket.socket(fileno=fds[0])
            for fd in fds[1:]:
                socket.close(fd)
        else:
            for fd in fds:
                socket.close(fd)

    def _close_channel(self) -> None:
        if self.channel is None:
            return
        if self.poller is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(self.channel.fileno())
        self.channel.close()
        self.channel = None

    def close(self) -> None:
        self._close_channel()
        for s in self.held.values():
            s.close()
        self.held.clear()
