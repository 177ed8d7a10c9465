"""Console pages for pipelines and executions (filled in once the pipeline API lands)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the pipeline and execution pages."""
