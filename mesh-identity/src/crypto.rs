//! The rustls crypto provider this crate uses, and where its randomness comes from.
//!
//! Every TLS configuration built here ([`crate::tls`], [`crate::store`]) is given a [`CryptoProvider`]
//! explicitly; no process-wide provider is installed or read. Unless the caller passes another one, it is
//! [`provider`]: rustls's *ring* provider.
//!
//! # Randomness
//!
//! - **TLS**: rustls draws handshake randoms from the configuration's provider ([`CryptoProvider::secure_random`]);
//!   the provider's own key exchange and signing code draws key shares and ECDSA nonces. In the *ring* provider
//!   all of these are `ring::rand::SystemRandom`, the operating system's generator (`getrandom(2)` on Linux).
//! - **Certificate serial numbers** issued by [`crate::ca::LocalCa`]: 16 bytes from the
//!   [`CryptoProvider::secure_random`] of the CA's provider ([`crate::ca::LocalCa::crypto_provider`], this
//!   module's [`provider`] unless another is given), as rustls itself draws its randoms.
//! - **Key pairs** the CA generates, and the **ECDSA nonces** of the certificates it signs: `rcgen` over
//!   *ring*, which takes them from `ring::rand::SystemRandom`. rustls's `CryptoProvider` has no key generation
//!   and *ring*'s `SecureRandom` trait is sealed, so no other generator can be passed in; `SystemRandom` is the
//!   very generator behind the *ring* provider's `secure_random`, so with the *ring* provider all of the
//!   crate's randomness comes from one source, the operating system. A CA given a different provider draws
//!   its serial numbers from that provider and its keys still from *ring*.
//!
//! Nothing else in the crate is random: rotation jitter ([`crate::rotation::Jitter`]) is drawn by the caller.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// rustls's *ring* provider, built once and shared.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Fills `buf` from `provider`'s secure random generator.
pub(crate) fn fill_random(provider: &CryptoProvider, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
    provider.secure_random.fill(buf)
}
