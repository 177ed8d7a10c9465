"""`graylane validate` on Gateways whose servers name a TLS credential: IST0101 when no such Secret exists."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from graylane.cli.main import app

runner = CliRunner()

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
"""
SECRET = """\
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: bookinfo-cert, namespace: {ns}}}
stringData: {{tls.crt: x, tls.key: y}}
"""


def validate(tmp_path: Path, *texts: str) -> tuple[int, list[str]]:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i + 1}.yaml"
        path.write_text(text)
        paths.append(str(path))
    result = runner.invoke(app, ["validate", "-f", *paths, "--use-kube=false"])
    return result.exit_code, [line.replace(str(tmp_path) + "/", "") for line in result.output.splitlines()]


def test_a_missing_credential_secret_is_ist0101(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, GATEWAY)
    assert code == 1
    assert lines[0] == ('Error [IST0101] (Gateway default/bookinfo-gateway 1.yaml:9) '
                        'Referenced credentialName not found: "bookinfo-cert"')


def test_the_secret_in_the_gateways_namespace_or_istio_system_satisfies_it(tmp_path: Path) -> None:
    for ns in ("default", "istio-system"):
        code, lines = validate(tmp_path, GATEWAY, SECRET.format(ns=ns))
        assert code == 0, lines
        assert not any("IST0101" in line for line in lines)
    code, lines = validate(tmp_path, GATEWAY, SECRET.format(ns="other"))
    assert code == 1 and "IST0101" in lines[0]
