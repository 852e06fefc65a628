//! HBONE rustls configurations over the store: built once per identity, kept across rotations.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};

use super::CertificateStore;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::tls::{SpiffeClientVerifier, SpiffeServerVerifier, TlsError, hbone_client, hbone_server};
use crate::verify::ChainVerifier;

impl CertificateStore {
    /// A verifier of peer chains against the store's trust bundles as they are at each verification.
    pub fn chain_verifier(&self) -> ChainVerifier {
        ChainVerifier::shared(self.inner.bundles.clone())
    }

    /// The server side of HBONE for `identity`, as [`crate::tls::server_config`] makes it (TLS 1.3 only, ALPN
    /// `h2`, a client certificate required from one of the `accepted` trust domains, no resumption), but
    /// presenting the identity's certificate current at each handshake and verifying clients against the
    /// bundles current at each handshake, at the store's clock.
    ///
    /// Build it once per identity and keep it: renewals and bundle replacements apply to the next handshake.
    /// The identity need not have a certificate yet; until it has a valid one, handshakes fail.
    ///
    /// Its `time_provider` is the store's ([`super::StoreOptions::time_provider`]), which also decides whether
    /// the own certificate is still valid; change the clock there, not on the returned configuration.
    pub fn server_config(
        &self,
        identity: &SpiffeId,
        accepted: impl IntoIterator<Item = TrustDomain>,
    ) -> Result<ServerConfig, TlsError> {
        let accepted: Vec<TrustDomain> = accepted.into_iter().collect();
        if accepted.is_empty() {
            return Err(TlsError::NoAcceptedTrustDomains);
        }
        let options = &self.inner.options;
        let provider = Arc::clone(&options.crypto_provider);
        let verifier = SpiffeClientVerifier::new(self.chain_verifier().accept_only(accepted), &provider);
        let config = ServerConfig::builder_with_details(provider, Arc::clone(&options.time_provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(self.resolver(identity)));
        Ok(hbone_server(config))
    }

    /// The client side of HBONE for `identity`, as [`crate::tls::client_config`] makes it (TLS 1.3 only, ALPN
    /// `h2`, no SNI, the server accepted only with one of the `expected` SPIFFE IDs, no resumption), but
    /// presenting the identity's certificate current at each handshake and verifying servers against the
    /// bundles current at each handshake, at the store's clock.
    ///
    /// The expected identities belong to the destination, so a client proxy keeps one configuration per
    /// source identity and destination identities (as its connection pool is keyed); each survives rotations.
    /// Its `time_provider` is the store's, as for [`CertificateStore::server_config`].
    pub fn client_config(
        &self,
        identity: &SpiffeId,
        expected: impl IntoIterator<Item = SpiffeId>,
    ) -> Result<ClientConfig, TlsError> {
        let expected: Vec<SpiffeId> = expected.into_iter().collect();
        if expected.is_empty() {
            return Err(TlsError::NoExpectedIdentities);
        }
        let options = &self.inner.options;
        let provider = Arc::clone(&options.crypto_provider);
        let verifier = SpiffeServerVerifier::new(self.chain_verifier(), expected, &provider);
        let config = ClientConfig::builder_with_details(provider, Arc::clone(&options.time_provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(self.resolver(identity)));
        Ok(hbone_client(config))
    }
}
