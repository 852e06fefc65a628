//! istiod's protobuf messages read into [`mesh_policy::xds`]. A resource that cannot be read is refused whole,
//! with its name and the field at fault: the node proxy NACKs it and keeps the others of the same response.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use mesh_policy::xds;

use crate::proto::{security, workload};

/// A resource refused, as a NACK reports it: `<name>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ResourceError {
    /// The resource's name.
    pub name: String,
    /// What is wrong, naming the field.
    pub reason: String,
}

/// One address resource: a workload or a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A workload.
    Workload(Box<xds::Workload>),
    /// A service.
    Service(Box<xds::Service>),
}

fn ip(bytes: &[u8], field: &str) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).map_err(|_| format!("{field}: not 4 bytes"))?)),
        16 => {
            Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).map_err(|_| format!("{field}: not 16 bytes"))?).to_canonical())
        }
        n => Err(format!("{field}: an address of {n} bytes (4 or 16 expected)")),
    }
}

fn port(value: u32, field: &str) -> Result<u16, String> {
    u16::try_from(value).map_err(|_| format!("{field}: port {value} is over 65535"))
}

fn gateway(g: &workload::GatewayAddress, field: &str) -> Result<xds::GatewayAddress, String> {
    let destination = match &g.destination {
        Some(workload::gateway_address::Destination::Hostname(h)) => {
            xds::GatewayDestination::Hostname { namespace: h.namespace.clone(), hostname: h.hostname.clone() }
        }
        Some(workload::gateway_address::Destination::Address(a)) => {
            xds::GatewayDestination::Address(format!("{}/{}", a.network, ip(&a.address, &format!("{field}.address"))?))
        }
        None => return Err(format!("{field}: no destination")),
    };
    Ok(xds::GatewayAddress {
        destination,
        hbone_mtls_port: port(g.hbone_mtls_port, &format!("{field}.hboneMtlsPort"))?,
    })
}

/// Reads an `istio.workload.Address`.
pub fn address(name: &str, a: workload::Address) -> Result<Address, ResourceError> {
    let fail = |reason: String| ResourceError { name: name.to_owned(), reason };
    match a.r#type {
        Some(workload::address::Type::Workload(w)) => {
            workload_of(w).map(|w| Address::Workload(Box::new(w))).map_err(fail)
        }
        Some(workload::address::Type::Service(s)) => service_of(s).map(|s| Address::Service(Box::new(s))).map_err(fail),
        None => Err(fail("neither a workload nor a service".into())),
    }
}

fn workload_of(w: workload::Workload) -> Result<xds::Workload, String> {
    let protocol = match workload::TunnelProtocol::try_from(w.tunnel_protocol) {
        Ok(workload::TunnelProtocol::Hbone) => xds::InboundProtocol::HBONE,
        Ok(workload::TunnelProtocol::None) => xds::InboundProtocol::TCP,
        Ok(workload::TunnelProtocol::LegacyIstioMtls) => {
            return Err("tunnelProtocol: LEGACY_ISTIO_MTLS is not supported".into());
        }
        Err(_) => return Err(format!("tunnelProtocol: unknown value {}", w.tunnel_protocol)),
    };
    let network_mode = match workload::NetworkMode::try_from(w.network_mode) {
        Ok(workload::NetworkMode::Standard) => xds::NetworkMode::Standard,
        Ok(workload::NetworkMode::HostNetwork) => xds::NetworkMode::HostNetwork,
        Err(_) => return Err(format!("networkMode: unknown value {}", w.network_mode)),
    };
    let status = match workload::WorkloadStatus::try_from(w.status) {
        Ok(workload::WorkloadStatus::Healthy) => xds::HealthStatus::Healthy,
        Ok(workload::WorkloadStatus::Unhealthy) => xds::HealthStatus::Unhealthy,
        Err(_) => return Err(format!("status: unknown value {}", w.status)),
    };
    let workload_type = match workload::WorkloadType::try_from(w.workload_type) {
        Ok(t) => t.as_str_name().to_ascii_lowercase(),
        Err(_) => return Err(format!("workloadType: unknown value {}", w.workload_type)),
    };
    let mut workload_ips = Vec::with_capacity(w.addresses.len());
    for (i, a) in w.addresses.iter().enumerate() {
        workload_ips.push(ip(a, &format!("addresses[{i}]"))?);
    }
    let mut services = BTreeMap::new();
    for (key, list) in &w.services {
        let mut ports = Vec::with_capacity(list.ports.len());
        for (i, p) in list.ports.iter().enumerate() {
            let at = format!("services[{key}].ports[{i}]");
            ports.push(xds::PortMapping {
                service_port: port(p.service_port, &format!("{at}.servicePort"))?,
                target_port: port(p.target_port, &format!("{at}.targetPort"))?,
            });
        }
        services.insert(key.clone(), ports);
    }
    let application_tunnel = match &w.application_tunnel {
        None => None,
        Some(t) => Some(xds::ApplicationTunnel {
            protocol: match workload::application_tunnel::Protocol::try_from(t.protocol) {
                Ok(workload::application_tunnel::Protocol::None) => xds::TunnelProtocol::NONE,
                Ok(workload::application_tunnel::Protocol::Proxy) => xds::TunnelProtocol::PROXY,
                Err(_) => return Err(format!("applicationTunnel.protocol: unknown value {}", t.protocol)),
            },
            port: match t.port {
                0 => None,
                p => Some(port(p, "applicationTunnel.port")?),
            },
        }),
    };
    let waypoint = w.waypoint.as_ref().map(|g| gateway(g, "waypoint")).transpose()?;
    let out = xds::Workload {
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        workload_ips,
        protocol,
        trust_domain: w.trust_domain,
        service_account: w.service_account,
        network: w.network,
        waypoint,
        node: w.node,
        workload_name: w.workload_name,
        workload_type,
        canonical_name: w.canonical_name,
        canonical_revision: w.canonical_revision,
        application_tunnel,
        authorization_policies: w.authorization_policies,
        services,
        status,
        cluster_id: w.cluster_id,
        network_mode,
    };
    first_error(xds::validate_workload(&out)).map(|()| out)
}

fn service_of(s: workload::Service) -> Result<xds::Service, String> {
    let mut vips = Vec::new();
    let mut cidr_vips = Vec::new();
    for (i, a) in s.addresses.iter().enumerate() {
        let addr = ip(&a.address, &format!("addresses[{i}].address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match a.length {
            Some(len) if len != max => {
                let net = u8::try_from(len)
                    .ok()
                    .and_then(|l| IpNet::new(addr, l).ok())
                    .ok_or_else(|| format!("addresses[{i}].length: {len} is too long for {addr}"))?;
                cidr_vips.push(format!("{}/{net}", a.network));
            }
            _ => vips.push(format!("{}/{addr}", a.network)),
        }
    }
    let mut ports = BTreeMap::new();
    for (i, p) in s.ports.iter().enumerate() {
        ports.insert(
            port(p.service_port, &format!("ports[{i}].servicePort"))?,
            port(p.target_port, &format!("ports[{i}].targetPort"))?,
        );
    }
    let waypoint = s.waypoint.as_ref().map(|g| gateway(g, "waypoint")).transpose()?;
    let out = xds::Service {
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        vips,
        cidr_vips,
        ports,
        endpoints: BTreeMap::new(),
        waypoint,
        subject_alt_names: s.subject_alt_names,
    };
    first_error(xds::validate_service(&out)).map(|()| out)
}

/// Reads an `istio.security.Authorization`.
pub fn authorization(name: &str, a: security::Authorization) -> Result<xds::Authorization, ResourceError> {
    authorization_of(a).map_err(|reason| ResourceError { name: name.to_owned(), reason })
}

fn authorization_of(a: security::Authorization) -> Result<xds::Authorization, String> {
    let scope = match security::Scope::try_from(a.scope) {
        Ok(security::Scope::Global) => xds::Scope::Global,
        Ok(security::Scope::Namespace) => xds::Scope::Namespace,
        Ok(security::Scope::WorkloadSelector) => xds::Scope::WorkloadSelector,
        Err(_) => return Err(format!("scope: unknown value {}", a.scope)),
    };
    let action = match security::Action::try_from(a.action) {
        Ok(security::Action::Allow) => xds::Action::Allow,
        Ok(security::Action::Deny) => xds::Action::Deny,
        Err(_) => return Err(format!("action: unknown value {}", a.action)),
    };
    let mut rules = Vec::with_capacity(a.rules.len());
    for (r, rule) in a.rules.iter().enumerate() {
        let mut clauses = Vec::with_capacity(rule.clauses.len());
        for (c, clause) in rule.clauses.iter().enumerate() {
            let mut matches = Vec::with_capacity(clause.matches.len());
            for (m, mat) in clause.matches.iter().enumerate() {
                matches.push(match_of(mat, &format!("rules[{r}][{c}][{m}]"))?);
            }
            clauses.push(matches);
        }
        rules.push(clauses);
    }
    let out = xds::Authorization { name: a.name, namespace: a.namespace, scope, action, rules, dry_run: a.dry_run };
    first_error(mesh_policy::xds::validate_authorization(&out)).map(|()| out)
}

fn match_of(m: &security::Match, at: &str) -> Result<xds::Match, String> {
    let strings = |v: &[security::StringMatch], field: &str| -> Result<Vec<xds::StringMatch>, String> {
        v.iter()
            .enumerate()
            .map(|(i, s)| match &s.match_type {
                Some(security::string_match::MatchType::Exact(v)) => Ok(xds::StringMatch::Exact(v.clone())),
                Some(security::string_match::MatchType::Prefix(v)) => Ok(xds::StringMatch::Prefix(v.clone())),
                Some(security::string_match::MatchType::Suffix(v)) => Ok(xds::StringMatch::Suffix(v.clone())),
                Some(security::string_match::MatchType::Presence(_)) => Ok(xds::StringMatch::Presence()),
                None => Err(format!("{at}.{field}[{i}]: no match type")),
            })
            .collect()
    };
    let nets = |v: &[security::Address], field: &str| -> Result<Vec<IpNet>, String> {
        v.iter()
            .enumerate()
            .map(|(i, a)| {
                let addr = ip(&a.address, &format!("{at}.{field}[{i}].address"))?;
                u8::try_from(a.length)
                    .ok()
                    .and_then(|l| IpNet::new(addr, l).ok())
                    .ok_or_else(|| format!("{at}.{field}[{i}].length: {} is too long for {addr}", a.length))
            })
            .collect()
    };
    let ports = |v: &[u32], field: &str| -> Result<Vec<u16>, String> {
        v.iter().map(|p| port(*p, &format!("{at}.{field}"))).collect()
    };
    let accounts = |v: &[security::ServiceAccountMatch]| -> Vec<xds::ServiceAccountMatch> {
        v.iter()
            .map(|s| xds::ServiceAccountMatch {
                namespace: s.namespace.clone(),
                service_account: s.service_account.clone(),
            })
            .collect()
    };
    Ok(xds::Match {
        namespaces: strings(&m.namespaces, "namespaces")?,
        not_namespaces: strings(&m.not_namespaces, "notNamespaces")?,
        service_accounts: accounts(&m.service_accounts),
        not_service_accounts: accounts(&m.not_service_accounts),
        principals: strings(&m.principals, "principals")?,
        not_principals: strings(&m.not_principals, "notPrincipals")?,
        source_ips: nets(&m.source_ips, "sourceIps")?,
        not_source_ips: nets(&m.not_source_ips, "notSourceIps")?,
        destination_ips: nets(&m.destination_ips, "destinationIps")?,
        not_destination_ips: nets(&m.not_destination_ips, "notDestinationIps")?,
        destination_ports: ports(&m.destination_ports, "destinationPorts")?,
        not_destination_ports: ports(&m.not_destination_ports, "notDestinationPorts")?,
    })
}

fn first_error(errors: Vec<mesh_policy::FieldError>) -> Result<(), String> {
    match errors.first() {
        None => Ok(()),
        Some(e) => Err(e.to_string()),
    }
}
