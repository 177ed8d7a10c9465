"""One listening socket per address, shared by every data-plane worker, and kept by the supervisor.

With `--concurrency N` the primary opens each listener's socket once (or takes the one the supervisor kept from
the previous run, `handoff.py`) and passes it to every worker over the worker's socket channel (SCM_RIGHTS); the
workers accept from that same socket, as nginx's workers share theirs. A dead worker loses nothing queued: the
others accept, and its replacement gets the same sockets. With a supervisor the primary has it keep each socket
(`hold`/`release`), so a crash of the whole data plane also loses only in-flight requests.

The primary learns the listeners' addresses from the documents pushed to it (a whole document's `listeners`, a
delta's `set`/`remove`), before the workers see them; a worker that finds no socket for an address (the primary
could not open it) binds its own with SO_REUSEPORT, as before, and NACKs with the bind error if that fails too.
"""

from __future__ import annotations

import json
import logging
import select
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from graylane.dataplane_contract import SNAPSHOT_FILE
from graylane.mesh.proxy.handoff import Handoff

log = logging.getLogger(__name__)
Address = tuple[str, int]
MAX_FDS_PER_MESSAGE = 250  # the kernel takes at most 253 descriptors per SCM_RIGHTS message
RECV_TIMEOUT_S = 10.0


def listener_addresses(doc: Any, current: Mapping[str, Address], current_version: Any) -> dict[str, Address] | None:
    """Listener name -> (bind, port) of the snapshot `doc` describes: a whole document, or a delta against the
    snapshot whose listeners are `current` (version `current_version`). None when it cannot be told (not a
    document, or a delta on another base: the workers refuse that one anyway)."""
    if not isinstance(doc, dict):
        return None
    try:
        if doc.get("delta"):
            if doc.get("base_version") != current_version:
                return None
            out = dict(current)
            for name in (doc.get("remove") or {}).get("listeners") or []:
                out.pop(name, None)
            for name, entry in ((doc.get("set") or {}).get("listeners") or {}).items():
                out[name] = (str(entry.get("bind") or "127.0.0.1"), int(entry["port"]))
            return out
        return {str(e["name"]): (str(e.get("bind") or "127.0.0.1"), int(e["port"]))
                for e in doc.get("listeners") or []}
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def send_sockets(channel: socket.socket, sockets: Mapping[Address, socket.socket]) -> None:
    """The whole set of shared sockets, in messages of at most MAX_FDS_PER_MESSAGE descriptors."""
    items = list(sockets.items())
    parts = [items[i:i + MAX_FDS_PER_MESSAGE] for i in range(0, len(items), MAX_FDS_PER_MESSAGE)] or [[]]
    for n, part in enumerate(parts):
        data = json.dumps({"addresses": [list(addr) for addr, _ in part], "last": n == len(parts) - 1}).encode()
        socket.send_fds(channel, [data], [s.fileno() for _, s in part])


def recv_latest(channel: socket.socket) -> dict[Address, socket.socket] | None:
    """The latest whole set `send_sockets` sent that is waiting on `channel`, or None when none is (the sets
    before it are closed). The sender sends a set before the request that needs it, so it is there already."""
    latest = None
    while True:
        # Readable now? (select, not a peek: peeking without room for the descriptors would discard them)
        if not select.select([channel], [], [], 0)[0]:
            return latest
        if latest is not None:
            for sock in latest.values():
                sock.close()
        latest = recv_sockets(channel)


def recv_sockets(channel: socket.socket) -> dict[Address, socket.socket]:
    """What `send_sockets` sent (blocking, bounded by RECV_TIMEOUT_S)."""
    out: dict[Address, socket.socket] = {}
    channel.settimeout(RECV_TIMEOUT_S)
    while True:
        data, fds, _flags, _addr = socket.recv_fds(channel, 1 << 20, MAX_FDS_PER_MESSAGE + 3)
        if not data:
            raise ConnectionError("the primary closed the socket channel")
        msg = json.loads(data)
        addresses = [(str(h), int(p)) for h, p in msg["addresses"]]
        if len(addresses) != len(fds):
            for fd in fds:
                socket.close(fd)
            raise ValueError(f"{len(addresses)} addresses came with {len(fds)} sockets")
        for addr, fd in zip(addresses, fds, strict=True):
            out[addr] = socket.socket(fileno=fd)
        if msg.get("last"):
            return out


class ListenSockets:
    """The primary's side: the shared sockets of the snapshot the workers serve (and of the one being pushed)."""

    def __init__(self, handoff: Handoff | None) -> None:
        self.handoff = handoff
        self.sockets: dict[Address, socket.socket] = {}
        self.served: dict[str, Address] = {}  # listener name -> address, of the snapshot the workers serve
        self.version: Any = None
        self.generation = 0  # bumped whenever the set of sockets changes: a worker behind it gets the new set

    def restore(self, state_dir: str | None) -> None:
        """At start: the listeners of the snapshot the workers will restore (`--state-dir`), opened now so the
        workers start on the shared sockets (the supervisor's kept ones among them)."""
        doc: Any = None
        if state_dir:
            try:
                doc = json.loads((Path(state_dir) / SNAPSHOT_FILE).read_text())
            except (OSError, ValueError):
                doc = None
        names = listener_addresses(doc, {}, None) if doc is not None else None
        if names:
            self.served, self.version = names, doc.get("version")
            self.open(names.values())
        self.drop_unwanted()  # kept sockets no restored listener wants go back to the supervisor

    def open(self, addresses: Iterable[Address]) -> bool:
        """Open (or take from the supervisor) every address not open yet; True when any was."""
        opened = False
        for addr in addresses:
            if addr in self.sockets:
                continue
            sock = self.handoff.take(addr) if self.handoff is not None else None
            if sock is None:
                try:
                    sock = _bind(addr)
                except OSError as exc:  # the workers try to bind it themselves and NACK with their reason
                    log.warning("cannot open %s:%s for the workers: %s", addr[0], addr[1], exc)
                    continue
                if self.handoff is not None:
                    self.handoff.hold(addr, [sock])
            self.sockets[addr] = sock
            opened = True
        if opened:
            self.generation += 1
        return opened

    def follow(self, doc: Any) -> dict[str, Address] | None:
        """Before a push: the listeners `doc` asks for (None: cannot be told), their sockets opened."""
        names = listener_addresses(doc, self.served, self.version)
        if names is not None:
            self.open(names.values())
        return names

    def served_now(self, names: dict[str, Address] | None, version: Any) -> None:
        """The workers took the pushed snapshot (its listeners `names`, when they could be told)."""
        if names is not None:
            self.served, self.version = names, version

    def drop_unwanted(self) -> bool:
        """Close the sockets the served snapshot no longer listens on; True when any was."""
        wanted = set(self.served.values())
        dropped = False
        for addr in [a for a in self.sockets if a not in wanted]:
            self.sockets.pop(addr).close()
            if self.handoff is not None:
                self.handoff.release(addr)
            dropped = True
        if self.handoff is not None:
            self.handoff.release_unclaimed()
        if dropped:
            self.generation += 1
        return dropped

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()


class ProvidedSockets:
    """A worker's side, in the shape `ProxyServer` uses for the supervisor's handoff: `take` gives a duplicate of
    the shared socket for an address (the worker's server owns and closes the duplicate; the shared one stays)."""

    def __init__(self, sockets: dict[Address, socket.socket] | None = None) -> None:
        self.sockets: dict[Address, socket.socket] = sockets or {}

    def replace(self, sockets: dict[Address, socket.socket]) -> None:
        for addr, sock in self.sockets.items():
            if sockets.get(addr) is not sock:
                sock.close()
        self.sockets = sockets

    def take(self, addr: Address) -> socket.socket | None:
        sock = self.sockets.get(addr)
        return sock.dup() if sock is not None else None

    def hold(self, addr: Address, sockets: Sequence[Any]) -> None:
        """The primary holds the shared sockets: nothing to do."""

    def release(self, addr: Address) -> None:
        """The primary closes a shared socket when no snapshot wants it: nothing to do."""

    def release_unclaimed(self) -> None:
        """Nothing was inherited: nothing to do."""


def _bind(addr: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
