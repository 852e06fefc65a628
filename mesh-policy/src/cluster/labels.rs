//! The labels and annotations Istio reads to place workloads in ambient mode and route them through waypoints.

/// On a namespace or a pod: `ambient` enrols it in ambient mode; on a pod, `none` opts it out.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// On a namespace, service, service entry or pod: the waypoint Gateway to use, or `none`.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Beside [`USE_WAYPOINT`]: the waypoint's namespace, when it is not the object's own.
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// On a waypoint Gateway, else on its GatewayClass: the traffic it serves, `service` (default), `workload`, `all`
/// or `none`.
pub const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// On a Gateway: the service account its deployment runs as (default: the Gateway's name).
pub const GATEWAY_SERVICE_ACCOUNT: &str = "gateway.istio.io/service-account";
/// On a Gateway, else on its GatewayClass: how the waypoint's node proxy delivers tunnels to a third-party
/// waypoint, `<protocol>` or `<protocol>/<port>` (`PROXY/15088`: Istio's sandwich binding).
pub const WAYPOINT_INBOUND_BINDING: &str = "ambient.istio.io/waypoint-inbound-binding";
/// On a Service, ServiceEntry or namespace (the service's own label winning): `"true"` (any true of Go's
/// `strconv.ParseBool`) sends traffic from ingress gateways through the service's waypoint too.
pub const INGRESS_USE_WAYPOINT: &str = "istio.io/ingress-use-waypoint";
/// On the pods of a Gateway's deployment: the Gateway's name.
pub const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// On the objects istiod's deployment controller creates for a Gateway: which controller manages them.
pub const GATEWAY_MANAGED: &str = "gateway.istio.io/managed";
/// [`GATEWAY_MANAGED`] of a waypoint's objects.
pub const MANAGED_BY_MESH_CONTROLLER: &str = "istio.io-mesh-controller";
/// [`GATEWAY_MANAGED`] of an east-west gateway's objects.
pub const MANAGED_BY_EASTWEST_CONTROLLER: &str = "istio.io-eastwest-controller";

/// What a waypoint serves (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaypointFor {
    /// Traffic addressed to a Service or ServiceEntry (the default).
    #[default]
    Service,
    /// Traffic addressed to a workload's own address.
    Workload,
    /// Both.
    All,
    /// Neither.
    None,
}

impl WaypointFor {
    /// The label's value; an unknown value serves nothing (fail closed: no traffic is routed to it, and a
    /// destination that names the waypoint gets none).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None | Some("service") => WaypointFor::Service,
            Some("workload") => WaypointFor::Workload,
            Some("all") => WaypointFor::All,
            Some(_) => WaypointFor::None,
        }
    }

    /// Whether traffic of this kind goes through the waypoint.
    pub fn serves(self, addressed: Addressed) -> bool {
        matches!(
            (self, addressed),
            (WaypointFor::All, _)
                | (WaypointFor::Service, Addressed::Service)
                | (WaypointFor::Workload, Addressed::Workload)
        )
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WaypointFor::Service => "service",
            WaypointFor::Workload => "workload",
            WaypointFor::All => "all",
            WaypointFor::None => "none",
        }
    }
}

/// How a connection addresses its destination, which decides which waypoint (if any) it goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addressed {
    /// A Service or ServiceEntry: its VIP or host name.
    Service,
    /// A workload's own IP.
    Workload,
}
