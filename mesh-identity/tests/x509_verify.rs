//! Peer chain verification with rustls-webpki: certificates issued by the local CA (and by OpenSSL), checked
//! at chosen times against trust bundles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NOW, at};
use mesh_identity::bundle::{TrustBundle, TrustBundleSet};
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, TrustDomain, TrustDomains};
use mesh_identity::svid::{PeerRole, SvidError};
use mesh_identity::verify::{ChainVerifier, VerifyError};
use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

const DAY: Duration = Duration::from_secs(86_400);

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn id(trust_domain: &str, ns: &str, sa: &str) -> IstioIdentity {
    IstioIdentity::new(&td(trust_domain), ns, sa).unwrap()
}

fn root(trust_domain: &str) -> LocalCa {
    LocalCa::new_root(td(trust_domain), &CaOptions::default(), at(NOW - DAY.as_secs())).unwrap()
}

fn verifier(cas: &[&LocalCa]) -> ChainVerifier {
    let set: TrustBundleSet = cas.iter().map(|ca| ca.trust_bundle().clone()).collect();
    ChainVerifier::new(Arc::new(set))
}

/// The CA's certificate and key as an rcgen issuer, to forge certificates the local CA would never issue.
fn rcgen_issuer(ca: &LocalCa) -> Issuer<'static, KeyPair> {
    let files = ca.to_plugin_pem();
    Issuer::from_ca_cert_pem(&files.ca_cert, KeyPair::from_pem(&files.ca_key).unwrap()).unwrap()
}

/// A leaf signed by `ca` with the given SANs, CA flag, key usages and EKUs, valid a year around NOW.
fn forged_leaf(
    ca: &LocalCa,
    sans: &[&str],
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    ekus: Vec<ExtendedKeyUsagePurpose>,
) -> CertificateDer<'static> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = sans.iter().map(|s| SanType::URI((*s).try_into().unwrap())).collect();
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.extended_key_usages = ekus;
    params.not_before = date_time_ymd(2025, 1, 1);
    params.not_after = date_time_ymd(2026, 1, 1);
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &rcgen_issuer(ca)).unwrap().der().clone()
}

fn svid_key_usage() -> Vec<KeyUsagePurpose> {
    vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]
}

fn both_ekus() -> Vec<ExtendedKeyUsagePurpose> {
    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
}

#[test]
fn issued_svid_verifies_as_server_and_client() {
    let ca = root("cluster.local");
    let bookinfo = id("cluster.local", "default", "bookinfo");
    let svid = ca.issue(&bookinfo, DAY, at(NOW)).unwrap();
    let v = verifier(&[&ca]);
    for role in [PeerRole::Server, PeerRole::Client] {
        let peer = v.verify_chain(svid.chain(), role, at(NOW + 60)).unwrap();
        assert_eq!(peer.spiffe_id(), bookinfo.spiffe_id());
        assert_eq!(peer.istio_identity().unwrap(), bookinfo);
        assert_eq!(peer.not_after(), at(NOW + DAY.as_secs()));
    }
}

#[test]
fn validity_is_judged_at_the_given_time() {
    let ca = root("cluster.local");
    let svid = ca.issue(&id("cluster.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    let v = verifier(&[&ca]);
    let expired = v.verify_chain(svid.chain(), PeerRole::Client, at(NOW + DAY.as_secs() + 1)).unwrap_err();
    assert_eq!(expired, VerifyError::Expired { now: at(NOW + DAY.as_secs() + 1), not_after: at(NOW + DAY.as_secs()) });
    assert!(expired.to_string().contains("2025-06-16T15:06:40Z"), "{expired}");

    let early = v.verify_chain(svid.chain(), PeerRole::Client, at(NOW - 1)).unwrap_err();
    assert_eq!(early, VerifyError::NotYetValid { now: at(NOW - 1), not_before: at(NOW) });

    // The boundaries are inclusive.
    v.verify_chain(svid.chain(), PeerRole::Client, at(NOW)).unwrap();
    v.verify_chain(svid.chain(), PeerRole::Client, at(NOW + DAY.as_secs())).unwrap();
}

#[test]
fn unknown_trust_domain_has_no_bundle() {
    let local = root("cluster.local");
    let remote = root("remote.example");
    let svid = remote.issue(&id("remote.example", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    let err = verifier(&[&local]).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap_err();
    assert!(matches!(&err, VerifyError::UnknownTrustDomain { trust_domain, .. } if trust_domain == "remote.example"));

    // Federated: with the remote bundle it verifies.
    verifier(&[&local, &remote]).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap();
}

#[test]
fn a_ca_cannot_vouch_for_another_trust_domain() {
    let local = root("cluster.local");
    let remote = root("remote.example");
    // The local CA's key signs a certificate claiming the remote domain: the remote bundle must reject it.
    let forged = forged_leaf(
        &local,
        &["spiffe://remote.example/ns/default/sa/admin"],
        IsCa::ExplicitNoCa,
        svid_key_usage(),
        both_ekus(),
    );
    let err = verifier(&[&local, &remote]).verify(&forged, &[], PeerRole::Client, at(NOW)).unwrap_err();
    assert!(matches!(&err, VerifyError::UnknownIssuer { trust_domain, .. } if trust_domain == "remote.example"));
}

#[test]
fn accepted_trust_domains_restrict_peers() {
    let local = root("cluster.local");
    let remote = root("remote.example");
    let svid = remote.issue(&id("remote.example", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    let v = verifier(&[&local, &remote]).accept_only([td("cluster.local")]);
    assert!(!v.accepts("remote.example"));
    let err = v.verify_chain(svid.chain(), PeerRole::Client, at(NOW)).unwrap_err();
    assert!(matches!(err, VerifyError::TrustDomainNotAccepted { .. }), "{err}");
}

#[test]
fn unknown_issuer_in_the_same_trust_domain() {
    let trusted = root("cluster.local");
    let impostor = root("cluster.local");
    let svid = impostor.issue(&id("cluster.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    // Both roots are named O=cluster.local, CN=Root CA, as Istio's self-signed roots share one name: webpki
    // finds the trusted root by name and the signature fails.
    let err = verifier(&[&trusted]).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");

    // A root under another name is simply an unknown issuer.
    let named = CaOptions { common_name: Some("Other Root".into()), ..CaOptions::default() };
    let other = LocalCa::new_root(td("cluster.local"), &named, at(NOW - 1)).unwrap();
    let svid = other.issue(&id("cluster.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    let err = verifier(&[&trusted]).verify_chain(svid.chain(), PeerRole::Server, at(NOW)).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownIssuer { .. }), "{err}");
    assert!(err.to_string().contains("unknown issuer"));
}

#[test]
fn a_ca_certificate_is_not_a_leaf() {
    let ca = root("cluster.local");
    let inter = ca.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    // A real CA certificate (no SAN) presented as a leaf.
    let err = verifier(&[&ca]).verify(inter.certificate(), &[], PeerRole::Server, at(NOW)).unwrap_err();
    assert_eq!(err, VerifyError::Svid(SvidError::NoUriSan));
    // A CA certificate carrying a SPIFFE ID is still refused.
    let ca_leaf = forged_leaf(
        &ca,
        &["spiffe://cluster.local/ns/default/sa/bookinfo"],
        IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
        vec![KeyUsagePurpose::DigitalSignature],
        both_ekus(),
    );
    let err = verifier(&[&ca]).verify(&ca_leaf, &[], PeerRole::Server, at(NOW)).unwrap_err();
    assert_eq!(err, VerifyError::Svid(SvidError::IsCa));
}

#[test]
fn san_count_is_exactly_one_uri() {
    let ca = root("cluster.local");
    let v = verifier(&[&ca]);
    let two = forged_leaf(
        &ca,
        &["spiffe://cluster.local/ns/default/sa/bookinfo", "spiffe://cluster.local/ns/default/sa/admin"],
        IsCa::ExplicitNoCa,
        svid_key_usage(),
        both_ekus(),
    );
    let none = forged_leaf(&ca, &[], IsCa::ExplicitNoCa, svid_key_usage(), both_ekus());
    assert_eq!(
        v.verify(&two, &[], PeerRole::Server, at(NOW)).unwrap_err(),
        VerifyError::Svid(SvidError::MultipleUriSans { count: 2 })
    );
    assert_eq!(v.verify(&none, &[], PeerRole::Server, at(NOW)).unwrap_err(), VerifyError::Svid(SvidError::NoUriSan));
}

#[test]
fn client_auth_only_certificate_cannot_serve() {
    let ca = root("cluster.local");
    let client_only = forged_leaf(
        &ca,
        &["spiffe://cluster.local/ns/default/sa/bookinfo"],
        IsCa::ExplicitNoCa,
        vec![KeyUsagePurpose::DigitalSignature],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
    let v = verifier(&[&ca]);
    v.verify(&client_only, &[], PeerRole::Client, at(NOW)).unwrap();
    let err = v.verify(&client_only, &[], PeerRole::Server, at(NOW)).unwrap_err();
    assert_eq!(err, VerifyError::WrongUsage { role: PeerRole::Server });
    assert!(err.to_string().contains("serverAuth"));
}

#[test]
fn intermediate_chains_verify_and_need_their_intermediates() {
    let root_ca = root("cluster.local");
    let inter = root_ca.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    let inner = inter.new_intermediate(&CaOptions { path_len: Some(0), ..CaOptions::default() }, at(NOW)).unwrap();
    let bookinfo = id("cluster.local", "default", "bookinfo");
    let svid = inner.issue(&bookinfo, DAY, at(NOW)).unwrap();
    assert_eq!(svid.chain().len(), 3, "leaf, inner, intermediate");
    assert_eq!(svid.root(), root_ca.root_certificate());

    let v = verifier(&[&root_ca]);
    let peer = v.verify_chain(svid.chain(), PeerRole::Server, at(NOW + 1)).unwrap();
    assert_eq!(peer.spiffe_id(), bookinfo.spiffe_id());

    // Without the intermediates there is no path to the root.
    let err = v.verify(svid.leaf(), &[], PeerRole::Server, at(NOW + 1)).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownIssuer { .. }), "{err}");
    // Intermediates in any order still build a path.
    let shuffled = [svid.chain()[2].clone(), svid.chain()[1].clone()];
    v.verify(svid.leaf(), &shuffled, PeerRole::Server, at(NOW + 1)).unwrap();
}

#[test]
fn an_expired_intermediate_fails_the_chain() {
    let root_ca = root("cluster.local");
    let short = CaOptions { ttl: Duration::from_secs(3600), ..CaOptions::default() };
    let inter = root_ca.new_intermediate(&short, at(NOW)).unwrap();
    // The leaf is cut at the intermediate's notAfter.
    let svid = inter.issue(&id("cluster.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    assert_eq!(svid.not_after(), at(NOW + 3600));
    let err = verifier(&[&root_ca]).verify_chain(svid.chain(), PeerRole::Server, at(NOW + 7200)).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn alias_domains_verify_against_the_registered_bundle() {
    let ca = root("cluster.local");
    // The CA of the new domain still issues under the old one during a migration.
    let old = LocalCa::from_plugin_pem(td("old.local"), &ca.to_plugin_pem()).unwrap();
    let svid = old.issue(&id("old.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();

    let mut set = TrustBundleSet::new();
    let domains = TrustDomains::new(td("cluster.local"), [td("old.local")]);
    set.insert_with_aliases(&domains, ca.trust_bundle().clone());
    assert_eq!(set.trust_domains().collect::<Vec<_>>(), ["cluster.local", "old.local"]);
    let v = ChainVerifier::new(Arc::new(set)).accept_mesh(&domains);
    let peer = v.verify_chain(svid.chain(), PeerRole::Client, at(NOW)).unwrap();
    assert_eq!(peer.spiffe_id().trust_domain_name(), "old.local");
    assert!(domains.same_workload(&peer.istio_identity().unwrap(), &id("cluster.local", "default", "bookinfo")));
}

#[test]
fn empty_chain_is_no_certificate() {
    let ca = root("cluster.local");
    assert_eq!(verifier(&[&ca]).verify_chain(&[], PeerRole::Client, at(NOW)).unwrap_err(), VerifyError::NoCertificate);
}

#[test]
fn openssl_plugin_ca_chains_verify() {
    for dir in ["plugin-ec", "plugin-rsa"] {
        let read = |f: &str| std::fs::read_to_string(format!("tests/data/x509/{dir}/{f}")).unwrap();
        let bundle = TrustBundle::from_pem(td("cluster.local"), &read("root-cert.pem")).unwrap();
        let files = mesh_identity::ca::PluginCaPem {
            ca_cert: read("ca-cert.pem"),
            ca_key: read("ca-key.pem"),
            root_cert: read("root-cert.pem"),
            cert_chain: read("cert-chain.pem"),
        };
        let ca = LocalCa::from_plugin_pem(td("cluster.local"), &files).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(ca.not_before().as_secs() + 3600));
        let svid = ca.issue(&id("cluster.local", "ns1", "sa1"), DAY, now).unwrap();
        let v = ChainVerifier::new(Arc::new([bundle].into_iter().collect()));
        let peer = v.verify_chain(svid.chain(), PeerRole::Server, now).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(peer.spiffe_id().as_str(), "spiffe://cluster.local/ns/ns1/sa/sa1");
    }
}

#[test]
fn openssl_issued_leaf_verifies_through_the_openssl_intermediate() {
    let read = |f: &str| std::fs::read(format!("tests/data/x509/{f}")).unwrap();
    let leaf = CertificateDer::from_pem_slice(&read("leaf-istio.pem")).unwrap();
    let inter = CertificateDer::from_pem_slice(&read("plugin-ec/ca-cert.pem")).unwrap();
    let bundle =
        TrustBundle::from_pem(td("cluster.local"), &String::from_utf8(read("plugin-ec/root-cert.pem")).unwrap())
            .unwrap();
    let svid = mesh_identity::svid::Svid::parse(&leaf).unwrap();
    let now = at(svid.not_before().as_secs() + 60);
    let v = ChainVerifier::new(Arc::new([bundle].into_iter().collect()));
    let peer = v.verify(&leaf, &[inter], PeerRole::Client, now).unwrap();
    assert_eq!(peer.spiffe_id().as_str(), "spiffe://cluster.local/ns/default/sa/bookinfo");
}

#[test]
fn bundles_reject_leaves_and_garbage() {
    let ca = root("cluster.local");
    let svid = ca.issue(&id("cluster.local", "default", "bookinfo"), DAY, at(NOW)).unwrap();
    let leaf = TrustBundle::from_der(td("cluster.local"), [svid.leaf().clone()]).unwrap_err();
    assert!(leaf.to_string().contains("not a CA"), "{leaf}");
    let empty = TrustBundle::from_pem(td("cluster.local"), "").unwrap_err();
    assert!(matches!(empty, mesh_identity::bundle::BundleError::Empty { .. }));
    let junk =
        TrustBundle::from_der(td("cluster.local"), [CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]).unwrap_err();
    assert!(matches!(junk, mesh_identity::bundle::BundleError::BadRoot { index: 0, .. }), "{junk}");

    // PEM round trip, duplicates kept once.
    let pem = format!("{}{}", ca.trust_bundle().to_pem(), ca.trust_bundle().to_pem());
    let bundle = TrustBundle::from_pem(td("cluster.local"), &pem).unwrap();
    assert_eq!(bundle.roots(), ca.trust_bundle().roots());
    assert_eq!(bundle.trust_anchors().len(), 1);
}
