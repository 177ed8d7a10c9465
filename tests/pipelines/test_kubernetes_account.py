"""The same pipeline on a Kubernetes account: deployManifest through KubernetesTarget to an emulated API server."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import kmock  # noqa: E402

from graylane.pipelines.executor import Executor  # noqa: E402
from graylane.pipelines.services import TaskServices  # noqa: E402
from graylane.pipelines.status import ExecutionStatus as S  # noqa: E402
from graylane.pipelines.targets import TargetRegistry  # noqa: E402
from graylane.pipelines.triggers import build_trigger  # noqa: E402
from graylane.server.context import ControlPlane  # noqa: E402
from graylane.store import Store  # noqa: E402
from graylane.targets.accounts import add_account  # noqa: E402

_EMULATOR = Path(__file__).parents[1] / "targets" / "kubernetes" / "k8s_emulator.py"


def _emulator() -> Any:
    name = "graylane_k8s_emulator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _EMULATOR)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "reviews"},
      "spec": {"hosts": ["reviews"], "http": [{"route": [
          {"destination": {"host": "reviews", "subset": "v1"}, "weight": "${100 - #toInt(parameters.ratio)}"},
          {"destination": {"host": "reviews", "subset": "v2"}, "weight": "${#toInt(parameters.ratio)}"}]}]}}
DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
      "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                              {"name": "v2", "labels": {"version": "v2"}}]}}


def test_deploy_manifest_to_a_kubernetes_account_with_namespace_override(tmp_path: Path, state_dir: Path) -> None:
    emu = _emulator()

    async def go() -> None:
        api = emu.ApiServer(tokens={"t0k": None})
        api.install_istio()
        for ns in ("default", "bookinfo"):
            api.add_namespace(ns)
        async with api, kmock.Server(api) as server:
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(emu.kubeconfig_text(str(server.url).rstrip("/"), token="t0k"))
            add_account("staging", kubeconfig=kubeconfig)
            store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
            cp = ControlPlane(store=store)
            registry = TargetRegistry(cp)
            ex = Executor(store.engine, services=TaskServices(get_target=registry.get))
            await ex.start()
            try:
                body = {"application": "bookinfo", "name": "k8s-canary",
                        "parameterConfig": [{"name": "ratio", "default": "20"}],
                        "stages": [{"refId": "1", "type": "deployManifest", "name": "route", "account": "staging",
                                    "namespaceOverride": "bookinfo", "manifests": [VS, DR],
                                    # no reviews Service in this cluster: the test is about namespaceOverride
                                    "skipRouteCheck": True}]}
                config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
                trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {"ratio": "30"}}, ex)
                exe = await ex.start_execution(config, trigger, user="t")
                done = await ex.wait_until_complete(exe.id, timeout=60)
                assert done.status == S.SUCCEEDED, done.stage("route").context.get("exception")
                vs = api.object("networking.istio.io/v1/virtualservices", "bookinfo", "reviews")
                assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [70, 30]
                assert api.object("networking.istio.io/v1/destinationrules", "bookinfo", "reviews") is not None
                assert done.stage("route").outputs["outputs.manifestNamesByNamespace"] == {
                    "bookinfo": ["destinationrule reviews", "virtualservice reviews"]}
                assert store.list() == []  # nothing went to the local mesh
            finally:
                await ex.stop()
                store.close()
            for task in list(api._tasks):
                task.cancel()

    asyncio.run(go())
