//! X.509 identity costs, next to the bare rustls-webpki check they are built on.
//!
//! - `x509/spiffe_id_parse`: `SpiffeId::new` on an Istio identity.
//! - `x509/svid_extract`: `extract_spiffe_id` on a CA-issued leaf (x509-parser plus the SVID profile checks).
//! - `x509/chain_verify`: one group, leaf + one intermediate to a P-256 root, so the ratio can be read off:
//!   - `webpki_raw`: `EndEntityCert::verify_for_usage` with the same anchors, intermediates, time and usage;
//!   - `mesh_identity`: `ChainVerifier::verify` (SVID profile, bundle lookup by trust domain, then the same
//!     webpki call).
//! - `x509/leaf_issue`: a workload leaf from the intermediate, for a fresh P-256 key (`new_key`) or for a CSR
//!   (`csr`, including the CSR signature check).
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]
#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_identity::ca::{CaOptions, DEFAULT_WORKLOAD_TTL, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::svid::{PeerRole, extract_spiffe_id};
use mesh_identity::verify::{ChainVerifier, SIGNATURE_ALGORITHMS};
use rustls_pki_types::UnixTime;
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
    group.finish();

    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default().serialize_request(&key).unwrap();
    let mut group = c.benchmark_group("x509/leaf_issue");
    group.bench_function("new_key", |b| b.iter(|| ca.issue(black_box(&identity), DEFAULT_WORKLOAD_TTL, now).unwrap()));
    group.bench_function("csr", |b| {
        b.iter(|| ca.issue_for_csr_der(black_box(csr.der()), &identity, DEFAULT_WORKLOAD_TTL, now).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_x509);
criterion_main!(benches);
