//! The command-line options both proxies take (configuration files, model options, identity, operational
//! endpoints, logs, drain), converted into the plain [`CommonConfig`] and a [`FileSource`]; and the model
//! options alone ([`ModelArgs`]), which the `mesh-policy` command shares, so that it reads manifests as the
//! proxies do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mesh_policy::MeshConfig;

use crate::ca::CaSource;
use crate::config::{CommonConfig, ConfigError, Endpoints};
use crate::logging::LogFormat;
use crate::source::FileSource;

/// How manifests are read: the mesh-wide settings that change what a policy means.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The root namespace: its policies without a selector apply mesh-wide.
    #[arg(long, value_name = "NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,

    /// The mesh's trust domain.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// Another trust domain whose identities are the mesh's own (Istio's trustDomainAliases). Repeatable.
    #[arg(long = "trust-domain-alias", value_name = "DOMAIN")]
    pub trust_domain_aliases: Vec<String>,
}

impl ModelArgs {
    /// The model options as the libraries take them.
    pub fn mesh_config(&self) -> MeshConfig {
        MeshConfig {
            root_namespace: self.root_namespace.clone(),
            trust_domain: self.trust_domain.clone(),
            trust_domain_aliases: self.trust_domain_aliases.clone(),
            ..MeshConfig::default()
        }
    }
}

/// Options shared by `mesh-ztunnel` and `mesh-waypoint`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Kubernetes YAML (Namespaces, Services, ServiceEntries, Pods, Gateways, AuthorizationPolicy,
    /// RequestAuthentication, PeerAuthentication): files, or directories read recursively for .yaml, .yml and
    /// .json files (hidden ones skipped, as `mesh-policy -f` reads them). Repeatable. Reloaded when they
    /// change; an invalid document at start stops the proxy, later it is reported and the configuration in
    /// force stays.
    #[arg(long = "config", short = 'f', value_name = "PATH")]
    pub config: Vec<PathBuf>,

    /// Read the configuration from the Kubernetes API instead of files: Namespaces, Services, Pods,
    /// ServiceEntries, WorkloadEntries, Gateways and the security CRDs, listed and watched (the API server of
    /// --kubeconfig, else KUBECONFIG or ~/.kube/config, else the in-cluster service account).
    #[arg(long, conflicts_with = "config")]
    pub kubernetes: bool,

    /// The kubeconfig file to reach the API server with (its current context), for --kubernetes.
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,

    /// How often the configuration files are checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_nonzero_duration)]
    pub reload_interval: Duration,

    /// Root namespace, trust domain and aliases.
    #[command(flatten)]
    pub model: ModelArgs,

    /// Istio's plug-in CA files (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) to issue workload
    /// certificates from. Without it a root is generated at start.
    #[arg(long, value_name = "DIR", conflicts_with = "write_ca")]
    pub ca_dir: Option<PathBuf>,

    /// With a generated root: write it to DIR in the plug-in layout, for other proxies to load with --ca-dir.
    #[arg(long, value_name = "DIR")]
    pub write_ca: Option<PathBuf>,

    /// The lifetime of workload certificates; they are renewed at half of it.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_nonzero_duration)]
    pub cert_ttl: Duration,

    /// Admin endpoint (config dump and views).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,

    /// Prometheus metrics (`/metrics` and `/stats/prometheus`).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15020")]
    pub metrics_addr: SocketAddr,

    /// Readiness (`/healthz/ready`).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:15021")]
    pub readiness_addr: SocketAddr,

    /// Log format (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Threads that run the proxy (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0, env = "WORKER_THREADS")]
    pub worker_threads: usize,

    /// On SIGTERM, how long connections in flight may take to finish before they are closed.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

impl CommonArgs {
    /// The settings, checked.
    pub fn config(&self) -> Result<CommonConfig, ConfigError> {
        let config = CommonConfig {
            mesh: self.model.mesh_config(),
            ca: match &self.ca_dir {
                Some(dir) => CaSource::Dir(dir.clone()),
                None => CaSource::Generate { write_to: self.write_ca.clone() },
            },
            cert_ttl: self.cert_ttl,
            endpoints: Endpoints { admin: self.admin_addr, metrics: self.metrics_addr, readiness: self.readiness_addr },
            drain_timeout: self.drain_timeout,
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration files, polled every `--reload-interval`.
    pub fn file_source(&self) -> FileSource {
        FileSource::new(self.config.clone(), self.reload_interval)
    }

    /// The runtime the proxy runs on: `--worker-threads` threads.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if self.worker_threads > 0 {
            builder.worker_threads(self.worker_threads);
        }
        builder.enable_all().build()
    }
}

/// The longest duration an option takes: a year. Longer ones are refused rather than overflowing a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `250ms`, `5s`, `10m`, `24h` (or plain seconds), up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration such as 500ms, 5s, 10m or 24h");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => return Err(bad()),
    };
    match d {
        Some(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{text:?} is longer than the longest duration taken, a year (8760h)")),
    }
}

/// As [`parse_duration`], refusing zero: for intervals and lifetimes, where zero would spin or expire at once.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("{:?} must be longer than zero", text.trim())),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn zero_where_it_would_spin_and_overflowing_durations_are_refused() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        let zero = parse_nonzero_duration("0ms");
        assert!(zero.as_ref().is_err_and(|e| e.contains("longer than zero")), "{zero:?}");
        assert_eq!(parse_nonzero_duration("100ms"), Ok(Duration::from_millis(100)));
        for huge in ["99999999999999999999s", "18446744073709551615h", "8761h"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        // Through the command line, as an operator meets it.
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            common: CommonArgs,
        }
        let refused = Cli::try_parse_from(["proxy", "-f", "x.yaml", "--reload-interval", "0"]).err();
        assert!(refused.is_some_and(|e| e.to_string().contains("longer than zero")));
        let refused = Cli::try_parse_from(["proxy", "-f", "x.yaml", "--drain-timeout", "99999999999999h"]).err();
        assert!(refused.is_some_and(|e| e.to_string().contains("a year")));
    }
}
