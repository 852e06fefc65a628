//! One scenario's machine: a block of loopback addresses, a configuration directory the proxies follow, a CA
//! in Istio's plug-in layout, and the processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::TrustDomain;
use rustls_pki_types::UnixTime;

use crate::DemoError;
use crate::procs::{Procs, get};

/// A scenario's addresses and processes.
pub struct Topology {
    /// Everything the run writes: configuration, CA, logs.
    pub dir: tempfile::TempDir,
    block: u8,
    /// The processes.
    pub procs: Procs,
}

impl Topology {
    /// A topology in 127.<block>.0.0/16, with `files` as the initial configuration.
    pub fn new(block: u8, files: &[(&str, &str)]) -> Result<Self, DemoError> {
        let io = |e: std::io::Error| DemoError::new(e.to_string());
        let dir = tempfile::Builder::new().prefix("mesh-demo-").tempdir().map_err(io)?;
        std::fs::create_dir(dir.path().join("config")).map_err(io)?;
        let td = TrustDomain::new("cluster.local").map_err(|e| DemoError::new(e.to_string()))?;
        let ca =
            LocalCa::new_root(td, &CaOptions::default(), UnixTime::now()).map_err(|e| DemoError::new(e.to_string()))?;
        mesh_runtime::ca::write_dir(&ca, &dir.path().join("ca")).map_err(|e| DemoError::new(e.to_string()))?;
        let procs = Procs::new(dir.path());
        let topology = Topology { dir, block, procs };
        for (name, text) in files {
            topology.write(name, text)?;
        }
        Ok(topology)
    }

    /// 127.<block>.<third>.<fourth>.
    pub fn ip(&self, third: u8, fourth: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, self.block, third, fourth))
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Writes a configuration file atomically (a temporary file renamed), so that a proxy never reads half of it.
    pub fn write(&self, name: &str, text: &str) -> Result<(), DemoError> {
        let io = |e: std::io::Error| DemoError::new(e.to_string());
        let temporary = self.config_dir().join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text).map_err(io)?;
        std::fs::rename(&temporary, self.config_dir().join(name)).map_err(io)
    }

    /// Removes a configuration file.
    pub fn remove(&self, name: &str) -> Result<(), DemoError> {
        std::fs::remove_file(self.config_dir().join(name)).map_err(|e| DemoError::new(e.to_string()))
    }

    fn common(&self, ip: IpAddr) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--reload-interval".into(),
            "200ms".into(),
            "--drain-timeout".into(),
            "2s".into(),
            "--worker-threads".into(),
            "1".into(),
        ];
        args.extend(["--config".into(), self.config_dir().display().to_string()]);
        args.extend(["--ca-dir".into(), self.dir.path().join("ca").display().to_string()]);
        args.extend(["--admin-addr".into(), format!("{ip}:15000")]);
        args.extend(["--metrics-addr".into(), format!("{ip}:15020")]);
        args.extend(["--readiness-addr".into(), format!("{ip}:15021")]);
        args
    }

    /// Starts the node proxy `node` at 127.<block>.0.<n> and waits until it is ready.
    pub async fn node_proxy(&mut self, node: &str, n: u8) -> Result<SocketAddr, DemoError> {
        let ip = self.ip(0, n);
        let mut args = vec!["ztunnel".to_owned(), "--node".into(), node.into(), "--listen-on-workload-ips".into()];
        args.extend(["--socks5-addr".into(), format!("{ip}:15080"), "--outbound-addr".into(), format!("{ip}:15001")]);
        args.extend(self.common(ip));
        self.procs.spawn(node, &args)?;
        self.procs.wait_ready(node, SocketAddr::new(ip, 15021)).await?;
        Ok(SocketAddr::new(ip, 15080))
    }

    /// Starts the waypoint of Gateway `gateway` (`namespace/name`) at its Pod's address and waits until it is
    /// ready.
    pub async fn waypoint(&mut self, gateway: &str, pod_ip: IpAddr, extra: &[String]) -> Result<(), DemoError> {
        let name = gateway.replace('/', "-");
        let mut args = vec!["waypoint".to_owned(), "--gateway".into(), gateway.into()];
        args.extend(["--inbound-addr".into(), format!("{pod_ip}:15008")]);
        args.extend(self.common(pod_ip));
        args.extend(extra.iter().cloned());
        self.procs.spawn(&name, &args)?;
        self.procs.wait_ready(&name, SocketAddr::new(pod_ip, 15021)).await
    }

    /// The configuration generation a proxy with admin at `ip` has in force.
    pub async fn generation(&self, ip: IpAddr) -> u64 {
        let dump = get(SocketAddr::new(ip, 15000), "/config_dump").await.map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&dump).ok().and_then(|v| v["generation"].as_u64()).unwrap_or(0)
    }

    /// Waits until every proxy (by admin address) has a configuration newer than `before`.
    pub async fn wait_reload(&self, proxies: &[(IpAddr, u64)]) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for (ip, before) in proxies {
            while self.generation(*ip).await <= *before {
                if Instant::now() > deadline {
                    return Err(DemoError::new(format!("the proxy at {ip} did not reload")));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}
