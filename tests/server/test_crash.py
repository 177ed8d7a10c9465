"""SIGKILL of a real `graylane server` in the middle of a 500-document apply: all or nothing on disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from graylane.resources.load import load_text
from graylane.settings import read_cli_token
from graylane.store import Store
from graylane.store import tables as t

BATCH = 500


def start_server(state: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}"}
    env.pop("GRAYLANE_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "server", "--no-components",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)  # polling the port until it answers, not a timing assumption
    proc.kill()
    raise AssertionError("server did not answer /healthz within 60s")


@pytest.fixture
def server(state_dir: Path, port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc = start_server(state_dir, port)
    yield proc, f"http://127.0.0.1:{port}"
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def batch_yaml() -> str:
    data = "\n".join(f"  key{j}: value-{j}-{'x' * 40}" for j in range(20))
    return "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bulk-{i:03d}}}\ndata:\n{data}\n"
                        for i in range(BATCH))


def write_lock_held(db: Path) -> bool:
    """True while another connection holds SQLite's write lock (the server inside its transaction)."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return True
        raise
    finally:
        con.close()


def test_sigkill_mid_apply_leaves_the_store_before_or_after(server: tuple[Any, str], state_dir: Path) -> None:
    proc, url = server
    auth = {"authorization": f"Bearer {read_cli_token(state_dir)}"}
    before = httpx.post(f"{url}/api/v1/apply", content="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: before}\n",
                        headers={"content-type": "application/yaml", **auth}, timeout=30)
    assert before.status_code == 200
    db = state_dir / "graylane.db"
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = httpx.post(f"{url}/api/v1/apply", content=batch_yaml(),
                                             headers={"content-type": "application/yaml", **auth}, timeout=120)
        except httpx.TransportError as exc:  # the server died under us: expected
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    in_transaction = False
    while sender.is_alive() and not in_transaction:
        in_transaction = write_lock_held(db)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sender.join()
    assert in_transaction, "the apply finished before its transaction was seen; nothing was tested"

    batch = {f"bulk-{i:03d}" for i in range(BATCH)}
    store = Store.open(f"sqlite:///{db}")  # what a restarted server opens
    try:
        names = {r.key.name for r in store.list(kind="ConfigMap")}
        assert names in ({"before"}, {"before"} | batch), f"partial apply: {len(names) - 1} of {BATCH} stored"
        with store.engine.connect() as conn:
            history = conn.execute(sa.select(sa.func.count()).select_from(t.history)).scalar_one()
        assert history == len(names)
        assert store.revision() == (1 if names == {"before"} else 2)
        # The database is healthy: the same batch goes in, whichever side of the kill it was left on.
        results = store.apply(load_text(batch_yaml()), actor="user:after-crash")
        expected = "created" if names == {"before"} else "unchanged"
        assert {str(r.action) for r in results} == {expected}
        assert len(store.list(kind="ConfigMap")) == BATCH + 1
    finally:
        store.close()
