//! rustls configurations for HBONE mutual TLS as Istio's ztunnel speaks it.
//!
//! Both sides: TLS 1.3 only, ALPN `h2`, the *ring* provider passed explicitly (no process-wide provider is
//! installed or needed), session resumption off so that every connection verifies the peer's chain afresh.
//! The client sends no SNI and accepts the server by SPIFFE ID, not DNS name: the server's URI SAN must be one
//! of the expected identities. The server requires a client certificate from an accepted trust domain.
//! Chains are verified with [`ChainVerifier`] against the bundle of the peer's trust domain; the time is the
//! one rustls passes to the verifier.
//!
//! Building a configuration is pure: nothing is read from disk or the clock.
//!
//! The configurations here present one fixed certificate and trust one fixed bundle set. For certificates
//! and bundles that rotate while serving, build them from a [`crate::store::CertificateStore`] instead.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName, ServerConfig};

use crate::bundle::TrustBundleSet;
use crate::spiffe::{IstioIdentity, SpiffeId, SpiffeIdError, TrustDomain};
use crate::svid::{PeerRole, Svid, SvidError};
use crate::verify::{ChainVerifier, VerifyError};

/// The ALPN protocol HBONE negotiates: HTTP/2, which carries the CONNECT tunnels.
pub const HBONE_ALPN: &[u8] = b"h2";

/// Why a TLS configuration cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain is empty.
    #[error("own certificate chain is empty: give the leaf SVID first, then its intermediates")]
    EmptyChain,
    /// The own leaf is not an X.509-SVID usable for both TLS roles.
    #[error("own certificate is not a usable X.509-SVID: {0}")]
    OwnCertificate(SvidError),
    /// The PEM text of the chain or key could not be read.
    #[error("{what} PEM is unreadable: {reason}")]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// What the PEM reader reported.
        reason: String,
    },
    /// A client was given no identity to expect from the server.
    #[error("no expected server identity: give the SPIFFE IDs the destination may present")]
    NoExpectedIdentities,
    /// A server was given no trust domain to accept clients from.
    #[error("no accepted trust domain: give at least the mesh's own trust domain")]
    NoAcceptedTrustDomains,
    /// An SVID issued for a certificate signing request has no private key here: the requester holds it.
    #[error(
        "the SVID of {spiffe_id} was issued for a CSR, so its private key is with the requester; pair the chain \
         with that key in WorkloadCertificate::new"
    )]
    NoPrivateKey {
        /// The SVID's SPIFFE ID.
        spiffe_id: SpiffeId,
    },
    /// rustls rejected the configuration (for example a key that does not match the certificate).
    #[error("rustls rejected the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server presented a valid SVID, but not one of the identities the client expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server presented {presented}, which is not an expected identity ({})", List(expected))]
pub struct UnexpectedServerIdentity {
    /// The SPIFFE ID the server's certificate carries.
    pub presented: SpiffeId,
    /// The identities the client would have accepted.
    pub expected: Vec<SpiffeId>,
}

struct List<'a>(&'a [SpiffeId]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(id, f)?;
        }
        Ok(())
    }
}

/// A workload's own X.509-SVID for TLS: its certificate chain, leaf first, and private key.
///
/// Made from DER ([`WorkloadCertificate::new`]), PEM files ([`WorkloadCertificate::from_pem`]) or an SVID the
/// local CA issued (`WorkloadCertificate::try_from(issued)`, no PEM in between). For a rustls resolver,
/// [`WorkloadCertificate::certified_key`] loads the key with a crypto provider.
pub struct WorkloadCertificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    spiffe_id: SpiffeId,
    not_before: UnixTime,
    not_after: UnixTime,
}

impl WorkloadCertificate {
    /// The chain (leaf first) and its private key. The leaf must be an X.509-SVID whose extended key usage
    /// allows both serverAuth and clientAuth, since HBONE peers are both.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, TlsError> {
        let leaf = chain.first().ok_or(TlsError::EmptyChain)?;
        let svid = Svid::parse(leaf).map_err(TlsError::OwnCertificate)?;
        svid.check_role(PeerRole::Server).map_err(TlsError::OwnCertificate)?;
        svid.check_role(PeerRole::Client).map_err(TlsError::OwnCertificate)?;
        let (not_before, not_after) = (svid.not_before(), svid.not_after());
        Ok(WorkloadCertificate { chain, key, spiffe_id: svid.into_spiffe_id(), not_before, not_after })
    }

    /// A chain the local CA just issued with its profile (an X.509-SVID leaf for both roles), so it is not
    /// parsed again.
    pub(crate) fn issued(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        spiffe_id: SpiffeId,
        not_before: UnixTime,
        not_after: UnixTime,
    ) -> Self {
        WorkloadCertificate { chain, key, spiffe_id, not_before, not_after }
    }

    /// The chain and key from PEM text (`cert-chain.pem` and `key.pem` as the Istio agent writes them).
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem { what: "certificate chain", reason: e.to_string() })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Pem { what: "private key", reason: e.to_string() })?;
        Self::new(chain, key)
    }

    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf's `notBefore`.
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// The chain and the key loaded by `provider`'s key provider, as rustls's certificate resolvers hand them
    /// out. Fails with [`TlsError::Rustls`] when the key is unsupported or is not the leaf's.
    pub fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        Ok(CertifiedKey::from_der(self.chain.clone(), self.key.clone_key(), provider)?)
    }
}

impl Clone for WorkloadCertificate {
    fn clone(&self) -> Self {
        WorkloadCertificate {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            spiffe_id: self.spiffe_id.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl fmt::Debug for WorkloadCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCertificate")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The HBONE settings of a server configuration: ALPN `h2`, no session resumption.
pub(crate) fn hbone_server(mut config: ServerConfig) -> ServerConfig {
    config.alpn_protocols = vec![HBONE_ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config
}

/// The HBONE settings of a client configuration: ALPN `h2`, no SNI, no session resumption.
pub(crate) fn hbone_client(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![HBONE_ALPN.to_vec()];
    config.enable_sni = false;
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// The server side of HBONE: presents `own`, requires a client certificate that chains to the bundle of its
/// trust domain, which must be one of `accepted`.
pub fn server_config(
    own: &WorkloadCertificate,
    bundles: Arc<TrustBundleSet>,
    accepted: impl IntoIterator<Item = TrustDomain>,
) -> Result<ServerConfig, TlsError> {
    let accepted: Vec<TrustDomain> = accepted.into_iter().collect();
    if accepted.is_empty() {
        return Err(TlsError::NoAcceptedTrustDomains);
    }
    let provider = crate::crypto::provider();
    let verifier = SpiffeClientVerifier::new(ChainVerifier::new(bundles).accept_only(accepted), &provider);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(own.chain.clone(), own.key.clone_key())?;
    Ok(hbone_server(config))
}

/// The client side of HBONE: presents `own`, sends no SNI, and accepts the server only if its chain verifies
/// against the bundle of its trust domain and its SPIFFE ID is one of `expected`.
///
/// The `ServerName` given to `rustls::ClientConnection::new` is ignored by the verifier (an IP address of the
/// destination is customary).
pub fn client_config(
    own: &WorkloadCertificate,
    bundles: Arc<TrustBundleSet>,
    expected: impl IntoIterator<Item = SpiffeId>,
) -> Result<ClientConfig, TlsError> {
    let expected: Vec<SpiffeId> = expected.into_iter().collect();
    if expected.is_empty() {
        return Err(TlsError::NoExpectedIdentities);
    }
    let provider = crate::crypto::provider();
    let verifier = SpiffeServerVerifier::new(ChainVerifier::new(bundles), expected, &provider);
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(own.chain.clone(), own.key.clone_key())?;
    Ok(hbone_client(config))
}

/// Verifies a server's certificate by SPIFFE ID: the chain against the bundle of its trust domain, then the
/// identity against a list of expected ones. Server names (DNS or IP) play no part.
#[derive(Debug, Clone)]
pub struct SpiffeServerVerifier {
    chain: ChainVerifier,
    expected: Vec<SpiffeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// Verifies chains with `chain` and accepts the identities `expected`; handshake signatures are checked
    /// with `provider`'s algorithms.
    pub fn new(chain: ChainVerifier, expected: Vec<SpiffeId>, provider: &CryptoProvider) -> Self {
        let algorithms = provider.signature_verification_algorithms;
        SpiffeServerVerifier { chain: chain.with_algorithms(algorithms.all), expected, algorithms }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = self.chain.verify(end_entity, intermediates, PeerRole::Server, now).map_err(to_rustls)?;
        if !self.expected.contains(peer.spiffe_id()) {
            let mismatch =
                UnexpectedServerIdentity { presented: peer.into_spiffe_id(), expected: self.expected.clone() };
            return Err(other(mismatch));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Requires and verifies a client certificate: the chain against the bundle of its trust domain, which must be
/// accepted by the [`ChainVerifier`]. No CA names are hinted to the client.
#[derive(Debug, Clone)]
pub struct SpiffeClientVerifier {
    chain: ChainVerifier,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// Verifies chains with `chain`; handshake signatures are checked with `provider`'s algorithms.
    pub fn new(chain: ChainVerifier, provider: &CryptoProvider) -> Self {
        let algorithms = provider.signature_verification_algorithms;
        SpiffeClientVerifier { chain: chain.with_algorithms(algorithms.all), algorithms }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.chain.verify(end_entity, intermediates, PeerRole::Client, now).map_err(to_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A verification failure as rustls reports it: the variants rustls knows keep their alert (expired, unknown
/// CA, ...); the rest travel as [`CertificateError::Other`] holding the [`VerifyError`].
fn to_rustls(error: VerifyError) -> rustls::Error {
    let error = match error {
        VerifyError::Expired { now, not_after } => CertificateError::ExpiredContext { time: now, not_after },
        VerifyError::NotYetValid { now, not_before } => CertificateError::NotValidYetContext { time: now, not_before },
        VerifyError::UnknownIssuer { .. } => CertificateError::UnknownIssuer,
        VerifyError::BadSignature { .. } => CertificateError::BadSignature,
        VerifyError::WrongUsage { .. } => CertificateError::InvalidPurpose,
        VerifyError::Svid(SvidError::Malformed(_)) => CertificateError::BadEncoding,
        other => return self::other(other),
    };
    rustls::Error::InvalidCertificate(error)
}

fn other(error: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(error))))
}

/// Why a connection's peer identity cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    /// The handshake is not complete, or the peer sent no certificate.
    #[error("no peer certificate: the handshake is incomplete or the peer did not authenticate")]
    NoPeerCertificate,
    /// The peer's leaf is not an X.509-SVID.
    #[error("peer certificate is not an X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// The SPIFFE ID is not an Istio identity.
    #[error("peer SPIFFE ID is not an Istio identity: {0}")]
    NotIstio(#[from] SpiffeIdError),
}

/// The SPIFFE ID of the peer of a connection built from [`server_config`] or [`client_config`].
///
/// The chain was verified during the handshake; this only reads the identity from the leaf, so it must not be
/// used on connections whose configuration verified peers some other way.
pub fn peer_spiffe_id(state: &CommonState) -> Result<SpiffeId, PeerIdentityError> {
    let leaf = state.peer_certificates().and_then(|chain| chain.first()).ok_or(PeerIdentityError::NoPeerCertificate)?;
    Ok(Svid::parse(leaf)?.into_spiffe_id())
}

/// The Istio identity of the peer of a connection built from [`server_config`] or [`client_config`]; see
/// [`peer_spiffe_id`].
pub fn peer_istio_identity(state: &CommonState) -> Result<IstioIdentity, PeerIdentityError> {
    Ok(IstioIdentity::from_spiffe_id(peer_spiffe_id(state)?)?)
}
