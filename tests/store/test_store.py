"""The store contract, run on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.errors import Conflict, NotFound, ValidationError
from graylane.resources.document import ResourceKey
from graylane.resources.load import load_text
from graylane.store import Action, Store
from graylane.store import tables as t


def cm(name: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data or {"k": "v"}}


def deployment(name: str, image: str = "app:v1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "shop"}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md,
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


def key(name: str, kind: str = "ConfigMap", group: str = "", namespace: str = "default") -> ResourceKey:
    return ResourceKey(group, kind, namespace, name)


def history_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t.history)).scalar_one())


def test_create_sets_kubernetes_metadata(store: Store, clock: Any) -> None:
    [res] = store.apply([cm("a")], actor="user:alice")
    assert res.action == Action.CREATED
    got = store.get(key("a"))
    assert got is not None
    md = got.body["metadata"]
    assert md["namespace"] == "default"
    assert md["uid"] == got.uid and len(got.uid) == 36
    assert md["resourceVersion"] == got.resource_version == res.resource_version == str(store.revision())
    assert md["generation"] == 1
    assert md["creationTimestamp"] == "2026-01-02T03:04:05Z"
    [rev] = store.history(key("a"))
    assert (rev.revision, rev.actor, rev.action, rev.deleted) == (1, "user:alice", Action.CREATED, False)
    assert rev.time == clock.now


def test_unchanged_apply_keeps_resource_version_and_writes_no_history(store: Store) -> None:
    store.apply([cm("a"), cm("b")])
    before = store.revision()
    results = store.apply([cm("a"), cm("b")])
    assert [r.action for r in results] == [Action.UNCHANGED, Action.UNCHANGED]
    assert store.revision() == before
    assert store.get(key("a")).resource_version == results[0].resource_version  # type: ignore[union-attr]
    assert len(store.history(key("a"))) == 1


def test_generation_bumps_on_spec_change_only(store: Store, clock: Any) -> None:
    store.apply([deployment("web")])
    k = key("web", "Deployment", "apps", "shop")
    clock.advance(60)
    [labels] = store.apply([deployment("web", labels={"team": "a"})])
    assert labels.action == Action.CONFIGURED and labels.generation == 1
    [image] = store.apply([deployment("web", image="app:v2", labels={"team": "a"})])
    assert image.action == Action.CONFIGURED and image.generation == 2
    got = store.get(k)
    assert got is not None
    assert got.body["metadata"]["generation"] == 2
    assert got.body["metadata"]["creationTimestamp"] == "2026-01-02T03:04:05Z"  # kept from creation
    assert got.updated > got.created
    assert "-  replicas: 1" not in image.diff and "+        image: app:v2" in image.diff
    assert [r.revision for r in store.history(k)] == [1, 2, 3]


def test_resource_version_is_the_global_revision_of_the_last_change(store: Store) -> None:
    store.apply([cm("a")])
    store.apply([cm("b")])
    store.apply([cm("a", {"k": "changed"})])
    assert store.revision() == 3
    assert store.get(key("a")).resource_version == "3"  # type: ignore[union-attr]
    assert store.get(key("b")).resource_version == "2"  # type: ignore[union-attr]


def test_fifth_document_invalid_writes_nothing(store: Store) -> None:
    text = "\n---\n".join([
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {a: b}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: four}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}",
    ])
    docs = load_text(text, "bundle.yaml")
    with pytest.raises(ValidationError) as err:
        store.apply(docs)
    assert err.value.where == "bundle.yaml:20"  # the fifth document's metadata line
    assert "metadata.name" in err.value.message
    for name in ("one", "two", "three", "four"):
        assert store.get(key(name)) is None
        assert store.history(key(name)) == []
    assert history_rows(store) == 0
    assert store.revision() == 0


def test_stale_resource_version_conflicts_and_rolls_back_the_whole_apply(store: Store) -> None:
    [first] = store.apply([cm("a")])
    store.apply([cm("a", {"k": "newer"})])
    stale = cm("a", {"k": "mine"}, resourceVersion=first.resource_version)
    with pytest.raises(Conflict) as err:
        store.apply([cm("fresh"), stale])
    assert "resourceVersion 1" in err.value.message and "has 2" in err.value.message
    assert store.get(key("fresh")) is None
    assert store.get(key("a")).body["data"] == {"k": "newer"}  # type: ignore[union-attr]
    current = store.get(key("a"))
    assert current is not None
    [ok] = store.apply([cm("a", {"k": "mine"}, resourceVersion=current.resource_version)])
    assert ok.action == Action.CONFIGURED


def test_resource_version_on_a_missing_object_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        store.apply([cm("ghost", resourceVersion="7")])
    assert store.get(key("ghost")) is None


def test_dry_run_reports_diffs_and_writes_nothing(store: Store) -> None:
    store.apply([cm("a")])
    results = store.apply([cm("a", {"k": "w"}), cm("b")], dry_run=True)
    assert [r.action for r in results] == [Action.CONFIGURED, Action.CREATED]
    assert "-  k: v\n+  k: w\n" in results[0].diff
    assert store.get(key("b")) is None
    assert store.get(key("a")).body["data"] == {"k": "v"}  # type: ignore[union-attr]
    assert store.revision() == 1


def test_duplicate_documents_in_one_apply_are_rejected(store: Store) -> None:
    with pytest.raises(ValidationError, match="appears twice"):
        store.apply([cm("a"), cm("a", {"x": "y"})])
    assert store.get(key("a")) is None


def test_missing_kind_is_a_validation_error(store: Store) -> None:
    with pytest.raises(ValidationError, match="kind is required"):
        store.apply([{"apiVersion": "v1", "metadata": {"name": "x"}}])


def test_delete_records_history_and_restore_brings_it_back(store: Store) -> None:
    store.apply([cm("a", {"k": "1"})], actor="user:alice")
    store.apply([cm("a", {"k": "2"})], actor="pipeline:01HX/canary")
    uid = store.get(key("a")).uid  # type: ignore[union-attr]
    assert store.delete([key("a"), key("missing")], actor="user:bob") == [key("a")]
    assert store.get(key("a")) is None
    hist = store.history(key("a"))
    assert [(h.revision, h.action, h.actor, h.deleted) for h in hist] == [
        (1, Action.CREATED, "user:alice", False),
        (2, Action.CONFIGURED, "pipeline:01HX/canary", False),
        (3, Action.DELETED, "user:bob", True),
    ]
    res = store.restore(key("a"), 1, actor="user:carol")
    assert res.action == Action.CREATED
    got = store.get(key("a"))
    assert got is not None and got.body["data"] == {"k": "1"} and got.uid != uid
    last = store.history(key("a"))[-1]
    assert (last.revision, last.action, last.restored_from, last.actor) == (4, Action.RESTORED, 1, "user:carol")


def test_restore_of_unknown_revision_names_the_known_ones(store: Store) -> None:
    store.apply([cm("a")])
    with pytest.raises(NotFound) as err:
        store.restore(key("a"), 9)
    assert err.value.hint == "revisions: 1"
    with pytest.raises(NotFound):
        store.restore(key("nothing"), 1)


def test_delete_of_nothing_changes_nothing(store: Store) -> None:
    assert store.delete([key("missing")]) == []
    assert store.revision() == 0


def test_status_survives_an_apply_without_status(store: Store) -> None:
    body = cm("a")
    body["status"] = {"phase": "Ready"}
    store.apply([body])
    [res] = store.apply([cm("a")])
    assert res.action == Action.UNCHANGED
    assert store.get(key("a")).body["status"] == {"phase": "Ready"}  # type: ignore[union-attr]


def test_cluster_scoped_kinds_have_no_namespace(store: Store) -> None:
    store.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": "x"}}])
    got = store.get(ResourceKey("", "Namespace", "", "shop"))
    assert got is not None and "namespace" not in got.body["metadata"]


def test_list_filters_by_kind_namespace_and_group(store: Store) -> None:
    store.apply([cm("a"), cm("b", namespace="other"), deployment("web")])
    assert [r.key.name for r in store.list(kind="ConfigMap")] == ["a", "b"]
    assert [r.key.name for r in store.list(kind="ConfigMap", namespace="other")] == ["b"]
    assert [r.key.name for r in store.list(group="apps")] == ["web"]
    assert len(store.list()) == 3


def test_subscribers_hear_committed_changes_only(store: Store) -> None:
    heard: list[list[ResourceKey]] = []
    unsubscribe = store.subscribe(heard.append)
    store.apply([cm("a"), cm("b")])
    store.apply([cm("a"), cm("b", {"x": "y"})])
    store.apply([cm("c")], dry_run=True)
    with pytest.raises(ValidationError):
        store.apply([cm("d"), {"kind": "ConfigMap"}])
    store.delete([key("a")])
    unsubscribe()
    store.delete([key("b")])
    assert heard == [[key("a"), key("b")], [key("b")], [key("a")]]


def test_a_failing_subscriber_does_not_undo_the_change(store: Store) -> None:
    def broken(_keys: list[ResourceKey]) -> None:
        raise RuntimeError("bug in a subscriber")

    store.subscribe(broken)
    store.apply([cm("a")])
    assert store.get(key("a")) is not None


def test_two_stores_on_one_database_see_each_other(open_store: Callable[[], Store]) -> None:
    one, two = open_store(), open_store()  # second open runs migrations again: a no-op
    one.apply([cm("a")])
    assert two.get(key("a")) is not None
    two.apply([cm("a", {"k": "2"})])
    assert one.revision() == 2
    assert [h.revision for h in one.history(key("a"))] == [1, 2]


def test_concurrent_writers_from_threads_all_land(store: Store) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(5):
                store.apply([cm(f"t{i}-{j}")], actor=f"user:t{i}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(store.list(kind="ConfigMap")) == 30
    assert store.revision() == 30
    versions = {r.resource_version for r in store.list(kind="ConfigMap")}
    assert len(versions) == 30


def test_concurrent_updates_from_one_version_let_exactly_one_win(store: Store) -> None:
    [base] = store.apply([cm("a")])
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def update(i: int) -> None:
        barrier.wait()
        try:
            store.apply([cm("a", {"k": f"writer-{i}"}, resourceVersion=base.resource_version)])
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=update, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "ok"]
    assert len(store.history(key("a"))) == 2


def test_changes_since_lists_history_after_a_revision(store: Store) -> None:
    store.apply([cm("a")])
    mark = store.revision()
    store.apply([cm("b")])
    store.delete([key("a")])
    assert [(c.key.name, c.action) for c in store.changes_since(mark)] == [("b", Action.CREATED),
                                                                          ("a", Action.DELETED)]


def test_yaml_dates_are_stored_as_strings(store: Store) -> None:
    docs = load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata:\n  when: 2024-01-02\n")
    store.apply(docs)
    assert store.apply(load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata:\n  when: 2024-01-02\n")
                       )[0].action == Action.UNCHANGED
    assert store.get(key("d")).body["data"]["when"] == "2024-01-02"  # type: ignore[union-attr]


def test_fifth_document_failing_istio_admission_writes_nothing(store: Store) -> None:
    good = [f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ok{i}}}\n" for i in range(4)]
    bad = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n"
           "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: -5\n")
    with pytest.raises(ValidationError) as err:
        store.apply(load_text("---\n".join([*good, bad]), "routes.yaml"))
    assert "routes.yaml:" in str(err.value)
    assert store.list() == []
    assert history_rows(store) == 0


@pytest.mark.postgres
def test_open_follows_graylane_database_url(postgres_schema_url: str, state_dir: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_DATABASE_URL", postgres_schema_url)
    store = Store.open()
    try:
        assert store.engine.dialect.name == "postgresql"
        store.apply([cm("pg")])
        assert store.get(key("pg")) is not None
        assert not (state_dir / "graylane.db").exists()
    finally:
        store.close()


def test_open_defaults_to_sqlite_in_wal_mode_in_the_state_folder(state_dir: Any) -> None:
    store = Store.open()
    try:
        store.apply([cm("local")])
        assert (state_dir / "graylane.db").exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        store.close()


def test_an_unreachable_database_is_one_clear_error() -> None:
    from graylane.errors import GraylaneError

    with pytest.raises(GraylaneError) as err:
        Store.open("postgresql+psycopg://graylane:secret@127.0.0.1:9/nowhere?connect_timeout=2")
    assert "cannot open the store at postgresql+psycopg://graylane:***@127.0.0.1:9/nowhere" in err.value.message
    assert "secret" not in str(err.value)
