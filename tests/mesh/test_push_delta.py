"""Incremental snapshot pushes (issue #17): a delta carries what changed since the version the data plane serves.

The data plane applies a delta only against its own version (else a NACK naming the base, and the control plane
sends the whole document); a delta is hostile input like any snapshot. Real proxy, real upstreams, real store.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from graylane.mesh.config import compile_snapshot
from graylane.mesh.control import MeshControl, load_compiler
from graylane.mesh.snapshot import decode_snapshot
from graylane.mesh.snapshot_delta import DELTA_BASE_PREFIX, DeltaError, apply_delta, decode_delta, make_delta
from graylane.mesh.state import MeshOptions
from graylane.store import Store

from .helpers import Mesh, dr, free_port, sidecar, svc, vs


def split(host: str, v1: int) -> dict[str, Any]:
    return vs(host, [host], [{"route": [{"destination": {"host": host, "subset": "v1"}, "weight": v1},
                                        {"destination": {"host": host, "subset": "v2"}, "weight": 100 - v1}]}])


def mesh_resources(n: int, v1: int = 90, changed: int = -1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out += [svc(f"s{i}"), dr(f"s{i}", ["v1", "v2"]), split(f"s{i}", 50 if i == changed else v1)]
    return out


def compiled(n: int, version: int, changed: int = -1, sidecars: int = 1) -> dict[str, Any]:
    sidecars_ = [sidecar(30000 + i, app=f"p{i}") for i in range(sidecars)]
    return compile_snapshot(mesh_resources(n, changed=changed), [], sidecars_, MeshOptions(), version)


# --------------------------------------------------------------------------------------------- the document


def test_a_delta_carries_only_what_changed_and_rebuilds_the_new_document() -> None:
    base, new = compiled(20, 1), compiled(20, 2, changed=7)
    delta = make_delta(base, new)
    assert list(delta["set"]) == ["virtual_services"] and list(delta["set"]["virtual_services"]) == ["default/s7"]
    assert not delta["remove"] and not delta["order"]
    assert apply_delta(base, delta) == new


def test_removed_added_reordered_entries_and_whole_sections_round_trip() -> None:
    base = compiled(6, 1)
    new = compiled(5, 2, sidecars=2)
    new["virtual_services"] = list(reversed(new["virtual_services"]))  # order decides which one wins a host
    new["options"] = {**new["options"], "trace_sampling": 50.0}
    new["warnings"] = ["something"]
    delta = make_delta(base, new)
    assert "default/s5" in delta["remove"]["virtual_services"] and delta["order"]["virtual_services"]
    assert "outbound|9080|v1|s5.default.svc.cluster.local" in delta["remove"]["clusters"]
    assert apply_delta(base, delta) == new
    decoded = decode_delta(copy.deepcopy(delta), decode_snapshot(copy.deepcopy(base)))
    assert [v.name for v in decoded.virtual_services] == ["s4", "s3", "s2", "s1", "s0"]
    assert decoded.options.trace_sampling == 50.0 and len(decoded.listeners) == 2 and decoded.version == 2


def test_decoding_a_delta_reuses_every_unchanged_part_of_the_previous_snapshot() -> None:
    previous = decode_snapshot(compiled(30, 1))
    new = compiled(30, 2, changed=3)
    snap = decode_delta(make_delta(previous.document, new), previous)
    assert snap.version == 2 and snap.document == new
    assert snap.listeners is previous.listeners and snap.clusters is previous.clusters
    assert snap.services is previous.services
    changed = [a for a, b in zip(snap.virtual_services, previous.virtual_services, strict=True) if a is not b]
    assert [v.name for v in changed] == ["s3"]
    assert [d.weight for d in changed[0].rules[0].destinations] == [50, 50]
    full = decode_snapshot(new)
    assert [(v.key, [[d.weight for d in r.destinations] for r in v.rules]) for v in snap.virtual_services] == \
        [(v.key, [[d.weight for d in r.destinations] for r in v.rules]) for v in full.virtual_services]


def test_a_delta_made_against_another_version_is_refused() -> None:
    base = compiled(3, 5)
    delta = make_delta(compiled(3, 4), compiled(3, 6, changed=1))
    with pytest.raises(DeltaError, match=f"^{DELTA_BASE_PREFIX} 4 is not the current version 5"):
        apply_delta(base, delta)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version="7"), "integer version"),
    (lambda d: d.update(set=[1]), "delta.set: expected an object"),
    (lambda d: d["set"].update(routes={}), "unknown sections"),
    (lambda d: d["set"].update(virtual_services={"default/x": {"name": "y", "namespace": "default"}}), "named"),
    (lambda d: d["set"].update(virtual_services={"default/x": "text"}), "entries must be objects"),
    (lambda d: d["remove"].update(clusters=["nope"]), "no entry 'nope'"),
    (lambda d: d["order"].update(virtual_services=["default/s0", "default/s0"]), "does not name each entry once"),
    (lambda d: d["replace"].update(clusters={}), "cannot be replaced whole"),
    (lambda d: d["remove"].update(services=list(range(100_001))), "too many"),
])
def test_a_malformed_delta_is_refused_naming_what_is_wrong(mutate: Any, message: str) -> None:
    base = compiled(2, 1)
    delta = make_delta(base, compiled(2, 2, changed=0))
    mutate(delta)
    with pytest.raises(DeltaError, match=message):
        apply_delta(base, delta)


# --------------------------------------------------------------------------------------------- the data plane


def _two_subsets(mesh: Mesh) -> tuple[list[Any], Any, Any]:
    v1, v2 = mesh.upstream("delta-v1"), mesh.upstream("delta-v2")
    return [mesh.endpoint(v1, "s0", "v1"), mesh.endpoint(v2, "s0", "v2")], v1, v2


def _names(port: int, n: int = 20) -> set[str]:
    with httpx.Client(trust_env=False, timeout=5) as c:
        return {c.get(f"http://127.0.0.1:{port}/", headers={"host": "s0"}).json()["name"] for _ in range(n)}


def test_the_proxy_serves_a_delta_and_nacks_one_against_another_base(mesh: Mesh) -> None:
    eps, _, _ = _two_subsets(mesh)
    port = free_port()
    resources = mesh_resources(3, v1=100)
    base = compile_snapshot(resources, eps, [sidecar(port)], MeshOptions(), 900)
    mesh.put(base)
    assert _names(port) == {"delta-v1"}
    resources[2] = split("s0", 0)  # the canary step: everything to v2
    new = compile_snapshot(resources, eps, [sidecar(port)], MeshOptions(), 901)
    assert mesh.put(make_delta(base, new)) == {"ack": 901}
    assert _names(port) == {"delta-v2"}
    dump = mesh.get("/config_dump").json()
    assert dump["version"] == 901 and dump["snapshot"]["virtual_services"] == new["virtual_services"]
    stale = make_delta(base, compile_snapshot(resources, eps, [sidecar(port)], MeshOptions(), 902))
    r = httpx.put(f"{mesh.admin}/config", json=stale, timeout=10)
    assert r.status_code == 400 and r.json()["reason"].startswith(f"{DELTA_BASE_PREFIX} 900 is not")
    assert mesh.get("/ready").json()["version"] == 901 and _names(port) == {"delta-v2"}


# --------------------------------------------------------------------------------------------- the control plane


@pytest_asyncio.fixture
async def control(state_dir: Path, mesh: Mesh) -> Any:
    store = Store.open()
    mc = MeshControl(store, None, state_dir, compiler=load_compiler(), admin_url=lambda: mesh.admin,
                     options=lambda: MeshOptions(), resync_s=0.1)
    await mc.start()
    try:
        yield store, mc
    finally:
        await mc.stop()
        store.close()


@pytest.mark.asyncio
async def test_the_control_plane_pushes_deltas_and_the_whole_document_when_the_base_is_gone(
        control: Any, mesh: Mesh) -> None:
    store, mc = control
    store.apply(mesh_resources(3), actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    before = mc.status.delta_pushes
    store.apply([split("s1", 40)], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    assert mc.status.delta_pushes > before
    dump = httpx.get(f"{mesh.admin}/config_dump", timeout=5).json()
    s1 = next(v for v in dump["snapshot"]["virtual_services"] if v["name"] == "s1")
    assert [d["weight"] for d in s1["http"][0]["route"]] == [40, 60]
    # Someone else pushed meanwhile (or the data plane restarted): the next delta's base is gone.
    mesh.put(compile_snapshot([], [], [], MeshOptions(), 5))
    store.apply([split("s2", 30)], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    dump = httpx.get(f"{mesh.admin}/config_dump", timeout=5).json()
    assert {v["name"] for v in dump["snapshot"]["virtual_services"]} == {"s0", "s1", "s2"}
    assert mc.status.last is not None and mc.status.last.acked and not mc.status.error
