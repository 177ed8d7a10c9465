"""What the supervisor (runtime) and the data-plane process (mesh.proxy) agree on without importing each other.

The state files they share, and the listening-socket handoff: the environment a data plane reads its inherited
sockets from, and the message a warm standby is activated with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

DATAPLANE_FILE = "dataplane.json"  # written by `graylane up`: {"admin_port", "pid", ...}
SNAPSHOT_FILE = "proxy-snapshot.json"  # the last snapshot the data plane ACKed, in its state folder
ENV_CHANNEL = "GRAYLANE_LISTEN_CHANNEL"  # the supervisor's end of the socket-keeping channel (a descriptor)
ENV_FDS = "GRAYLANE_LISTEN_FDS"  # JSON [[host, port, fd], ...]: listening sockets kept across restarts
MAX_WORKERS = 256  # the data plane's `--concurrency` bound
WORKERS_FILE = "workers"  # in the local mesh's data-plane folder: `graylane up --proxy-workers N` (default 1)


def activation_message(env: Mapping[str, str], fds: Sequence[int]) -> bytes:
    """What the supervisor sends a standby along with the descriptors [log, *fds]: the handoff environment as
    the supervisor numbered the descriptors, and that numbering."""
    return json.dumps({"env": dict(env), "fds": list(fds)}).encode()
