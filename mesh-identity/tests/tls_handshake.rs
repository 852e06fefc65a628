//! HBONE mutual TLS between the built ServerConfig and ClientConfig, handshaking in memory (read_tls /
//! write_tls over byte buffers, no sockets), at a fixed time given to rustls through its TimeProvider.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::{NOW, at};
use mesh_identity::bundle::TrustBundleSet;
use mesh_identity::ca::{CaOptions, LocalCa};
use mesh_identity::spiffe::{IstioIdentity, SpiffeId, TrustDomain};
use mesh_identity::tls::{
    HBONE_ALPN, SpiffeServerVerifier, TlsError, UnexpectedServerIdentity, WorkloadCertificate, client_config,
    peer_istio_identity, peer_spiffe_id, server_config,
};
use mesh_identity::verify::{ChainVerifier, VerifyError};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, ConnectionCommon, ProtocolVersion, ServerConfig, ServerConnection,
};

const DAY: Duration = Duration::from_secs(86_400);

/// rustls's clock, pinned.
#[derive(Debug)]
struct FixedTime(UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

struct Mesh {
    ca: LocalCa,
    remote: LocalCa,
    bundles: Arc<TrustBundleSet>,
}

impl Mesh {
    fn new() -> Self {
        let ca = LocalCa::new_root(td("cluster.local"), &CaOptions::default(), at(NOW - DAY.as_secs())).unwrap();
        let remote = LocalCa::new_root(td("remote.example"), &CaOptions::default(), at(NOW - DAY.as_secs())).unwrap();
        let bundles = [ca.trust_bundle().clone(), remote.trust_bundle().clone()].into_iter().collect();
        Mesh { ca, remote, bundles: Arc::new(bundles) }
    }

    fn workload(&self, ca: &LocalCa, ns: &str, sa: &str) -> WorkloadCertificate {
        let id = IstioIdentity::new(ca.trust_domain(), ns, sa).unwrap();
        let svid = ca.issue(&id, DAY, at(NOW)).unwrap();
        WorkloadCertificate::from_pem(&svid.cert_chain_pem(), &svid.private_key_pem().unwrap()).unwrap()
    }

    fn server(&self, own: &WorkloadCertificate) -> ServerConfig {
        server_config(own, Arc::clone(&self.bundles), [td("cluster.local")]).unwrap()
    }

    fn client(&self, own: &WorkloadCertificate, expected: &[&SpiffeId]) -> ClientConfig {
        client_config(own, Arc::clone(&self.bundles), expected.iter().map(|id| (*id).clone())).unwrap()
    }
}

#[derive(Debug)]
enum Failure {
    Client(rustls::Error),
    Server(rustls::Error),
}

fn connect(
    mut client: ClientConfig,
    mut server: ServerConfig,
    now: UnixTime,
) -> (ClientConnection, ServerConnection, Result<(), Failure>) {
    client.time_provider = Arc::new(FixedTime(now));
    server.time_provider = Arc::new(FixedTime(now));
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)).into());
    let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server)).unwrap();
    let result = handshake(&mut client, &mut server);
    (client, server, result)
}

/// Shuttles records until both sides finish or one fails; the failing side's alert is delivered to the other.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), Failure> {
    for _ in 0..16 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let to_server = drain(client);
        feed(&to_server, server);
        if let Err(e) = server.process_new_packets() {
            let alert = drain(server);
            feed(&alert, client);
            let _ = client.process_new_packets();
            return Err(Failure::Server(e));
        }
        let to_client = drain(server);
        feed(&to_client, client);
        if let Err(e) = client.process_new_packets() {
            let alert = drain(client);
            feed(&alert, server);
            let _ = server.process_new_packets();
            return Err(Failure::Client(e));
        }
    }
    panic!("handshake did not finish");
}

/// Everything `conn` has to send.
fn drain<D>(conn: &mut ConnectionCommon<D>) -> Vec<u8> {
    let mut buf = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut buf).unwrap();
    }
    buf
}

/// Hands `bytes` to `conn`.
fn feed<D>(mut bytes: &[u8], conn: &mut ConnectionCommon<D>) {
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).unwrap();
    }
}

fn other_error<E: std::error::Error + 'static>(error: &rustls::Error) -> &E {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<E>().unwrap_or_else(|| panic!("not the expected error type: {error}"))
        }
        _ => panic!("not CertificateError::Other: {error:?}"),
    }
}

#[test]
fn matching_identities_handshake_over_tls13_with_h2() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "ztunnel-client");
    let (mut client, mut server, result) =
        connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), mesh.server(&server_cert), at(NOW + 60));
    result.unwrap();

    for version in [client.protocol_version(), server.protocol_version()] {
        assert_eq!(version, Some(ProtocolVersion::TLSv1_3));
    }
    assert_eq!(client.alpn_protocol(), Some(HBONE_ALPN));
    assert_eq!(server.alpn_protocol(), Some(b"h2".as_slice()));
    assert_eq!(server.server_name(), None, "the client sends no SNI");

    assert_eq!(peer_spiffe_id(&client).unwrap(), *server_cert.spiffe_id());
    assert_eq!(peer_spiffe_id(&server).unwrap(), *client_cert.spiffe_id());
    let client_identity = peer_istio_identity(&server).unwrap();
    assert_eq!((client_identity.namespace(), client_identity.service_account()), ("default", "ztunnel-client"));

    // Application data flows both ways.
    client.writer().write_all(b"CONNECT 10.0.0.7:9080").unwrap();
    let bytes = drain(&mut client);
    feed(&bytes, &mut server);
    server.process_new_packets().unwrap();
    let mut got = [0u8; 21];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"CONNECT 10.0.0.7:9080");
}

#[test]
fn any_of_several_expected_identities_is_accepted() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "istio-system", "waypoint");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let destination = IstioIdentity::new(&td("cluster.local"), "default", "reviews").unwrap();
    let expected = [destination.spiffe_id(), server_cert.spiffe_id()];
    let (_, _, result) = connect(mesh.client(&client_cert, &expected), mesh.server(&server_cert), at(NOW));
    result.unwrap();
}

#[test]
fn wrong_expected_identity_is_refused_by_the_client() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let reviews = IstioIdentity::new(&td("cluster.local"), "default", "reviews").unwrap();
    let (client, _, result) =
        connect(mesh.client(&client_cert, &[reviews.spiffe_id()]), mesh.server(&server_cert), at(NOW));
    let Err(Failure::Client(error)) = result else { panic!("client must refuse: {result:?}") };
    let mismatch: &UnexpectedServerIdentity = other_error(&error);
    assert_eq!(&mismatch.presented, server_cert.spiffe_id());
    assert_eq!(mismatch.expected, [reviews.spiffe_id().clone()]);
    assert!(mismatch.to_string().contains("not an expected identity"), "{mismatch}");
    assert!(client.is_handshaking(), "no connection is established");
}

#[test]
fn client_from_an_unaccepted_trust_domain_is_refused() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    // remote.example has a bundle (its chain verifies) but the server accepts only cluster.local.
    let client_cert = mesh.workload(&mesh.remote, "default", "client");
    let (_, _, result) =
        connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), mesh.server(&server_cert), at(NOW));
    let Err(Failure::Server(error)) = result else { panic!("server must refuse: {result:?}") };
    let reason: &VerifyError = other_error(&error);
    assert!(
        matches!(reason, VerifyError::TrustDomainNotAccepted { trust_domain, .. } if trust_domain == "remote.example")
    );
}

#[test]
fn server_from_an_unknown_trust_domain_is_refused() {
    let mesh = Mesh::new();
    let stranger = LocalCa::new_root(td("stranger.example"), &CaOptions::default(), at(NOW - 10)).unwrap();
    let server_cert = mesh.workload(&stranger, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let server = server_config(
        &server_cert,
        Arc::new([stranger.trust_bundle().clone()].into_iter().collect()),
        [td("stranger.example"), td("cluster.local")],
    )
    .unwrap();
    let (_, _, result) = connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), server, at(NOW));
    let Err(Failure::Client(error)) = result else { panic!("client must refuse: {result:?}") };
    let reason: &VerifyError = other_error(&error);
    assert!(matches!(reason, VerifyError::UnknownTrustDomain { .. }), "{reason}");
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = SpiffeServerVerifier::new(
        ChainVerifier::new(Arc::clone(&mesh.bundles)),
        vec![server_cert.spiffe_id().clone()],
        &provider,
    );
    let mut anonymous = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let (_, server, result) = connect(anonymous, mesh.server(&server_cert), at(NOW));
    let Err(Failure::Server(error)) = result else { panic!("server must refuse: {result:?}") };
    assert_eq!(error, rustls::Error::NoCertificatesPresented);
    assert!(peer_spiffe_id(&server).is_err());
}

#[test]
fn expired_and_not_yet_valid_certificates_fail_at_rustls_time() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let late = at(NOW + DAY.as_secs() + 1);
    let (_, _, result) =
        connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), mesh.server(&server_cert), late);
    let Err(Failure::Client(error)) = result else { panic!("client must refuse: {result:?}") };
    assert_eq!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: late,
            not_after: at(NOW + DAY.as_secs())
        })
    );
    let early = at(NOW - 1);
    let (_, _, result) =
        connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), mesh.server(&server_cert), early);
    assert!(
        matches!(
            result,
            Err(Failure::Client(rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })))
        ),
        "{result:?}"
    );
}

#[test]
fn server_from_a_foreign_ca_claiming_our_domain_is_an_unknown_issuer() {
    let mesh = Mesh::new();
    let impostor = LocalCa::new_root(
        td("cluster.local"),
        &CaOptions { common_name: Some("Impostor".into()), ..CaOptions::default() },
        at(NOW - 10),
    )
    .unwrap();
    let server_cert = mesh.workload(&impostor, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let server = server_config(&server_cert, Arc::clone(&mesh.bundles), [td("cluster.local")]).unwrap();
    let (_, _, result) = connect(mesh.client(&client_cert, &[server_cert.spiffe_id()]), server, at(NOW));
    assert!(
        matches!(result, Err(Failure::Client(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)))),
        "{result:?}"
    );
}

#[test]
fn a_client_without_h2_is_refused() {
    let mesh = Mesh::new();
    let server_cert = mesh.workload(&mesh.ca, "default", "productpage");
    let client_cert = mesh.workload(&mesh.ca, "default", "client");
    let mut client = mesh.client(&client_cert, &[server_cert.spiffe_id()]);
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (_, _, result) = connect(client, mesh.server(&server_cert), at(NOW));
    assert!(matches!(result, Err(Failure::Server(rustls::Error::NoApplicationProtocol))), "{result:?}");
}

#[test]
fn configuration_mistakes_are_reported() {
    let mesh = Mesh::new();
    let own = mesh.workload(&mesh.ca, "default", "productpage");
    assert_eq!(client_config(&own, Arc::clone(&mesh.bundles), []).unwrap_err(), TlsError::NoExpectedIdentities);
    assert_eq!(server_config(&own, Arc::clone(&mesh.bundles), []).unwrap_err(), TlsError::NoAcceptedTrustDomains);
    // A client-auth-only certificate cannot be a workload's own HBONE certificate.
    let client_only = std::fs::read_to_string("tests/data/x509/leaf-client-auth-only.pem").unwrap();
    // The certificate is refused before the key is looked at.
    let err =
        WorkloadCertificate::from_pem(&client_only, "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
    assert!(matches!(err, TlsError::OwnCertificate(_)), "{err}");
    // A key that is not the certificate's.
    let other = mesh.ca.issue(&IstioIdentity::new(&td("cluster.local"), "a", "b").unwrap(), DAY, at(NOW)).unwrap();
    let mismatched = WorkloadCertificate::from_pem(
        &mesh
            .ca
            .issue(&IstioIdentity::new(&td("cluster.local"), "c", "d").unwrap(), DAY, at(NOW))
            .unwrap()
            .cert_chain_pem(),
        &other.private_key_pem().unwrap(),
    )
    .unwrap();
    assert!(matches!(
        server_config(&mismatched, Arc::clone(&mesh.bundles), [td("cluster.local")]),
        Err(TlsError::Rustls(_))
    ));
}
