"""Type stubs for mesh_policy."""

from os import PathLike
from typing import Any, Literal, Optional, TypedDict, Union

class ApplyReport(TypedDict):
    applied: list[str]
    """`Kind namespace/name` of each resource created or replaced."""
    skipped: list[str]
    """`apiVersion kind name` of each document of another kind."""
    warnings: list[str]
    """Accepted resources that probably do not do what was meant."""

class DecisionDict(TypedDict):
    allowed: bool
    status: Optional[int]
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
    policy: Optional[str]
    rule: Optional[int]
    reason: str
    enforcement: Literal["ztunnel", "waypoint"]

class TokenForwarding(TypedDict):
    forward_original_token: bool
    output_payload_to_header: Optional[str]
    output_claim_to_headers: list[tuple[str, str]]

class MeshPolicyError(ValueError):
    """Base of every mesh_policy error."""

class InvalidManifestError(MeshPolicyError):
    """A manifest failed validation; the message names the resource and the field."""

class InvalidRequestError(MeshPolicyError):
    """A check request is malformed; the message names the field."""

class InvalidConfigError(InvalidRequestError):
    """The Mesh's settings are invalid: a trust domain or alias, the root namespace, path_normalization, ..."""

class Decision:
    """The answer to a check."""

    @property
    def allowed(self) -> bool: ...
    @property
    def status(self) -> Optional[int]:
        """200, 401 or 403 at a waypoint; None at ztunnel (a denial refuses the connection)."""
    @property
    def action(self) -> Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]: ...
    @property
    def policy(self) -> Optional[str]:
        """`namespace/name` of the deciding policy; None for a default outcome."""
    @property
    def rule(self) -> Optional[int]: ...
    @property
    def reason(self) -> str: ...
    @property
    def enforcement(self) -> Literal["ztunnel", "waypoint"]: ...
    @property
    def token_forwarding(self) -> Optional[TokenForwarding]:
        """How the waypoint forwards a token it validated; None when it validated none."""
    def to_dict(self) -> DecisionDict: ...
    def __bool__(self) -> bool: ...

class Mesh:
    """A mesh's security configuration: apply manifests, then check requests.

    One Mesh may be shared by many threads: checks run in parallel without the GIL, applies are serialized.
    Every invalid input raises a MeshPolicyError subclass."""

    def __init__(
        self,
        root_namespace: str = "istio-system",
        trust_domain: str = "cluster.local",
        trust_domain_aliases: Optional[list[str]] = None,
        path_normalization: Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] = "BASE",
        max_manifest_bytes: int = 3 * 1024 * 1024,
    ) -> None:
        """Raises InvalidConfigError for a trust domain or alias that is not a SPIFFE trust domain (so not
        empty and not `*`), or another invalid setting. `max_manifest_bytes` bounds one apply (default 3 MiB,
        as the Kubernetes API server)."""
    def apply_yaml(self, text: Union[str, bytes]) -> ApplyReport:
        """Apply a multi-document manifest (str, or UTF-8 bytes) atomically. Raises InvalidManifestError."""
    def apply_file(self, path: Union[str, PathLike[str]]) -> ApplyReport: ...
    def add_jwks(self, uri: str, jwks_json: str) -> None:
        """Supply the JWKS document behind a RequestAuthentication `jwksUri` (nothing is fetched)."""
    def check(self, request: dict[str, Any], now: Optional[float] = None) -> Decision:
        """Check a request in the shared check-request shape. Raw tokens are validated at `now` (Unix seconds;
        default: the current time). Raises InvalidRequestError."""
    def analyze(self) -> list[str]:
        """Findings about the applied configuration: apply-time warnings and cross-resource problems."""
    def __len__(self) -> int: ...
