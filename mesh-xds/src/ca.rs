//! Istio's certificate service: a CSR for a workload identity, signed by istiod (or istio-csr).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mesh_identity::spiffe::IstioIdentity;

use crate::channel::ControlPlane;
use crate::proto::ca::{IstioCertificateRequest, istio_certificate_service_client::IstioCertificateServiceClient};

/// A certificate request failed.
#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    /// The CA could not be reached or used.
    #[error("CA: {0}")]
    ControlPlane(#[from] crate::ControlPlaneError),
    /// The CA refused.
    #[error("CA at {address} refused the certificate for {identity}: {status}")]
    Refused {
        /// The CA.
        address: String,
        /// The identity asked for.
        identity: String,
        /// What it said.
        status: String,
    },
    /// The CA answered with something that is not a certificate chain for the identity.
    #[error("CA at {address}: {reason}")]
    BadResponse {
        /// The CA.
        address: String,
        /// What is wrong.
        reason: String,
    },
}

/// A client of `istio.v1.auth.IstioCertificateService`.
#[derive(Debug, Clone)]
pub struct CaClient {
    control_plane: ControlPlane,
    /// Node mode: the proxy asks for other workloads' identities (`ImpersonatedIdentity`).
    impersonate: bool,
}

impl CaClient {
    /// A client of the CA at `control_plane`; with `impersonate`, each request names the identity asked for in
    /// the `ImpersonatedIdentity` metadata, as a node proxy does for the workloads of its node.
    pub fn new(control_plane: ControlPlane, impersonate: bool) -> Self {
        CaClient { control_plane, impersonate }
    }

    /// Sends `csr_pem` for `spiffe_id`, valid for `ttl`; returns the chain in PEM, leaf first, root last.
    pub async fn create_certificate(
        &self,
        spiffe_id: &str,
        csr_pem: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, CaClientError> {
        let channel = self.control_plane.connect().await?;
        let mut client = IstioCertificateServiceClient::new(channel);
        let metadata = self.impersonate.then(|| prost_types::Struct {
            fields: [(
                "ImpersonatedIdentity".to_owned(),
                prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(spiffe_id.to_owned())) },
            )]
            .into_iter()
            .collect(),
        });
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: csr_pem.to_owned(),
            validity_duration: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            metadata,
        });
        self.control_plane.authorize(&mut request)?;
        let response = client.create_certificate(request).await.map_err(|s| CaClientError::Refused {
            address: self.control_plane.address.clone(),
            identity: spiffe_id.to_owned(),
            status: format!("{:?}: {}", s.code(), s.message()),
        })?;
        let chain = response.into_inner().cert_chain;
        if chain.is_empty() {
            return Err(CaClientError::BadResponse {
                address: self.control_plane.address.clone(),
                reason: "an empty certificate chain".into(),
            });
        }
        Ok(chain)
    }
}

/// A proxy's certificates from this CA ([`mesh_runtime::pki::Pki::remote`]).
impl mesh_runtime::pki::RemoteCa for CaClient {
    fn address(&self) -> &str {
        &self.control_plane.address
    }

    fn sign<'a>(
        &'a self,
        identity: &'a IstioIdentity,
        csr_pem: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + 'a>> {
        Box::pin(async move {
            self.create_certificate(identity.spiffe_id().as_str(), csr_pem, ttl).await.map_err(|e| e.to_string())
        })
    }
}
