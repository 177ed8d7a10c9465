"""istioctl analyze's semantics in `graylane validate`, through the CLI: exportTo, schema-invalid targets,
subsets of unknown hosts, missing and Gateway API gateways, IST0109 overlaps, prefix-shadowed matches."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from graylane.cli.main import app

runner = CliRunner()


def validate(tmp_path: Path, *texts: str) -> tuple[int, list[str]]:
    """`graylane validate -f 1.yaml 2.yaml ... --use-kube=false`: exit code and the lines printed."""
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i + 1}.yaml"
        path.write_text(text)
        paths.append(str(path))
    result = runner.invoke(app, ["validate", "-f", *paths, "--use-kube=false"])
    return result.exit_code, [line.replace(str(tmp_path) + "/", "") for line in result.output.splitlines()]


def vs(namespace: str, name: str, hosts: str, dest: str, extra: str = "") -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, "
            f"namespace: {namespace}}}\nspec:\n  hosts: {hosts}\n{extra}  http:\n  - route:\n"
            f"    - destination: {{host: {dest}}}\n")


def codes(lines: list[str]) -> list[str]:
    return [line.split("]", 1)[0] + "] " + line.split(") ", 1)[1] for line in lines if "[IST" in line]


SVC = ("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}{extra}}}\nspec:\n"
       "  ports: [{{port: 80, name: http}}]\n")
WILDCARD_ENTRY = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: any, namespace: egress}\n"
                  "spec:\n  hosts: ['*.example.com']\n  exportTo: ['.']\n"
                  "  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n")


def test_several_paths_after_one_f(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, SVC.format(name="a", ns="default", extra=""),
                           SVC.format(name="b", ns="default", extra=""))
    assert code == 0
    assert lines == ["✔ No validation issues found in 2 documents."]


def test_paths_without_f_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SVC.format(name="a", ns="default", extra=""))
    result = runner.invoke(app, ["validate", str(tmp_path / "a.yaml")])
    assert result.exit_code == 1
    assert "paths are given with -f" in result.output


def test_an_entry_exported_to_its_own_namespace_hides_nothing_elsewhere(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, WILDCARD_ENTRY,
                           vs("default", "shop", "[shop.example.com]", "api.example.com"),
                           vs("egress", "shop", "[egress.example.com]", "api.example.com"))
    assert code == 1
    assert codes(lines) == ['Error [IST0101] Referenced host not found: "api.example.com"']
    assert any("(VirtualService default/shop 2.yaml:8)" in line for line in lines)


def test_service_export_to_annotation(tmp_path: Path) -> None:
    svc = SVC.format(name="details", ns="default",
                     extra=", annotations: {networking.istio.io/exportTo: '.'}")
    code, lines = validate(tmp_path, svc, vs("default", "ok", "[details]", "details"),
                           vs("shop", "far", "[x.shop.svc.cluster.local]", "details.default.svc.cluster.local"))
    assert code == 1
    assert [line for line in lines if "IST0101" in line] == [
        'Error [IST0101] (VirtualService shop/far 3.yaml:8) Referenced host not found: '
        '"details.default.svc.cluster.local"']


def test_destination_rules_see_hosts_exported_to_their_namespace(tmp_path: Path) -> None:
    svc = SVC.format(name="details", ns="default", extra=", annotations: {networking.istio.io/exportTo: '.'}")
    rule = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: details, namespace: {ns}}}\n"
            "spec:\n  host: details.default.svc.cluster.local\n")
    code, lines = validate(tmp_path, svc, rule.format(ns="default"), rule.format(ns="shop"))
    assert code == 0
    assert [line for line in lines if "IST" in line] == [
        "Warning [IST0174] (DestinationRule shop/details 3.yaml:5) The host details.default.svc.cluster.local "
        "defined in the DestinationRule does not match any services in the mesh."]


def test_virtual_services_that_cannot_see_each_other_do_not_conflict(tmp_path: Path) -> None:
    svc = SVC.format(name="ratings", ns="team1", extra="")
    local = "  exportTo: ['.']\n"
    code, lines = validate(tmp_path, svc,
                           vs("team1", "ratings", "[ratings]", "ratings", local),
                           vs("team2", "ratings", "[ratings.team1.svc.cluster.local]",
                              "ratings.team1.svc.cluster.local", local))
    assert code == 0, lines
    assert not any("IST0109" in line for line in lines)


def test_conflicts_are_reported_once_per_virtual_service(tmp_path: Path) -> None:
    svc = SVC.format(name="ratings", ns="foo", extra="")
    code, lines = validate(tmp_path, svc,
                           vs("foo", "a", "[ratings, ratings.example.com]", "ratings"),
                           vs("foo", "b", "[ratings, ratings.example.com]", "ratings"))
    assert code == 1
    conflicts = [line for line in lines if "IST0109" in line]
    assert [line.split(") ", 1)[0] for line in conflicts] == [
        "Error [IST0109] (VirtualService foo/a 2.yaml:3", "Error [IST0109] (VirtualService foo/b 3.yaml:3"]
    assert conflicts[0].endswith("The VirtualServices foo/a,foo/b associated with mesh gateway define the same host "
                                 "*/ratings.example.com which can lead to undefined behavior. This can be fixed by "
                                 "merging the conflicting VirtualServices into a single resource.")


def test_a_host_exported_to_one_namespace_conflicts_with_an_overlapping_wildcard_exported_everywhere(
        tmp_path: Path) -> None:
    entry = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: d, namespace: bar}\n"
             "spec:\n  hosts: ['*.d']\n  ports: [{number: 80, name: http}]\n  resolution: NONE\n")
    code, lines = validate(tmp_path, entry,
                           vs("foo", "productpage-d", "['*.productpage.d']", "x.productpage.d", "  exportTo: ['.']\n"),
                           vs("bar", "productpage-d", "['*.d']", "x.d", "  exportTo: ['*']\n"))
    assert [line.split(") ", 1)[0] for line in lines if "IST0109" in line] == [
        "Error [IST0109] (VirtualService foo/productpage-d 2.yaml:3",
        "Error [IST0109] (VirtualService bar/productpage-d 3.yaml:3"]
    assert "define the same host foo/*.productpage.d " in lines[0] + lines[1] + lines[2]


def test_a_schema_invalid_service_still_counts_as_a_host(tmp_path: Path) -> None:
    svc = ("apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n"
           "  ports: [{port: 9080, name: http, protocol: HTTP}]\n")
    code, lines = validate(tmp_path, svc, vs("default", "reviews", "[reviews]", "reviews"))
    assert code == 1
    assert lines[:-1] == ["Error (Service default/reviews 1.yaml:5) spec.ports[0].protocol: must be one of 'TCP', "
                          "'UDP' or 'SCTP' (got 'HTTP')"]


def test_an_unknown_host_with_a_subset_gets_both_findings(tmp_path: Path) -> None:
    code, lines = validate(tmp_path, vs("default", "reviews", "[reviews]", "reviews, subset: v4"))
    assert code == 1
    assert lines == [
        'Error [IST0101] (VirtualService default/reviews 1.yaml:8) Referenced host not found: "reviews"',
        'Error [IST0101] (VirtualService default/reviews 1.yaml:8) Referenced host+subset in destinationrule '
        'not found: "reviews+v4"',
        "2 errors, 0 warnings, 0 info in 1 document."]


def test_a_missing_gateway_gets_ist0101_and_ist0132(tmp_path: Path) -> None:
    svc = SVC.format(name="shop", ns="default", extra="")
    code, lines = validate(tmp_path, svc, vs("default", "shop", "[shop.example.com]", "shop",
                                             "  gateways: [istio-system/ingress]\n"))
    assert code == 1
    assert lines == [
        'Error [IST0101] (VirtualService default/shop 2.yaml:6) Referenced gateway not found: "istio-system/ingress"',
        "Warning [IST0132] (VirtualService default/shop 2.yaml:6) one or more host [shop.example.com] defined in "
        "VirtualService default/shop not found in Gateway istio-system/ingress.",
        "1 error, 1 warning, 0 info in 2 documents."]


def test_a_gateway_api_gateway_is_a_valid_gateway_and_its_listener_hostnames_count(tmp_path: Path) -> None:
    gateway = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: web, namespace: default}\n"
               "spec:\n  gatewayClassName: istio\n  listeners:\n  - {name: http, hostname: example.com, port: 80, "
               "protocol: HTTP}\n")
    svc = SVC.format(name="shop", ns="default", extra="")
    code, lines = validate(tmp_path, gateway, svc,
                           vs("default", "good", "[example.com]", "shop", "  gateways: [web]\n"),
                           vs("default", "bad", "[wrong.example.com]", "shop", "  gateways: [default/web]\n"))
    assert code == 0
    assert [line for line in lines if "IST" in line] == [
        "Warning [IST0132] (VirtualService default/bad 4.yaml:6) one or more host [wrong.example.com] defined in "
        "VirtualService default/bad not found in Gateway default/web."]


def test_a_match_shadowed_by_a_shorter_prefix_is_ineffective(tmp_path: Path) -> None:
    svc = SVC.format(name="shop", ns="default", extra="")
    text = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop}\nspec:\n"
            "  hosts: [shop]\n  http:\n"
            "  - name: product\n    match: [{uri: {prefix: /api/v1/product}}]\n"
            "    route: [{destination: {host: shop}}]\n"
            "  - name: products\n    match: [{uri: {prefix: /api/v1/products}}]\n"
            "    route: [{destination: {host: shop}}]\n")
    code, lines = validate(tmp_path, svc, text)
    assert code == 0
    assert lines[0] == ('Info [IST0131] (VirtualService default/shop 2.yaml:11) VirtualService rule "products" match '
                        '#0 of prefix /api/v1/products is not used (duplicate/overlapping match in rule #0 of prefix '
                        '/api/v1/product on "product").')
