"""Test Istio security policies the way an ambient mesh enforces them.

    >>> from mesh_policy import Mesh
    >>> mesh = Mesh()
    >>> mesh.apply_file("manifests/payments.yaml")
    >>> decision = mesh.check({"destination": {"namespace": "payments", "port": 8080},
    ...                        "source": {"principal": "cluster.local/ns/payments/sa/accounts"}})
    >>> decision.allowed, decision.reason
    >>> trace = mesh.trace({"source": {"pod": "payments/accounts-0"}, "destination": "ledger:8080",
    ...                     "http": {"method": "POST", "path": "/ledger/v1/debit"}})
    >>> trace.status, trace.denied_hop
"""

from ._native import (
    Decision,
    Finding,
    Hop,
    InvalidConfigError,
    InvalidManifestError,
    InvalidRequestError,
    Mesh,
    MeshPolicyError,
    Trace,
)

__all__ = [
    "Decision",
    "Finding",
    "Hop",
    "InvalidConfigError",
    "InvalidManifestError",
    "InvalidRequestError",
    "Mesh",
    "MeshPolicyError",
    "Trace",
]
