"""How a platform team tests its mesh policies in CI.

Keep the manifests you `kubectl apply` in the repository (here: `policies/`), and assert what must and must not
get through. Run with `pytest bindings/python/examples`.
"""

from pathlib import Path

import pytest

from mesh_policy import InvalidManifestError, Mesh

POLICIES = Path(__file__).parent / "policies"
ACCOUNTS = "cluster.local/ns/payments/sa/accounts"


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    mesh = Mesh()
    for manifest in sorted(POLICIES.glob("*.yaml")):
        mesh.apply_file(manifest)
    return mesh


def ledger_l4(principal=None, port=8080):
    source = {"principal": principal} if principal else {}
    return {"destination": {"namespace": "payments", "workload_labels": {"app": "ledger"}, "port": port},
            "source": source}


def ledger_http(method, path, token_claims=None):
    request = {
        "destination": {"namespace": "payments", "service": "ledger", "waypoint": "payments-waypoint"},
        "source": {"principal": ACCOUNTS},
        "http": {"method": method, "path": path},
    }
    if token_claims is not None:
        request["jwt"] = {"principal": f"{token_claims['iss']}/{token_claims['sub']}", "claims": token_claims}
    return request


DEBIT_TOKEN = {"iss": "https://idp.example.com", "sub": "accounts-service", "scp": ["ledger.debit"]}


@pytest.mark.parametrize("principal,port,allowed", [
    (ACCOUNTS, 8080, True),
    (ACCOUNTS, 9090, False),
    ("cluster.local/ns/web/sa/frontend", 8080, False),
    (None, 8080, False),
])
def test_only_accounts_reaches_the_ledger(mesh, principal, port, allowed):
    decision = mesh.check(ledger_l4(principal, port))
    assert decision.allowed is allowed, decision.reason


def test_every_ledger_request_needs_a_token(mesh):
    decision = mesh.check(ledger_http("POST", "/ledger/v1/debit"))
    assert not decision.allowed
    assert decision.status == 403
    assert decision.policy == "payments/ledger-require-jwt"
    assert "no request principal" in decision.reason


def test_debit_needs_the_debit_scope(mesh):
    assert mesh.check(ledger_http("POST", "/ledger/v1/debit", DEBIT_TOKEN)).allowed
    read_only = dict(DEBIT_TOKEN, scp=["ledger.read"])
    assert not mesh.check(ledger_http("POST", "/ledger/v1/debit", read_only)).allowed


def test_a_typo_in_a_policy_fails_the_build():
    with pytest.raises(InvalidManifestError, match=r"principal"):
        Mesh().apply_yaml("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: payments}
spec:
  rules:
  - from: [{source: {principal: ["cluster.local/ns/payments/sa/accounts"]}}]
""")
