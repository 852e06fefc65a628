//! What the transport tests share: a mesh with a CA, a TCP echo server, and helpers to move bytes.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_hbone::transport::HboneStream;
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::tls::WorkloadCertificate;
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DAY: Duration = Duration::from_secs(86_400);

/// A trust domain with its CA. Certificates are valid now: rustls checks them against the system clock.
pub struct Mesh {
    pub ca: LocalCa,
    pub bundles: Arc<TrustBundleSet>,
}

impl Mesh {
    pub fn new() -> Self {
        let now = UnixTime::now();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = LocalCa::new_root(td, &CaOptions::default(), now).unwrap();
        let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
        Mesh { ca, bundles }
    }

    /// An SVID for service account `sa` in namespace `default`.
    pub fn workload(&self, sa: &str) -> WorkloadCertificate {
        let id = IstioIdentity::new(self.ca.trust_domain(), "default", sa).unwrap();
        let svid = self.ca.issue(&id, DAY, UnixTime::now()).unwrap();
        WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap()
    }

    pub fn id(sa: &str) -> SpiffeId {
        SpiffeId::new(&format!("spiffe://cluster.local/ns/default/sa/{sa}")).unwrap()
    }
}

/// A TCP echo server on loopback.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Writes `data` while reading the echo, then half-closes and reads to the end.
pub async fn round_trip(stream: HboneStream, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::join!(writer, reader);
    back
}

/// Bytes that make a misplaced or reordered chunk visible.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub async fn with_timeout<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("test timed out")
}
