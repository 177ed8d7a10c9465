"""Fixtures for the Kubernetes target: an emulated API server (kmock) on loopback and kubeconfigs pointing at it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import kmock
import pytest_asyncio

_spec = importlib.util.spec_from_file_location("graylane_k8s_emulator", Path(__file__).with_name("k8s_emulator.py"))
assert _spec and _spec.loader
k8s_emulator = importlib.util.module_from_spec(_spec)
sys.modules["graylane_k8s_emulator"] = k8s_emulator
_spec.loader.exec_module(k8s_emulator)

TOKEN = "graylane-test-token"


@dataclass
class Cluster:
    api: k8s_emulator.ApiServer
    url: str
    kubeconfig: Path

    def write_kubeconfig(self, path: Path, **kwargs: object) -> Path:
        path.write_text(k8s_emulator.kubeconfig_text(self.url, **kwargs))  # type: ignore[arg-type]
        return path


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster with Istio's CRDs installed, namespaces default + bookinfo, token auth on."""
    api = k8s_emulator.ApiServer(tokens={TOKEN: None})
    api.install_istio()
    for ns in ("default", "kube-system", "istio-system", "bookinfo"):
        api.add_namespace(ns)
    async with api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(k8s_emulator.kubeconfig_text(url, token=TOKEN))
        yield Cluster(api, url, kubeconfig)
        for task in list(api._tasks):
            task.cancel()


@pytest_asyncio.fixture
async def bare_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster WITHOUT Istio (no networking.istio.io CRDs)."""
    api = k8s_emulator.ApiServer(tokens={TOKEN: None})
    api.add_namespace("default")
    async with api, kmock.Server(api) as server:
        url = str(server.url).rstrip("/")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(k8s_emulator.kubeconfig_text(url, token=TOKEN))
        yield Cluster(api, url, kubeconfig)
