"""The outlier detector on a hand-driven clock (uvicorn's MockLoop habit): Envoy's interval sweep, the ejection
multiplier going up with each ejection and down with each healthy interval, max_ejection_time."""

from __future__ import annotations

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.outlier import ClusterDetector, OutlierDetectors
from graylane.mesh.routing import Cluster, ClusterEndpoint, ClusterPolicy, OutlierPolicy


class Timer:
    def __init__(self, when: float, callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """`time()` and `call_later()` only; `advance(s)` fires due timers in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback) -> Timer:
        timer = Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while due := sorted((t for t in self.timers if not t.cancelled and t.when <= end), key=lambda t: t.when):
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback()
        self.now = end


_LOADS: dict[int, tuple[Cluster, LoadState]] = {}


def load_of(c: Cluster) -> LoadState:
    """The balancer state the detectors write a cluster's host health into (one per test's cluster)."""
    return _LOADS.setdefault(id(c), (c, LoadState()))[1]


def cluster(n: int = 1, **outlier) -> Cluster:
    name = "outbound|80||h.default.svc.cluster.local"
    eps = tuple(ClusterEndpoint((name, f"127.0.0.1:{9000 + i}"), f"127.0.0.1:{9000 + i}", "127.0.0.1", 9000 + i,
                                f"p{i}", "default", {}, "w", "sa") for i in range(n))
    policy = OutlierPolicy(**{"consecutive_5xx": 1, "interval_s": 10.0, "base_ejection_s": 30.0,
                              "max_ejection_percent": 100.0, **outlier})
    return Cluster.build(name, "h.default.svc.cluster.local", 80, "", ClusterPolicy(outlier=policy), eps)


def test_a_host_returns_at_the_first_interval_tick_after_its_ejection_time():
    loop = ManualLoop()
    c = cluster()
    ep = c.endpoints[0]
    det = ClusterDetector(loop, c, c.policy.outlier, load_of(c))
    loop.advance(5)
    assert det.record(ep, 503)
    assert not load_of(c).is_healthy(ep, loop.time())
    loop.advance(30)  # t=35: 30 s are over, but no sweep since t=30
    assert not load_of(c).is_healthy(ep, loop.time())
    loop.advance(5)  # t=40: the sweep returns it
    assert load_of(c).is_healthy(ep, loop.time())


def test_the_ejection_multiplier_grows_per_ejection_and_shrinks_per_healthy_interval():
    loop = ManualLoop()
    c = cluster()
    ep = c.endpoints[0]
    det = ClusterDetector(loop, c, c.policy.outlier, load_of(c))
    det.record(ep, 500)  # t=0, 30 s
    loop.advance(30)
    assert load_of(c).is_healthy(ep, loop.time())
    det.record(ep, 500)  # t=30, ejected again: 2 x 30 s
    assert det.remaining_s(ep) == 60
    loop.advance(60)
    assert load_of(c).is_healthy(ep, loop.time())  # t=90
    loop.advance(20)  # two healthy sweeps: multiplier 2 -> 0
    det.record(ep, 500)
    assert det.remaining_s(ep) == 30
    assert load_of(c).host(ep).times_ejected == 3


def test_ejection_time_stops_growing_at_max_ejection_time():
    loop = ManualLoop()
    c = cluster(base_ejection_s=200.0)
    ep = c.endpoints[0]
    det = ClusterDetector(loop, c, c.policy.outlier, load_of(c))
    for _ in range(4):
        det.record(ep, 500)
        assert det.remaining_s(ep) <= 300  # Envoy's max_ejection_time default
        loop.advance(300)
        assert load_of(c).is_healthy(ep, loop.time())


def test_successes_reset_the_consecutive_count_and_gateway_errors_count_separately():
    loop = ManualLoop()
    c = cluster(consecutive_5xx=0, consecutive_gateway=2)
    ep = c.endpoints[0]
    det = ClusterDetector(loop, c, c.policy.outlier, load_of(c))
    assert not det.record(ep, 502)
    assert not det.record(ep, 200)
    assert not det.record(ep, 503)
    assert not det.record(ep, 500)  # a 500 is not a gateway error: the gateway count starts over
    assert not det.record(ep, 504)
    assert det.record(ep, 502)


def test_a_snapshot_without_outlier_detection_returns_every_host():
    loop = ManualLoop()
    c = cluster(n=2)
    dets = OutlierDetectors(loop, load_of(c))
    dets.follow({c.name: c})
    assert dets.record(c, c.endpoints[0], 503)
    plain = Cluster.build(c.name, c.service, c.port, "", ClusterPolicy(), c.endpoints)
    dets.follow({c.name: plain})
    assert all(load_of(c).is_healthy(ep, loop.time()) and load_of(c).host(ep).times_ejected == 0 for ep in c.endpoints)
    assert not dets.by_cluster and all(t.cancelled for t in loop.timers)
