"""Server fixtures: the real app over a real SQLite store, through an in-process HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store


@pytest.fixture
def api_store(state_dir: Path) -> Iterator[Store]:
    store = Store.open()
    yield store
    store.close()


@pytest.fixture
def api(api_store: Store) -> Iterator[TestClient]:
    app = create_app(ControlPlane(store=api_store), start_components=False)
    # As the CLI does: the operator's token from the state folder (graylane.server.auth).
    with TestClient(app, base_url="http://127.0.0.1:7380",
                    headers={"Authorization": f"Bearer {app.state.cli_token}"}) as client:
        yield client
