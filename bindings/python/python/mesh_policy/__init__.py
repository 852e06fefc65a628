"""Test Istio security policies the way an ambient mesh enforces them.

    >>> from mesh_policy import Mesh
    >>> mesh = Mesh()
    >>> mesh.apply_file("manifests/payments.yaml")
    >>> decision = mesh.check({"destination": {"namespace": "payments", "port": 8080},
    ...                        "source": {"principal": "cluster.local/ns/payments/sa/accounts"}})
    >>> decision.allowed, decision.reason
"""

from ._native import (
    Decision,
    InvalidConfigError,
    InvalidManifestError,
    InvalidRequestError,
    Mesh,
    MeshPolicyError,
)

__all__ = ["Decision", "InvalidConfigError", "InvalidManifestError", "InvalidRequestError", "Mesh", "MeshPolicyError"]
