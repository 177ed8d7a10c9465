"""`graylane apply/get/history` on a Secret as a user runs them: values never printed, keys and changes visible."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import yaml

SECRET = """\
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {name: bookinfo-cert, namespace: default}
data:
  tls.crt: CERT
  tls.key: KEY
"""


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_secret_values_never_printed(cli: Callable[..., object], write: Callable[[str, str], Path]) -> None:
    first = write("s1/secret.yaml", SECRET.replace("CERT", encoded("cert-one")).replace("KEY", encoded("key-one")))
    second = write("s2/secret.yaml", SECRET.replace("CERT", encoded("cert-two")).replace("KEY", encoded("key-one")))
    values = (encoded("cert-one"), encoded("cert-two"), encoded("key-one"), "cert-one", "key-one")
    applied = cli("apply", "-f", str(first))
    assert applied.returncode == 0, applied.stderr  # type: ignore[attr-defined]
    diff = cli("diff", "-f", str(second))
    changed = cli("apply", "-f", str(second))
    live = cli("get", "secret", "bookinfo-cert", "-o", "yaml")
    as_json = cli("get", "secrets", "-o", "json")
    history = cli("history", "secret", "bookinfo-cert")
    for run in (applied, diff, changed, live, as_json, history):
        out = run.stdout + run.stderr  # type: ignore[attr-defined]
        assert not any(v in out for v in values), out
    body = yaml.safe_load(live.stdout)  # type: ignore[attr-defined]
    assert body["data"] == {"tls.crt": "<redacted>", "tls.key": "<redacted>"}
    assert body["type"] == "kubernetes.io/tls"


def test_a_tls_secret_without_its_key_is_refused_naming_the_field(cli: Callable[..., object],
                                                                   write: Callable[[str, str], Path]) -> None:
    path = write("bad/secret.yaml", SECRET.replace("  tls.key: KEY\n", "").replace("CERT", encoded("x")))
    refused = cli("apply", "-f", str(path))
    assert refused.returncode != 0  # type: ignore[attr-defined]
    assert 'data["tls.key"]: Required value' in refused.stderr, refused.stderr  # type: ignore[attr-defined]
