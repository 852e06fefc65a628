//! Pods as network namespaces and a scripted istio-cni node agent: the agent listens on a SEQPACKET socket,
//! reads the proxy's hello and hands over each namespace as an SCM_RIGHTS descriptor, one request per packet,
//! reading one answer each. The Pods get Istio's in-pod redirection rules.
#![allow(dead_code, unreachable_pub)]

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use mesh_xds::proto::zds::{self, WorkloadRequest, workload_request::Payload};
use prost::Message;
use rustix::net::{AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketType};

use super::Result;

/// A network namespace, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn create(name: &str) -> std::result::Result<Self, String> {
        let name = format!("mzt-{name}-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("cannot create a network namespace".into());
        }
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    pub fn run(&self, args: &[&str]) -> std::result::Result<(), String> {
        let out = self.command(args[0]).args(&args[1..]).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn python(&self, code: &str) -> Result<String> {
        let out = self.command("python3").args(["-c", code]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The namespace as istio-cni hands it over: an open descriptor of its file.
    pub fn open(&self) -> Result<OwnedFd> {
        Ok(std::fs::File::open(Path::new("/var/run/netns").join(&self.0))?.into())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "pids", &self.0]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Root, `ip` and `iptables`, or why not.
pub fn requirements() -> std::result::Result<(), String> {
    if Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true) {
        return Err("not root".into());
    }
    for tool in ["ip", "iptables"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// The scripted node agent: its listening socket, and the proxy's connection once accepted.
pub struct Agent {
    listener: OwnedFd,
    conn: Option<OwnedFd>,
}

impl Agent {
    pub fn listen(path: &Path) -> Result<Self> {
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)?;
        rustix::net::bind(&listener, &rustix::net::SocketAddrUnix::new(path)?)?;
        rustix::net::listen(&listener, 4)?;
        // accept and recv give up after 10 s.
        let timeout = Some(Duration::from_secs(10));
        rustix::net::sockopt::set_socket_timeout(&listener, rustix::net::sockopt::Timeout::Recv, timeout)?;
        Ok(Agent { listener, conn: None })
    }

    /// Accepts the proxy's connection and reads its hello.
    pub fn accept(&mut self) -> Result<Vec<u8>> {
        let conn = rustix::net::accept(&self.listener)?;
        let timeout = Some(Duration::from_secs(10));
        rustix::net::sockopt::set_socket_timeout(&conn, rustix::net::sockopt::Timeout::Recv, timeout)?;
        self.conn = Some(conn);
        self.receive()
    }

    fn conn(&self) -> Result<&OwnedFd> {
        Ok(self.conn.as_ref().ok_or("not connected")?)
    }

    pub fn receive(&self) -> Result<Vec<u8>> {
        let mut buffer = [0u8; 1024];
        let n = rustix::net::recv(self.conn()?, &mut buffer, RecvFlags::empty())?.0;
        Ok(buffer[..n].to_vec())
    }

    /// Sends `payload` with `netns` as its descriptor; returns the proxy's answer: `Ok` for an ack, `Err` with
    /// the reason for a nack.
    pub fn ask(&self, payload: Payload, netns: Option<&OwnedFd>) -> Result<std::result::Result<(), String>> {
        let bytes = WorkloadRequest { payload: Some(payload) }.encode_to_vec();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = netns.map(|fd| [fd.as_fd()]);
        if let Some(fds) = &fds {
            control.push(SendAncillaryMessage::ScmRights(fds));
        }
        rustix::net::sendmsg(self.conn()?, &[IoSlice::new(&bytes)], &mut control, SendFlags::empty())?;
        let answer = zds::WorkloadResponse::decode(self.receive()?.as_slice())?;
        match answer.payload {
            Some(zds::workload_response::Payload::Ack(ack)) if ack.error.is_empty() => Ok(Ok(())),
            Some(zds::workload_response::Payload::Ack(ack)) => Ok(Err(ack.error)),
            None => Err("an answer without payload".into()),
        }
    }

    pub fn close(&mut self) {
        self.conn = None;
    }
}

pub fn add(uid: &str, name: &str, sa: &str) -> Payload {
    Payload::Add(zds::AddWorkload {
        uid: uid.into(),
        workload_info: Some(zds::WorkloadInfo {
            name: name.into(),
            namespace: "payments".into(),
            service_account: sa.into(),
        }),
    })
}

pub fn keep(uid: &str) -> Payload {
    Payload::Keep(zds::KeepWorkload { uid: uid.into() })
}

pub fn del(uid: &str) -> Payload {
    Payload::Del(zds::DelWorkload { uid: uid.into() })
}

pub fn snapshot_sent() -> Payload {
    Payload::SnapshotSent(zds::SnapshotSent {})
}

/// Installs istio-cni's in-pod rules in `ns` (its `iptables` golden output, with the node proxy's mark 1337):
/// inbound HBONE to 15008 and other inbound TCP to 15006 by TPROXY, the Pod's outbound TCP to 15001 by
/// REDIRECT, the proxy's own (marked) traffic left alone, and the TPROXY mark routed locally.
pub fn istio_inpod_rules(ns: &Netns) -> std::result::Result<(), String> {
    let mark = "0x539/0xfff";
    let rules: [&[&str]; 13] = [
        &["-t", "mangle", "-N", "ISTIO_PRERT"],
        &["-t", "nat", "-N", "ISTIO_OUTPUT"],
        &["-t", "mangle", "-N", "ISTIO_OUTPUT"],
        &["-t", "mangle", "-A", "PREROUTING", "-j", "ISTIO_PRERT"],
        &["-t", "mangle", "-A", "OUTPUT", "-j", "ISTIO_OUTPUT"],
        &["-t", "nat", "-A", "OUTPUT", "-j", "ISTIO_OUTPUT"],
        &[
            "-t",
            "mangle",
            "-A",
            "ISTIO_PRERT",
            "-m",
            "mark",
            "--mark",
            mark,
            "-j",
            "CONNMARK",
            "--set-xmark",
            "0x111/0xfff",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "ISTIO_PRERT",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "15008",
            "-m",
            "mark",
            "!",
            "--mark",
            mark,
            "-j",
            "TPROXY",
            "--on-port",
            "15008",
            "--tproxy-mark",
            "0x111/0xfff",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "ISTIO_PRERT",
            "-p",
            "tcp",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "ISTIO_PRERT",
            "!",
            "-d",
            "127.0.0.1/32",
            "-p",
            "tcp",
            "-m",
            "mark",
            "!",
            "--mark",
            mark,
            "-j",
            "TPROXY",
            "--on-port",
            "15006",
            "--tproxy-mark",
            "0x111/0xfff",
        ],
        &[
            "-t",
            "mangle",
            "-A",
            "ISTIO_OUTPUT",
            "-m",
            "connmark",
            "--mark",
            "0x111/0xfff",
            "-j",
            "CONNMARK",
            "--restore-mark",
            "--nfmask",
            "0xffffffff",
            "--ctmask",
            "0xffffffff",
        ],
        &["-t", "nat", "-A", "ISTIO_OUTPUT", "-p", "tcp", "-m", "mark", "--mark", "0x111/0xfff", "-j", "ACCEPT"],
        &[
            "-t",
            "nat",
            "-A",
            "ISTIO_OUTPUT",
            "!",
            "-d",
            "127.0.0.1/32",
            "-p",
            "tcp",
            "-m",
            "mark",
            "!",
            "--mark",
            mark,
            "-j",
            "REDIRECT",
            "--to-ports",
            "15001",
        ],
    ];
    for rule in rules {
        let mut args = vec!["iptables"];
        args.extend_from_slice(rule);
        ns.run(&args)?;
    }
    ns.run(&["ip", "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100"])?;
    ns.run(&["ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"])
}

/// A Python server on `ip:port` for a namespace: it greets each connection with `greeting` (or, without one,
/// with the address the connection came from), then holds it until the client closes.
pub fn python_server(ip: &str, port: u16, greeting: Option<&str>) -> String {
    let hello = match greeting {
        Some(text) => format!("{text:?}.encode() + b\"\\n\""),
        None => "peer[0].encode() + b\"\\n\"".to_owned(),
    };
    format!(
        r#"
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("{ip}", {port}))
srv.listen(64)
def serve(c, peer):
    try:
        c.sendall({hello})
        while c.recv(64):
            pass
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"#
    )
}

/// A Python client for a namespace: connects to `ip:port` (from `source` when given) and prints `OK <the first
/// line it reads>`, `CLOSED` (refused, reset or closed) or `ERR <kind>`.
pub fn python_client(ip: &str, port: u16, source: Option<&str>) -> String {
    let bind = source.map(|s| format!("    s.bind((\"{s}\", 0))\n")).unwrap_or_default();
    format!(
        r#"
import socket
s = socket.socket()
s.settimeout(5)
try:
{bind}    s.connect(("{ip}", {port}))
    data = s.recv(64)
    print("OK " + data.decode().strip() if data else "CLOSED")
except (ConnectionResetError, BrokenPipeError, ConnectionRefusedError):
    print("CLOSED")
except Exception as e:
    print("ERR " + type(e).__name__)
"#
    )
}

/// A Python probe of `url` (a readiness endpoint): prints the HTTP status, 0 when nothing answers.
pub fn python_status(url: &str) -> String {
    format!(
        r#"
import urllib.request, urllib.error
try:
    print(urllib.request.urlopen("{url}", timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
"#
    )
}

/// Runs `probe` until it prints `want` or 15 s have passed; returns what it printed last.
pub fn until(probe: impl Fn() -> Result<String>, want: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = probe()?;
        if got == want || std::time::Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Netns {
    /// Joins this namespace's `name` interface (at `address`, with its prefix) to the `peer` namespace's
    /// `peer_name` interface (at `peer_address`) with a veth pair, both up.
    pub fn link(
        &self,
        name: &str,
        address: &str,
        peer: &Netns,
        peer_name: &str,
        peer_address: &str,
    ) -> std::result::Result<(), String> {
        self.run(&["ip", "link", "add", name, "type", "veth", "peer", "name", peer_name, "netns", &peer.0])?;
        self.run(&["ip", "addr", "add", address, "dev", name])?;
        peer.run(&["ip", "addr", "add", peer_address, "dev", peer_name])?;
        self.run(&["ip", "link", "set", name, "up"])?;
        peer.run(&["ip", "link", "set", peer_name, "up"])
    }
}
