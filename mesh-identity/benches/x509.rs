//! X.509 identity costs, next to the bare rustls-webpki check they are built on.
//!
//! - `x509/spiffe_id_parse`: `SpiffeId::new` on an Istio identity.
//! - `x509/svid_extract`: `extract_spiffe_id` on a CA-issued leaf (x509-parser plus the SVID profile checks).
//! - `x509/chain_verify`: one group, leaf + one intermediate to a P-256 root, so the ratio can be read off:
//!   - `webpki_raw`: `EndEntityCert::verify_for_usage` with the same anchors, intermediates, time and usage;
//!   - `mesh_identity`: `ChainVerifier::verify` (SVID profile, bundle lookup by trust domain, then the same
//!     webpki call).
//!   - `mesh_identity_shared`: the same through `ChainVerifier::shared`, reading a replaceable bundle set.
//! - `x509/leaf_issue`: a workload leaf from the intermediate, for a fresh P-256 key (`new_key`) or for a CSR
//!   (`csr`, including the CSR signature check).
//! - `x509/cert_resolve`: what a handshake pays to pick its certificate: `arc_clone` (what a fixed
//!   certificate costs, the baseline) against `store` (`IdentityResolver::current`: read lock, clock, validity).
//! - `x509/hbone_handshake`: a full in-memory HBONE mTLS handshake between configurations from
//!   `tls::server_config` / `client_config` (`fixed`, the baseline) and from a `CertificateStore` (`store`).
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]
#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_identity::ca::{CaOptions, DEFAULT_WORKLOAD_TTL, LocalCa};
use mesh_identity::rotation::Jitter;
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::store::{CertificateStore, SharedTrustBundles, StoreOptions};
use mesh_identity::svid::{PeerRole, extract_spiffe_id};
use mesh_identity::tls::{client_config, server_config};
use mesh_identity::verify::{ChainVerifier, SIGNATURE_ALGORITHMS};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};
use rustls_pki_types::{ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

const NOW: u64 = 1_750_000_000;
const ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo";

fn bench_x509(c: &mut Criterion) {
    let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW));
    let td = TrustDomain::new("cluster.local").unwrap();
    let root = LocalCa::new_root(td.clone(), &CaOptions::default(), now).unwrap();
    let ca = root.new_intermediate(&CaOptions::default(), now).unwrap();
    let identity = IstioIdentity::new(&td, "default", "bookinfo").unwrap();
    let svid = ca.issue(&identity, DEFAULT_WORKLOAD_TTL, now).unwrap();
    let (leaf, intermediates) = svid.chain().split_first().unwrap();
    let verifier = ChainVerifier::new(Arc::new([root.trust_bundle().clone()].into_iter().collect()));
    let anchors = root.trust_bundle().trust_anchors();

    c.bench_function("x509/spiffe_id_parse", |b| b.iter(|| SpiffeId::new(black_box(ID)).unwrap()));
    c.bench_function("x509/svid_extract", |b| b.iter(|| extract_spiffe_id(black_box(leaf), PeerRole::Server).unwrap()));

    let mut group = c.benchmark_group("x509/chain_verify");
    group.bench_function("webpki_raw", |b| {
        b.iter(|| {
            let ee = EndEntityCert::try_from(black_box(leaf)).unwrap();
            ee.verify_for_usage(SIGNATURE_ALGORITHMS, anchors, intermediates, now, KeyUsage::server_auth(), None, None)
                .unwrap();
        })
    });
    group.bench_function("mesh_identity", |b| {
        b.iter(|| verifier.verify(black_box(leaf), intermediates, PeerRole::Server, now).unwrap())
    });
    let shared = ChainVerifier::shared(SharedTrustBundles::new([root.trust_bundle().clone()].into_iter().collect()));
    group.bench_function("mesh_identity_shared", |b| {
        b.iter(|| shared.verify(black_box(leaf), intermediates, PeerRole::Server, now).unwrap())
    });
    group.finish();

    bench_store(c, &root, &ca, now);

    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
    let mut group = c.benchmark_group("x509/leaf_issue");
    group.bench_function("new_key", |b| b.iter(|| ca.issue(black_box(&identity), DEFAULT_WORKLOAD_TTL, now).unwrap()));
    group.bench_function("csr", |b| {
        b.iter(|| ca.issue_for_csr_der(black_box(csr.der()), &identity, DEFAULT_WORKLOAD_TTL, now).unwrap())
    });
    group.finish();
}

/// rustls's clock, pinned.
#[derive(Debug)]
struct Fixed(UnixTime);

impl TimeProvider for Fixed {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

fn bench_store(c: &mut Criterion, root: &LocalCa, ca: &LocalCa, now: UnixTime) {
    let td = ca.trust_domain().clone();
    let (server_id, client_id) =
        (IstioIdentity::new(&td, "default", "reviews").unwrap(), IstioIdentity::new(&td, "default", "sleep").unwrap());
    let clock: Arc<dyn TimeProvider> = Arc::new(Fixed(now));
    let options = StoreOptions { time_provider: Arc::clone(&clock), ..StoreOptions::default() };
    let store = CertificateStore::with_options([root.trust_bundle().clone()].into_iter().collect(), options);
    store.issue(ca, &server_id, now, Jitter::None).unwrap();
    store.issue(ca, &client_id, now, Jitter::None).unwrap();

    let mut group = c.benchmark_group("x509/cert_resolve");
    let certified = Arc::clone(store.get(server_id.spiffe_id()).unwrap().certified_key());
    group.bench_function("arc_clone", |b| b.iter(|| Arc::clone(black_box(&certified))));
    let resolver = store.resolver(server_id.spiffe_id());
    group.bench_function("store", |b| b.iter(|| black_box(&resolver).current().unwrap()));
    group.finish();

    let bundles = Arc::new([root.trust_bundle().clone()].into_iter().collect());
    let own = |id: &IstioIdentity| ca.issue(id, DEFAULT_WORKLOAD_TTL, now).unwrap().to_workload_certificate().unwrap();
    let mut fixed_server = server_config(&own(&server_id), Arc::clone(&bundles), [td.clone()]).unwrap();
    let mut fixed_client = client_config(&own(&client_id), bundles, [server_id.spiffe_id().clone()]).unwrap();
    fixed_server.time_provider = Arc::clone(&clock);
    fixed_client.time_provider = Arc::clone(&clock);
    let fixed = (Arc::new(fixed_client), Arc::new(fixed_server));
    let from_store = (
        Arc::new(store.client_config(client_id.spiffe_id(), [server_id.spiffe_id().clone()]).unwrap()),
        Arc::new(store.server_config(server_id.spiffe_id(), [td]).unwrap()),
    );
    let mut group = c.benchmark_group("x509/hbone_handshake");
    group.bench_function("fixed", |b| b.iter(|| handshake(&fixed.0, &fixed.1)));
    group.bench_function("store", |b| b.iter(|| handshake(&from_store.0, &from_store.1)));
    group.finish();
}

/// A full handshake over byte buffers.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = ServerName::IpAddress(std::net::IpAddr::from([10, 0, 0, 7]).into());
    let mut client = ClientConnection::new(Arc::clone(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::clone(server)).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        shuttle(&mut client, &mut server);
        server.process_new_packets().unwrap();
        shuttle(&mut server, &mut client);
        client.process_new_packets().unwrap();
    }
}

fn shuttle<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut bytes = &buf[..];
    while !bytes.is_empty() {
        to.read_tls(&mut bytes).unwrap();
    }
}

criterion_group!(benches, bench_x509);
criterion_main!(benches);
