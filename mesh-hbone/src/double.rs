//! Double HBONE: reaching a workload on another network through its east-west gateway.
//!
//! The source dials the gateway's HBONE address (`gateway_ip:15008`) with mTLS expecting the gateway's
//! identities, and sends an outer CONNECT. The gateway forwards that stream, as opaque bytes, to the
//! destination; inside it the source runs a second mTLS handshake, expecting the destination's identities,
//! and a second CONNECT. As ztunnel does it, both CONNECTs carry the destination service's `host:port` as
//! `:authority` (the gateway routes on it without terminating the inner tunnel), and only the inner one carries
//! `x-forwarded-network` with the source's network.

use std::net::SocketAddr;

use mesh_identity::spiffe::SpiffeId;

use crate::authority::{AuthorityError, HboneAddress};
use crate::baggage::Baggage;
use crate::connect::ConnectRequest;
use crate::forwarded::Forwarded;
use crate::traceparent::TraceParent;

/// Why a double-HBONE plan is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoubleHboneError {
    /// The destination is not `host:port`.
    #[error(transparent)]
    Destination(#[from] AuthorityError),
    /// No identity to expect from the gateway or the destination.
    #[error("no {hop} identities given: each mTLS hop must know whom it expects")]
    NoIdentities {
        /// `gateway` or `destination`.
        hop: &'static str,
    },
    /// The source network is empty.
    #[error("the source network is empty; the inner CONNECT names it in x-forwarded-network")]
    NoNetwork,
}

/// One mTLS + CONNECT hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The SPIFFE IDs the peer of this hop may present.
    pub expected_identities: Vec<SpiffeId>,
    /// The CONNECT sent on this hop.
    pub request: ConnectRequest,
}

/// The two hops of a double-HBONE connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleHbonePlan {
    /// The TCP address dialled: the gateway's HBONE address.
    pub gateway: SocketAddr,
    /// mTLS to the gateway and the outer CONNECT.
    pub outer: Hop,
    /// mTLS to the destination, inside the outer stream, and the inner CONNECT.
    pub inner: Hop,
}

/// What the source knows about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleHboneTarget {
    /// The gateway's HBONE address (normally `ip:15008`).
    pub gateway: SocketAddr,
    /// Identities the gateway may present.
    pub gateway_identities: Vec<SpiffeId>,
    /// The destination service hostname.
    pub host: String,
    /// The destination service port.
    pub port: u16,
    /// Identities the destination may present.
    pub destination_identities: Vec<SpiffeId>,
    /// The source's network.
    pub source_network: String,
}

impl DoubleHbonePlan {
    /// Plans the two hops; `baggage`, `forwarded` and `traceparent` go on both CONNECTs.
    pub fn new(
        target: DoubleHboneTarget,
        baggage: Option<Baggage>,
        forwarded: Option<Forwarded>,
        traceparent: Option<TraceParent>,
    ) -> Result<Self, DoubleHboneError> {
        if target.gateway_identities.is_empty() {
            return Err(DoubleHboneError::NoIdentities { hop: "gateway" });
        }
        if target.destination_identities.is_empty() {
            return Err(DoubleHboneError::NoIdentities { hop: "destination" });
        }
        if target.source_network.is_empty() {
            return Err(DoubleHboneError::NoNetwork);
        }
        let authority = HboneAddress::host(&target.host, target.port)?;
        let outer = ConnectRequest { authority, baggage, forwarded, traceparent, origin_network: None };
        let inner = ConnectRequest { origin_network: Some(target.source_network), ..outer.clone() };
        Ok(DoubleHbonePlan {
            gateway: target.gateway,
            outer: Hop { expected_identities: target.gateway_identities, request: outer },
            inner: Hop { expected_identities: target.destination_identities, request: inner },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> DoubleHboneTarget {
        DoubleHboneTarget {
            gateway: "192.0.2.10:15008".parse().unwrap(),
            gateway_identities: vec![SpiffeId::new("spiffe://cluster.local/ns/istio-system/sa/eastwest").unwrap()],
            host: "reviews.bookinfo.svc.cluster.local".into(),
            port: 9080,
            destination_identities: vec![SpiffeId::new("spiffe://cluster.local/ns/bookinfo/sa/reviews").unwrap()],
            source_network: "network-a".into(),
        }
    }

    #[test]
    fn both_hops_carry_the_service_authority() {
        let traceparent = TraceParent::new(7, 9, 0).unwrap();
        let plan = DoubleHbonePlan::new(target(), None, None, Some(traceparent)).unwrap();
        assert_eq!(plan.gateway, "192.0.2.10:15008".parse().unwrap());
        let outer = plan.outer.request.to_request().unwrap();
        let inner = plan.inner.request.to_request().unwrap();
        assert_eq!(outer.uri().to_string(), "reviews.bookinfo.svc.cluster.local:9080");
        assert_eq!(inner.uri().to_string(), "reviews.bookinfo.svc.cluster.local:9080");
        assert!(outer.headers().get("x-forwarded-network").is_none());
        assert_eq!(inner.headers()["x-forwarded-network"], "network-a");
        assert_eq!(outer.headers()["traceparent"], inner.headers()["traceparent"]);
        assert_eq!(plan.outer.expected_identities[0].as_str(), "spiffe://cluster.local/ns/istio-system/sa/eastwest");
        assert_eq!(plan.inner.expected_identities[0].as_str(), "spiffe://cluster.local/ns/bookinfo/sa/reviews");
    }

    #[test]
    fn incomplete_plans_are_refused() {
        let no_gw = DoubleHboneTarget { gateway_identities: vec![], ..target() };
        assert_eq!(
            DoubleHbonePlan::new(no_gw, None, None, None),
            Err(DoubleHboneError::NoIdentities { hop: "gateway" })
        );
        let no_net = DoubleHboneTarget { source_network: String::new(), ..target() };
        assert_eq!(DoubleHbonePlan::new(no_net, None, None, None), Err(DoubleHboneError::NoNetwork));
        let bad_host = DoubleHboneTarget { host: "not a host".into(), ..target() };
        assert!(matches!(DoubleHbonePlan::new(bad_host, None, None, None), Err(DoubleHboneError::Destination(_))));
    }
}
