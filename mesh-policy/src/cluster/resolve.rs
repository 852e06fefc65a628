//! What an address a client dials means: a Service or ServiceEntry port, or a workload's own address.

use std::net::{IpAddr, SocketAddr};

use super::model::{Cluster, ServiceId, WorkloadId};

/// A destination address, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolved {
    /// A port of a Service or ServiceEntry (by VIP or host name).
    Service {
        /// The service.
        service: ServiceId,
        /// The service port.
        port: u16,
    },
    /// A workload's own address, on any port.
    Workload {
        /// The workload.
        workload: WorkloadId,
        /// The port.
        port: u16,
    },
}

/// Why a destination does not resolve. Never read as "allowed": the caller reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Not `host:port`.
    #[error("{0:?} is not host:port")]
    Malformed(String),
    /// No Service, ServiceEntry or workload has the name.
    #[error("no Service or ServiceEntry is named {0:?}")]
    UnknownHost(String),
    /// No Service VIP, ServiceEntry address or workload has the address.
    #[error("no Service, ServiceEntry or workload has the address {0}")]
    UnknownAddress(IpAddr),
    /// The service has no such port.
    #[error("{service} has no port {port}")]
    UnknownPort {
        /// `Service namespace/name`.
        service: String,
        /// The port.
        port: u16,
    },
    /// The service has no endpoint for the port: there is nowhere to send a connection.
    #[error("{service} has no endpoint for port {port}")]
    NoEndpoints {
        /// `Service namespace/name`.
        service: String,
        /// The service port.
        port: u16,
    },
    /// A service id that is not of this cluster.
    #[error("no such service in this cluster")]
    UnknownService,
    /// A short name (`svc`) without a namespace to complete it with.
    #[error("{0:?} is a short name: say the namespace (svc.ns), or trace from a Pod, whose namespace completes it")]
    NoNamespace(String),
}

impl Cluster {
    /// Resolves `host:port` as a client in `client_namespace` would: `<svc>.<ns>.svc.<domain>`, `<svc>.<ns>.svc`,
    /// `<svc>.<ns>`, `<svc>` (in the client's namespace, as cluster DNS completes it), a ServiceEntry host, or
    /// `<ip>:<port>` (a Service VIP, a ServiceEntry address, or a workload's own IP, which takes any port).
    pub fn resolve(&self, destination: &str, client_namespace: Option<&str>) -> Result<Resolved, ResolveError> {
        if let Ok(addr) = destination.parse::<SocketAddr>() {
            return self.resolve_addr(addr);
        }
        let malformed = || ResolveError::Malformed(destination.to_owned());
        let (host, port) = destination.rsplit_once(':').ok_or_else(malformed)?;
        let port: u16 = port.parse().map_err(|_| malformed())?;
        if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
            return Err(malformed());
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.resolve_addr(SocketAddr::new(ip, port));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let service = self.service_by_host(&host).or_else(|| {
            let fqdn = self.complete(&host, client_namespace)?;
            self.service_by_host(&fqdn)
        });
        let Some(service) = service else {
            if !host.contains('.') && client_namespace.is_none() {
                return Err(ResolveError::NoNamespace(host));
            }
            return Err(ResolveError::UnknownHost(host));
        };
        self.service_port(service, port)
    }

    /// Resolves an address as a node proxy sees it: a Service VIP or ServiceEntry address (the port must be one
    /// of the service's), else a workload's own IP (any port).
    pub fn resolve_addr(&self, addr: SocketAddr) -> Result<Resolved, ResolveError> {
        if let Some(service) = self.service_by_vip(addr.ip()) {
            return self.service_port(service, addr.port());
        }
        match self.workload_by_ip(addr.ip()) {
            Some(workload) => Ok(Resolved::Workload { workload, port: addr.port() }),
            None => Err(ResolveError::UnknownAddress(addr.ip())),
        }
    }

    fn service_port(&self, service: ServiceId, port: u16) -> Result<Resolved, ResolveError> {
        match self.service(service) {
            Some(s) if s.port(port).is_some() => Ok(Resolved::Service { service, port }),
            Some(s) => Err(ResolveError::UnknownPort { service: s.id.to_string(), port }),
            None => Err(ResolveError::UnknownAddress(IpAddr::from([0, 0, 0, 0]))),
        }
    }

    /// The fully qualified name of a cluster-local short name.
    fn complete(&self, host: &str, client_namespace: Option<&str>) -> Option<String> {
        let domain = self.cluster_domain();
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            [svc] => Some(format!("{svc}.{}.svc.{domain}", client_namespace?)),
            [svc, ns] => Some(format!("{svc}.{ns}.svc.{domain}")),
            [svc, ns, "svc"] => Some(format!("{svc}.{ns}.svc.{domain}")),
            _ => None,
        }
    }
}
