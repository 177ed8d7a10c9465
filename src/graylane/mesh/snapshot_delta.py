"""Snapshot deltas: what changed between two compiled snapshot documents, and applying it to the base.

A delta is the wire form of an incremental push (issue #17): the control plane sends only the entries that
changed since the version the data plane ACKed, so one canary step in a big mesh costs what one service costs.

    {"delta": 1, "version": V, "base_version": B,
     "set":    {section: {key: entry}},   # keyed sections: entries added or changed
     "remove": {section: [key, ...]},      # keyed sections: entries gone
     "order":  {section: [key, ...]},      # list sections whose membership or order changed
     "replace": {name: value}}             # whole small sections (options, warnings, ...) that changed

Keyed sections are `services`, `subsets`, `clusters` (JSON objects) and `virtual_services` (key
`namespace/name`) and `listeners` (key `name`), which are lists whose order matters (the oldest
VirtualService wins a host). A delta applies only to the document of version `base_version`; anything else is
refused (`DeltaError`), and the control plane then sends the whole document (Envoy's incremental xDS resends the
state of the world after a NACK the same way). Knows JSON documents only: no routing, sockets or store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from graylane.mesh.snapshot import Snapshot, SnapshotError, decode_snapshot

MAPS = ("services", "subsets", "clusters")
LISTS = ("virtual_services", "listeners")
SECTIONS = MAPS + LISTS
MAX_ENTRIES = 100_000  # per section, in a delta or a base: hostile input is bounded
DELTA_BASE_PREFIX = "delta base version"  # a NACK reason starting so asks for the whole document


class DeltaError(SnapshotError):
    """A delta that cannot be applied (bad shape, or not made against the current version)."""


def list_key(section: str, entry: object) -> str:
    """The key of an entry of a list section (`namespace/name` for VirtualServices, `name` for listeners)."""
    if not isinstance(entry, dict):  # JSON objects (an ABC check would cost more than the rest)
        raise DeltaError(f"{section}: entries must be objects")
    if section == "virtual_services":
        return f"{entry.get('namespace') or ''}/{entry.get('name') or ''}"
    return str(entry.get("name") or "")


def _keyed(section: str, value: object) -> dict[str, Any]:
    if section in MAPS:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise DeltaError(f"{section}: expected an object")
        return dict(value)
    if value is None:
        return {}
    if not isinstance(value, list):
        raise DeltaError(f"{section}: expected a list")
    out: dict[str, Any] = {}
    for entry in value:
        key = list_key(section, entry)
        if key in out:
            raise DeltaError(f"{section}: duplicate entry {key!r}")
        out[key] = entry
    return out


def is_delta(document: object) -> bool:
    return isinstance(document, Mapping) and document.get("delta") == 1


def make_delta(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The delta that turns `base` into `new` (entries compared by value; unchanged ones are left out)."""
    delta: dict[str, Any] = {"delta": 1, "version": new.get("version"), "base_version": base.get("version"),
                             "set": {}, "remove": {}, "order": {}, "replace": {}}
    for section in SECTIONS:
        old_k, new_k = _keyed(section, base.get(section)), _keyed(section, new.get(section))
        changed = {k: v for k, v in new_k.items() if k not in old_k or old_k[k] is not v and old_k[k] != v}
        gone = [k for k in old_k if k not in new_k]
        if changed:
            delta["set"][section] = changed
        if gone:
            delta["remove"][section] = gone
        if section in LISTS and list(old_k) != list(new_k):
            delta["order"][section] = list(new_k)
    for name in set(base) | set(new):
        if name in SECTIONS or name == "version":
            continue
        if name not in new:
            delta["replace"][name] = None
        elif base.get(name) != new[name]:
            delta["replace"][name] = new[name]
    return delta


def apply_delta(base: Mapping[str, Any], delta: object) -> dict[str, Any]:
    """The whole document `delta` makes of `base` (unchanged entries are `base`'s own objects, shared).

    Raises `DeltaError` when `delta` is malformed or was not made against `base`'s version.
    """
    if not isinstance(delta, Mapping) or delta.get("delta") != 1:
        raise DeltaError("not a snapshot delta")
    version, base_version = delta.get("version"), delta.get("base_version")
    if not isinstance(version, int) or isinstance(version, bool) or not isinstance(base_version, int):
        raise DeltaError("a delta needs integer version and base_version")
    if base_version != base.get("version"):
        raise DeltaError(f"{DELTA_BASE_PREFIX} {base_version} is not the current version {base.get('version')}")
    parts = {}
    for part in ("set", "remove", "order", "replace"):
        value = delta.get(part) or {}
        if not isinstance(value, Mapping):
            raise DeltaError(f"delta.{part}: expected an object")
        parts[part] = value
    unknown = (set(parts["set"]) | set(parts["remove"]) | set(parts["order"])) - set(SECTIONS)
    if unknown:
        raise DeltaError(f"delta: unknown sections {sorted(unknown)}")
    doc: dict[str, Any] = dict(base)
    doc["version"] = version
    for name, value in parts["replace"].items():
        if name in SECTIONS or name in ("version", "delta", "base_version") or not isinstance(name, str):
            raise DeltaError(f"delta.replace: {name!r} cannot be replaced whole")
        if value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    for section in SECTIONS:
        sets, gone, order = (parts["set"].get(section) or {}, parts["remove"].get(section) or [],
                             parts["order"].get(section))
        if not sets and not gone and order is None:
            continue
        if not isinstance(sets, Mapping) or not isinstance(gone, list) or not (order is None
                                                                               or isinstance(order, list)):
            raise DeltaError(f"delta: malformed {section} entries")
        if len(sets) + len(gone) > MAX_ENTRIES or (order is not None and len(order) > MAX_ENTRIES):
            raise DeltaError(f"delta: too many {section} entries")
        entries = _keyed(section, base.get(section))
        for key in gone:
            if not isinstance(key, str) or entries.pop(key, None) is None:
                raise DeltaError(f"delta.remove.{section}: no entry {key!r} in version {base_version}")
        for key, entry in sets.items():
            if section in LISTS and list_key(section, entry) != key:
                raise DeltaError(f"delta.set.{section}: entry under {key!r} is named {list_key(section, entry)!r}")
            entries[key] = entry
        if section in MAPS:
            doc[section] = entries
            continue
        if order is None:
            keys = list(entries)
        else:
            if len(set(order)) != len(order) or set(order) != set(entries):
                raise DeltaError(f"delta.order.{section}: does not name each entry once")
            keys = order
        doc[section] = [entries[k] for k in keys]
    return doc


# Document sections and the Snapshot fields decoded from them (sections not named here: a full decode).
FIELDS = {"version": ("version",), "options": ("options",), "services": ("services",), "subsets": ("subsets",),
          "virtual_services": ("virtual_services",), "clusters": ("clusters",), "listeners": ("listeners",),
          "inbound_rate_limits": ("inbound_rate_limits",), "warnings": ("warnings",),
          "l4_routes": ("l4_routes",), "tls_credentials": ("tls_credentials",)}
NOT_DECODED = frozenset(("rejected", "gateway_api_status"))  # for the control plane's status only


def decode_delta(delta: object, previous: Snapshot) -> Snapshot:
    """The snapshot `delta` makes of `previous`: only the sections it changed are decoded (and in them, only the
    entries that changed: `decode_snapshot` reuses the rest); the others are `previous`'s own objects.

    Raises `SnapshotError` (a `DeltaError` when the delta itself is wrong).
    """
    base = previous.document
    full = apply_delta(base, delta)
    changed = [k for k in set(full) | set(base) if full.get(k) is not base.get(k) and k not in NOT_DECODED]
    if any(k not in FIELDS or not hasattr(previous, FIELDS[k][0]) for k in changed):
        return decode_snapshot(full, previous=previous)
    fields: dict[str, Any] = {}
    reuse: dict[str, Any] = {}
    if "virtual_services" in changed:  # decode only the VirtualServices that are not `previous`'s own objects
        changed.remove("virtual_services")
        fields["virtual_services"], reuse["virtual_services"] = _virtual_services(full, previous)
    if changed:
        part = decode_snapshot({k: full[k] for k in changed if k in full}, previous=previous)
        fields.update({FIELDS[k][0]: getattr(part, FIELDS[k][0]) for k in changed})
        if "clusters" in changed:
            reuse["clusters"] = part.reuse.clusters
    return replace(previous, **fields, document=full, reuse=replace(previous.reuse, **reuse))


def _virtual_services(full: Mapping[str, Any], previous: Snapshot) -> tuple[tuple[Any, ...], dict[Any, Any]]:
    """The decoded VirtualServices of `full` in its order: unchanged entries (the very objects of `previous`'s
    document) taken from `previous`, the others decoded (one `decode_snapshot` of just them)."""
    old = previous.reuse.virtual_services
    out: list[Any] = []
    pairs: list[tuple[Any, Any] | None] = []
    fresh: list[int] = []
    for entry in full.get("virtual_services") or ():
        key = (entry.get("namespace") or "", entry.get("name") or "") if isinstance(entry, dict) else None
        hit = old.get(key) if key is not None else None
        if hit is not None and hit[0] is entry:
            out.append(hit[1])
            pairs.append((key, hit))
        else:
            fresh.append(len(out))
            out.append(entry)
            pairs.append(None)
    if fresh:
        part = decode_snapshot({"virtual_services": [out[i] for i in fresh]}, previous=previous)
        for i, vs, item in zip(fresh, part.virtual_services, part.reuse.virtual_services.items(), strict=True):
            out[i] = vs
            pairs[i] = item
    return tuple(out), dict(p for p in pairs if p is not None)
