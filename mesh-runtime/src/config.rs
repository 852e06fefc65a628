//! The settings both proxies take, as plain data: what a program embedding a proxy fills in, what the command
//! line converts into ([`crate::args::CommonArgs::config`] with the `cli` feature), and what `/config_dump`
//! shows. Where the mesh's configuration comes from is not a setting: it is the
//! [`ConfigSource`](crate::source::ConfigSource) given to the proxy beside it.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_identity::spiffe::TrustDomain;
use mesh_policy::MeshConfig;
use serde::Serialize;

use crate::ca::CaSource;

/// The settings both proxies share: the model options, the CA, the operational endpoints and the drain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommonConfig {
    /// How manifests are read: root namespace, trust domain and its aliases (the `mesh-policy` command's
    /// `--root-namespace`, `--trust-domain` and `--trust-domain-alias`, so that it checks what the proxies
    /// enforce).
    pub mesh: MeshConfig,
    /// Where workload certificates are issued from.
    pub ca: CaSource,
    /// The lifetime of workload certificates; they are renewed at half of it.
    #[serde(serialize_with = "as_text")]
    pub cert_ttl: Duration,
    /// Where the operational endpoints listen.
    pub endpoints: Endpoints,
    /// On shutdown, how long connections in flight may take to finish before they are closed.
    #[serde(serialize_with = "as_text")]
    pub drain_timeout: Duration,
}

/// Where the operational endpoints listen, on Istio's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// Admin: `/config_dump` and the views (15000, loopback only by default).
    pub admin: SocketAddr,
    /// Prometheus metrics: `/metrics` and `/stats/prometheus` (15020).
    pub metrics: SocketAddr,
    /// Readiness: `/healthz/ready` (15021).
    pub readiness: SocketAddr,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 15020)),
            readiness: SocketAddr::from(([0, 0, 0, 0], 15021)),
        }
    }
}

impl Default for CommonConfig {
    fn default() -> Self {
        CommonConfig {
            mesh: MeshConfig::default(),
            ca: CaSource::Generate { write_to: None },
            cert_ttl: Duration::from_secs(24 * 3600),
            endpoints: Endpoints::default(),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A trust domain is not one.
    #[error("{field} {value:?}: {reason}")]
    TrustDomain {
        /// The setting (`mesh.trust_domain`, `mesh.trust_domain_aliases[0]`).
        field: String,
        /// Its value.
        value: String,
        /// Why it is not a trust domain.
        reason: String,
    },
    /// A duration that must not be zero is.
    #[error("{field} must be longer than zero")]
    Zero {
        /// The setting.
        field: &'static str,
    },
}

impl CommonConfig {
    /// The mesh's trust domain, checked.
    pub fn trust_domain(&self) -> Result<TrustDomain, ConfigError> {
        check_trust_domain("mesh.trust_domain".into(), &self.mesh.trust_domain)
    }

    /// The trust domains peers are accepted from: the mesh's own first, then its aliases. Fails on the first
    /// that is not a trust domain, naming the setting.
    pub fn trust_domains(&self) -> Result<Vec<TrustDomain>, ConfigError> {
        let mut all = vec![self.trust_domain()?];
        for (i, alias) in self.mesh.trust_domain_aliases.iter().enumerate() {
            all.push(check_trust_domain(format!("mesh.trust_domain_aliases[{i}]"), alias)?);
        }
        Ok(all)
    }

    /// Checks every setting a proxy relies on before it binds anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.trust_domains()?;
        if self.cert_ttl.is_zero() {
            return Err(ConfigError::Zero { field: "cert_ttl" });
        }
        Ok(())
    }
}

fn check_trust_domain(field: String, value: &str) -> Result<TrustDomain, ConfigError> {
    TrustDomain::new(value).map_err(|e| ConfigError::TrustDomain {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// A duration as the command line writes it (`5s`, `250ms`), for `/config_dump`.
pub fn duration_text(d: &Duration) -> String {
    if d.subsec_millis() == 0 && d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Serializes a duration as [`duration_text`] writes it.
pub fn as_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration_text(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_trust_domain_names_its_setting() {
        let mut config = CommonConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.mesh.trust_domain_aliases = vec!["old.example".into(), "Not A Domain".into()];
        let err = config.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("mesh.trust_domain_aliases[1]") && err.contains("Not A Domain"), "{err}");
        config.mesh.trust_domain_aliases.clear();
        config.cert_ttl = Duration::ZERO;
        assert_eq!(config.validate(), Err(ConfigError::Zero { field: "cert_ttl" }));
    }

    #[test]
    fn the_dump_writes_durations_as_the_command_line_does() -> Result<(), serde_json::Error> {
        let dump = serde_json::to_value(CommonConfig::default())?;
        assert_eq!(dump["drain_timeout"], "5s");
        assert_eq!(dump["cert_ttl"], "86400s");
        assert_eq!(dump["endpoints"]["admin"], "127.0.0.1:15000");
        assert_eq!(dump["mesh"]["root_namespace"], "istio-system");
        assert_eq!(duration_text(&Duration::from_millis(250)), "250ms");
        Ok(())
    }
}
