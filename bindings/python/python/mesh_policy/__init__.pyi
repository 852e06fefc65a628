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

class HopDict(TypedDict):
    proxy: Literal["waypoint", "ztunnel"]
    name: Optional[str]
    peer: Optional[str]
    decision: DecisionDict

class EndpointTraceDict(TypedDict):
    allowed: bool
    status: Optional[int]
    refused: bool
    denied_by: Optional[int]
    endpoint: Optional[str]
    hops: list[HopDict]

class TraceDict(EndpointTraceDict):
    endpoints: list[EndpointTraceDict]

class InvolvedDict(TypedDict):
    kind: str
    namespace: Optional[str]
    name: str
    field: Optional[str]

class FindingDict(TypedDict):
    code: str
    severity: Literal["error", "warning", "info"]
    resources: list[InvolvedDict]
    message: str
    fix: str

class Finding:
    """An analyzer finding."""

    @property
    def code(self) -> str:
        """A stable code, e.g. "waypoint-identity-not-allowed"."""
    @property
    def severity(self) -> Literal["error", "warning", "info"]: ...
    @property
    def resources(self) -> list[InvolvedDict]:
        """The resources involved, the first being the one to change."""
    @property
    def message(self) -> str: ...
    @property
    def fix(self) -> str: ...
    def to_dict(self) -> FindingDict: ...

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
    @property
    def dry_run(self) -> Optional["Decision"]:
        """When dry-run policies apply: the decision they would produce if enforced; else None."""
    def to_dict(self) -> DecisionDict: ...
    def __bool__(self) -> bool: ...

class Hop:
    """One enforcement point on the way of a trace."""

    @property
    def proxy(self) -> Literal["waypoint", "ztunnel"]: ...
    @property
    def name(self) -> Optional[str]:
        """The waypoint Gateway (namespace/name), or the destination's node."""
    @property
    def peer(self) -> Optional[str]:
        """The identity this hop sees; None for a plaintext peer."""
    @property
    def decision(self) -> Decision: ...
    def to_dict(self) -> HopDict: ...

class Trace:
    """Can A reach B, and if not, which hop stops it and why."""

    @property
    def allowed(self) -> bool: ...
    @property
    def status(self) -> Optional[int]:
        """With `http`: 200, 401/403 from the waypoint, 503 when the destination's ztunnel refuses the waypoint."""
    @property
    def refused(self) -> bool:
        """Whether the client's own connection is refused or reset."""
    @property
    def denied_by(self) -> Optional[int]: ...
    @property
    def denied_hop(self) -> Optional[Hop]: ...
    @property
    def endpoint(self) -> Optional[str]: ...
    @property
    def hops(self) -> list[Hop]: ...
    @property
    def endpoints(self) -> list["Trace"]:
        """One trace per endpoint when the destination has several; empty otherwise."""
    def to_dict(self) -> TraceDict: ...
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
    def check_many(
        self, requests: Union[list[dict[str, Any]], tuple[dict[str, Any], ...]], now: Optional[float] = None
    ) -> list[Decision]:
        """Check many requests in one call, against one snapshot and one `now`; a Decision per request, in
        order. Raises InvalidRequestError naming the index of an invalid request."""
    def trace(self, request: dict[str, Any], now: Optional[float] = None) -> Trace:
        """Follow a connection or request across every hop (the shape of shared/spec/trace.md)."""
    def analyze(self) -> list[Finding]:
        """Findings about the applied configuration: apply-time warnings and cross-resource problems."""
    def __len__(self) -> int: ...
