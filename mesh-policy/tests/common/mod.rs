//! What the integration tests share: a test identity provider that signs real ES256 tokens.

#![allow(dead_code, clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// An identity provider: a P-256 key, its JWKS, and tokens signed with it.
pub(crate) struct Idp {
    key: EcdsaKeyPair,
    kid: &'static str,
}

impl Idp {
    pub(crate) fn new(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Idp { key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap(), kid }
    }

    pub(crate) fn jwks(&self) -> String {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
                         "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}]})
        .to_string()
    }

    pub(crate) fn sign(&self, claims: Value) -> String {
        let header = B64.encode(json!({"alg": "ES256", "typ": "JWT", "kid": self.kid}).to_string());
        let payload = B64.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let sig = self.key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}
