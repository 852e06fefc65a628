//! The demo's processes: node proxies and waypoints are this same executable started with a subcommand
//! (`mesh-demo ztunnel ...`, `mesh-demo waypoint ...`), each a process of its own with its log in the run's
//! directory. Stopped with SIGTERM, as an orchestrator stops them; killed if the demo itself fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DemoError;

/// The running processes.
pub struct Procs {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Procs {
    /// Processes logging to `dir`.
    pub fn new(dir: &Path) -> Self {
        Procs { dir: dir.to_owned(), children: Vec::new() }
    }

    /// Starts `mesh-demo <args>` as `name`.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> Result<(), DemoError> {
        let exe = std::env::current_exe().map_err(|e| DemoError::new(format!("cannot find this executable: {e}")))?;
        let log = std::fs::File::create(self.log_path(name)).map_err(|e| DemoError::new(e.to_string()))?;
        let child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DemoError::new(format!("cannot start {name}: {e}")))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    /// Where `name` logs.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The log of `name`.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Waits until `name`'s readiness endpoint answers 200.
    pub async fn wait_ready(&mut self, name: &str, readiness: SocketAddr) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get(readiness, "/healthz/ready").await.is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| n == name)
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DemoError::new(format!("{name} exited ({status}):\n{}", self.log(name))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DemoError::new(format!("{name} did not become ready:\n{}", self.log(name))))
    }

    /// Sends SIGTERM to every process and waits for each; returns `(name, exited cleanly)`.
    pub fn stop(&mut self) -> Vec<(String, bool)> {
        for (_, child) in &self.children {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut stopped = Vec::new();
        for (name, mut child) in self.children.drain(..) {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                }
            };
            stopped.push((name, status.is_some_and(|s| s.success())));
        }
        stopped
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.0 GET: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await??;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}
