"""Data-plane benchmark: direct vs nginx reverse proxy vs the Graylane proxy; prints one table, asserts nothing.

Usage: .venv/bin/python benchmarks/dataplane/run.py [--seconds 10] [--rate 1000]
Layout on this 2-core machine: the subject (nginx proxy or Graylane) on CPU 0; wrk, the latency client and the
upstream nginx on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ALL_CPUS, Nginx, Proxy, canary_snapshot, free_port, wait_port, wrk  # noqa: E402
from push import PushResult, push_sizes  # noqa: E402

Latency = tuple[list[float], list[float]]  # (ms from the request's write, ms from its scheduled time)


async def fixed_rate(port: int, host: str, rate: int, seconds: float, conns: int = 16) -> Latency:
    """Open-loop client: one request every 1/rate s over keep-alive connections. Each latency twice: from the
    moment the request is written (as Fortio, Istio's load tool, measures its published figures), and from the
    time it was due (which adds the client's own lateness: uvloop's timers wake on whole milliseconds)."""
    import uvloop  # noqa: F401

    request = f"GET /reviews/0 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(conns):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    lat: list[float] = []
    late: list[float] = []
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution

    async def one(due: float) -> None:
        r, w = await idle.get()
        sent = clock()
        w.write(request)
        head = await r.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await r.readexactly(length)
        done = clock()
        lat.append((done - sent) * 1000)
        late.append((done - due) * 1000)
        idle.put_nowait((r, w))

    start = clock() + 0.05
    n = int(rate * seconds)
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return lat[int(len(lat) * 0.1):], late[int(len(late) * 0.1):]  # drop warm-up


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def latency(port: int, host: str, rate: int, seconds: float) -> Latency:
    import uvloop

    os.sched_setaffinity(0, {1})
    return uvloop.run(fixed_rate(port, host, rate, seconds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--sizes", default="100,1000,5000",
                    help="mesh sizes (services) for push -> ACK and RSS; the first is the target's (100)")
    args = ap.parse_args()

    up1, up2, nginx_proxy, sidecar = free_port(), free_port(), free_port(), free_port()
    upstream = Nginx([up1, up2], cpu="1")
    reverse = _reverse_only(up1, nginx_proxy)
    proxy = Proxy(cpu="0")
    n_workers = len(os.sched_getaffinity(0))  # --concurrency's default on this machine
    rows = []
    try:
        status, body, _ = proxy.put(canary_snapshot([up1, up2], sidecar, 1))
        assert status == 200, body
        wait_port(sidecar)
        host = "reviews:9080"
        targets = [("direct (nginx upstream)", up1, "localhost"), ("nginx reverse proxy", nginx_proxy, "localhost"),
                   ("graylane proxy (90/10 + header match)", sidecar, host)]
        pids = {nginx_proxy: _worker_pid(reverse), sidecar: proxy.proc.pid}
        for name, port, h in targets:
            wrk(f"http://127.0.0.1:{port}/reviews/0", 2, headers={"Host": h})  # warm up
            pid = pids.get(port)
            c0 = cpu_seconds(pid) if pid else 0.0
            res = wrk(f"http://127.0.0.1:{port}/reviews/0", args.seconds, headers={"Host": h})
            if pid:
                res["cpu_us"] = (cpu_seconds(pid) - c0) / max(1, res["requests"]) * 1e6
            lat = latency(port, h, args.rate, min(args.seconds, 10))
            rows.append((name, res, lat))
        rows.append(workers_row(up1, up2, args, n_workers))  # after the 1-process rows: rows[2] stays graylane's
        rss = proxy.rss_mb()
    finally:
        proxy.stop()
        reverse.stop()
        upstream.stop()
    pushes = push_sizes([int(n) for n in args.sizes.split(",")])  # each size in a fresh proxy process

    direct = rows[0][2]
    print(f"\nGraylane data plane benchmark — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}; Python "
          f"{platform.python_version()}; nginx 1 worker; wrk -t1 -c50 -d{args.seconds}s; latency at "
          f"{args.rate} req/s (open loop, 16 keep-alive connections, from each request's write); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("layout: subject on CPU 0; wrk, latency client and upstream nginx on CPU 1; except the "
          f"'{n_workers} workers' row: its workers on CPUs {ALL_CPUS}, sharing CPU 1 with wrk, client and upstream")
    print(f"load: wrk -t1 -c50 -d{args.seconds}s --latency -H 'Host: reviews:9080' http://127.0.0.1:PORT/reviews/0\n")
    hdr = (f"{'path':<40} {'req/s':>9} {'cpu us/rq':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
           f"{'+p50':>7} {'+p90':>7} {'+p99':>7}")
    print(hdr)
    print("-" * len(hdr))
    for name, res, (lat, _) in rows:
        added = [pct(lat, p) - pct(direct[0], p) for p in (50, 90, 99)]
        cpu = f"{res['cpu_us']:.0f}" if res.get("cpu_us") else "-"
        print(f"{name:<40} {res['rps']:>9.0f} {cpu:>9} {pct(lat, 50):>8.3f} {pct(lat, 90):>8.3f} "
              f"{pct(lat, 99):>8.3f} {added[0]:>7.3f} {added[1]:>7.3f} {added[2]:>7.3f}")
    ratio = rows[2][1]["rps"] / rows[1][1]["rps"]
    g = rows[2][2]
    p90, p99 = pct(g[0], 90) - pct(direct[0], 90), pct(g[0], 99) - pct(direct[0], 99)
    late90, late99 = pct(g[1], 90) - pct(direct[1], 90), pct(g[1], 99) - pct(direct[1], 99)
    print()
    print(f"cpu per proxied request           : {rows[2][1].get('cpu_us', 0):.0f} us   (target <= 40 us; "
          f"nginx {rows[1][1].get('cpu_us', 0):.0f} us)")
    print(f"throughput graylane / nginx proxy : {ratio:.2f}x per core   (target >= 0.5x)")
    print(f"req/s with 1 / {n_workers} workers          : {rows[2][1]['rps']:.0f} / {rows[-1][1]['rps']:.0f} "
          f"({rows[-1][1]['rps'] / rows[2][1]['rps']:.2f}x; the whole data plane on every core)")
    print(f"added latency p90 / p99 vs direct : {p90:.3f} / {p99:.3f} ms   (target <= 0.3 / 1 ms; "
          "Istio 1.20 publishes 0.228 / 0.298 ms for two Envoy hops)")
    print(f"  the same from the scheduled time: {late90:.3f} / {late99:.3f} ms   (direct p90 {pct(direct[1], 90):.3f} "
          f"ms against {pct(direct[0], 90):.3f} ms from the write: the client's own timer lateness)")
    print(f"proxy RSS                         : {rss:.1f} MB after load   (target <= 60 MB per worker at 100 "
          "services)")
    print_pushes(pushes)
    print("errors: " + "; ".join(f"{n}: non-2xx {r['non2xx']}, socket {r['socket_errors']}" for n, r, _ in rows))


def print_pushes(pushes: list[PushResult]) -> None:
    """Push -> ACK (one canary step, sent as the control plane sends it: a delta) and RSS per mesh size."""
    print("snapshot push -> ACK, one canary step (a delta against the ACKed version, as the control plane "
          "sends it), 50 steps; target p99 <= 10 ms at 100 services (aim <= 50 ms at 1,000):")
    print(f"  {'services':>8} {'listeners':>9} {'first ms':>9} {'step p50':>9} {'step p99':>9} {'full p50':>9} "
          f"{'diff ms':>8} {'RSS MB':>7}")
    for p in pushes:
        print(f"  {p.services:>8} {p.listeners:>9} {p.first_ms:>9.1f} {p.p50_ms:>9.1f} {p.p99_ms:>9.1f} "
              f"{p.full_p50_ms:>9.1f} {p.diff_ms:>8.1f} {p.rss_mb:>7.1f}")
    print("  (full p50: the same step as a whole document; diff ms: the control plane's make_delta, not in the ACK "
          "time; RSS: the proxy with that mesh, target <= 60 MB at 100)")


def workers_row(up1: int, up2: int, args: argparse.Namespace, n: int) -> tuple[str, dict, Latency]:
    """The benchmark's route through `--concurrency n` on every CPU; CPU per request summed over its processes."""
    many = Proxy(cpu=ALL_CPUS, concurrency=n)
    try:
        port, host = free_port(), "reviews:9080"
        status, body, _ = many.put(canary_snapshot([up1, up2], port, 1))
        assert status == 200, body
        wait_port(port)
        url = f"http://127.0.0.1:{port}/reviews/0"
        wrk(url, 2, headers={"Host": host})  # warm up
        pids = many.pids()
        c0 = sum(cpu_seconds(p) for p in pids)
        res = wrk(url, args.seconds, headers={"Host": host})
        res["cpu_us"] = (sum(cpu_seconds(p) for p in pids) - c0) / max(1, res["requests"]) * 1e6
        return f"graylane proxy, {n} workers", res, latency(port, host, args.rate, min(args.seconds, 10))
    finally:
        many.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _reverse_only(upstream_port: int, proxy_port: int) -> Nginx:
    """nginx as a reverse proxy only (its own 'upstream' server block is an unused dummy port)."""
    n = Nginx.__new__(Nginx)
    import subprocess
    import tempfile

    from harness import wait_port as _wait

    n.dir = Path(tempfile.mkdtemp(prefix="gl-nginx-rp-"))
    (n.dir / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {n.dir}/nginx.pid; error_log {n.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{ client_body_temp_path {n.dir}; proxy_temp_path {n.dir}; fastcgi_temp_path {n.dir};
  uwsgi_temp_path {n.dir}; scgi_temp_path {n.dir};
  upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{proxy_port}; access_log off; keepalive_requests 1000000;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    n.proc = subprocess.Popen(["taskset", "-c", "0", "nginx", "-p", str(n.dir), "-c", str(n.dir / "nginx.conf")],
                              stderr=subprocess.DEVNULL)
    _wait(proxy_port)
    return n


def _worker_pid(n: Nginx) -> int | None:
    """nginx's single worker (the one doing the proxying)."""
    try:
        out = Path(f"/proc/{n.proc.pid}/task/{n.proc.pid}/children").read_text().split()
        return int(out[0]) if out else None
    except OSError:
        return None


if __name__ == "__main__":
    main()
