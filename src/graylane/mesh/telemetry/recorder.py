"""Counters scraped over time, and Prometheus-like `increase`/`rate` over a trailing window."""

from __future__ import annotations

import bisect
import time
from collections import deque

from graylane.mesh.telemetry.series import Labels, Series


class Recorder:
    """Keeps timestamped scrapes for `retention` seconds.

    `increase(name, window)` compares the newest scrape with the last one taken at or before the
    window's start (or the oldest one, while the recorder is younger than the window). A series that
    did not exist at that baseline counts from zero. A counter that went down, or vanished, between two
    scrapes was reset (a restarted data plane): as Prometheus does, the increase up to the reset is kept
    and counting restarts from zero. Resets are found when a scrape is added (one comparison with the
    previous scrape), so `increase` only walks the scrapes where one happened.
    """

    def __init__(self, retention: float = 900.0) -> None:
        self.retention = retention
        # When the counters' process started (all counters were zero then): lets a recorder younger than
        # the window count what happened between that start and its first scrape.
        self.origin: float | None = None
        self._times: deque[float] = deque()
        self._scrapes: deque[Series] = deque()
        self._resets: deque[dict[str, frozenset[Labels]]] = deque()  # per scrape: series reset since the previous
        # One label tuple per series, shared by every scrape that has it: the scrapes hold floats and pointers,
        # not a copy of each series' labels a second (a quarter of the memory at 1,000 series and 15 minutes).
        self._keys: dict[Labels, Labels] = {}
        self._adds = 0

    def _shared(self, series: Series) -> Series:
        keys = self._keys
        out: Series = {}
        for name, rows in series.items():
            out[name] = {keys.setdefault(labels, labels): value for labels, value in rows.items()}
        self._adds += 1
        if self._adds % 60 == 0:  # forget series gone from the newest scrape (they get a new tuple if they return)
            self._keys = {labels: labels for rows in out.values() for labels in rows}
        return out

    def add(self, series: Series, at: float | None = None) -> None:
        now = time.time() if at is None else at
        series = self._shared(series)
        resets: dict[str, frozenset[Labels]] = {}
        if self._scrapes:
            previous = self._scrapes[-1]
            for name, rows in previous.items():
                current = series.get(name, {})
                gone = frozenset(lab for lab, value in rows.items() if current.get(lab, 0.0) < value)
                if gone:
                    resets[name] = gone
        self._times.append(now)
        self._scrapes.append(series)
        self._resets.append(resets)
        while self._times and self._times[0] < now - self.retention:
            self._times.popleft()
            self._scrapes.popleft()
            self._resets.popleft()

    def snapshot(self) -> tuple[list[float], list[Series]]:
        """Every kept scrape and its time, oldest first (a query reads these while scrapes go on)."""
        return list(self._times), list(self._scrapes)

    @property
    def latest(self) -> Series:
        return self._scrapes[-1] if self._scrapes else {}

    @property
    def latest_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def _baseline(self, window: float, now: float) -> int:
        times = list(self._times)
        i = bisect.bisect_right(times, now - window) - 1
        return max(i, 0)

    def _end(self, now: float) -> int:
        """The newest scrape taken at or before `now` (a past query time, as Kiali's `queryTime`)."""
        return max(bisect.bisect_right(list(self._times), now) - 1, 0)

    def increase(self, name: str, window: float, now: float | None = None) -> tuple[dict[Labels, float], float]:
        """Per-series increase of counter `name` over the window ending at `now` (default: the newest scrape),
        and the seconds actually covered (between the two scrapes compared)."""
        if not self._scrapes:
            return {}, 0.0
        end_i = len(self._times) - 1 if now is None else self._end(now)
        now = self._times[-1] if now is None else now
        base_i = min(self._baseline(window, now), end_i)
        base, last = self._scrapes[base_i].get(name, {}), self._scrapes[end_i].get(name, {})
        covered = self._times[end_i] - self._times[base_i]
        if (base_i == 0 and self.origin is not None and now - window <= self.origin <= self._times[0]
                and not self._resets[0]):
            # Younger than the window, and the data plane started inside it: count from zero at its start.
            base, covered = {}, self._times[end_i] - self.origin
        # Where a series was reset inside the window: (scrape index, labels), oldest first.
        reset_at: dict[Labels, list[int]] = {}
        for i in range(base_i + 1, end_i + 1):
            for labels in self._resets[i].get(name, ()):
                reset_at.setdefault(labels, []).append(i)
        out: dict[Labels, float] = {}
        for labels in set(last) | set(reset_at):
            start = base.get(labels, 0.0)
            delta = 0.0
            for i in reset_at.get(labels, ()):
                delta += max(self._scrapes[i - 1].get(name, {}).get(labels, 0.0) - start, 0.0)
                start = 0.0  # the counter restarted from zero before scrape i
            delta += max(last.get(labels, 0.0) - start, 0.0)
            if delta > 0:
                out[labels] = delta
        return out, covered

    def rate(self, name: str, window: float, now: float | None = None) -> dict[Labels, float]:
        inc, covered = self.increase(name, window, now)
        span = covered if covered > 0 else window
        return {labels: v / span for labels, v in inc.items()}
