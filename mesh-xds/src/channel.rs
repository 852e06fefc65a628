//! How a node proxy reaches istiod (or any server of its APIs): the address, the root the server is verified
//! with, and the credentials every call carries.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A control plane endpoint: istiod's `XDS_ADDRESS` or `CA_ADDRESS`, as Istio's ztunnel reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControlPlane {
    /// `host:port` (TLS, as istiod serves on 15012), or a URL: `https://host:port`, or `http://host:port` for a
    /// server without TLS (local tests).
    pub address: String,
    /// What the server's certificate is verified with (`XDS_ROOT_CA`, `CA_ROOT_CA`); `None`: the address must
    /// be `http://`.
    pub root_ca: Option<RootCa>,
    /// The service-account token sent as `authorization: Bearer <token>`, read again on every call (the
    /// kubelet rotates it); `None`: no token.
    pub token: Option<PathBuf>,
    /// Sent as the `clusterid` header (`CLUSTER_ID`, `Kubernetes` by default).
    pub cluster_id: String,
    /// How long a connection attempt may take.
    #[serde(serialize_with = "mesh_runtime::config::as_text")]
    pub connect_timeout: Duration,
}

/// The roots a control plane's certificate is verified with, as Istio's `XDS_ROOT_CA` and `CA_ROOT_CA` give
/// them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootCa {
    /// A PEM file, read at each connection (the kubelet updates the mounted ConfigMap).
    File(PathBuf),
    /// PEM text given directly.
    Pem(String),
    /// The system's trust store (`SYSTEM`), for a control plane with a publicly trusted certificate.
    System,
}

impl RootCa {
    /// Istio's reading of the setting: `SYSTEM`, an existing file, else PEM text when it holds a certificate,
    /// else a file (that will fail to read, naming it).
    pub fn from_setting(value: &std::path::Path) -> Self {
        match value.to_str() {
            Some("SYSTEM") => RootCa::System,
            Some(text) if !value.exists() && text.contains("-----BEGIN CERTIFICATE-----") => {
                RootCa::Pem(text.to_owned())
            }
            _ => RootCa::File(value.to_owned()),
        }
    }
}

/// The control plane cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The address is not one.
    #[error("control plane address {address:?}: {reason}")]
    Address {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// The connection failed.
    #[error("{address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// What failed.
        reason: String,
    },
}

impl ControlPlane {
    /// The URL dialled.
    pub fn url(&self) -> String {
        if self.address.contains("://") { self.address.clone() } else { format!("https://{}", self.address) }
    }

    /// Connects.
    pub async fn connect(&self) -> Result<Channel, ControlPlaneError> {
        let url = self.url();
        let bad = |reason: String| ControlPlaneError::Address { address: self.address.clone(), reason };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if url.starts_with("https://") {
            let root = self
                .root_ca
                .as_ref()
                .ok_or_else(|| bad("TLS needs a root certificate (XDS_ROOT_CA / CA_ROOT_CA)".into()))?;
            let host = url.trim_start_matches("https://").split(['/', ':']).next().unwrap_or_default().to_owned();
            let tls = ClientTlsConfig::new().domain_name(host);
            let tls = match root {
                RootCa::System => tls.with_native_roots(),
                RootCa::Pem(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                RootCa::File(path) => {
                    let pem = std::fs::read(path).map_err(|e| ControlPlaneError::Unreadable {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
            };
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| ControlPlaneError::Connect { address: self.address.clone(), reason: error_chain(&e) })
    }

    /// Adds the token and cluster id to a call.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) -> Result<(), ControlPlaneError> {
        let metadata = request.metadata_mut();
        if let Ok(v) = MetadataValue::try_from(self.cluster_id.as_str()) {
            metadata.insert("clusterid", v);
        }
        if let Some(path) = &self.token {
            let token = std::fs::read_to_string(path).map_err(|e| ControlPlaneError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let value = MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                ControlPlaneError::Unreadable { path: path.display().to_string(), reason: "not a token".into() }
            })?;
            metadata.insert("authorization", value);
        }
        Ok(())
    }
}

/// An error with its causes.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_setting_reads_as_istio_reads_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("root-cert.pem");
        std::fs::write(&file, "-----BEGIN CERTIFICATE-----\n")?;
        assert_eq!(RootCa::from_setting(std::path::Path::new("SYSTEM")), RootCa::System);
        assert_eq!(RootCa::from_setting(&file), RootCa::File(file.clone()));
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(RootCa::from_setting(std::path::Path::new(pem)), RootCa::Pem(pem.to_owned()));
        let missing = dir.path().join("missing.pem");
        assert_eq!(RootCa::from_setting(&missing), RootCa::File(missing));
        Ok(())
    }
}
