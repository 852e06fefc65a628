"""mesh.trace(): the payments guide's scenario, hop by hop, from Python."""

import base64
import json
import pathlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mesh_policy import Hop, InvalidRequestError, Mesh, Trace

MANIFESTS = pathlib.Path(__file__).resolve().parents[3] / "examples" / "manifests" / "payments"
ISSUER = "https://issuer.payments.test"
JWKS_URI = "https://issuer.payments.test/discovery/keys"
NOW = 1_767_225_600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A test issuer: an EC key, its JWKS, and ES256 tokens signed with it."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> str:
        n = self.key.public_key().public_numbers()
        x, y = n.x.to_bytes(32, "big"), n.y.to_bytes(32, "big")
        return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": b64(x), "y": b64(y)}]})

    def token(self, **claims) -> str:
        payload = {"iss": ISSUER, "sub": "accounts", "aud": "api://payments-ledger", "exp": NOW + 3600, **claims}
        signing_input = b64(json.dumps({"alg": "ES256", "kid": "k1"}).encode()) + "." + b64(json.dumps(payload).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.fixture()
def issuer():
    return Issuer()


def mesh_with(issuer, *files):
    mesh = Mesh()
    for f in ("cluster.yaml", "policies.yaml") + files:
        mesh.apply_file(MANIFESTS / f)
    mesh.add_jwks(JWKS_URI, issuer.jwks())
    return mesh


def debit(token=None, method="POST", source="payments/accounts-0"):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return {
        "source": {"pod": source},
        "destination": "ledger.payments.svc.cluster.local:8080",
        "http": {"method": method, "path": "/ledger/v1/debit", "headers": headers},
    }


def test_the_guide_as_printed_gets_503_from_the_ledgers_ztunnel(issuer):
    mesh = mesh_with(issuer)
    t = mesh.trace(debit(issuer.token(scp=["ledger.debit"])), now=NOW)
    assert isinstance(t, Trace)
    assert (t.allowed, t.status, t.refused, t.denied_by) == (False, 503, False, 1)
    assert t.endpoint == "payments/ledger-0"
    waypoint, ztunnel = t.hops
    assert isinstance(waypoint, Hop)
    assert (waypoint.proxy, waypoint.name, waypoint.peer) == (
        "waypoint",
        "payments/payments-waypoint",
        "cluster.local/ns/payments/sa/accounts",
    )
    assert waypoint.decision.allowed and waypoint.decision.policy == "payments/ledger-debit-allow"
    assert (ztunnel.proxy, ztunnel.name, ztunnel.peer) == ("ztunnel", "node-b", "cluster.local/ns/payments/sa/payments-waypoint")
    assert not ztunnel.decision.allowed
    assert ztunnel.decision.reason == "no ALLOW policy matched (2 apply)"
    assert t.denied_hop.proxy == "ztunnel"


def test_with_the_waypoint_identity_the_validation_matrix_holds(issuer):
    mesh = mesh_with(issuer, "waypoint-identity.yaml")
    good = issuer.token(scp=["ledger.debit"])
    assert mesh.trace(debit(good), now=NOW).status == 200
    assert mesh.trace(debit(), now=NOW).status == 403
    assert mesh.trace(debit(issuer.token(scp=["ledger.read"])), now=NOW).status == 403
    assert mesh.trace(debit(good, method="DELETE"), now=NOW).status == 403
    expired = mesh.trace(debit(issuer.token(scp=["ledger.debit"], exp=NOW - 600)), now=NOW)
    assert expired.status == 401 and "JWT rejected" in expired.hops[0].decision.reason
    # The now in the request wins over the argument.
    req = debit(good)
    req["now"] = NOW
    assert mesh.trace(req, now=NOW + 10**6).status == 200
    probe = mesh.trace({"source": {"pod": "payments/probe"}, "destination": "10.244.2.20:8080"}, now=NOW)
    assert probe.refused and probe.status is None and probe.hops[0].proxy == "ztunnel"


def test_to_dict_is_the_shared_shape(issuer):
    mesh = mesh_with(issuer)
    d = mesh.trace(debit(issuer.token(scp=["ledger.debit"])), now=NOW).to_dict()
    assert sorted(d) == ["allowed", "denied_by", "endpoint", "endpoints", "hops", "refused", "status"]
    assert sorted(d["hops"][1]) == ["decision", "name", "peer", "proxy"]
    assert d["hops"][1]["decision"]["enforcement"] == "ztunnel"
    assert d["endpoints"] == []


def test_names_the_manifests_do_not_define_are_errors(issuer):
    mesh = mesh_with(issuer)
    with pytest.raises(InvalidRequestError, match="no Service or ServiceEntry is named"):
        mesh.trace({"source": {"pod": "payments/accounts-0"}, "destination": "nosuch:80"})
    with pytest.raises(InvalidRequestError, match="has no port 9090"):
        mesh.trace({"source": {"pod": "payments/accounts-0"}, "destination": "ledger:9090"})
    with pytest.raises(InvalidRequestError, match="no Pod payments/ghost"):
        mesh.trace({"source": {"pod": "payments/ghost"}, "destination": "ledger:8080"})
    with pytest.raises(InvalidRequestError, match="unknown field"):
        mesh.trace({"source": {"pod": "payments/accounts-0"}, "destination": "ledger:8080", "htp": {}})


def test_analyze_names_the_guides_waypoint_identity_mistake(issuer):
    mesh = mesh_with(issuer)
    [finding] = mesh.analyze()
    assert finding.code == "waypoint-identity-not-allowed"
    assert finding.resources[0] == {
        "kind": "AuthorizationPolicy",
        "namespace": "payments",
        "name": "ledger-allow-accounts-l4",
        "field": "spec.rules[0].from[0].source.principals",
    }
    assert "cluster.local/ns/payments/sa/payments-waypoint" in finding.fix
    assert mesh_with(issuer, "waypoint-identity.yaml").analyze() == []
