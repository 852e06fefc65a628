"""The Python face of mesh-policy: API shape, decisions, errors."""

import json
import pathlib

import pytest

import mesh_policy
from mesh_policy import Decision, InvalidManifestError, InvalidRequestError, Mesh, MeshPolicyError

LEDGER = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger, namespace: payments}
spec:
  selector: {matchLabels: {app: ledger}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/payments/sa/accounts"]}}]
    to: [{operation: {ports: ["8080"]}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ledger, namespace: payments}
spec: {}
"""

WAYPOINT = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/curl"]}}]
    to: [{operation: {methods: ["GET"]}}]
"""


def l4(principal="cluster.local/ns/payments/sa/accounts", port=8080):
    return {"destination": {"namespace": "payments", "workload_labels": {"app": "ledger"}, "port": port},
            "source": {"principal": principal}}


def test_apply_reports_applied_and_skipped():
    report = Mesh().apply_yaml(LEDGER)
    assert report["applied"] == ["AuthorizationPolicy payments/ledger"]
    assert report["skipped"] == ["apps/v1 Deployment ledger"]
    assert report["warnings"] == []


def test_ztunnel_allow_explains_itself():
    mesh = Mesh()
    mesh.apply_yaml(LEDGER)
    d = mesh.check(l4())
    assert isinstance(d, Decision)
    assert d.allowed and bool(d)
    assert d.status is None
    assert (d.action, d.policy, d.rule, d.enforcement) == ("ALLOW", "payments/ledger", 0, "ztunnel")
    assert d.reason == ("allowed by payments/ledger rule 0: source principal is "
                        "cluster.local/ns/payments/sa/accounts and destination port is 8080")


def test_ztunnel_default_deny():
    mesh = Mesh()
    mesh.apply_yaml(LEDGER)
    d = mesh.check(l4(port=9090))
    assert not d.allowed
    assert (d.action, d.policy, d.rule) == ("DENY", None, None)
    assert d.reason == "no ALLOW policy matched (1 applies)"


def test_to_dict_has_exactly_the_shared_shape():
    mesh = Mesh()
    mesh.apply_yaml(LEDGER)
    d = mesh.check(l4()).to_dict()
    assert set(d) == {"allowed", "status", "action", "policy", "rule", "reason", "enforcement"}
    assert d["allowed"] is True and d["status"] is None and d["rule"] == 0
    json.dumps(d)


def test_waypoint_statuses():
    mesh = Mesh()
    mesh.apply_yaml(WAYPOINT)
    base = {"destination": {"namespace": "default", "service": "productpage"},
            "source": {"principal": "cluster.local/ns/default/sa/curl"}}
    ok = mesh.check(dict(base, http={"method": "GET", "path": "/productpage"}))
    assert (ok.allowed, ok.status, ok.enforcement) == (True, 200, "waypoint")
    denied = mesh.check(dict(base, http={"method": "DELETE", "path": "/productpage"}))
    assert (denied.allowed, denied.status) == (False, 403)


def test_no_policy_applies():
    d = Mesh().check({"destination": {"namespace": "x"}})
    assert d.allowed and d.reason == "no policy applies"


def test_invalid_manifest_names_resource_and_field():
    with pytest.raises(InvalidManifestError) as err:
        Mesh().apply_yaml(LEDGER.replace("principals:", "principal:"))
    message = str(err.value)
    assert "AuthorizationPolicy payments/ledger" in message
    assert "spec.rules[0].from[0].source" in message
    assert "principal" in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, MeshPolicyError)


def test_apply_is_atomic():
    mesh = Mesh()
    broken = LEDGER + "---\n" + WAYPOINT.replace('["GET"]', '[""]')
    with pytest.raises(InvalidManifestError, match=r"empty value not allowed"):
        mesh.apply_yaml(broken)
    assert len(mesh) == 0


def test_invalid_request_names_field():
    mesh = Mesh()
    with pytest.raises(InvalidRequestError, match=r"destination\.port"):
        mesh.check({"destination": {"namespace": "payments", "port": "http"}})
    with pytest.raises(InvalidRequestError, match=r"unknown field `principle`"):
        mesh.check({"destination": {"namespace": "payments"}, "source": {"principle": "x"}})
    with pytest.raises(ValueError):
        mesh.check({"source": {}})


def test_apply_file(tmp_path: pathlib.Path):
    path = tmp_path / "ledger.yaml"
    path.write_text(LEDGER)
    mesh = Mesh()
    assert mesh.apply_file(path)["applied"] == ["AuthorizationPolicy payments/ledger"]
    assert mesh.apply_file(str(path))["applied"] == ["AuthorizationPolicy payments/ledger"]
    assert len(mesh) == 1


def test_trust_domain_aliases_at_the_waypoint():
    mesh = Mesh(trust_domain="td-new", trust_domain_aliases=["td-old"])
    mesh.apply_yaml(WAYPOINT)
    request = {"destination": {"namespace": "default", "service": "productpage"},
               "source": {"principal": "td-old/ns/default/sa/curl"},
               "http": {"method": "GET", "path": "/"}}
    assert mesh.check(request).allowed


def test_root_namespace_is_configurable():
    mesh = Mesh(root_namespace="mesh-root")
    mesh.apply_yaml("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: mesh-root}
spec: {}
""")
    assert not mesh.check({"destination": {"namespace": "anything"}}).allowed


def test_bad_path_normalization_is_rejected():
    with pytest.raises(InvalidRequestError):
        Mesh(path_normalization="SOMETIMES")


def test_module_exports():
    assert set(mesh_policy.__all__) >= {"Mesh", "Decision", "InvalidManifestError", "InvalidRequestError"}


def test_analyze_reports_http_rules_at_ztunnel():
    mesh = Mesh()
    report = mesh.apply_yaml("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-only, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
""")
    assert len(report["warnings"]) == 1
    assert "never matches there" in report["warnings"][0]
    [finding] = mesh.analyze()
    assert finding.code == "ztunnel-allow-never-matches"
    assert finding.severity == "error"
    assert finding.resources == [{"kind": "AuthorizationPolicy", "namespace": "shop", "name": "get-only", "field": "spec.rules[0]"}]
    assert finding.message in report["warnings"][0]
    assert finding.fix
    assert finding.to_dict()["code"] == "ztunnel-allow-never-matches"


def test_check_many_decides_each_request_as_check_does():
    mesh = Mesh()
    mesh.apply_yaml(LEDGER)
    requests = [l4(), l4(port=9090), l4(principal="cluster.local/ns/payments/sa/probe")]
    decisions = mesh.check_many(requests)
    assert [d.to_dict() for d in decisions] == [mesh.check(r).to_dict() for r in requests]
    assert [d.allowed for d in decisions] == [True, False, False]
    assert [d.allowed for d in mesh.check_many(tuple(requests))] == [True, False, False]
    assert mesh.check_many([]) == []


def test_check_many_names_the_invalid_request():
    mesh = Mesh()
    mesh.apply_yaml(LEDGER)
    with pytest.raises(InvalidRequestError, match=r"requests\[1\]: .*destination\.port"):
        mesh.check_many([l4(), {"destination": {"namespace": "payments", "port": "http"}}])
    with pytest.raises(InvalidRequestError, match=r"requests\[0\]: request: expected a dict"):
        mesh.check_many(["not a dict"])
    with pytest.raises(InvalidRequestError, match=r"expected a list of dicts"):
        mesh.check_many(l4())
