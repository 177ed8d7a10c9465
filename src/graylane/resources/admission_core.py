"""Admission checks of the Kubernetes kinds Graylane runs (Deployment, Service, Secret) and of LocalImage."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from graylane.resources.admission_base import (
    DNS1035_LABEL,
    Checks,
    as_map,
    items_of,
)
from graylane.resources.messages import go_quote


def _label_selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_deployment(c: Checks, spec: dict[str, Any]) -> None:
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        c.error(("spec", "replicas"), "must be greater than or equal to 0")
    selector = as_map(as_map(spec.get("selector")).get("matchLabels"))
    template = as_map(spec.get("template"))
    labels = as_map(as_map(template.get("metadata")).get("labels"))
    if not selector and not as_map(spec.get("selector")).get("matchExpressions"):
        c.error(("spec", "selector"), "empty selector is invalid for deployment")
    elif not _label_selector_matches(selector, labels):
        c.error(("spec", "template", "metadata", "labels"), "`selector` does not match template `labels`")
    containers = as_map(template.get("spec")).get("containers") or []
    if not containers:
        c.error(("spec", "template", "spec", "containers"), "Required value: at least one container")
    names: set[str] = set()
    for i, container in items_of(containers):
        container, path = as_map(container), ("spec", "template", "spec", "containers", i)
        if container.get("name") in names:
            c.error((*path, "name"), f"Duplicate value: {go_quote(container.get('name'))}")
        names.add(container.get("name"))
        for j, port in items_of(container.get("ports")):
            number = as_map(port).get("containerPort")
            if isinstance(number, int) and not 1 <= number <= 65535:
                c.error((*path, "ports", j, "containerPort"), "must be between 1 and 65535, inclusive")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in as_map(container.get(probe))]
            if probe in container and len(handlers) != 1:
                c.error((*path, probe), "must specify exactly one handler type (httpGet, tcpSocket, exec or grpc)")


def check_service(c: Checks, spec: dict[str, Any]) -> None:
    if not DNS1035_LABEL.match(c.doc.name) or len(c.doc.name) > 63:
        c.error(("metadata", "name"), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                      "start with an alphabetic character, and end with an alphanumeric character")
    ports = spec.get("ports") or []
    names: set[str] = set()
    for i, port in items_of(ports):
        port, path = as_map(port), ("spec", "ports", i)
        number = port.get("port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            c.error((*path, "port"), "must be between 1 and 65535, inclusive")
        name = port.get("name")
        if len(ports) > 1 and not name:
            c.error((*path, "name"), "Required value: every port of a multi-port service needs a name")
        elif name in names:
            c.error((*path, "name"), f"Duplicate value: {go_quote(name)}")
        names.add(name)


def check_local_image(c: Checks, spec: dict[str, Any]) -> None:
    if not spec.get("image"):
        c.error(("spec", "image"), "must not be empty: a glob pattern of the images this entry runs")
    if not spec.get("command") and not spec.get("args"):
        c.error(("spec",), "command or args is required: what to run for the image")
    for name in as_map(spec.get("env")):
        if not re.match(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", str(name)):
            c.error(("spec", "env", name), f"invalid environment variable name {go_quote(name)}")


def check_secret(c: Checks, spec: dict[str, Any]) -> None:
    """Kubernetes' Secret validation for the types the mesh reads: a kubernetes.io/tls Secret needs tls.crt and
    tls.key (in data, or stringData merged into it); data values must be base64 (values are never echoed)."""
    body = c.doc.body
    data, string_data = body.get("data") or {}, body.get("stringData") or {}
    if not isinstance(data, dict):
        c.error(("data",), "must be a map of base64 strings")
        data = {}
    if not isinstance(string_data, dict):
        c.error(("stringData",), "must be a map of strings")
        string_data = {}
    for key, value in data.items():
        if not isinstance(value, str) or not _is_base64(value):
            c.error(("data", key), "is not valid base64")
    if body.get("type") == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data and key not in string_data:
                c.error(("data", key), "Required value (a kubernetes.io/tls Secret needs tls.crt and tls.key)")


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
