"""pydantic model for Graylane's own kind LocalImage (graylane.io/v1alpha1).

A LocalImage tells the local runtime how to run a container image as a process: containers whose
image matches `spec.image` (a glob) run `command` + `args` in `workingDir` with `env` added.
"""

from __future__ import annotations

from graylane.resources.model_base import Resource, StrictSpec


class LocalImageSpec(StrictSpec):
    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: dict[str, str] | None = None


class LocalImage(Resource):
    spec: LocalImageSpec
