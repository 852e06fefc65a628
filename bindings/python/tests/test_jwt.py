"""RequestAuthentication from Python: raw tokens validated against a JWKS supplied with add_jwks."""

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mesh_policy import InvalidManifestError, Mesh

ISSUER = "https://idp.example.com"
JWKS_URI = "https://idp.example.com/jwks.json"
MANIFESTS = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: api}}]
  jwtRules: [{{issuer: "{ISSUER}", jwksUri: "{JWKS_URI}", outputPayloadToHeader: x-jwt-payload}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: alice-only, namespace: shop}}
spec:
  targetRefs: [{{kind: Service, group: "", name: api}}]
  rules: [{{from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]}}]
"""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Idp:
    def __init__(self, kid="k1"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid,
                                     "x": b64(numbers.x.to_bytes(32, "big")),
                                     "y": b64(numbers.y.to_bytes(32, "big"))}]})

    def sign(self, claims: dict) -> str:
        signing_input = b64(json.dumps({"alg": "ES256", "kid": self.kid}).encode()) + "." + b64(
            json.dumps(claims).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.fixture
def idp():
    return Idp()


@pytest.fixture
def mesh(idp):
    mesh = Mesh()
    mesh.apply_yaml(MANIFESTS)
    mesh.add_jwks(JWKS_URI, idp.jwks())
    return mesh


def request(token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return {"destination": {"namespace": "shop", "service": "api"},
            "http": {"method": "GET", "path": "/", "headers": headers}}


def test_valid_token(mesh, idp):
    token = idp.sign({"iss": ISSUER, "sub": "alice", "exp": int(time.time()) + 300})
    d = mesh.check(request(token))
    assert (d.allowed, d.status, d.policy) == (True, 200, "shop/alice-only"), d.reason
    assert d.token_forwarding == {"forward_original_token": False, "output_payload_to_header": "x-jwt-payload",
                                  "output_claim_to_headers": []}
    assert "token_forwarding" not in d.to_dict()


def test_expired_token_is_401(mesh, idp):
    token = idp.sign({"iss": ISSUER, "sub": "alice", "exp": int(time.time()) - 300})
    d = mesh.check(request(token))
    assert (d.allowed, d.status) == (False, 401)
    assert d.reason.startswith("JWT rejected: ")


def test_now_can_be_pinned(mesh, idp):
    token = idp.sign({"iss": ISSUER, "sub": "alice", "exp": 2_000_000_000})
    assert mesh.check(request(token), now=1_999_999_000).allowed
    assert mesh.check(request(token), now=2_000_001_000).status == 401


def test_other_subject_is_403(mesh, idp):
    token = idp.sign({"iss": ISSUER, "sub": "bob"})
    d = mesh.check(request(token))
    assert (d.allowed, d.status) == (False, 403)


def test_no_token_is_anonymous(mesh):
    d = mesh.check(request())
    assert (d.status, d.reason) == (403, "no ALLOW policy matched (1 applies)")
    assert d.token_forwarding is None


def test_bad_jwks_is_rejected():
    with pytest.raises(InvalidManifestError, match=JWKS_URI):
        Mesh().add_jwks(JWKS_URI, "{not json")
