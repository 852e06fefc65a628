//! The certificate store while serving: rotations of both sides' certificates and of the trust bundle under
//! established connections, expiry, the renewal schedule, and concurrent readers. Handshakes run in memory
//! (read_tls / write_tls over byte buffers) at a clock the test moves, given to the store as rustls's
//! TimeProvider.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{NOW, at, td};
use mesh_identity::bundle::TrustBundle;
use mesh_identity::ca::{CaError, CaOptions, LocalCa};
use mesh_identity::rotation::{Jitter, RenewalPolicy};
use mesh_identity::spiffe::{IstioIdentity, TrustDomain, TrustDomains};
use mesh_identity::store::{CertificateStore, StoreError, StoreOptions};
use mesh_identity::svid::PeerRole;
use mesh_identity::tls::{TlsError, client_config, peer_spiffe_id};
use mesh_identity::verify::VerifyError;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{CertificateError, ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};

const HOUR: u64 = 3600;
const DAY: Duration = Duration::from_secs(24 * HOUR);

/// A clock the test moves; the stores' configurations read it through rustls's TimeProvider.
#[derive(Debug)]
struct Clock(AtomicU64);

impl Clock {
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }

    fn now(&self) -> UnixTime {
        at(self.0.load(Ordering::SeqCst))
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.now())
    }
}

fn identity(sa: &str) -> IstioIdentity {
    IstioIdentity::new(&td(), "default", sa).unwrap()
}

fn root(name: &str) -> LocalCa {
    let options = CaOptions { common_name: Some(name.into()), ..CaOptions::default() };
    LocalCa::new_root(td(), &options, at(NOW - DAY.as_secs())).unwrap()
}

fn bundle(roots: &[&LocalCa]) -> TrustBundle {
    TrustBundle::from_der(td(), roots.iter().map(|ca| ca.root_certificate().clone())).unwrap()
}

/// A store (one proxy's) on `clock`, trusting `roots`.
fn store(clock: &Arc<Clock>, roots: &[&LocalCa]) -> CertificateStore {
    let options = StoreOptions { time_provider: Arc::clone(clock) as Arc<dyn TimeProvider>, ..StoreOptions::default() };
    CertificateStore::with_options([bundle(roots)].into_iter().collect(), options)
}

/// The two ends of a connection.
struct Pair {
    client: ClientConnection,
    server: ServerConnection,
}

#[derive(Debug)]
enum Failure {
    #[allow(dead_code)] // Read through Debug when a test fails.
    Client(rustls::Error),
    Server(rustls::Error),
}

fn start(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Pair {
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)).into());
    Pair {
        client: ClientConnection::new(Arc::clone(client), name).unwrap(),
        server: ServerConnection::new(Arc::clone(server)).unwrap(),
    }
}

fn connect(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Result<Pair, Failure> {
    let mut pair = start(client, server);
    pair.finish()?;
    Ok(pair)
}

impl Pair {
    /// One flight each way: the client's records to the server, the server's back.
    fn round(&mut self) -> Result<(), Failure> {
        let to_server = drain(&mut self.client);
        feed(&to_server, &mut self.server);
        if let Err(e) = self.server.process_new_packets() {
            let alert = drain(&mut self.server);
            feed(&alert, &mut self.client);
            let _ = self.client.process_new_packets();
            return Err(Failure::Server(e));
        }
        let to_client = drain(&mut self.server);
        feed(&to_client, &mut self.client);
        if let Err(e) = self.client.process_new_packets() {
            let alert = drain(&mut self.client);
            feed(&alert, &mut self.server);
            let _ = self.server.process_new_packets();
            return Err(Failure::Client(e));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Failure> {
        for _ in 0..16 {
            if !self.client.is_handshaking() && !self.server.is_handshaking() {
                return Ok(());
            }
            self.round()?;
        }
        panic!("handshake did not finish");
    }

    /// Sends `message` each way and checks it arrives, a few kilobytes at a time (what rustls buffers).
    fn exchange(&mut self, message: &[u8]) {
        for chunk in message.chunks(4096) {
            self.exchange_chunk(chunk);
        }
    }

    fn exchange_chunk(&mut self, message: &[u8]) {
        self.client.writer().write_all(message).unwrap();
        let bytes = drain(&mut self.client);
        feed(&bytes, &mut self.server);
        self.server.process_new_packets().unwrap();
        let mut got = vec![0; message.len()];
        self.server.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, message);

        self.server.writer().write_all(message).unwrap();
        let bytes = drain(&mut self.server);
        feed(&bytes, &mut self.client);
        self.client.process_new_packets().unwrap();
        let mut got = vec![0; message.len()];
        self.client.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, message);
    }

    /// The leaves each side presented: (server's, client's).
    fn leaves(&self) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let server = self.client.peer_certificates().unwrap()[0].clone();
        let client = self.server.peer_certificates().unwrap()[0].clone();
        (server, client)
    }
}

fn drain<D>(conn: &mut ConnectionCommon<D>) -> Vec<u8> {
    let mut buf = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut buf).unwrap();
    }
    buf
}

fn feed<D>(mut bytes: &[u8], conn: &mut ConnectionCommon<D>) {
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).unwrap();
    }
}

fn leaf(store: &CertificateStore, id: &IstioIdentity) -> CertificateDer<'static> {
    store.get(id.spiffe_id()).unwrap().leaf().unwrap().clone()
}

/// A server node and a client node, each with its own store, configurations built once.
struct Nodes {
    clock: Arc<Clock>,
    server_store: CertificateStore,
    client_store: CertificateStore,
    server_id: IstioIdentity,
    client_id: IstioIdentity,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Nodes {
    fn new(ca: &LocalCa) -> Self {
        let clock = Arc::new(Clock(AtomicU64::new(NOW)));
        let (server_store, client_store) = (store(&clock, &[ca]), store(&clock, &[ca]));
        let (server_id, client_id) = (identity("reviews"), identity("productpage"));
        server_store.issue(ca, &server_id, at(NOW), Jitter::None).unwrap();
        client_store.issue(ca, &client_id, at(NOW), Jitter::None).unwrap();
        let server = Arc::new(server_store.server_config(server_id.spiffe_id(), [td()]).unwrap());
        let client =
            Arc::new(client_store.client_config(client_id.spiffe_id(), [server_id.spiffe_id().clone()]).unwrap());
        Nodes { clock, server_store, client_store, server_id, client_id, server, client }
    }

    fn current_leaves(&self) -> (CertificateDer<'static>, CertificateDer<'static>) {
        (leaf(&self.server_store, &self.server_id), leaf(&self.client_store, &self.client_id))
    }

    fn replace_bundles(&self, roots: &[&LocalCa]) {
        for store in [&self.server_store, &self.client_store] {
            store.replace_trust_bundles([bundle(roots)].into_iter().collect());
        }
    }
}

#[test]
fn an_established_connection_survives_rotations_and_new_handshakes_present_the_new_certificates() {
    let mut ca = root("Root A");
    let nodes = Nodes::new(&ca);
    let mut tunnel = connect(&nodes.client, &nodes.server).unwrap();
    assert_eq!(tunnel.leaves(), nodes.current_leaves());
    assert_eq!(peer_spiffe_id(&tunnel.server).unwrap(), *nodes.client_id.spiffe_id());
    tunnel.exchange(b"before any rotation");

    let mut seen = vec![nodes.current_leaves()];
    for round in 1..=3u64 {
        // The certificates renew at half-life from the same CA...
        let now = NOW + round * 12 * HOUR;
        nodes.clock.set(now);
        let renewed = nodes.server_store.renew_due(&ca, at(now), |_| Jitter::None);
        assert_eq!(renewed.renewed, [nodes.server_id.spiffe_id().clone()], "{renewed:?}");
        assert!(nodes.client_store.renew_due(&ca, at(now), |_| Jitter::None).failed.is_empty());
        tunnel.exchange(format!("after renewal {round}").as_bytes());

        // ...then the root rotates: both roots trusted for the overlap, workloads move to the new root, the old
        // root goes.
        let next = root(&format!("Root {round}"));
        nodes.replace_bundles(&[&ca, &next]);
        tunnel.exchange(b"during the overlap");
        for store in [&nodes.server_store, &nodes.client_store] {
            assert_eq!(store.renew_all(&next, at(now), |_| Jitter::None).renewed.len(), 1);
        }
        let old_ca = std::mem::replace(&mut ca, next);
        let overlap = connect(&nodes.client, &nodes.server).unwrap();
        assert_eq!(overlap.leaves(), nodes.current_leaves());
        nodes.replace_bundles(&[&ca]);
        tunnel.exchange(b"after the old root left");

        // A new handshake presents the new certificates on both sides, and they chain to the new root only.
        let mut fresh = connect(&nodes.client, &nodes.server).unwrap();
        let leaves = fresh.leaves();
        assert_eq!(leaves, nodes.current_leaves());
        assert!(!seen.contains(&leaves), "round {round} presented an earlier certificate");
        seen.push(leaves);
        fresh.exchange(b"new connection");
        let verifier = nodes.server_store.chain_verifier();
        let old_leaf = old_ca.issue(&nodes.client_id, DAY, at(now)).unwrap();
        assert!(matches!(
            verifier.verify_chain(old_leaf.chain(), PeerRole::Client, at(now)),
            Err(VerifyError::UnknownIssuer { .. })
        ));
    }
    // The connection from before the first rotation still carries data both ways.
    tunnel.exchange(&[7u8; 64 * 1024]);
}

#[test]
fn a_handshake_in_flight_finishes_with_the_certificate_it_started_with() {
    let ca = root("Root A");
    let nodes = Nodes::new(&ca);
    let (server_before, _) = nodes.current_leaves();
    let mut pair = start(&nodes.client, &nodes.server);
    // ClientHello in, ServerHello .. Finished out: the server has chosen its certificate.
    pair.round().unwrap();
    assert!(pair.server.is_handshaking());
    nodes.clock.set(NOW + HOUR);
    nodes.server_store.renew_all(&ca, at(NOW + HOUR), |_| Jitter::None);
    pair.finish().unwrap();
    assert_eq!(pair.leaves().0, server_before);
    assert_ne!(leaf(&nodes.server_store, &nodes.server_id), server_before);
    pair.exchange(b"in flight");
    assert_eq!(connect(&nodes.client, &nodes.server).unwrap().leaves().0, leaf(&nodes.server_store, &nodes.server_id));
}

#[test]
fn a_peer_with_an_expired_certificate_is_refused() {
    let ca = root("Root A");
    let nodes = Nodes::new(&ca);
    // A client outside the store, with a fixed one-hour certificate.
    let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
    let short = ca.issue(&identity("sleep"), Duration::from_secs(HOUR), at(NOW)).unwrap();
    let fixed =
        client_config(&short.to_workload_certificate().unwrap(), bundles, [nodes.server_id.spiffe_id().clone()])
            .unwrap();
    let mut fixed = fixed;
    fixed.time_provider = Arc::clone(&nodes.clock) as Arc<dyn TimeProvider>;
    let fixed = Arc::new(fixed);
    connect(&fixed, &nodes.server).unwrap().exchange(b"valid");

    nodes.clock.set(NOW + HOUR + 1);
    let Err(Failure::Server(error)) = connect(&fixed, &nodes.server) else { panic!("the server must refuse") };
    assert_eq!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: at(NOW + HOUR + 1),
            not_after: at(NOW + HOUR)
        })
    );
}

#[test]
fn an_expired_own_certificate_is_never_presented() {
    let ca = root("Root A");
    let nodes = Nodes::new(&ca);
    let mut tunnel = connect(&nodes.client, &nodes.server).unwrap();
    // Nobody renewed; a day later both certificates have expired.
    let expired = NOW + DAY.as_secs();
    nodes.clock.set(expired);
    assert!(nodes.server_store.resolver(nodes.server_id.spiffe_id()).current().is_none());
    let Err(Failure::Server(error)) = connect(&nodes.client, &nodes.server) else { panic!("must fail") };
    assert!(matches!(error, rustls::Error::General(_)), "the server has nothing to present: {error:?}");

    // The server renewed, the client did not: the client presents nothing and is refused.
    nodes.server_store.renew_due(&ca, at(expired), |_| Jitter::None);
    let Err(Failure::Server(error)) = connect(&nodes.client, &nodes.server) else { panic!("must fail") };
    assert_eq!(error, rustls::Error::NoCertificatesPresented);
    // The entry stays, due, until renewed; the established connection is untouched.
    assert_eq!(nodes.client_store.due(at(expired)), [nodes.client_id.spiffe_id().clone()]);
    assert_eq!(nodes.client_store.next_renewal(at(expired)), Some(Duration::ZERO));
    tunnel.exchange(b"still here");

    nodes.client_store.renew_due(&ca, at(expired), |_| Jitter::None);
    connect(&nodes.client, &nodes.server).unwrap().exchange(b"renewed");
}

#[test]
fn next_renewal_follows_the_schedule_of_each_certificate() {
    let ca = root("Root A");
    let clock = Arc::new(Clock(AtomicU64::new(NOW)));
    let options = StoreOptions {
        renewal: RenewalPolicy::new(0.25),
        time_provider: Arc::clone(&clock) as Arc<dyn TimeProvider>,
        ..StoreOptions::default()
    };
    let store = CertificateStore::with_options([bundle(&[&ca])].into_iter().collect(), options);
    assert_eq!(store.next_renewal(at(NOW)), None, "nothing stored, nothing to renew");

    // A 24 h certificate renews when a quarter of its life remains: after 18 h; jitter shifts it.
    let (a, b) = (identity("a"), identity("b"));
    store.issue(&ca, &a, at(NOW), Jitter::Later(Duration::from_secs(600))).unwrap();
    store.issue(&ca, &b, at(NOW + HOUR), Jitter::None).unwrap();
    assert_eq!(store.get(a.spiffe_id()).unwrap().schedule().renew_at(), at(NOW + 18 * HOUR + 600));
    assert_eq!(store.next_renewal_at(), Some(at(NOW + 18 * HOUR + 600)));
    assert_eq!(store.next_renewal(at(NOW)), Some(Duration::from_secs(18 * HOUR + 600)));
    assert_eq!(store.next_renewal(at(NOW + 18 * HOUR)), Some(Duration::from_secs(600)));
    assert!(store.due(at(NOW + 18 * HOUR + 599)).is_empty());
    assert_eq!(store.due(at(NOW + 18 * HOUR + 600)), [a.spiffe_id().clone()]);
    assert_eq!(store.due(at(NOW + 19 * HOUR)), [a.spiffe_id().clone(), b.spiffe_id().clone()]);

    // Renewing `a` alone moves the next renewal to `b`'s, then to `a`'s new one.
    let report = store.renew_due(&ca, at(NOW + 18 * HOUR + 600), |_| Jitter::Earlier(Duration::from_secs(60)));
    assert_eq!(report.renewed, [a.spiffe_id().clone()]);
    assert_eq!(store.next_renewal_at(), Some(at(NOW + 19 * HOUR)));
    store.renew_due(&ca, at(NOW + 19 * HOUR), |_| Jitter::None);
    assert_eq!(store.next_renewal_at(), Some(at(NOW + 18 * HOUR + 600 + 18 * HOUR - 60)));

    // A CA that cannot issue leaves the certificates in place and due; past notAfter they count as expired.
    let much_later = NOW + 3 * DAY.as_secs();
    let report = store.renew_due(&ca.with_max_workload_ttl(Duration::from_secs(60)), at(much_later), |_| Jitter::None);
    assert!(report.renewed.is_empty());
    assert_eq!(report.failed.len(), 2);
    for failure in &report.failed {
        assert!(failure.expired);
        assert!(matches!(failure.error, StoreError::Issue { source: CaError::TtlTooLong { .. }, .. }), "{failure:?}");
    }
    assert_eq!(store.next_renewal(at(much_later)), Some(Duration::ZERO));
    assert_eq!(store.len(), 2);
}

#[test]
fn the_store_keys_certificates_by_identity_and_refuses_what_it_cannot_serve() {
    let ca = root("Root A");
    let clock = Arc::new(Clock(AtomicU64::new(NOW)));
    let store = store(&clock, &[&ca]);
    let (a, b) = (identity("a"), identity("b"));
    // A configuration may be built before the identity has a certificate; it serves once it has one.
    let server = Arc::new(store.server_config(a.spiffe_id(), [td()]).unwrap());
    let client = Arc::new(store.client_config(b.spiffe_id(), [a.spiffe_id().clone()]).unwrap());
    assert!(connect(&client, &server).is_err());
    store.insert_issued(ca.issue(&a, DAY, at(NOW)).unwrap(), Jitter::None).unwrap();
    store.insert(&ca.issue(&b, DAY, at(NOW)).unwrap().to_workload_certificate().unwrap(), Jitter::None).unwrap();
    assert_eq!(store.identities(), [a.spiffe_id().clone(), b.spiffe_id().clone()]);
    let pair = connect(&client, &server).unwrap();
    assert_eq!(pair.leaves(), (leaf(&store, &a), leaf(&store, &b)));

    // Removed, then stored again: the configuration built before follows.
    let removed = store.remove(a.spiffe_id()).unwrap();
    assert_eq!(removed.spiffe_id(), a.spiffe_id());
    assert!(connect(&client, &server).is_err());
    store.issue(&ca, &a, at(NOW), Jitter::None).unwrap();
    connect(&client, &server).unwrap();

    // A key that is not the certificate's, a CSR's SVID without key, and empty lists are refused.
    let chain = ca.issue(&a, DAY, at(NOW)).unwrap();
    let other = ca.issue(&b, DAY, at(NOW)).unwrap();
    let mismatched =
        mesh_identity::tls::WorkloadCertificate::new(chain.chain().to_vec(), other.private_key_der().unwrap()).unwrap();
    assert!(matches!(store.insert(&mismatched, Jitter::None), Err(StoreError::Certificate { .. })));
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
    let for_csr = ca.issue_for_csr_der(csr.der(), &a, DAY, at(NOW)).unwrap();
    assert!(matches!(
        store.insert_issued(for_csr, Jitter::None),
        Err(StoreError::Certificate { source: TlsError::NoPrivateKey { .. }, .. })
    ));
    assert_eq!(store.server_config(a.spiffe_id(), []).unwrap_err(), TlsError::NoAcceptedTrustDomains);
    assert_eq!(store.client_config(a.spiffe_id(), []).unwrap_err(), TlsError::NoExpectedIdentities);
}

#[test]
fn an_alias_trust_domain_verifies_against_the_replaced_mesh_bundle() {
    let ca = root("Root A");
    let clock = Arc::new(Clock(AtomicU64::new(NOW)));
    let store = store(&clock, &[&ca]);
    let server_id = identity("reviews");
    store.issue(&ca, &server_id, at(NOW), Jitter::None).unwrap();
    let old_domain = TrustDomain::new("old.local").unwrap();
    let server = Arc::new(store.server_config(server_id.spiffe_id(), [td(), old_domain.clone()]).unwrap());

    // A workload still named in the old domain, issued by the same root.
    let old_ca = LocalCa::from_plugin_pem(old_domain.clone(), &ca.to_plugin_pem()).unwrap();
    let old_id = IstioIdentity::new(&old_domain, "default", "legacy").unwrap();
    let old_svid = old_ca.issue(&old_id, DAY, at(NOW)).unwrap();
    let bundles = Arc::new([ca.trust_bundle().clone()].into_iter().collect());
    let mut legacy =
        client_config(&old_svid.to_workload_certificate().unwrap(), bundles, [server_id.spiffe_id().clone()]).unwrap();
    legacy.time_provider = Arc::clone(&clock) as Arc<dyn TimeProvider>;
    let legacy = Arc::new(legacy);
    let Err(Failure::Server(error)) = connect(&legacy, &server) else { panic!("no bundle for old.local yet") };
    assert!(format!("{error}").contains("old.local"), "{error}");

    store.replace_mesh_bundle(&TrustDomains::new(td(), [old_domain]), bundle(&[&ca]));
    let pair = connect(&legacy, &server).unwrap();
    assert_eq!(peer_spiffe_id(&pair.server).unwrap(), *old_id.spiffe_id());
}

/// The store and its resolvers are shared across a transport's tasks.
const _: () = {
    const fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<CertificateStore>();
    shared::<mesh_identity::store::IdentityResolver>();
    shared::<mesh_identity::store::SharedTrustBundles>();
};

#[test]
fn concurrent_readers_see_whole_certificates_and_never_go_back() {
    let ca = root("Root A");
    let next = root("Root B");
    let clock = Arc::new(Clock(AtomicU64::new(NOW)));
    let store = store(&clock, &[&ca]);
    let id = identity("reviews");
    // Issued up front, so the loop below only swaps.
    const VERSIONS: usize = 40;
    let versions: Vec<_> = (0..VERSIONS).map(|_| ca.issue(&id, DAY, at(NOW)).unwrap()).collect();
    let leaves: Arc<Vec<CertificateDer<'static>>> = Arc::new(versions.iter().map(|v| v.leaf().clone()).collect());
    let mut versions = versions.into_iter();
    store.insert_issued(versions.next().unwrap(), Jitter::None).unwrap();
    let probe = ca.issue(&identity("probe"), DAY, at(NOW)).unwrap();
    let probe = Arc::new(probe.chain().to_vec());

    const READERS: usize = 4;
    let barrier = Arc::new(Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (resolver, verifier) = (store.resolver(id.spiffe_id()), store.chain_verifier());
            let (leaves, probe, barrier) = (Arc::clone(&leaves), Arc::clone(&probe), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut last = 0;
                for i in 0..2_000 {
                    let current = resolver.current().expect("a certificate is always stored");
                    current.keys_match().expect("chain and key belong together");
                    let index = leaves.iter().position(|l| *l == current.cert[0]).expect("one of the versions");
                    assert!(index >= last, "went back from version {last} to {index}");
                    last = index;
                    // Every bundle set swapped in trusts root A, which issued the probe.
                    if i % 8 == 0 {
                        verifier.verify_chain(&probe, PeerRole::Client, at(NOW)).expect("verifies in every set");
                    }
                }
                last
            })
        })
        .collect();
    barrier.wait();
    for (i, version) in versions.enumerate() {
        store.insert_issued(version, Jitter::None).unwrap();
        let roots: &[&LocalCa] = if i % 2 == 0 { &[&ca, &next] } else { &[&ca] };
        store.replace_trust_bundles([bundle(roots)].into_iter().collect());
    }
    for reader in readers {
        assert!(reader.join().unwrap() < VERSIONS);
    }
    assert_eq!(store.resolver(id.spiffe_id()).current().unwrap().cert[0], leaves[VERSIONS - 1]);
}
