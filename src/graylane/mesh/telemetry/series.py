"""Prometheus text exposition parsed into plain series: {metric name: {label tuple: value}}."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: hashable and canonical
Series = dict[str, dict[Labels, float]]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def parse_text(text: str, only: Iterable[str] | None = None) -> Series:
    """Parse a scrape. `only` keeps the named sample names (e.g. `istio_requests_total`)."""
    wanted = set(only) if only is not None else None
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if wanted is not None and sample.name not in wanted:
                continue
            out.setdefault(sample.name, {})[labels_of(sample.labels)] = float(sample.value)
    return out


def merge(into: Series, other: Series) -> Series:
    """Add `other`'s series to `into` (several data-plane processes feed one view)."""
    for name, rows in other.items():
        target = into.setdefault(name, {})
        for labels, value in rows.items():
            target[labels] = target.get(labels, 0.0) + value
    return into
