"""Instructions per proxied request, counted by valgrind's callgrind: a deterministic A/B for hot-path work.

Usage: .venv/bin/python benchmarks/dataplane/instructions.py [--requests 2000] [--compare GIT-REF ...]

CPU time per request on this 2-core VM moves by +-15% from run to run (the kernel's loopback work, the other
CPU's load), which hides a 5% change. Callgrind counts the user-space instructions the proxy process executes
(Python, uvloop, httptools, libc; not the kernel) for the same requests, to within 0.1% from run to run. The
proxy runs under callgrind with instrumentation off; the benchmark's route is pushed (header match + 90/10 split,
metrics on, as in run.py); 500 requests warm it up; instrumentation is switched on for `--requests` requests
sent one at a time over 4 keep-alive connections (the nginx upstream answers the same small JSON), then off.

`--compare REF` measures the tree of each git ref too (a temporary `git worktree`, the proxy started with
`PYTHONPATH` on its `src/`), side by side with the working tree. Prints one line per tree; asserts nothing.
It measures work, not time: syscalls and waiting are not in it (run.py measures those).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, Nginx, canary_snapshot, free_port, wait_port  # noqa: E402

REQUEST = b"GET /reviews/0 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: wrk\r\n\r\n"


def _send(conns: list[socket.socket], n: int) -> None:
    for i in range(n):
        s = conns[i % len(conns)]
        s.sendall(REQUEST)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += s.recv(65536)


def _total_instructions(out_prefix: Path) -> int:
    total = 0
    for f in out_prefix.parent.glob(out_prefix.name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def measure(src: Path, requests: int, workdir: Path) -> int:
    """User-space instructions per proxied request of the proxy whose code is under `src`."""
    up1, up2, sidecar, admin = free_port(), free_port(), free_port(), free_port()
    upstream = Nginx([up1, up2], cpu="1")
    out = workdir / f"callgrind.{os.getpid()}.{time.monotonic_ns()}"
    # One process (trees from before workers have no --concurrency, and run one).
    one = ["--concurrency", "1"] if (src / "graylane" / "mesh" / "proxy" / "workers.py").exists() else []
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
         "-m", "graylane.mesh.proxy", "--admin-port", str(admin), "--log-level", "warning", *one],
        env={**os.environ, "PYTHONPATH": str(src)}, stderr=subprocess.DEVNULL)
    conns: list[socket.socket] = []
    try:
        wait_port(admin, timeout=300)
        data = json.dumps(canary_snapshot([up1, up2], sidecar, 1)).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{admin}/config", data=data, method="PUT",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=120).read()
        wait_port(sidecar, timeout=60)
        conns = [socket.create_connection(("127.0.0.1", sidecar)) for _ in range(4)]
        _send(conns, 500)  # warm-up: imports, caches, pools
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
        _send(conns, requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        for c in conns:
            c.close()
        proc.terminate()
        proc.wait(60)
        upstream.stop()
    return _total_instructions(out) // requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--compare", nargs="*", default=[], metavar="GIT-REF",
                    help="also measure these commits' trees (git worktrees), before the working tree")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind nginx-light)")
    with tempfile.TemporaryDirectory(prefix="gl-instr-") as tmp:
        workdir = Path(tmp)
        trees: list[tuple[str, Path]] = []
        for ref in args.compare:
            wt = workdir / f"tree-{len(trees)}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(wt), ref],
                           capture_output=True, check=True)
            trees.append((ref, wt / "src"))
        trees.append(("working tree", ROOT / "src"))
        print(f"user-space instructions per proxied request (callgrind, {args.requests} requests, the run.py route)")
        try:
            for name, src in trees:
                print(f"  {name:<24} {measure(src, args.requests, workdir):>9,}", flush=True)
        finally:
            for _, src in trees[:-1]:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(src.parent)],
                               capture_output=True)


if __name__ == "__main__":
    main()
