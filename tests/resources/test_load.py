from pathlib import Path

import pytest

from graylane.errors import ValidationError
from graylane.resources.load import load_paths, load_text

TWO_DOCS = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
"""


def test_documents_keep_file_and_line_of_fields():
    docs = load_text(TWO_DOCS, "bookinfo.yaml")
    assert [str(d.key) for d in docs] == ["Service default/reviews", "VirtualService shop/reviews"]
    assert docs[0].where(("spec", "ports", 0, "port")) == "bookinfo.yaml:7"
    assert docs[1].source.line == 9
    assert docs[1].where(("spec", "hosts")) == "bookinfo.yaml:15"


def test_invalid_yaml_names_file_and_line():
    with pytest.raises(ValidationError) as exc:
        load_text("a: 1\nb: [\n", "bad.yaml")
    assert str(exc.value).startswith("bad.yaml:")


def test_duplicate_keys_are_refused():
    with pytest.raises(ValidationError, match="duplicate key 'name'"):
        load_text("kind: Service\nmetadata:\n  name: a\n  name: b\n", "d.yaml")


def test_folders_load_recursively_in_sorted_order(tmp_path: Path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n")
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first"}}')
    (tmp_path / "notes.txt").write_text("ignored")
    assert [d.name for d in load_paths([tmp_path])] == ["first", "second"]


def test_stdin_and_missing_path():
    assert load_paths(["-"], stdin_text=TWO_DOCS)[0].source.file == "-"
    with pytest.raises(ValidationError, match="no such file"):
        load_paths(["/nonexistent/x.yaml"])


def test_timestamps_stay_strings_as_in_kubernetes():
    [doc] = load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata:\n  when: 2024-01-02\n")
    assert doc.body["data"]["when"] == "2024-01-02"
