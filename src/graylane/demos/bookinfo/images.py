"""Built-in LocalImage entries: Istio's Bookinfo image names run our Python services (what each image bakes in)."""

from __future__ import annotations

import sys
from typing import Any

# Registries/repositories Istio has published the Bookinfo images under, over time.
IMAGE_PREFIXES: tuple[str, ...] = (
    "docker.io/istio/examples-bookinfo-",
    "istio/examples-bookinfo-",
    "registry.istio.io/release/examples-bookinfo-",
    "gcr.io/istio-release/examples-bookinfo-",
    "gcr.io/istio-testing/examples-bookinfo-",
)

# <service>-<version> -> the environment that image bakes in (see the images' Dockerfile build args).
IMAGE_VARIANTS: dict[tuple[str, str], dict[str, str]] = {
    ("productpage", "v1"): {},
    ("productpage", "v-flooding"): {"FLOOD_FACTOR": "100"},
    ("details", "v1"): {"SERVICE_VERSION": "v1", "ENABLE_EXTERNAL_BOOK_SERVICE": "false"},
    ("details", "v2"): {"SERVICE_VERSION": "v2", "ENABLE_EXTERNAL_BOOK_SERVICE": "true"},
    ("reviews", "v1"): {"SERVICE_VERSION": "v1", "ENABLE_RATINGS": "false"},
    ("reviews", "v2"): {"SERVICE_VERSION": "v2", "ENABLE_RATINGS": "true", "STAR_COLOR": "black"},
    ("reviews", "v3"): {"SERVICE_VERSION": "v3", "ENABLE_RATINGS": "true", "STAR_COLOR": "red"},
    ("ratings", "v1"): {"SERVICE_VERSION": "v1"},
    ("ratings", "v2"): {"SERVICE_VERSION": "v2"},
    ("ratings", "v-faulty"): {"SERVICE_VERSION": "v-faulty"},
    ("ratings", "v-delayed"): {"SERVICE_VERSION": "v-delayed"},
    ("ratings", "v-unavailable"): {"SERVICE_VERSION": "v-unavailable"},
    ("ratings", "v-unhealthy"): {"SERVICE_VERSION": "v-unhealthy"},
}


def service_module(service: str) -> str:
    return f"graylane.demos.bookinfo.services.{service}"


def _entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for (service, version), env in IMAGE_VARIANTS.items():
        for prefix in IMAGE_PREFIXES:
            name = f"{prefix}{service}-{version}"
            for pattern in (f"{name}:*", f"{name}@*", name):
                entries.append({
                    "image": pattern,
                    "command": [sys.executable, "-m", service_module(service)],
                    "args": [],
                    "env": dict(env),
                })
    return entries


# LocalImage specs (`graylane.io/v1alpha1` LocalImage `spec` shape). The demo registers them with the runtime
# through the `graylane.images` entry point (pyproject.toml); the runtime consults them after applied LocalImages.
BUILTIN_IMAGES: list[dict[str, Any]] = _entries()
