"""`graylane release` against a real control plane API: status (text and JSON), promote, abort, retry, the
--watch gate's exit codes, and refusals. Reuses test_cli's loopback server fixture."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.pipelines.test_cli import api  # noqa: F401  (the server fixture)
from tests.pipelines.test_release_stages import REVIEWS, USER_VS
from typer.testing import CliRunner

from graylane.cli import exit_codes
from graylane.cli.main import app
from graylane.errors import GraylaneError


def cli(*args: str) -> tuple[int, str]:
    """Run a command as `graylane` does: a user error is its message and the exit code main() gives it."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, GraylaneError):
        return exit_codes.for_error(result.exception), result.output + str(result.exception)
    return result.exit_code, result.output

ROLLOUT = {"application": "bookinfo", "name": "reviews-release", "stages": [
    {"refId": "1", "type": "canaryRollout", "name": "reviews canary", "service": "reviews",
     "stableSubset": "v1", "canarySubset": "v2", "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]}]}


def status(service: str = "reviews") -> dict[str, Any]:
    code, out = cli("release", "status", service, "-o", "json")
    assert code == 0, out
    return json.loads(out)  # type: ignore[no-any-return]


def wait_for(phase: str, step: int | None = None) -> dict[str, Any]:
    for _ in range(300):
        s = status()
        if s["phase"] == phase and (step is None or s["step"]["index"] == step):
            return s
        time.sleep(0.05)
    raise AssertionError(f"never {phase}: {s}")


def test_release_status_promote_abort_retry(api: str, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "world.yaml").write_text(REVIEWS + USER_VS)
    assert cli("apply", "-f", str(tmp_path / "world.yaml"))[0] == 0
    code, out = cli("release", "status", "reviews")
    assert code == 2 and "no release of 'reviews'" in out
    (tmp_path / "p.json").write_text(json.dumps(ROLLOUT))
    assert cli("pipeline", "import", str(tmp_path / "p.json"))[0] == 0
    assert cli("pipeline", "run", "reviews-release")[0] == 0

    s = wait_for("Paused", 1)
    assert s["weights"] == {"reviews": {"v1": 75, "v2": 25}} and s["stage"]["type"] == "canaryRollout"
    assert {p["name"]: p["version"] for p in s["pods"]} == {"reviews-v1": "v1", "reviews-v2": "v2",
                                                            "reviews-v3": "v3"}
    code, out = cli("release", "status", "reviews")
    assert code == 0 and "Status:    Paused" in out and "Step:      2/3" in out
    assert "Weights:   reviews: v1=75%  v2=25%" in out and "reviews-v2  version=v2" in out
    code, out = cli("release", "retry", "reviews")
    assert code == 3 and "only an aborted or failed one can be retried" in out

    code, out = cli("release", "abort", "reviews")
    assert code == 0 and "release of reviews: Abort" in out
    s = wait_for("Aborted")
    assert s["weights"] == {"reviews": {"v1": 100, "v2": 0}} and "aborted by carol" in s["message"]
    code, out = cli("release", "status", "reviews", "--watch", "--timeout", "5")
    assert code == 1 and "Aborted" in out  # the CI gate says no
    code, out = cli("release", "promote", "reviews")
    assert code == 3 and "nothing to promote" in out

    assert cli("release", "retry", "reviews")[0] == 0  # from the first step again
    wait_for("Paused", 1)
    assert cli("release", "promote", "reviews", "--full")[0] == 0
    code, out = cli("release", "status", "reviews", "--watch", "--timeout", "20")
    assert code == 0 and "Healthy" in out
    assert status()["weights"] == {"reviews": {"v2": 100}}


def test_release_status_shows_the_canary_scale(api: str, tmp_path: Path) -> None:  # noqa: F811
    from tests.pipelines.test_release_stages import world

    (tmp_path / "world.yaml").write_text(world("reviews", {"v1": 4, "v2": 1}, ["v1", "v2"]) + USER_VS)
    assert cli("apply", "-f", str(tmp_path / "world.yaml"))[0] == 0
    pipeline = {**ROLLOUT, "stages": [{**ROLLOUT["stages"][0], "steps": [
        {"setCanaryScale": {"weight": 50}}, {"setWeight": 20}, {"pause": {}}]}]}
    (tmp_path / "p.json").write_text(json.dumps(pipeline))
    assert cli("pipeline", "import", str(tmp_path / "p.json"))[0] == 0
    assert cli("pipeline", "run", "reviews-release")[0] == 0
    s = wait_for("Paused", 2)
    # no local runtime in this control plane: how many are ready is not known
    assert s["canary"] == {"mode": {"weight": 50}, "deployments": [
        {"deployment": "default/reviews-v2", "desired": 2, "replicas": 2, "ready": None}]}
    code, out = cli("release", "status", "reviews")
    assert code == 0 and 'Canary:    default/reviews-v2  desired 2  ready ?  (setCanaryScale {"weight": 50})' in out
    assert "reviews-v2  version=v2  ready ?/2" in out
    assert cli("release", "abort", "reviews")[0] == 0
    s = wait_for("Aborted")
    assert s["canary"]["deployments"] == [{"deployment": "default/reviews-v2", "desired": 0, "replicas": 0,
                                           "ready": None}]


def test_release_status_shows_the_stable_scale(api: str, tmp_path: Path) -> None:  # noqa: F811
    from tests.pipelines.test_release_stages import world

    (tmp_path / "world.yaml").write_text(world("reviews", {"v1": 4, "v2": 1}, ["v1", "v2"]) + USER_VS)
    assert cli("apply", "-f", str(tmp_path / "world.yaml"))[0] == 0
    pipeline = {**ROLLOUT, "stages": [{**ROLLOUT["stages"][0], "dynamicStableScale": True,
                                       "steps": [{"setWeight": 25}, {"pause": {}}]}]}
    (tmp_path / "p.json").write_text(json.dumps(pipeline))
    assert cli("pipeline", "import", str(tmp_path / "p.json"))[0] == 0
    assert cli("pipeline", "run", "reviews-release")[0] == 0
    s = wait_for("Paused", 1)
    # the stable shrank to ceil(75% of the 4 replicas it had before the rollout); no runtime: readiness unknown
    assert s["stable"] == [{"deployment": "default/reviews-v1", "desired": 3, "before": 4, "replicas": 3,
                            "ready": None}]
    code, out = cli("release", "status", "reviews")
    assert code == 0 and "Stable:    default/reviews-v1  desired 3 of 4  ready ?  (dynamicStableScale)" in out
    assert cli("release", "abort", "reviews")[0] == 0
    s = wait_for("Aborted")
    assert s["stable"][0]["desired"] == 4 and s["stable"][0]["replicas"] == 4  # back in full before traffic
