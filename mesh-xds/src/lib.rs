//! istiod's wire protocols for a node proxy, on tonic and prost:
//!
//! - [`ads`]: Envoy's delta Aggregated Discovery Service with istiod's workload API (`istio.workload.Address`)
//!   and L4 authorizations (`istio.security.Authorization`), as a [`mesh_runtime::source::ConfigSource`]: the
//!   proxy's snapshot is built from what istiod sends, ACKed and NACKed resource by resource.
//! - [`ca`]: Istio's certificate service (`istio.v1.auth.IstioCertificateService/CreateCertificate`), served by
//!   istiod and by cert-manager's istio-csr.
//! - [`zds`]: istio-cni's in-pod redirection protocol (ZDS), as messages in and out of a packet: the node
//!   agent hands over each Pod's network namespace; the IO (the SEQPACKET socket, the descriptors) is the
//!   proxy's.
//! - [`convert`]: the protobuf messages read into [`mesh_policy::xds`], each bad resource refused with its
//!   name and the field at fault.
//!
//! The message definitions in `proto/` keep Istio's and Envoy's packages, names and field numbers, and leave
//! out what a node proxy does not use (unknown fields are skipped on the wire, as protobuf does).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod ads;
pub mod ca;
mod channel;
pub mod convert;
pub mod zds;

pub use channel::{ControlPlane, ControlPlaneError, RootCa};

/// The generated protobuf messages and gRPC clients and servers.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod proto {
    /// `envoy.service.discovery.v3`: delta discovery.
    pub mod discovery {
        tonic::include_proto!("envoy.service.discovery.v3");
    }
    /// `istio.workload`: workloads and services.
    pub mod workload {
        tonic::include_proto!("istio.workload");
    }
    /// `istio.security`: L4 authorizations.
    pub mod security {
        tonic::include_proto!("istio.security");
    }
    /// `istio.v1.auth`: the certificate service.
    pub mod ca {
        tonic::include_proto!("istio.v1.auth");
    }
    /// `istio.workload.zds`: in-pod redirection.
    pub mod zds {
        tonic::include_proto!("istio.workload.zds");
    }
}

/// The type URL of istiod's workload API resources.
pub const ADDRESS_TYPE: &str = "type.googleapis.com/istio.workload.Address";
/// The type URL of istiod's L4 authorizations.
pub const AUTHORIZATION_TYPE: &str = "type.googleapis.com/istio.security.Authorization";
