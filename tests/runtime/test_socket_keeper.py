"""Listening sockets kept across a data-plane restart: the supervisor's keeper and the proxy's handoff together.

In one process: descriptors a child would inherit are duplicated here, as `pass_fds` would give them.
"""

from __future__ import annotations

import json
import os
import socket

from graylane.mesh.proxy.handoff import ENV_CHANNEL, ENV_FDS, Handoff
from graylane.runtime.socket_keeper import SocketKeeper


def inherit(env: dict[str, str]) -> dict[str, str]:
    """The environment a child sees: the same names, its own copies of the descriptors."""
    fds = [[host, port, os.dup(fd)] for host, port, fd in json.loads(env[ENV_FDS])]
    return {ENV_CHANNEL: str(os.dup(int(env[ENV_CHANNEL]))), ENV_FDS: json.dumps(fds)}


def listening() -> tuple[socket.socket, tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, ("127.0.0.1", sock.getsockname()[1])


def test_a_connection_made_while_the_data_plane_is_dead_is_accepted_by_the_next_one() -> None:
    keeper = SocketKeeper()
    env, _fds, theirs = keeper.spawn_args()
    first = Handoff.from_environ(inherit(env))
    theirs.close()
    assert first is not None and first.inherited == {}
    sock, addr = listening()
    first.hold(addr, [sock])
    keeper.drain()
    assert list(keeper.held) == [addr]

    sock.close()  # the data plane dies...
    assert first.channel is not None
    first.channel.close()
    client = socket.create_connection(addr, timeout=5)  # ...and the port still takes connections
    client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")

    env, _fds, theirs = keeper.spawn_args()  # the next data plane
    second = Handoff.from_environ(inherit(env))
    theirs.close()
    assert second is not None
    taken = second.take(addr)
    assert taken is not None
    conn, _ = taken.accept()
    assert conn.recv(100).startswith(b"GET / HTTP/1.1")
    for s in (conn, client, taken):
        s.close()
    keeper.close()


def test_released_and_unclaimed_listeners_free_their_ports() -> None:
    keeper = SocketKeeper()
    env, _fds, theirs = keeper.spawn_args()
    handoff = Handoff.from_environ(inherit(env))
    theirs.close()
    assert handoff is not None
    a, addr_a = listening()
    b, addr_b = listening()
    handoff.hold(addr_a, [a])
    handoff.hold(addr_b, [b])
    handoff.release(addr_a)  # the snapshot dropped listener a
    keeper.drain()
    assert list(keeper.held) == [addr_b]
    a.close()
    with socket.socket() as again:
        again.bind(addr_a)  # nobody keeps it bound

    b.close()
    env, _fds, theirs = keeper.spawn_args()
    restarted = Handoff.from_environ(inherit(env))
    theirs.close()
    assert restarted is not None and list(restarted.inherited) == [addr_b]
    restarted.release_unclaimed()  # the restored snapshot did not want b
    keeper.drain()
    assert keeper.held == {}
    with socket.socket() as again:
        again.bind(addr_b)
    keeper.close()


def test_without_a_supervisor_the_data_plane_binds_on_its_own() -> None:
    assert Handoff.from_environ({}) is None
