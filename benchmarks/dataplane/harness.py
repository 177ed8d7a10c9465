"""Shared pieces of the data-plane benchmark and soak: nginx upstreams, the proxy process, snapshots, wrk."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from graylane.mesh.config import compile_snapshot  # noqa: E402
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar  # noqa: E402

BODY = json.dumps({"id": 0, "podname": "bench", "reviews": [{"reviewer": "Reviewer1", "text": "An extremely "
                                                             "entertaining play by Shakespeare."}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """Debian nginx (1 worker): `upstream_ports` serve BODY; optionally a reverse proxy to the first one."""

    def __init__(self, upstream_ports: list[int], proxy_port: int | None = None, cpu: str = "0") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gl-nginx-"))
        servers = "".join(f"""
    server {{ listen 127.0.0.1:{p} reuseport; access_log off; keepalive_requests 1000000;
      location / {{ default_type application/json; return 200 '{BODY}'; }} }}""" for p in upstream_ports)
        if proxy_port:
            servers += f"""
    upstream app {{ server 127.0.0.1:{upstream_ports[0]}; keepalive 64; }}
    server {{ listen 127.0.0.1:{proxy_port}; access_log off; keepalive_requests 1000000;
      location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{ client_body_temp_path {self.dir}; proxy_temp_path {self.dir}; fastcgi_temp_path {self.dir};
  uwsgi_temp_path {self.dir}; scgi_temp_path {self.dir}; {servers} }}
""")
        self.proc = subprocess.Popen(["taskset", "-c", cpu, "nginx", "-p", str(self.dir), "-c",
                                      str(self.dir / "nginx.conf")], stderr=subprocess.DEVNULL)
        for p in [*upstream_ports, *([proxy_port] if proxy_port else [])]:
            wait_port(p)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_port(port: int, timeout: float = 10) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


ALL_CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


class Proxy:
    """`graylane proxy` as its own process, pinned to `cpu`; `concurrency` > 1: that many worker processes
    (all on `cpu`, which then names several CPUs) behind a primary holding the admin port."""

    def __init__(self, cpu: str = "0", concurrency: int = 1) -> None:
        self.admin = free_port()
        self.concurrency = concurrency
        self.proc = subprocess.Popen(["taskset", "-c", cpu, sys.executable, "-m", "graylane.mesh.proxy",
                                      "--admin-port", str(self.admin), "--log-level", "warning",
                                      "--concurrency", str(concurrency)],
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        wait_port(self.admin, timeout=60)

    def pids(self) -> list[int]:
        """The processes doing the work: the proxy, or the primary and its workers."""
        if self.concurrency == 1:
            return [self.proc.pid]
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/workers", timeout=10) as r:
            return [self.proc.pid, *(int(w["pid"]) for w in json.loads(r.read())["workers"])]

    def put(self, snapshot: dict) -> tuple[int, dict, float]:
        data = json.dumps(snapshot).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/config", data=data, method="PUT",
                                     headers={"content-type": "application/json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body, status = json.loads(r.read()), r.status
        except urllib.error.HTTPError as e:
            body, status = json.loads(e.read()), e.code
        return status, body, time.perf_counter() - t0

    def rss_mb(self, pid: int | None = None) -> float:
        # taskset execs python in place, so the pid is the proxy's (the primary's, with workers).
        for line in Path(f"/proc/{pid or self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def worker_rss_mb(self) -> float:
        """The largest RSS of the processes serving traffic (the proxy itself with one worker)."""
        return max(self.rss_mb(pid) for pid in self.pids()[(self.concurrency > 1):])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def canary_resources(weight_v1: int = 90) -> list[dict]:
    """reviews with a header rule and a v1/v2 weighted split (the benchmark's route)."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"selector": {"app": "reviews"}, "ports": [{"port": 9080, "name": "http"}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                 {"name": "v2", "labels": {"version": "v2"}}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"hosts": ["reviews"], "http": [
             {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
              "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
             {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": weight_v1},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 100 - weight_v1}]}]}},
    ]


def canary_snapshot(ports: list[int], sidecar_port: int, version: int, weight_v1: int = 90) -> dict:
    eps = [Endpoint("default", f"reviews-{v}-0", {"app": "reviews", "version": v}, "127.0.0.1", p, 9080, True,
                    f"reviews-{v}") for v, p in zip(("v1", "v2"), ports, strict=False)]
    sc = Sidecar("default", "productpage-v1-0", {"app": "productpage", "version": "v1"}, sidecar_port,
                 "productpage-v1")
    return compile_snapshot(canary_resources(weight_v1), eps, [sc], MeshOptions(), version)


def _fixed_ports(start: int, n: int) -> list[int]:
    """Ports below the ephemeral range, so wrk's client sockets cannot take them meanwhile."""
    out = []
    port = start
    while len(out) < n:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                out.append(port)
            except OSError:
                pass
        port += 1
    return out


SIDECAR_PORTS = _fixed_ports(21000, 200)


COMPILED_MAX = 200  # beyond this, services are cloned from svc0's compiled entries (compiling 5,000 takes seconds)


def big_mesh_snapshot(n: int, version: int, flip: int = 0, flip_service: int = -1, listeners: int = 200) -> dict:
    """n services, each with a DestinationRule (2 subsets), a weighted VirtualService and 2 endpoints; the first
    `listeners` of them (at most 200) with a sidecar.

    `flip` shifts the weights of service `flip_service` (all services when -1), as one canary step would.
    Services past `COMPILED_MAX` are copies of svc0's compiled entries under their own names and ports (what the
    compiler makes of them, without compiling 5,000 services for every size and step).
    """
    if n > COMPILED_MAX:
        doc = big_mesh_snapshot(COMPILED_MAX, version, flip, flip_service, listeners)
        return _clone_services(doc, COMPILED_MAX, n, flip, flip_service)
    res: list[dict] = []
    eps: list[Endpoint] = []
    sidecars: list[Sidecar] = []
    base = 30000
    for i in range(n):
        name = f"svc{i}"
        f = flip if flip_service in (-1, i) else 0
        res += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
             "spec": {"selector": {"app": name}, "ports": [{"port": 9080, "name": "http"}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                {"name": "v2", "labels": {"version": "v2"}}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"hosts": [name], "http": [
                 {"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                  "route": [{"destination": {"host": name, "subset": "v2"}}]},
                 {"route": [{"destination": {"host": name, "subset": "v1"}, "weight": 90 - f},
                            {"destination": {"host": name, "subset": "v2"}, "weight": 10 + f}]}]}},
        ]
        for v in ("v1", "v2"):
            eps.append(Endpoint("default", f"{name}-{v}-0", {"app": name, "version": v}, "127.0.0.1",
                                base + 2 * i + (v == "v2"), 9080, True, f"{name}-{v}"))
        if i < min(listeners, len(SIDECAR_PORTS)):
            sidecars.append(Sidecar("default", f"{name}-v1-0", {"app": name, "version": "v1"}, SIDECAR_PORTS[i],
                                    f"{name}-v1"))
    return compile_snapshot(res, eps, sidecars, MeshOptions(), version)


def _clone_services(doc: dict, start: int, n: int, flip: int, flip_service: int) -> dict:
    fqdn = "svc0.default.svc.cluster.local"
    vs0 = next(v for v in doc["virtual_services"] if v["name"] == "svc0")
    template = json.dumps({"service": doc["services"][fqdn], "subsets": doc["subsets"][fqdn], "vs": vs0,
                           "clusters": {k: v for k, v in doc["clusters"].items() if k.endswith(f"|{fqdn}")}})
    for i in range(start, n):
        text = template.replace('"svc0', f'"svc{i}').replace("|svc0.", f"|svc{i}.").replace("svc0-", f"svc{i}-")
        text = text.replace("30000", str(30000 + 2 * i)).replace("30001", str(30001 + 2 * i))
        part = json.loads(text)
        name = f"svc{i}.default.svc.cluster.local"
        doc["services"][name] = part["service"]
        doc["subsets"][name] = part["subsets"]
        doc["virtual_services"].append(part["vs"])
        doc["clusters"].update(part["clusters"])
    if flip and (flip_service == -1 or flip_service >= start):
        for i in range(start, n) if flip_service == -1 else [flip_service]:
            doc = canary_step(doc, i, flip, doc["version"])
    return doc


def canary_step(document: dict, service: int, flip: int, version: int) -> dict:
    """`document` (a `big_mesh_snapshot`) with service `service`'s v1/v2 split moved by `flip` and a new version:
    what the compiler makes of one canary step, without compiling the whole mesh again. Shares the other entries.
    """
    out = dict(document, version=version)
    vss = list(out["virtual_services"])
    vs = next(i for i, v in enumerate(vss) if v["name"] == f"svc{service}")
    http = list(vss[vs]["http"])
    split = dict(http[1], route=[dict(http[1]["route"][0], weight=90 - flip),
                                 dict(http[1]["route"][1], weight=10 + flip)])
    http[1] = split
    vss[vs] = dict(vss[vs], http=http)
    out["virtual_services"] = vss
    return out


def wrk(url: str, seconds: int, connections: int = 50, headers: dict[str, str] | None = None,
        cpu: str = "1") -> dict:
    cmd = ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": rps, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0,
            "requests": int(total.group(1)) if total else 0, "raw": out}
