"""A replica's environment, built the way kubelet builds it."""

from __future__ import annotations

import base64

import pytest

from graylane.runtime.env import EnvError, PodIdentity, container_env, expand

POD = PodIdentity(namespace="shop", name="reviews-v2-abc-xyz12", labels={"app": "reviews", "version": "v2"},
                  annotations={}, port=41000, sidecar_port=41001)


def test_identity_port_and_proxy_variables() -> None:
    env = container_env({}, POD, base={"PATH": "/bin", "HTTP_PROXY": "http://corp:3128"})
    assert env["PORT"] == "41000"
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:41001"
    assert env["NO_PROXY"] == "localhost,127.0.0.1"
    assert env["POD_NAME"] == env["HOSTNAME"] == "reviews-v2-abc-xyz12"
    assert env["POD_NAMESPACE"] == "shop"
    assert env["PATH"] == "/bin"


def test_value_from_field_config_map_and_secret() -> None:
    container = {"env": [
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['version']"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}},
    ]}
    env = container_env(container, POD, config_maps={"cfg": {"data": {"greeting": "hi"}}},
                        secrets={"creds": {"data": {"token": base64.b64encode(b"s3cret").decode()}}}, base={})
    assert (env["NS"], env["VER"], env["GREETING"], env["TOKEN"]) == ("shop", "v2", "hi", "s3cret")
    assert "MISSING" not in env


def test_missing_config_map_key_is_a_config_error() -> None:
    container = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}
    with pytest.raises(EnvError, match='ConfigMap "cfg" not found'):
        container_env(container, POD, base={})


def test_service_link_variables() -> None:
    svc = {"metadata": {"name": "ratings-db"}, "spec": {"ports": [{"name": "http", "port": 9080}]}}
    env = container_env({}, POD, services=[svc], base={})
    assert env["RATINGS_DB_SERVICE_HOST"] == "ratings-db"
    assert env["RATINGS_DB_SERVICE_PORT"] == "9080"
    assert env["RATINGS_DB_SERVICE_PORT_HTTP"] == "9080"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("$(A)", "x", id="defined"),
    pytest.param("$(B)", "$(B)", id="undefined-left-as-is"),
    pytest.param("$$(A)", "$(A)", id="escaped"),
    pytest.param("a-$(A)-$(A)", "a-x-x", id="repeated"),
    pytest.param("$A", "$A", id="shell-syntax-untouched"),
])
def test_dollar_paren_expansion(text: str, expected: str) -> None:
    assert expand(text, {"A": "x"}) == expected


def test_env_values_expand_earlier_variables() -> None:
    env = container_env({"env": [{"name": "A", "value": "one"}, {"name": "B", "value": "$(A)-$(PORT)"}]}, POD, base={})
    assert env["B"] == "one-41000"
