//! Istio's plug-in CA layout: export and reload, OpenSSL-made CA files (EC and RSA, traditional key PEMs), and
//! the mistakes operators make with the four files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{NOW, at, bookinfo, td};
use mesh_identity::ca::{CaError, CaOptions, DEFAULT_WORKLOAD_TTL, LocalCa, PluginCaPem};
use mesh_identity::svid::PeerRole;
use mesh_identity::verify::ChainVerifier;
use rustls_pki_types::UnixTime;

fn verify(ca: &LocalCa, chain: &[rustls_pki_types::CertificateDer<'_>], now: UnixTime) {
    let set = [ca.trust_bundle().clone()].into_iter().collect();
    let peer = ChainVerifier::new(Arc::new(set)).verify_chain(chain, PeerRole::Server, now).unwrap();
    assert_eq!(peer.spiffe_id(), bookinfo().spiffe_id());
}

fn openssl_files(dir: &str) -> PluginCaPem {
    let read = |f: &str| std::fs::read_to_string(format!("tests/data/x509/{dir}/{f}")).unwrap();
    PluginCaPem {
        ca_cert: read("ca-cert.pem"),
        ca_key: read("ca-key.pem"),
        root_cert: read("root-cert.pem"),
        cert_chain: read("cert-chain.pem"),
    }
}

#[test]
fn round_trip_of_an_intermediate_ca() {
    let root = LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap();
    let inter = root.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    let files = inter.to_plugin_pem();
    assert_eq!(files.cert_chain.matches("BEGIN CERTIFICATE").count(), 2, "ca-cert + root");
    assert!(files.ca_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!format!("{files:?}").contains("PRIVATE KEY"), "Debug redacts the key");

    let loaded = LocalCa::from_plugin_pem(td(), &files).unwrap();
    assert!(!loaded.is_root());
    assert_eq!(loaded.certificate(), inter.certificate());
    assert_eq!(loaded.root_certificate(), root.root_certificate());
    assert_eq!((loaded.not_before(), loaded.not_after()), (inter.not_before(), inter.not_after()));
    assert_eq!(loaded.to_plugin_pem(), files);

    let svid = loaded.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW + 10)).unwrap();
    assert_eq!(svid.chain().len(), 2);
    assert_eq!(&svid.chain()[1], inter.certificate());
    assert_eq!(svid.root_cert_pem(), files.root_cert);
    verify(&root, svid.chain(), at(NOW + 10));
}

#[test]
fn round_trip_of_a_two_level_chain_and_a_root() {
    let root = LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap();
    let inner = root
        .new_intermediate(&CaOptions::default(), at(NOW))
        .unwrap()
        .new_intermediate(&CaOptions::default(), at(NOW))
        .unwrap();
    let files = inner.to_plugin_pem();
    assert_eq!(files.cert_chain.matches("BEGIN CERTIFICATE").count(), 3);
    let loaded = LocalCa::from_plugin_pem(td(), &files).unwrap();
    assert_eq!(loaded.intermediates().len(), 2);
    verify(&root, loaded.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap().chain(), at(NOW));

    // The root itself as a plug-in CA; cert-chain.pem may hold just the root or be empty.
    let mut files = root.to_plugin_pem();
    assert_eq!(files.cert_chain, files.root_cert);
    for chain in [files.cert_chain.clone(), String::new()] {
        files.cert_chain = chain;
        let loaded = LocalCa::from_plugin_pem(td(), &files).unwrap();
        assert!(loaded.is_root());
        verify(&root, loaded.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap().chain(), at(NOW));
    }
}

#[test]
fn openssl_plugin_cas_with_traditional_keys() {
    for dir in ["plugin-ec", "plugin-rsa"] {
        let files = openssl_files(dir);
        assert!(files.ca_key.contains(if dir == "plugin-ec" { "EC PRIVATE KEY" } else { "RSA PRIVATE KEY" }));
        let ca = LocalCa::from_plugin_pem(td(), &files).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let now = at(ca.not_before().as_secs() + 60);
        let svid = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, now).unwrap();
        verify(&ca, svid.chain(), now);
        // Without cert-chain.pem the intermediate is still found to be signed by the root.
        let files = PluginCaPem { cert_chain: String::new(), ..files };
        let ca = LocalCa::from_plugin_pem(td(), &files).unwrap();
        verify(&ca, ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, now).unwrap().chain(), now);
    }
}

#[test]
fn operator_mistakes_are_named() {
    let ec = openssl_files("plugin-ec");
    let rsa = openssl_files("plugin-rsa");

    let swapped_key = PluginCaPem { ca_key: rsa.ca_key.clone(), ..ec.clone() };
    assert_eq!(LocalCa::from_plugin_pem(td(), &swapped_key).unwrap_err(), CaError::KeyMismatch);

    let wrong_root = PluginCaPem { root_cert: rsa.root_cert.clone(), cert_chain: String::new(), ..ec.clone() };
    assert_eq!(
        LocalCa::from_plugin_pem(td(), &wrong_root).unwrap_err(),
        CaError::BrokenChain { index: 0, to_root: true }
    );

    let foreign_chain = PluginCaPem { cert_chain: rsa.cert_chain.clone(), ..ec.clone() };
    assert_eq!(LocalCa::from_plugin_pem(td(), &foreign_chain).unwrap_err(), CaError::ChainStart);

    // cert-chain.pem with an intermediate that did not sign ca-cert.pem.
    let bogus_parent = PluginCaPem { cert_chain: format!("{}{}", ec.ca_cert, rsa.ca_cert), ..ec.clone() };
    assert_eq!(
        LocalCa::from_plugin_pem(td(), &bogus_parent).unwrap_err(),
        CaError::BrokenChain { index: 0, to_root: false }
    );

    let leaf_as_ca = PluginCaPem {
        ca_cert: std::fs::read_to_string("tests/data/x509/leaf-istio.pem").unwrap(),
        cert_chain: String::new(),
        ..ec.clone()
    };
    assert!(matches!(LocalCa::from_plugin_pem(td(), &leaf_as_ca).unwrap_err(), CaError::NotCa { .. }));

    let no_root = PluginCaPem { root_cert: String::new(), ..ec.clone() };
    assert!(matches!(LocalCa::from_plugin_pem(td(), &no_root).unwrap_err(), CaError::BadCertificate { .. }));

    let bad_key = PluginCaPem { ca_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(), ..ec };
    let err = LocalCa::from_plugin_pem(td(), &bad_key).unwrap_err();
    assert!(matches!(err, CaError::BadKey { what: "ca-key.pem", .. }), "{err}");
}

#[test]
fn several_roots_in_root_cert_pem() {
    // During a root migration root-cert.pem holds the old and the new root.
    let old = LocalCa::new_root(td(), &CaOptions::default(), at(NOW)).unwrap();
    let new =
        LocalCa::new_root(td(), &CaOptions { common_name: Some("Root CA 2".into()), ..CaOptions::default() }, at(NOW))
            .unwrap();
    let inter = new.new_intermediate(&CaOptions::default(), at(NOW)).unwrap();
    let mut files = inter.to_plugin_pem();
    files.root_cert = format!("{}{}", old.trust_bundle().to_pem(), new.trust_bundle().to_pem());
    let loaded = LocalCa::from_plugin_pem(td(), &files).unwrap();
    assert_eq!(loaded.root_certificate(), new.root_certificate());
    assert_eq!(loaded.trust_bundle().roots().len(), 2);
    let svid = loaded.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    verify(&loaded, svid.chain(), at(NOW));
}

#[test]
fn leaves_are_cut_at_the_earliest_expiry_above_them() {
    // An operator CA whose intermediate outlives its root (OpenSSL does not stop this): leaves end with the root.
    let ca_params = |cn: &str, not_after| {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = not_after;
        p
    };
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_params = ca_params("Short Root", rcgen::date_time_ymd(2025, 6, 16));
    let root = root_params.self_signed(&root_key).unwrap();
    let inter_key = rcgen::KeyPair::generate().unwrap();
    let inter = ca_params("Long Intermediate", rcgen::date_time_ymd(2030, 1, 1))
        .signed_by(&inter_key, &rcgen::Issuer::new(root_params, root_key))
        .unwrap();
    let files = PluginCaPem {
        ca_cert: inter.pem(),
        ca_key: inter_key.serialize_pem(),
        root_cert: root.pem(),
        cert_chain: format!("{}{}", inter.pem(), root.pem()),
    };
    let ca = LocalCa::from_plugin_pem(td(), &files).unwrap();
    let root_end = at(1_750_032_000); // 2025-06-16T00:00:00Z
    let svid = ca.issue(&bookinfo(), DEFAULT_WORKLOAD_TTL, at(NOW)).unwrap();
    assert_eq!(svid.not_after(), root_end);
    verify(&ca, svid.chain(), at(NOW));
}
